"""The hybrid-plasticity experiments' quick runs: HP at least as good as the
weaker of GP-only and LP-only on each task."""
import json

import pytest

from test_examples import load


def test_fault_tolerance_quick(tmp_path):
    res = load("hp_fault_tolerance").main(["--quick", "--out", str(tmp_path)],
                                          log=lambda *a: None)
    v = res["variants"]
    for key in ("crop", "noise"):
        for gp, lp, hp in zip(v["gp"][key], v["lp"][key], v["hp"][key]):
            assert hp["accuracy"] >= min(gp["accuracy"], lp["accuracy"]), (key, gp, lp, hp)
            assert 0.0 <= hp["hidden_cosine"] <= 1.0 + 1e-6
    assert v["hp"]["crop"][0]["hidden_distance"] == 0.0      # the complete pattern itself
    assert (tmp_path / "fault_tolerance.png").stat().st_size > 0
    assert json.loads((tmp_path / "fault_tolerance.json").read_text())["variants"]


def test_fault_tolerance_on_mnist_quick(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINSCALE_CACHE", str(tmp_path / "cache"))
    res = load("hp_fault_tolerance").main(["--quick", "--dataset", "mnist", "--only", "gp",
                                           "--out", str(tmp_path)], log=lambda *a: None)
    crops = res["variants"]["gp"]["crop"]
    assert [r["level"] for r in crops] == [0, 4, 7, 10, 14, 18]      # of a 28-pixel side
    assert crops[0]["hidden_distance"] == 0.0 and res["dataset"] == "mnist"


def test_continual_quick(tmp_path):
    res = load("hp_continual").main(["--quick", "--only", "gp", "lp", "hp", "--out",
                                     str(tmp_path)], log=lambda *a: None)
    c = res["curves"]
    assert all(len(curve) == 3 for curve in c.values())
    assert c["hp"][-1] >= min(c["gp"][-1], c["lp"][-1]), c


def test_continual_on_mnist_quick(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINSCALE_CACHE", str(tmp_path / "cache"))
    res = load("hp_continual").main(["--quick", "--dataset", "mnist", "--only", "sparse_gp",
                                     "--out", str(tmp_path)], log=lambda *a: None)
    assert res["dataset"] == "mnist" and res["eval_digits"] == 96
    curve = res["curves"]["sparse_gp"]
    assert len(curve) == 3 and all(0.0 <= a <= 1.0 for a in curve)
    assert curve[0] > 0.3          # 784 shuffled pixels of real digits: well above chance
    with pytest.raises(SystemExit):
        load("hp_continual").main(["--tasks", "0"])


def test_few_shot_quick(tmp_path):
    res = load("hp_few_shot").main(["--quick", "--out", str(tmp_path)], log=lambda *a: None)
    v = {k: r["accuracy"] for k, r in res["variants"].items()}
    assert all(r["ci95"] > 0.0 for r in res["variants"].values())
    assert v["hp"] >= min(v["gp"], v["lp"]), v
    for name in ("hp", "hp_assoc"):                                # above chance (5-way)
        assert v[name] > 0.2 + res["variants"][name]["ci95"], (name, v)
    for r in res["variants"].values():     # the paired difference: same test episodes
        assert abs(r["minus_pixel_1nn"] - (r["accuracy"] - res["pixel_1nn"]["accuracy"])) \
            < 1e-9
    assert set(res["variants"]["hp_assoc"]["theta"]) == {"params['out']['A']"}
