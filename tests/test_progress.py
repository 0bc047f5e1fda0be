"""The training progress line: the first (compiling) step is reported on its
own and left out of the rate and ETA."""
import io
import time

from brainscale.cli.progress import ProgressBar, format_duration


def test_non_tty_prints_about_every_ten_percent():
    buf = io.StringIO()
    with ProgressBar(200, desc="x", stream=buf, tty=False) as bar:
        for i in range(200):
            bar.update(1, loss=1.0 / (i + 1))
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("x: first step (compilation included)")
    assert 10 <= len(lines) - 1 <= 12
    assert "\r" not in buf.getvalue()
    assert lines[-1].startswith("x 200/200") and "loss 0.0050" in lines[-1]
    assert "steps/s" in lines[-1] and "eta" in lines[-1]


def test_eta_counts_the_steady_state_only():
    """A slow first step (compilation) must not inflate the rate estimate:
    with a 0.3 s first step and ~0.01 s steps after it, the rate is near
    100 steps/s, not 3."""
    bar = ProgressBar(100, stream=io.StringIO(), tty=False)
    time.sleep(0.3)
    bar.update(1)
    for _ in range(5):
        time.sleep(0.01)
        bar.update(1)
    assert bar.first_step_s >= 0.3
    assert bar.rate() > 30, bar.rate()


def test_tty_uses_a_redrawn_bar():
    buf = io.StringIO()
    bar = ProgressBar(5, stream=buf, tty=True, desc="run")
    for _ in range(5):
        bar.update()
    bar.close()
    bar.close()  # idempotent
    text = buf.getvalue()
    assert text.startswith("run: first step") and "\r" in text and "5/5" in text


def test_format_duration():
    assert format_duration(0) == "00:00"
    assert format_duration(75) == "01:15"
    assert format_duration(3725) == "1:02:05"
    assert format_duration(float("inf")) == "?"


def test_a_loop_compiled_ahead_counts_every_step():
    buf = io.StringIO()
    bar = ProgressBar(10, stream=buf, tty=False, desc="d", compiled=True)
    for _ in range(10):
        bar.update(1)
    assert "first step" not in buf.getvalue() and bar.first_step_s is None
    assert "10/10" in buf.getvalue().splitlines()[-1]
