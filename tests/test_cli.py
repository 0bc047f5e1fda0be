"""The command-line interface, end to end on a tiny demo run."""
import json

import pytest

from brainscale.cli.main import main


def test_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "demo" in capsys.readouterr().out


def test_demo_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["demo", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--out", "--epochs", "--quick", "--algorithms"):
        assert flag in out


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "usage" in capsys.readouterr().out.lower()


def test_unknown_algorithm_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown algorithm"):
        main(["demo", "--quick", "--out", str(tmp_path), "--algorithms", "sgd_magic"])


def test_demo_quick_writes_outputs(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| algorithm" in printed and "es_d_rtrl" in printed and "bptt" in printed
    res = json.loads((out / "results.json").read_text())
    assert res["quick"] is True
    rows = {r["algorithm"]: r for r in res["results"]}
    assert set(rows) == {"es_d_rtrl", "bptt"}
    for r in rows.values():
        assert 0.0 <= r["test_accuracy"] <= 1.0
        assert len(r["accuracy_per_epoch"]) == res["config"]["epochs"]
        assert r["ms_per_step_median"] > 0 and r["compile_s"] > 0
        assert r["peak_rss_mib"] > 0
        assert r["xla_temp_mib"] is None or r["xla_temp_mib"] >= 0
        assert all(l == l for l in r["train_loss"])   # no NaN
    png = (out / "demo.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_cli_runs_and_resumes(tmp_path):
    """`brainscale train` end to end on a registered task, then --resume."""
    import json
    import subprocess
    import sys

    out = tmp_path / "run"
    base = [sys.executable, "-m", "brainscale.cli", "train", "--out", str(out), "--no-plots"]
    first = subprocess.run(base + ["--task", "digits", "--algorithm", "es_d_rtrl",
                                   "--steps", "2", "--batch-size", "16", "--eval-every", "2",
                                   "--set", "task_options.T=6", "--set",
                                   "task_options.max_eval=32", "--set", "model.hidden=[8,8]"],
                           capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    assert "digits / es_d_rtrl: step 2, evaluation accuracy" in first.stdout
    again = subprocess.run(base + ["--task", "digits"], capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 2 and "exists: resume that run" in again.stderr
    resumed = subprocess.run(base + ["--resume", "--steps", "3"], capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming digits / es_d_rtrl from step 2" in resumed.stdout
    with open(out / "metrics.jsonl") as f:
        steps = [json.loads(line)["step"] for line in f if '"train"' in line]
    assert steps == [1, 2, 3]
    bad = subprocess.run(base[:-3] + ["--out", str(tmp_path / "b"), "--task", "digits",
                                      "--set", "lr=-1"], capture_output=True, text=True,
                         timeout=600)
    assert bad.returncode == 2 and "'lr' must be a positive number" in bad.stderr
