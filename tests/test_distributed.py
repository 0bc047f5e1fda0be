"""``brainscale train --processes 2``: two processes on JAX's distributed
runtime (gloo on CPU) train the model one process trains, in float64, to
summation order; a SIGTERM to the launcher stops both after the same step
with a checkpoint that a 2-process resume continues; a failing process
stops the launch with its message; bad flags are one-line errors."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from brainscale.cli.main import main
from brainscale.train.checkpoint import _read as read_checkpoint

HERE = os.path.dirname(os.path.abspath(__file__))
RUN = ["--task", "toy_task:toy_task", "--batch-size", "8", "--lr", "0.01", "--eval-every", "3",
       "--checkpoint-every", "3", "--no-plots"]

FAILING_TASK = """
import dataclasses
import jax
from toy_task import toy_task

def failing():
    task = toy_task()
    def train_batch(seed, step, B):
        if jax.process_index() == 1:
            raise RuntimeError("process 1 cannot read its shard of the data")
        return task.train_batch(seed, step, B)
    return dataclasses.replace(task, train_batch=train_batch)
"""


def env(*extra_paths):
    """float64 on CPU, one device a process, the toy task importable."""
    flags = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split()
                     if "force_host_platform_device_count" not in f)
    path = os.pathsep.join([*map(str, extra_paths), HERE, os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_ENABLE_X64": "1", "XLA_FLAGS": flags,
            "PYTHONPATH": path}


def train(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "brainscale.cli", "train", *args],
                            env=env(*kw.pop("paths", ())), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def records(out):
    path = os.path.join(out, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.endswith("\n")]


def params(path):
    return [np.asarray(a) for a in _leaves(read_checkpoint(path)[1]["params"])]


def _leaves(tree):
    return [x for k in sorted(tree) for x in _leaves(tree[k])] if isinstance(tree, dict) \
        else [tree]


def test_two_processes_train_the_one_process_model_and_resume(tmp_path):
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    ref = train(*RUN, "--steps", "6", "--out", one)
    ref_err = ref.communicate(timeout=300)[1]
    assert ref.returncode == 0, ref_err[-3000:]

    # 2 processes; each batch takes 0.25 s to make, so a SIGTERM lands mid-run
    run = train(*RUN, "--steps", "40", "--set", "task_options.delay_s=0.25", "--out", two,
                "--processes", "2")
    deadline = time.monotonic() + 240
    while not any(r["kind"] == "train" and r["step"] >= 2 for r in records(two)):
        assert run.poll() is None, run.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no training step within 240 s"
        time.sleep(0.05)
    run.send_signal(signal.SIGTERM)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 128 + signal.SIGTERM, err[-3000:]
    stop = [r for r in records(two) if r["kind"] == "interrupted"]
    assert len(stop) == 1 and 2 <= stop[0]["step"] < 6, stop
    ckpt = os.path.join(two, "checkpoint.msgpack")
    assert json.loads(read_checkpoint(ckpt)[0]["meta"])["step"] == stop[0]["step"]
    at_stop = params(ckpt)

    resumed = train("--out", two, "--resume", "--steps", "6", "--processes", "2")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    assert f"resuming toy_task:toy_task / es_d_rtrl from step {stop[0]['step']}" in out

    result = json.loads(open(os.path.join(two, "result.json")).read())
    assert result["placement"] == {"devices": 2, "processes": 2, "platform": "cpu"}
    final, want = params(ckpt), params(os.path.join(one, "checkpoint.msgpack"))
    assert [a.dtype for a in final] == [np.dtype("float64")] * len(final)
    # one sum over 8 rows against two sums over 4 rows added across processes
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(final, want))
    assert diff < 1e-12, diff
    moved = min(float(np.max(np.abs(a - b))) for a, b in zip(final, at_stop))
    assert moved > 1e-4, moved                  # every weight trained after the resume
    assert [r["step"] for r in records(two) if r["kind"] == "train"] == list(range(1, 7))
    evals = [[r for r in records(d) if r["kind"] == "eval"] for d in (one, two)]
    assert [r["step"] for r in evals[1]] == [r["step"] for r in evals[0]] == [0, 3, 6]
    for a, b in zip(*evals):
        assert a["accuracy"] == b["accuracy"] and abs(a["loss"] - b["loss"]) < 1e-12


def test_a_failing_process_stops_the_launch_with_its_message(tmp_path):
    (tmp_path / "failing_task.py").write_text(FAILING_TASK)
    out = tmp_path / "run"
    t0 = time.monotonic()
    proc = train("--task", "failing_task:failing", "--steps", "4", "--batch-size", "8",
                 "--out", str(out), "--processes", "2", paths=[tmp_path])
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err[-3000:]
    assert "process 1 of 2 (exit code 1) said:" in err
    assert "RuntimeError: process 1 cannot read its shard of the data" in err
    assert "error: process 1 of 2 failed (exit code 1); the other processes were stopped" in err
    assert time.monotonic() - t0 < 100             # process 0 was stopped, not waited for
    assert not (out / "checkpoint.msgpack").exists()


@pytest.mark.parametrize("flags, words", [
    (["--processes", "0"], "--processes must be at least 1, got 0"),
    (["--processes", "2", "--coordinator", "127.0.0.1:1234"],
     "--processes starts the processes itself; --coordinator is for"),
    (["--processes", "3"], "config key 'batch_size' (4) must be a multiple of the number of "
                           "devices, and --processes 3 gives at least 3"),
    (["--coordinator", "127.0.0.1:1234", "--process-id", "0"],
     "--coordinator needs --num-processes N too"),
    (["--coordinator", "127.0.0.1:1234", "--num-processes", "2"],
     "--coordinator needs --process-id I too"),
    (["--coordinator", "127.0.0.1:1234", "--num-processes", "2", "--process-id", "2"],
     "--process-id 2 is out of range for --num-processes 2 (0 to 1)"),
    (["--coordinator", "127.0.0.1:1234", "--num-processes", "0", "--process-id", "0"],
     "--num-processes must be at least 1, got 0"),
    (["--coordinator", "host-without-port", "--num-processes", "2", "--process-id", "0"],
     "--coordinator 'host-without-port': expected HOST:PORT"),
    (["--num-processes", "2", "--process-id", "1"],
     "--num-processes and --process-id need --coordinator HOST:PORT"),
    (["--coordinator", "auto", "--process-id", "1"],
     "--coordinator auto reads the process count and id from the cluster"),
])
def test_bad_process_flags_are_one_line_errors(tmp_path, capsys, flags, words):
    code = main(["train", "--task", "digits", "--steps", "2", "--batch-size", "4",
                 "--out", str(tmp_path / "run"), *flags])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert words in err, err
    assert not (tmp_path / "run").exists()
