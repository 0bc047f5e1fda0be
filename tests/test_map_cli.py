"""``brainscale map`` end to end on a quickly trained digits run."""
import json

import pytest

from brainscale.cli.main import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from tests.test_examples import load

    out = tmp_path_factory.mktemp("digits")
    load("digits").main(["--quick", "--algorithms", "es_d_rtrl", "--out", str(out)],
                        log=lambda *a: None)
    return out / "es_d_rtrl"


@pytest.mark.parametrize("profile", ["loihi1", "tianjic", "truenorth"])
def test_map_prints_report_and_json(run_dir, tmp_path, capsys, profile):
    js = tmp_path / "report.json"
    assert main(["map", str(run_dir), "--profile", profile, "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "cores used:" in out and "binds" in out and "quantisation to" in out
    rep = json.loads(js.read_text())
    assert rep["run"]["task"] == "digits" and rep["profile"]["name"] == profile
    assert rep["cores_used"] >= 1 and len(rep["cores"]) == rep["cores_used"]
    q = rep["quantisation"]
    assert 0 <= q["accuracy_quantised"] <= 1 and q["bits"] == rep["profile"]["weight_bits"]
    assert rep["network"]["rates"].startswith("measured")
    assert rep["network"]["mean_rate"]["x"] > 0


def test_map_errors_are_plain(tmp_path, capsys):
    assert main(["map", str(tmp_path)]) == 2
    assert "checkpoint.msgpack not found" in capsys.readouterr().err
    assert main(["map", str(tmp_path), "--profile", "nonesuch"]) == 2
    assert "no hardware profile 'nonesuch'" in capsys.readouterr().err


def test_map_nir_export_of_a_soft_reset_network_says_why(tmp_path, capsys):
    run = tmp_path / "soft"
    assert main(["train", "--task", "digits", "--steps", "1", "--batch-size", "8",
                 "--set", "task_options.T=4", "--set", "task_options.max_eval=8",
                 "--set", "model.hidden=[8]", "--set", "model.neuron_options.reset=soft",
                 "--out", str(run), "--no-plots"]) == 0
    path = tmp_path / "net.nir"
    code = main(["map", str(run), "--no-quantize", "--nir", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and "LIF with reset='soft'" in err and "use reset='hard'" in err
    assert not path.exists()
