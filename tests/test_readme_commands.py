"""The README's commands and CI's script must not drift apart."""
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TEST_CMD = ('python3 -m venv .venv && .venv/bin/pip install -q -e ".[test]" '
            '&& .venv/bin/python -m pytest -q -x -n 2 tests')
DEMO_CMD = ('python3 -m venv .venv && .venv/bin/pip install -q -e ".[demo]" '
            '&& .venv/bin/brainscale demo')


def _first_section(text: str):
    """(title, body) of the first '## ' section of a markdown text."""
    m = re.search(r"^## (.+)$", text, flags=re.M)
    assert m, "README has no '## ' section"
    rest = text[m.end():]
    nxt = re.search(r"^## ", rest, flags=re.M)
    return m.group(1).strip(), rest[: nxt.start()] if nxt else rest


def _code_blocks(text: str):
    return [b.strip() for b in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)]


def _commands(path: Path):
    """Non-comment, non-blank lines of a shell script."""
    lines = path.read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def test_readme_opens_with_set_up_and_run():
    text = (ROOT / "README.md").read_text()
    title, body = _first_section(text)
    assert title == "Set up and run"
    # only the title and a short description come before it
    before = text[: text.index("## " + title)]
    assert before.lstrip().startswith("# ")
    blocks = _code_blocks(body)
    assert blocks[:2] == [TEST_CMD, DEMO_CMD]


def test_ci_runs_the_readme_test_command():
    _, body = _first_section((ROOT / "README.md").read_text())
    readme_test_cmd = _code_blocks(body)[0]
    ci = ROOT / ".ci" / "run"
    cmds = _commands(ci)
    assert readme_test_cmd in cmds, ".ci/run does not run the README's test command"
    # it is the last thing the script runs, so its exit status is CI's
    assert cmds[-1] == readme_test_cmd


def test_ci_script_is_strict():
    ci = ROOT / ".ci" / "run"
    text = ci.read_text()
    assert text.startswith("#!/usr/bin/env bash")
    assert "set -euo pipefail" in _commands(ci)
    assert os.access(ci, os.X_OK)
