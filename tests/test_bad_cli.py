"""``brainscale train`` with careless input: each mistake is a one-line error
(exit 2) naming the key, option or folder; nothing is created outside the
run folder and no file outside it is written through a planted symlink."""
import os

import pytest

from brainscale.cli.main import main

SMALL = ["--task", "digits", "--steps", "2", "--eval-every", "2", "--batch-size", "4",
         "--set", "task_options.T=6"]


def run(capsys, *args):
    code = main(["train", *args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("extra, words", [
    (["--set", "model.bogus=1"], ["unknown model option(s) ['bogus']", "hidden=[128, 128]"]),
    (["--set", "model.neuron_options.tau=0"], ["tau must be a finite positive number"]),
    (["--set", "model.neuron_options.tua=3"], ["unknown neuron_options ['tua']", "'tau'"]),
    (["--set", "model.hidden=[16,"], ["--set model.hidden=[16,: not valid JSON"]),
    (["--set", "model.hidden=[0]"], ["hidden must be a non-empty list of positive"]),
    (["--set", "task_options.T=2.7"], ["'task_options.T'", "must be an integer, got 2.7"]),
    (["--seed", str(2 ** 70)], ["config key 'seed' must be an integer in [0, 2**32)"]),
    (["--lr", "inf"], ["config key 'lr' is not a finite number"]),
    (["--set", "model.w_in_scale=NaN"], ["config key 'model.w_in_scale' is not a finite"]),
])
def test_bad_options_are_one_line_errors(tmp_path, capsys, extra, words):
    code, err = run(capsys, *SMALL, "--out", str(tmp_path / "run"), *extra)
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for w in words:
        assert w in err, err
    assert not (tmp_path / "run").exists()          # refused before any folder exists


def test_integer_options_are_those_annotated_int():
    from brainscale.train.registry import make_task

    make_task("dmts", {"delay": 250.5, "n_eval": 8})         # a float option stays a float
    with pytest.raises(ValueError, match="'task_options.n_eval' of task 'dmts' must be an "
                                         "integer, got 8.0"):
        make_task("dmts", {"n_eval": 8.0})


def test_task_name_with_a_path_creates_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = run(capsys, "--task", "../../escape", "--steps", "1")
    assert code == 2 and "'task' must be a task name" in err
    assert not (tmp_path.parent.parent / "escape").exists()
    assert not (tmp_path / "runs").exists()


def test_out_below_a_file_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    code, err = run(capsys, *SMALL, "--out", str(tmp_path / "afile" / "sub"))
    assert code == 2 and err.count("\n") == 1
    assert f"run folder {tmp_path / 'afile' / 'sub'}" in err and "Not a directory" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_out_is_a_one_line_error(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        code, err = run(capsys, *SMALL, "--out", str(ro / "run"))
    finally:
        ro.chmod(0o700)
    assert code == 2 and "Permission denied" in err and err.count("\n") == 1


def test_planted_symlinks_are_replaced_not_followed(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    for name in ("raster.png", "learning_curve.png", "result.json", "config.json",
                 "metrics.jsonl"):
        os.symlink(victim, out / name)
    code, err = run(capsys, *SMALL, "--out", str(out))
    assert code == 0, err
    assert victim.read_text() == "precious"
    assert not os.path.islink(out / "raster.png") and os.path.getsize(out / "raster.png") > 0
