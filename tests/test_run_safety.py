"""Nothing silent in a training run: non-finite steps stop the run with the
last good checkpoint byte-identical, checkpoints are verified (checksum,
finite values) with the one before kept, run folders are locked, and a
resume survives a torn log line or a lost config.json."""
import json
import os
import re
import shutil

import jax.numpy as jnp
import numpy as np
import pytest

import brainscale as bs
from brainscale.cli.main import main as cli_main
from brainscale.train import CheckpointError, TrainConfig, config_from_dict, fit, load_checkpoint
from brainscale.train.checkpoint import previous_path, read_checkpoint_meta
from brainscale.train.finite import first_nonfinite, json_record
from brainscale.train.run_lock import RunLockedError, run_lock
from brainscale.train.task import Task
from toy_task import toy_task

QUIET = dict(log=lambda *a: None, progress=False, plots=False)


def cfg(out, **kw):
    base = dict(task="toy", steps=6, eval_every=3, checkpoint_every=2, lr=1e-2, batch_size=8,
                out_dir=str(out))
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def four_steps(tmp_path_factory):
    out = tmp_path_factory.mktemp("four")
    fit(cfg(out, steps=4), task=toy_task(), **QUIET)
    return out


def copy_run(src, dst):
    shutil.copytree(src, dst)
    return dst


# -- non-finite numbers ---------------------------------------------------------------
@pytest.mark.parametrize("changes, key", [
    (dict(lr=float("inf")), "lr"),
    (dict(model={"w_in_scale": float("nan")}), "model.w_in_scale"),
    (dict(task_options={"T": [12, float("-inf")]}), "task_options.T[1]"),
])
def test_non_finite_config_refused_naming_the_key(tmp_path, changes, key):
    with pytest.raises(ValueError, match=re.escape(f"config key '{key}' is not a finite number")):
        config_from_dict({"task": "toy", **changes})


def test_json_nan_in_a_config_file_refused(tmp_path):
    path = tmp_path / "run.json"
    path.write_text('{"task": "toy", "model": {"w_in_scale": NaN}}')
    with pytest.raises(ValueError, match="model.w_in_scale"):
        bs.train.load_config(str(path))


def _overflow_task():
    """A finite loss and gradient whose SGD update overflows float32."""
    def train_batch(seed, step, B):
        rng = np.random.default_rng([seed, step])
        return (rng.random((4, B, 3)).astype(np.float32),
                rng.integers(0, 2, (4, B)).astype(np.int32))

    def make_model(opts, seed):
        def init(rng, x):
            return {"w": jnp.full((3, 2), 0.01)}, {"v": jnp.zeros(2)}

        def apply(p, h, x):
            v = 0.5 * h["v"] + (x @ p["w"]) * 1e3
            return {"v": v}, v
        return bs.StepModel(init, apply)
    # labels change from step to step: metric "step" (the step-0 evaluation scores them)
    return Task("overflow", 3, 2, train_batch, lambda B: [train_batch(9, 0, B)], make_model,
                metric="step")


def test_update_that_overflows_stops_naming_step_and_leaf(tmp_path):
    with pytest.raises(FloatingPointError) as e:
        fit(cfg(tmp_path, task="overflow", steps=3, lr=1e38, optimizer="sgd",
                checkpoint_every=1), task=_overflow_task(), **QUIET)
    msg = str(e.value)
    assert "step 1: state.params['w'] holds NaN or inf after the update" in msg
    assert "no checkpoint was written" in msg
    assert not (tmp_path / "checkpoint.msgpack").exists()


def _huge_inputs_at(step, scale=3e38):
    """The toy task with finite but overflowing inputs at one step: the
    spikes stay 0/1, so the loss can stay finite while the gradient is not."""
    task = toy_task()

    def train_batch(seed, s, B):
        xs, ys = task.train_batch(seed, s, B)
        return (xs * np.float32(scale) if s == step else xs), ys
    return Task(task.name, task.n_in, task.n_out, train_batch, task.eval_batches,
                task.make_model, options=task.options, model_defaults=task.model_defaults)


