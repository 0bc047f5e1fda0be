"""A user's own task reaches every part of the CLI (train, --resume, map,
--show-options) through register_task, an installed entry point, or its
factory's import path; fit's callbacks and the TensorBoard writer."""
import json
import os
import struct
import subprocess
import sys
import textwrap

import pytest

from brainscale.train import TrainConfig, fit, make_task, register_task
from brainscale.train import registry
from brainscale.train.callbacks import Callback, TensorBoard

# A task as a user writes it in their own package: numpy batches, their own
# option names, a model from brainscale.models with their own defaults.
USER_TASK = textwrap.dedent('''
    """Two tones: which of two input groups oscillates faster."""
    import numpy as np
    from brainscale.models.recurrent_snn import RecurrentSNNOptions, recurrent_snn
    from brainscale.train import Task

    def make_two_freq(T: int = 10, channels: int = 8, n_eval: int = 16):
        """Which half of ``channels`` fires at the higher rate; label on the
        last half of the ``T`` steps."""
        def draw(rng, B):
            y = rng.integers(0, 2, B)
            fast = (np.arange(channels) < channels // 2)[None] == (y[:, None] == 0)
            xs = (rng.random((T, B, channels)) < np.where(fast, 0.7, 0.1)).astype(np.float32)
            ys = np.full((T, B), -1, np.int32)
            ys[T // 2:] = y
            return xs, ys

        return Task(
            name="two_freq", n_in=channels, n_out=2,
            train_batch=lambda seed, step, B: draw(np.random.default_rng([seed, step]), B),
            eval_batches=lambda B: [draw(np.random.default_rng(99), B)
                                    for _ in range(-(-n_eval // B))],
            make_model=lambda opts, seed: recurrent_snn(channels, 2, seed=seed, **opts),
            options={"T": T, "channels": channels},
            model_defaults={"hidden": [12], "w_in_scale": 4.0},
            model_options=RecurrentSNNOptions)
''')


@pytest.fixture
def user_site(tmp_path):
    """A folder on the path holding the user's package and, like an
    installed distribution, its entry point in group 'brainscale.tasks'."""
    site = tmp_path / "site"
    (site / "twofreq_pkg").mkdir(parents=True)
    (site / "twofreq_pkg" / "__init__.py").write_text("")
    (site / "twofreq_pkg" / "tasks.py").write_text(USER_TASK)
    dist = site / "twofreq_pkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: twofreq-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[brainscale.tasks]\ntwo_freq = twofreq_pkg.tasks:make_two_freq\n")
    return site


def cli(site, *args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(site)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    return subprocess.run([sys.executable, "-m", "brainscale.cli", *args], capture_output=True,
                          text=True, timeout=600, env=env)


SMALL = ["--steps", "4", "--batch-size", "4", "--eval-every", "2", "--checkpoint-every", "2",
         "--no-plots"]


@pytest.mark.parametrize("task", ["two_freq", "twofreq_pkg.tasks:make_two_freq"])
def test_a_user_task_trains_resumes_and_maps_from_the_shell(user_site, tmp_path, task):
    run = tmp_path / "run"
    proc = cli(user_site, "train", "--task", task, *SMALL, "--out", str(run))
    assert proc.returncode == 0, proc.stderr[-2000:]
    saved = json.loads((run / "config.json").read_text())
    assert saved["task"] == task
    # every model value used is recorded: the task's defaults and the schema's
    assert saved["model"]["hidden"] == [12] and saved["model"]["w_in_scale"] == 4.0
    assert saved["model"]["neuron"] == "lif" and saved["model"]["tau_out"] == 10.0
    if ":" not in task:          # resuming is the same for both ways of naming it
        proc = cli(user_site, "train", "--out", str(run), "--resume", "--steps", "6",
                   "--no-plots")
        assert proc.returncode == 0, proc.stderr[-2000:]
        steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text()
                 .splitlines() if json.loads(line)["kind"] == "train"]
        assert steps == list(range(1, 7))
    proc = cli(user_site, "map", str(run), "--no-quantize", "--batch-size", "4")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "cores used:" in proc.stdout


def test_show_options_of_an_installed_task(user_site):
    proc = cli(user_site, "train", "--task", "two_freq", "--show-options")
    assert proc.returncode == 0, proc.stderr
    assert "task_options.channels" in proc.stdout and "8" in proc.stdout
    assert "model.hidden" in proc.stdout and "[12]" in proc.stdout
    assert "recurrent layer sizes" in proc.stdout
    assert "two_freq" in cli(user_site, "train", "--help").stdout


def test_register_task_in_process(user_site, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(user_site))
    monkeypatch.setattr(registry, "TASKS", dict(registry.TASKS))
    from twofreq_pkg.tasks import make_two_freq

    register_task("tones", make_two_freq)
    assert "tones" in registry.task_names()
    assert make_task("tones", {"T": 6}).options["T"] == 6
    with pytest.raises(ValueError, match="already registered"):
        register_task("tones", lambda: None)
    register_task("tones", "twofreq_pkg.tasks:make_two_freq", replace=True)
    res = fit(TrainConfig(task="tones", steps=2, batch_size=4, eval_every=2,
                          out_dir=str(tmp_path / "r")), log=lambda *a: None, progress=False,
              plots=False)
    assert res["status"] == "completed"
    with pytest.raises(ValueError, match="name"):
        register_task("a/b", make_two_freq)
    with pytest.raises(ValueError, match="register_task.*entry point.*module:make_task"):
        make_task("nonesuch")


