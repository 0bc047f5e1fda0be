"""Training runs: exact resume after an interruption, atomic checkpoints,
bad input rejected before any state change, configs, evaluation."""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from brainscale.train import (BatchError, CheckpointError, TrainConfig, config_from_dict, fit,
                              load_checkpoint, load_config, metric_counts)
from brainscale.train.batches import masked_cross_entropy
from brainscale.train.checkpoint import atomic_write, read_checkpoint_meta
from brainscale.train.evaluation import eval_schedule
from toy_task import toy_task

HERE = os.path.dirname(os.path.abspath(__file__))


def cfg(out, **kw):
    base = dict(task="toy", steps=8, eval_every=4, checkpoint_every=2, lr=1e-2, batch_size=8,
                out_dir=str(out))
    return TrainConfig(**{**base, **kw})


def leaves_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(
        np.asarray(x).dtype == np.asarray(y).dtype and np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(la, lb))


def train_records(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 8-step run."""
    out = tmp_path_factory.mktemp("ref")
    res = fit(cfg(out), task=toy_task(), log=lambda *a: None, progress=False, plots=False)
    return res


def eval_records(out):
    return [r for r in train_records(out) if r["kind"] == "eval"]


def test_fit_learns_logs_and_plots(tmp_path):
    """Default schedule: step 0 (untrained), then every ceil(30 / 10) = 3 steps."""
    c = cfg(tmp_path, steps=30, eval_every=None)
    res = fit(c, task=toy_task(), log=lambda *a: None, progress=False)
    assert res["status"] == "completed" and res["step"] == 30
    recs = train_records(tmp_path)
    assert [r["step"] for r in recs if r["kind"] == "train"] == list(range(1, 31))
    evals = eval_records(tmp_path)
    assert [r["step"] for r in evals] == eval_schedule(c) == list(range(0, 31, 3))
    assert [r["step"] for r in res["history"]] == eval_schedule(c)
    assert recs[0]["kind"] == "eval" and recs[0]["step"] == 0      # scored before training
    for r in evals:
        assert isinstance(r["loss"], float) and np.isfinite(r["loss"]) and r["loss"] > 0
    assert evals[-1]["loss"] < evals[0]["loss"]                     # it learned
    assert res["final"]["accuracy"] >= 0.9 and res["final"]["n_scored"] == 40
    assert set(res["plots"]) == {"learning_curve", "raster"}
    for name in ("learning_curve.png", "raster.png", "result.json", "config.json"):
        assert os.path.getsize(tmp_path / name) > 0
    assert read_checkpoint_meta(str(tmp_path / "checkpoint.msgpack"))["step"] == 30


def test_resume_after_stop_is_bit_exact(tmp_path, reference):
    fit(cfg(tmp_path, steps=5), task=toy_task(), log=lambda *a: None, progress=False, plots=False)
    res = fit(cfg(tmp_path), task=toy_task(), resume=True, log=lambda *a: None, progress=False,
              plots=False)
    assert res["step"] == 8
    assert leaves_equal(res["state"], reference["state"])
    steps = [r["step"] for r in train_records(tmp_path) if r["kind"] == "train"]
    assert steps == list(range(1, 9))
    # the 5-step run's final evaluation stays; none is repeated or skipped
    assert [r["step"] for r in eval_records(tmp_path)] == [0, 4, 5, 8]
    assert [r["step"] for r in res["history"]] == [0, 4, 5, 8]


_CHILD = """
import sys
sys.path.insert(0, {here!r})
from toy_task import toy_task
from brainscale.train import TrainConfig, fit
cfg = TrainConfig(task="toy", steps=8, eval_every=4, checkpoint_every=2, lr=1e-2,
                  batch_size=8, out_dir={out!r})
res = fit(cfg, task=toy_task(delay_s=0.4), progress=False, plots=False)
print("STATUS", res["status"], res["step"], flush=True)
"""


def _run_child_until(out, n_train, sig):
    proc = subprocess.Popen([sys.executable, "-c", _CHILD.format(here=HERE, out=str(out))],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = os.path.join(out, "metrics.jsonl")
    deadline = time.time() + 120
    while time.time() < deadline:
        if os.path.exists(log):
            with open(log) as f:
                if sum('"train"' in line for line in f) >= n_train:
                    break
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.send_signal(sig)
    text = proc.communicate(timeout=120)[0]
    return proc.returncode, text


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_run_resumes_bit_exact(tmp_path, reference, sig):
    rc, text = _run_child_until(tmp_path, 3, sig)
    meta = read_checkpoint_meta(str(tmp_path / "checkpoint.msgpack"))
    if sig == signal.SIGTERM:   # handled: checkpoint at the step it was in, clean exit
        assert rc == 0 and "STATUS interrupted" in text, text
        assert 3 <= meta["step"] < 8
        assert train_records(tmp_path)[-1]["kind"] == "interrupted"
    else:                       # hard kill: the last periodic checkpoint survives intact
        assert rc == -signal.SIGKILL
        assert meta["step"] in (2, 4, 6)
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")] or sig == signal.SIGKILL
    res = fit(cfg(tmp_path), task=toy_task(), resume=True, log=lambda *a: None, progress=False,
              plots=False)
    assert res["status"] == "completed" and res["step"] == 8
    assert leaves_equal(res["state"], reference["state"])
    steps = [r["step"] for r in train_records(tmp_path) if r["kind"] == "train"]
    assert steps == list(range(1, 9))
    # the same evaluations as the uninterrupted run, number for number
    assert eval_records(tmp_path) == eval_records(reference["out_dir"])
    assert [r["step"] for r in eval_records(tmp_path)] == [0, 4, 8]
    assert res["history"] == reference["history"]


@pytest.fixture(scope="module")
def four_steps(tmp_path_factory):
    out = tmp_path_factory.mktemp("four")
    fit(cfg(out, steps=4), task=toy_task(), log=lambda *a: None, progress=False, plots=False)
    return out


@pytest.mark.parametrize("kind, match", [("nan", "non-finite input"),
                                         ("label", "label 7 .* out of range"),
                                         ("shape", "batch of 7 samples")])
def test_bad_batch_rejected_checkpoint_untouched(tmp_path, four_steps, kind, match):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(four_steps, run)
    ckpt = run / "checkpoint.msgpack"
    before = ckpt.read_bytes()
    with pytest.raises(BatchError, match=match) as err:
        fit(cfg(run), task=toy_task(poison={4: kind}), resume=True,
            log=lambda *a: None, progress=False, plots=False)
    assert "train batch at step 4" in str(err.value)
    assert read_checkpoint_meta(str(ckpt))["step"] == 4 and ckpt.read_bytes() == before


def test_fresh_run_refuses_to_overwrite_a_checkpoint(tmp_path):
    fit(cfg(tmp_path, steps=2), task=toy_task(), log=lambda *a: None, progress=False,
        plots=False)
    with pytest.raises(FileExistsError, match="resume"):
        fit(cfg(tmp_path, steps=2), task=toy_task(), log=lambda *a: None, progress=False)


def test_resume_with_a_different_config_names_the_key(tmp_path):
    fit(cfg(tmp_path, steps=2), task=toy_task(), log=lambda *a: None, progress=False,
        plots=False)
    with pytest.raises(CheckpointError, match="lr: saved 0.01, now 0.02"):
        fit(cfg(tmp_path, lr=2e-2), task=toy_task(), resume=True, log=lambda *a: None,
            progress=False)


def test_checkpoint_corrupt_and_mismatched(tmp_path, reference):
    path = str(tmp_path / "c.msgpack")
    with open(reference["checkpoint"], "rb") as f:
        good = f.read()
    atomic_write(path, good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path, reference["state"])
    atomic_write(path, b"\x93\x01\x02\x03")
    with pytest.raises(CheckpointError):
        load_checkpoint(path, reference["state"])
    # a template of another shape: the leaf's path is named
    atomic_write(path, good)
    st = reference["state"]
    bad = st._replace(hidden0=jax.tree.map(lambda a: np.zeros(np.shape(a) + (2,), a.dtype),
                                           st.hidden0))
    with pytest.raises(CheckpointError, match=r"state\.hidden0.*float32\[16\].*float32\[16, 2\]"):
        load_checkpoint(path, bad)


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    atomic_write(str(path), b"old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(str(path), b"new")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['stepz'\]"):
        config_from_dict({"task": "toy", "stepz": 3})
    with pytest.raises(ValueError, match="'lr' must be a positive number"):
        TrainConfig(task="toy", lr=-1.0)
    with pytest.raises(ValueError, match="'algorithm' must be one of"):
        TrainConfig(task="toy", algorithm="eprop")
    with pytest.raises(ValueError, match="'batch_size' must be a multiple of devices"):
        TrainConfig(task="toy", batch_size=6, devices=4)
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        fit(TrainConfig(task="nope", out_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="'eval_every' must be null .* or a positive integer"):
        TrainConfig(task="toy", eval_every=0)


def test_eval_schedule_about_ten_plus_step_0(tmp_path):
    assert eval_schedule(TrainConfig(task="toy", steps=1000)) == list(range(0, 1001, 100))
    assert eval_schedule(TrainConfig(task="toy", steps=25)) == [0, 3, 6, 9, 12, 15, 18, 21,
                                                               24, 25]
    assert eval_schedule(TrainConfig(task="toy", steps=3)) == [0, 1, 2, 3]
    # an explicit eval_every wins, and a config file that stores one still loads
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"task": "toy", "steps": 1000, "eval_every": 400}))
    c = load_config(str(path))
    assert c.eval_interval == 400 and eval_schedule(c) == [0, 400, 800, 1000]
    path.write_text(json.dumps({"task": "toy", "steps": 50, "eval_every": None}))
    assert load_config(str(path)).eval_interval == 5


def test_cli_set_and_config_file(tmp_path):
    import argparse

    from brainscale.cli.train import add_train_parser, config_from_args

    parser = argparse.ArgumentParser()
    add_train_parser(parser.add_subparsers())
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"task": "digits", "lr": 1e-3, "steps": 10}))
    args = parser.parse_args(["train", "--config", str(path), "--steps", "20",
                              "--set", "task_options.T=30", "--set", "model.hidden=[8,8]",
                              "--set", "optimizer=sgd"])
    c = config_from_args(args)
    assert (c.task, c.lr, c.steps, c.optimizer) == ("digits", 1e-3, 20, "sgd")
    assert c.task_options == {"T": 30} and c.model == {"hidden": [8, 8]}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        config_from_args(parser.parse_args(["train", "--task", "x", "--set", "lr"]))


def test_metric_counts_and_loss_by_hand():
    out = np.zeros((3, 2, 3))
    out[1, 0] = [0.0, 2.0, 0.0]      # sample 0 votes class 1 at step 1 ...
    out[2, 0] = [1.5, 0.0, 0.0]      # ... and class 0 at step 2: summed 1.5 vs 2.0 -> 1
    out[2, 1] = [0.0, 0.0, 1.0]      # sample 1: class 2
    ys = np.array([[-1, -1], [1, -1], [1, 0]])
    assert metric_counts(out, ys, "trial") == (1, 2)          # 1 right, 2 wrong
    assert metric_counts(out, ys, "step") == (1, 3)           # steps: (1,0) ok, (2,0) no, (2,1) no
    s, n = masked_cross_entropy(out, ys)
    lse = lambda z: np.log(np.exp(z).sum())
    want = (lse(out[1, 0]) - 2.0) + (lse(out[2, 0]) - 0.0) + (lse(out[2, 1]) - 0.0)
    assert n == 3 and abs(s - want) < 1e-12
    with pytest.raises(ValueError, match="one label per sample"):
        metric_counts(out, np.array([[-1, -1], [1, -1], [2, 0]]), "trial")


def test_malformed_event_file_stops_run_checkpoint_untouched(tmp_path):
    """A corrupt N-MNIST file met mid-run: a DatasetError naming the file,
    the last checkpoint byte for byte as it was."""
    from brainscale.datasets.errors import DatasetError
    from brainscale.datasets.nmnist import make_task
    from brainscale.datasets.synthetic import fake_nmnist

    fake_nmnist(str(tmp_path / "data"), n_per_class=(1, 1), n_events=200)
    task = lambda: make_task(str(tmp_path / "data"), T=6, downsample=(8, 8))
    run = tmp_path / "run"
    c = cfg(run, task="nmnist", steps=2, eval_every=2, batch_size=4,
            model={"hidden": [8]})
    fit(c, task=task(), log=lambda *a: None, progress=False, plots=False)
    ckpt = run / "checkpoint.msgpack"
    before = ckpt.read_bytes()
    bins = sorted((tmp_path / "data" / "NMNIST" / "Train").rglob("*.bin"))
    for b in bins:                                # every file: the next step meets one
        with open(b, "ab") as f:
            f.write(b"\x00\x01")                  # 2 stray bytes: not 5-byte events
    with pytest.raises(DatasetError, match=r"NMNIST/Train/\d/\d+\.bin.*multiple of 5"):
        fit(c.replace(steps=30), task=task(), resume=True, log=lambda *a: None,
            progress=False, plots=False)
    assert ckpt.read_bytes() == before


def test_cosine_schedule_decays_and_resumes_exactly(tmp_path):
    """lr_schedule="cosine": a run stopped by SIGINT after step 5 and resumed
    equals the uninterrupted one bit for bit (the schedule's position is the
    optimizer's count in the checkpoint) and differs from a constant lr; an
    unknown schedule names the key."""
    class StopAt:
        def __init__(self, step):
            self.step = step

        def on_step(self, step, record, state):
            if step == self.step:
                os.kill(os.getpid(), signal.SIGINT)

    quiet = dict(log=lambda *a: None, progress=False, plots=False)
    whole = fit(cfg(tmp_path / "whole", lr_schedule="cosine", optimizer="sgd"), task=toy_task(),
                **quiet)
    part = tmp_path / "part"
    first = fit(cfg(part, lr_schedule="cosine", optimizer="sgd"), task=toy_task(),
                callbacks=[StopAt(5)], **quiet)
    assert first["status"] == "interrupted" and first["step"] == 5
    res = fit(cfg(part, lr_schedule="cosine", optimizer="sgd"), task=toy_task(), resume=True,
              **quiet)
    assert res["step"] == 8 and leaves_equal(res["state"], whole["state"])
    const = fit(cfg(tmp_path / "const", optimizer="sgd"), task=toy_task(), **quiet)
    assert not leaves_equal(const["state"].params, whole["state"].params)
    with pytest.raises(ValueError, match="lr_schedule"):
        cfg(tmp_path / "bad", lr_schedule="linear")
