"""Every ```python block of README.md and docs/**/*.md runs as written, each
program in a fresh interpreter from the repository root, and prints what it
promises; the modules, objects and files the pages name exist.

Blocks are programs on their own unless the line right before the fence is
``<!-- continues -->`` (then the block continues the one before it); none is
skipped. See ``tests/docs_snippets.py``.
"""
import importlib
import os
import re
import subprocess
import sys

import pytest

from docs_snippets import CONTINUES, FENCE, ROOT, all_programs, pages, programs

PROGRAMS = all_programs()
TIMEOUT = 600                   # seconds per program; each takes 4-12 s on a 2-core CPU


def _stdp_window(out):
    dw = {int(m.group(1)): float(m.group(2))
          for m in re.finditer(r"delay\s+([+-]\d+): dw ([+-][0-9.]+)", out)}
    assert dw[0] > dw[5] > dw[20] > 0 > dw[-20] > dw[-5], dw


def _accuracy_at_least(threshold):
    def check(out):
        acc = float(re.search(r"accuracy on new trials ([0-9.]+)", out).group(1))
        assert acc >= threshold, out[-500:]
    return check


def _names_the_membrane(out):
    assert "hidden['lif']['V']" in out     # the printed graph found brainpy's LIF membrane


# what particular programs must print, beyond running: (page, text in the program) -> check
CHECKS = {
    ("docs/rules/stdp.md", "for delay in"): [_stdp_window],
    ("docs/bring_your_model.md", "brainpy.state"): [_names_the_membrane, _accuracy_at_least(0.9)],
    ("docs/bring_your_model.md", "from flax import nnx"): [_accuracy_at_least(0.9)],
    ("README.md", "from_brainstate"): [_names_the_membrane],
}


def _checks_for(program):
    return [c for (page, text), cs in CHECKS.items()
            if page == program.page and text in program.code for c in cs]


@pytest.mark.parametrize("program", PROGRAMS, ids=[p.id for p in PROGRAMS])
def test_program_runs_as_written(program):
    env = {**os.environ, "MPLBACKEND": "Agg"}   # XLA_FLAGS from conftest.py
    proc = subprocess.run([sys.executable, "-c", program.code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, f"{program.id} failed:\n{proc.stderr[-3000:]}"
    assert proc.stdout.strip(), f"{program.id} prints nothing"
    for check in _checks_for(program):
        check(proc.stdout)


def test_every_check_applies_to_exactly_one_program():
    for (page, text) in CHECKS:
        hits = [p.id for p in PROGRAMS if p.page == page and text in p.code]
        assert len(hits) == 1, f"check ({page}, {text!r}) matches {hits}"


def test_the_pages_have_their_programs():
    by_page = {}
    for p in PROGRAMS:
        by_page.setdefault(p.page, []).append(p)
    assert len(by_page["README.md"]) >= 4
    for page in ("docs/bring_your_model.md", "docs/nir.md", "docs/hybrid_plasticity.md",
                 "docs/rules/stdp.md", "docs/rules/hebbian.md", "docs/rules/decolle.md",
                 "docs/rules/e_prop.md", "docs/rules/sbp.md"):
        assert by_page.get(page), f"{page} has no python block"


def test_every_python_fence_is_parsed():
    """An indented or unclosed ```python fence would escape the test."""
    for page in pages():
        text = page.read_text()
        parsed = sum(1 for m in FENCE.finditer(text) if m.group(1) == "python")
        assert parsed == text.count("```python"), page


def test_the_convention(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# t\n\n```python\na = 1\n```\n\ntext\n\n" + CONTINUES +
                    "\n```python\nprint(a)\n```\n\n```bash\nls\n```\n\n"
                    "```python\nimport cupy\n```\n\n"
                    "```python\nprint(2)\n```\n")
    got = programs(page, tmp_path)
    assert [p.code for p in got] == ["a = 1\n\nprint(a)\n", "import cupy\n", "print(2)\n"]
    assert [p.line for p in got] == [3, 18, 22]
    page.write_text(CONTINUES + "\n```python\nprint(1)\n```\n")
    with pytest.raises(ValueError, match="first python block"):
        programs(page, tmp_path)


# -- what the prose names ------------------------------------------------------------
DOTTED = re.compile(r"`((?:brainscale|transforms|bs)(?:\.[A-Za-z_]\w*)+)")
PATH = re.compile(r"(?<![\w/.])((?:brainscale|transforms|examples|benchmarks|tests|docs)"
                  r"/[\w./*-]*\w)")
MD_NAME = re.compile(r"(?<![\w/.-])([A-Za-z_][\w-]*\.md)\b")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _resolve(dotted: str):
    """The module or object a dotted name refers to (``bs.`` is brainscale)."""
    parts = dotted.split(".")
    if parts[0] == "bs":
        parts[0] = "brainscale"
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def test_dotted_names_in_the_docs_resolve():
    pytest.importorskip("nir")
    bad = []
    for page in pages():
        for name in sorted(set(DOTTED.findall(page.read_text()))):
            try:
                _resolve(name)
            except (ImportError, AttributeError) as e:
                bad.append(f"{page.relative_to(ROOT)}: {name} ({type(e).__name__}: {e})")
    assert not bad, "\n".join(bad)


def test_files_named_in_the_docs_exist():
    """Repository paths (from the root or the page's folder), bare page
    names (``RULES.md``) and relative link targets."""
    bad = []
    for page in pages():
        text = page.read_text()

        def exists(path, page=page):
            return any(list(base.glob(path)) if "*" in path else (base / path).exists()
                       for base in (ROOT, page.parent))

        named = set(PATH.findall(text)) | set(MD_NAME.findall(text))
        named |= {t.split("#")[0] for t in LINK.findall(text)
                  if not t.startswith(("http:", "https:", "#"))}
        for path in sorted(named):
            if not exists(path) and not path.startswith("docs/api"):
                bad.append(f"{page.relative_to(ROOT)}: {path}")
    assert not bad, "files named in the docs but not in the repository:\n" + "\n".join(bad)


def test_importing_brainscale_needs_no_brainpy():
    """README: importing brainscale never needs brainpy (nor tonic)."""
    code = ("import sys\n"
            "for m in ('brainpy', 'brainstate', 'brainunit', 'braintools', 'tonic'):\n"
            "    sys.modules[m] = None\n"
            "import brainscale, brainscale.interop.brainstate_adapter, brainscale.train\n"
            "print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]