def test_task_errors_name_the_option():
    with pytest.raises(ValueError, match=r"task 'shd' needs task_options \['data_dir'\]"):
        make_task("shd")
    with pytest.raises(ValueError, match=r"unknown task_options \['nonsense'\]"):
        make_task("digits", {"nonsense": 1})
    with pytest.raises(ValueError, match="cannot import 'no_such_pkg.mod:make'"):
        make_task("no_such_pkg.mod:make")
    with pytest.raises(ValueError, match=r"'task_options.n_cues'.*integer, got 2.7"):
        make_task("evidence", {"n_cues": 2.7})        # unannotated, an int default


class Recorder:
    """A callback written without the base class, with only some hooks."""

    def __init__(self):
        self.steps, self.evals, self.ckpts, self.end = [], [], [], None

    def on_step(self, step, record, state):
        assert record["kind"] == "train" and record["step"] == step
        self.steps.append(step)

    def on_eval(self, step, record, state):
        self.evals.append((step, record["accuracy"]))

    def on_checkpoint(self, step, path):
        assert os.path.exists(path)
        self.ckpts.append(step)

    def on_end(self, summary):
        self.end = summary["status"]


def test_callbacks_see_every_record(tmp_path):
    from toy_task import toy_task

    rec, partial = Recorder(), type("OnlyEval", (Callback,), {})()
    cfg = TrainConfig(task="toy", steps=6, batch_size=4, eval_every=3, checkpoint_every=2,
                      lr=1e-2, out_dir=str(tmp_path / "r"))
    res = fit(cfg, task=toy_task(), log=lambda *a: None, progress=False, plots=False,
              callbacks=[rec, partial])
    assert rec.steps == [1, 2, 3, 4, 5, 6] and rec.ckpts == [2, 4, 6] and rec.end == "completed"
    logged = [(r["step"], r["accuracy"]) for r in res["history"] if r["step"] > 0]
    assert [e for e in rec.evals if e[0] > 0] == logged and logged


def test_on_end_hears_of_a_failed_run(tmp_path):
    """A run that stops on an error still tells its callbacks (a writer can
    close its files), then raises."""
    from toy_task import toy_task

    rec = Recorder()
    cfg = TrainConfig(task="toy", steps=4, batch_size=4, eval_every=2,
                      out_dir=str(tmp_path / "r"))
    with pytest.raises(ValueError, match="NaN"):
        fit(cfg, task=toy_task(poison={2: "nan"}), log=lambda *a: None, progress=False,
            plots=False, callbacks=[rec])
    assert rec.end == "error" and rec.steps == [1, 2]


def read_scalars(folder):
    """Scalars of TensorBoard event files, read with the TFRecord framing
    (length, crc, payload, crc) and the Event protobuf."""
    from tensorboardX.proto import event_pb2

    out = {}
    for name in sorted(os.listdir(folder)):
        data = open(os.path.join(folder, name), "rb").read()
        i = 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i:i + 8])
            ev = event_pb2.Event.FromString(data[i + 12:i + 12 + n])
            i += 12 + n + 4
            for v in ev.summary.value:
                out.setdefault(v.tag, []).append((ev.step, v.simple_value))
    return out


def test_tensorboard_callback_writes_the_run(tmp_path):
    pytest.importorskip("tensorboardX")
    from toy_task import toy_task

    tb = tmp_path / "tb"
    cfg = TrainConfig(task="toy", steps=4, batch_size=4, eval_every=2, lr=1e-2,
                      out_dir=str(tmp_path / "r"))
    res = fit(cfg, task=toy_task(), log=lambda *a: None, progress=False, plots=False,
              callbacks=[TensorBoard(str(tb))])
    scalars = read_scalars(tb)
    assert [s for s, _ in scalars["train/loss"]] == [1, 2, 3, 4]
    want = [(r["step"], r["accuracy"]) for r in res["history"]]
    assert [(s, pytest.approx(v)) for s, v in scalars["eval/accuracy"]] == want


def test_tensorboard_flag_and_missing_extra(tmp_path, monkeypatch, capsys):
    pytest.importorskip("tensorboardX")
    from brainscale.cli.main import main

    out = tmp_path / "r"
    assert main(["train", "--task", "digits", "--steps", "1", "--batch-size", "8",
                 "--set", "model.hidden=[8]", "--set", "task_options.T=4",
                 "--set", "task_options.max_eval=8", "--tensorboard", "--no-plots",
                 "--out", str(out)]) == 0
    assert read_scalars(out / "tensorboard")["eval/accuracy"]
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    assert main(["train", "--task", "digits", "--steps", "1", "--tensorboard",
                 "--out", str(tmp_path / "r2")]) == 2
    assert 'pip install -e ".[tensorboard]"' in capsys.readouterr().err
    assert not (tmp_path / "r2").exists()


def test_the_console_script_finds_a_factory_in_the_current_folder(tmp_path):
    """``brainscale`` (a console script, which leaves the current folder off
    sys.path) finds ``mytasks:make_two_freq`` in the folder it runs in, as
    ``python -m`` would; a bad folder in ``map --json`` is one line."""
    exe = os.path.join(os.path.dirname(sys.executable), "brainscale")
    assert os.path.exists(exe), "pip install -e . puts the brainscale command beside python"
    (tmp_path / "mytasks.py").write_text(USER_TASK)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([exe, "train", "--task", "mytasks:make_two_freq", "--show-options"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "task_options.channels" in proc.stdout
    proc = subprocess.run([exe, "map", str(tmp_path), "--json", str(tmp_path / "no" / "r.json")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ")
    assert "Traceback" not in proc.stderr
