"""Typed model options: every built-in task's schema, errors that list the
valid keys, the resolved values in config.json, --show-options, and the
train command's help."""
import json

import pytest

from brainscale.models.options import fields, resolve
from brainscale.models.recurrent_snn import RecurrentSNNOptions
from brainscale.train import TrainConfig, fit, make_task
from brainscale.train.registry import TASKS, model_schema


def builtin_schemas():
    for name in sorted(TASKS):
        yield (name, *model_schema(name))


@pytest.mark.parametrize("name,schema,defaults", list(builtin_schemas()),
                         ids=[n for n, *_ in builtin_schemas()])
def test_every_builtin_task_declares_a_schema_with_meanings(name, schema, defaults):
    resolved = resolve(schema, {}, defaults=defaults)
    assert set(resolved) == {f[0] for f in fields(schema)}
    assert all(help_text for *_, help_text in fields(schema)), name
    json.dumps(resolved)                           # a config stores it as JSON


@pytest.mark.parametrize("name", ["digits", "dmts", "copy", "evidence"])
def test_each_task_builds_its_model_from_the_resolved_options(name):
    task = make_task(name, {})
    assert task.make_model(task.resolve_model({}), 0) is not None


def test_unknown_key_lists_the_valid_ones_with_the_task_defaults():
    task = make_task("digits")
    with pytest.raises(ValueError) as e:
        task.resolve_model({"hiden": [64]})
    msg = str(e.value)
    assert "['hiden']" in msg and "hidden=[128, 128]" in msg and "tau_out=10.0" in msg


@pytest.mark.parametrize("given,key,want", [
    ({"hidden": [3.5]}, "model.hidden[0]", "int"),
    ({"hidden": 64}, "model.hidden", "list[int]"),
    ({"neuron": "lfi"}, "model.neuron", "'lif' | 'alif'"),
    ({"tau_out": "fast"}, "model.tau_out", "float"),
    ({"tau_out": float("nan")}, "model.tau_out", "float"),
    ({"neuron_options": [1]}, "model.neuron_options", "dict"),
])
def test_a_wrong_type_names_the_key_and_the_type(given, key, want):
    with pytest.raises(ValueError) as e:
        resolve(RecurrentSNNOptions, given)
    assert f"config key {key!r} must be {want}" in str(e.value)


def test_values_are_converted_to_the_declared_type():
    got = resolve(RecurrentSNNOptions, {"hidden": (8, 4), "tau_out": 5})
    assert got["hidden"] == [8, 4] and isinstance(got["tau_out"], float)
    dmts = make_task("dmts", {}).resolve_model({"surrogate": {"name": "sigmoid"},
                                                 "readout_bias": True})
    assert dmts["surrogate"] == {"name": "sigmoid"} and dmts["readout_bias"] is True
    with pytest.raises(ValueError, match="model.readout_bias"):
        make_task("dmts", {}).resolve_model({"readout_bias": 1})


def test_config_json_records_every_value_used(tmp_path):
    from toy_task import toy_task

    cfg = TrainConfig(task="toy", steps=1, batch_size=4, eval_every=1,
                      model={"hidden": [8]}, out_dir=str(tmp_path / "r"))
    task = toy_task()
    object.__setattr__(task, "model_options", RecurrentSNNOptions)
    fit(cfg, task=task, log=lambda *a: None, progress=False, plots=False)
    saved = json.loads((tmp_path / "r" / "config.json").read_text())["model"]
    assert saved == {"hidden": [8], "neuron": "lif", "neuron_options": {}, "w_in_scale": 3.0,
                     "w_rec_scale": 1.0, "tau_out": 10.0}


def test_a_run_saved_before_options_were_resolved_still_resumes():
    from brainscale.train.resume import check_resumable

    task = make_task("digits")
    now = TrainConfig(task="digits", model=task.resolve_model({}))
    check_resumable({**now.to_dict(), "model": {}}, now, "ckpt", task)
    with pytest.raises(Exception, match="model"):
        check_resumable({**now.to_dict(), "model": {"hidden": [5]}}, now, "ckpt", task)


def test_show_options_and_help(capsys):
    from brainscale.cli.main import main

    assert main(["train", "--task", "dmts", "--show-options"]) == 0
    out = capsys.readouterr().out
    assert "task_options.delay" in out and "model.tau_a" in out and "2000.0" in out
    assert "adaptation time constant" in out
    assert main(["train", "--task", "nmnist", "--show-options"]) == 0   # no data needed
    assert "task_options.data_dir" in capsys.readouterr().out
    assert main(["train", "--show-options"]) == 2
    assert main(["train", "--show-options", "--config", "/no/such/run.json"]) == 2
    assert "error: " in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out.split("\noptions:")[1]
    for flag in ("--steps", "--batch-size", "--lr", "--algorithm", "--eval-every",
                 "--checkpoint-every", "--seed", "--optimizer"):
        entry = text[text.index("  " + flag):].split("\n  --")[0]
        assert "default" in entry, (flag, entry)
    assert "--feedback" in text and "random" in text and "e_prop" in text
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("brainscale ")


def test_feedback_flag_reaches_the_learner():
    from brainscale.cli.main import build_parser
    from brainscale.cli.train import config_from_args

    args = build_parser().parse_args(["train", "--task", "digits", "--algorithm", "e_prop",
                                      "--feedback", "random"])
    assert config_from_args(args).learner == {"feedback": "random"}
