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
