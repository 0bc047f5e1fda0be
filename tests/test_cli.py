"""The command-line interface, end to end on a tiny demo run."""
import json

import pytest

from brainscale.cli import main


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
