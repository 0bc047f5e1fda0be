"""The text progress bar."""
import io

from brainscale.cli.progress import ProgressBar, format_duration


def test_non_tty_prints_about_every_ten_percent():
    buf = io.StringIO()
    with ProgressBar(200, desc="x", stream=buf, tty=False) as bar:
        for i in range(200):
            bar.update(1, loss=1.0 / (i + 1))
    lines = buf.getvalue().splitlines()
    assert 10 <= len(lines) <= 12
    assert "\r" not in buf.getvalue()
    assert lines[-1].startswith("x [") and "200/200" in lines[-1] and "loss 0.0050" in lines[-1]
    assert "it/s" in lines[-1] and "eta" in lines[-1]


def test_tty_redraws_in_place():
    buf = io.StringIO()
    bar = ProgressBar(5, stream=buf, tty=True)
    for _ in range(5):
        bar.update()
    bar.close()
    bar.close()  # idempotent
    text = buf.getvalue()
    assert text.count("\r") == 6 and text.endswith("\n") and text.count("\n") == 1
    assert "5/5" in text


def test_format_duration():
    assert format_duration(0) == "00:00"
    assert format_duration(75) == "01:15"
    assert format_duration(3725) == "1:02:05"
    assert format_duration(float("inf")) == "?"