def test_non_finite_step_keeps_the_last_checkpoint_byte_identical(tmp_path, four_steps):
    run = copy_run(four_steps, tmp_path / "run")
    ckpt = run / "checkpoint.msgpack"
    before, prev_before = ckpt.read_bytes(), (run / "checkpoint.msgpack.prev").read_bytes()
    with pytest.raises(FloatingPointError) as e:
        fit(cfg(run, steps=8, checkpoint_every=1), task=_huge_inputs_at(4), resume=True,
            **QUIET)
    msg = str(e.value)
    assert msg.startswith("step 5: ") and any(w in msg for w in ("NaN or inf", "nan", "inf"))
    assert f"last checkpoint ({ckpt}, step 4) is unchanged" in msg
    assert ckpt.read_bytes() == before
    assert (run / "checkpoint.msgpack.prev").read_bytes() == prev_before
    for line in open(run / "metrics.jsonl"):
        json.loads(line)                                    # still valid JSON


def test_first_nonfinite_names_the_leaf():
    tree = {"a": jnp.ones(3), "b": {"c": jnp.array([1.0, jnp.nan]), "d": jnp.arange(3)}}
    assert first_nonfinite(tree, "params") == "params['b']['c']"
    assert first_nonfinite({"a": jnp.ones(2)}) is None
    line = json_record({"loss": float("nan"), "x": [1.0, float("inf")], "s": "ok"})
    assert json.loads(line) == {"loss": None, "x": [1.0, None], "s": "ok"}


# -- verified checkpoints ---------------------------------------------------------------
def test_flipped_bit_is_named_and_resume_falls_back_to_the_previous(tmp_path, four_steps):
    run = copy_run(four_steps, tmp_path / "run")
    ckpt, prev = run / "checkpoint.msgpack", run / ("checkpoint.msgpack" + ".prev")
    assert read_checkpoint_meta(str(prev))["step"] == 2       # the one before is kept
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2] ^= 0x01                              # one bit inside the arrays
    ckpt.write_bytes(bytes(data))
    template = fit(cfg(tmp_path / "t", steps=1), task=toy_task(), **QUIET)["state"]
    with pytest.raises(CheckpointError, match="checksum mismatch") as e:
        load_checkpoint(str(ckpt), template)
    assert str(ckpt) in str(e.value)
    said = []
    res = fit(cfg(run, steps=6), task=toy_task(), resume=True, log=said.append,
              progress=False, plots=False)
    assert res["status"] == "completed" and res["step"] == 6
    assert any("checksum mismatch" in s and "resuming from the checkpoint before it" in s
               and "step 2" in s for s in said), said
    assert any(s.startswith("resuming") and s.endswith(".prev)") for s in said), said
    assert [f for f in os.listdir(run) if ".damaged-" in f]   # kept aside for inspection
    ref = fit(cfg(tmp_path / "ref", steps=6), task=toy_task(), **QUIET)["state"]
    for a, b in zip(jax_leaves(res["state"].params), jax_leaves(ref.params)):
        np.testing.assert_array_equal(a, b)                   # bit for bit from step 2


def test_keeping_the_previous_checkpoint_never_leaves_the_latest_missing(tmp_path, monkeypatch):
    import brainscale.train.checkpoint as ck

    path = tmp_path / "c.msgpack"
    ck.save_checkpoint(str(path), {"w": np.ones(3)}, {"step": 1})
    ck.save_checkpoint(str(path), {"w": np.zeros(3)}, {"step": 2})
    assert read_checkpoint_meta(str(path))["step"] == 2
    assert read_checkpoint_meta(previous_path(str(path)))["step"] == 1
    before = path.read_bytes()

    def no_copy(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(os, "link", no_copy)
    monkeypatch.setattr(shutil, "copy2", no_copy)
    with pytest.raises(OSError, match="disk full"):
        ck.save_checkpoint(str(path), {"w": np.full(3, 5.0)}, {"step": 3})
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["c.msgpack", "c.msgpack.prev"]


def jax_leaves(tree):
    import jax
    return [np.asarray(a) for a in jax.tree.leaves(tree)]


def test_checkpoint_holding_nan_is_refused_naming_the_leaf(tmp_path, four_steps):
    from brainscale.train.checkpoint import save_checkpoint

    res = fit(cfg(tmp_path / "t", steps=1), task=toy_task(), **QUIET)
    st = res["state"]
    import jax
    bad = st._replace(params=jax.tree.map(lambda a: a.at[0].set(jnp.nan), st.params))
    path = str(tmp_path / "nan.msgpack")
    save_checkpoint(path, bad, {"step": 1})
    with pytest.raises(CheckpointError, match=r"nan\.msgpack: leaf state\.params.* NaN or inf"):
        load_checkpoint(path, st)


# -- locked run folders -------------------------------------------------------------------
def test_second_run_into_a_locked_folder_names_the_holder(tmp_path):
    os.makedirs(tmp_path / "run")
    with run_lock(str(tmp_path / "run")):
        with pytest.raises(RunLockedError, match=f"in use by another run \\(pid {os.getpid()}\\)"):
            fit(cfg(tmp_path / "run", steps=1), task=toy_task(), **QUIET)
    assert not (tmp_path / "run" / "checkpoint.msgpack").exists()
    fit(cfg(tmp_path / "run", steps=1), task=toy_task(), **QUIET)    # free again


# -- resume past damaged side files ----------------------------------------------------------
def test_resume_drops_a_torn_last_log_line(tmp_path, four_steps):
    run = copy_run(four_steps, tmp_path / "run")
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train", "step": 5, "lo')               # a crash mid-write
    said = []
    res = fit(cfg(run, steps=6), task=toy_task(), resume=True, log=said.append,
              progress=False, plots=False)
    assert res["step"] == 6 and any("dropped a torn last line" in s for s in said), said
    recs = [json.loads(line) for line in open(run / "metrics.jsonl")]
    assert [r["step"] for r in recs if r["kind"] == "train"] == list(range(1, 7))


def test_damaged_log_before_its_last_line_is_named(tmp_path, four_steps):
    run = copy_run(four_steps, tmp_path / "run")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines[1] = lines[1][:10]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(CheckpointError, match="metrics.jsonl: line 2 is not a JSON record"):
        fit(cfg(run, steps=6), task=toy_task(), resume=True, **QUIET)


@pytest.mark.parametrize("damage", ["delete", "garbage"])
def test_cli_resume_uses_the_checkpoint_config_when_config_json_is_lost(
        tmp_path, capsys, damage):
    run = tmp_path / "run"
    assert cli_main(["train", "--task", "digits", "--steps", "2", "--eval-every", "2",
                     "--checkpoint-every", "1", "--batch-size", "4", "--out", str(run),
                     "--no-plots", "--set", "task_options.T=6"]) == 0
    if damage == "delete":
        os.unlink(run / "config.json")
    else:
        (run / "config.json").write_text("{not json")
    capsys.readouterr()
    assert cli_main(["train", "--out", str(run), "--resume", "--steps", "3", "--no-plots"]) == 0
    err = capsys.readouterr().err
    assert "config.json" in err and "using the config saved in" in err
    assert read_checkpoint_meta(str(run / "checkpoint.msgpack"))["step"] == 3
    assert json.loads((run / "config.json").read_text())["steps"] == 3


def test_run_files_get_the_usual_permissions(tmp_path):
    """Files written atomically get the mode open() would give (0666 less the
    umask), not mkstemp's owner-only 0600."""
    import stat

    from brainscale.train.checkpoint import atomic_write

    mask = os.umask(0o022)
    try:
        atomic_write(str(tmp_path / "config.json"), b"{}")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(os.stat(tmp_path / "config.json").st_mode) == 0o644
