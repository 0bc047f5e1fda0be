"""The distribution and the install commands the docs give.

PyPI's "brainscale" is a different project, so the distribution has another
name, and every ``pip install`` line of README.md and docs/**/*.md installs
this checkout (``-e .`` / ``.`` with extras pyproject.toml declares) or a
named third-party package the project depends on; never "brainscale" from
PyPI. ``brainscale.__version__`` is pyproject's version.
"""
import importlib.metadata
import re
import shlex
import tomllib

import pytest

from docs_snippets import FENCE, ROOT, pages

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
DIST = PROJECT["name"]
EXTRAS = PROJECT["optional-dependencies"]
CHECKOUT = re.compile(r"^\.(?:\[(?P<extras>[^\]]*)\])?$")
REQUIREMENT = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*(?:[<>=!~].*)?$")
OPTIONS_WITH_VALUE = {"-r", "--requirement", "-c", "--constraint", "-i", "--index-url",
                      "--extra-index-url", "-f", "--find-links", "-t", "--target"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _known_packages() -> set:
    reqs = list(PROJECT["dependencies"]) + [r for rs in EXTRAS.values() for r in rs]
    return {_norm(REQUIREMENT.match(r).group("name")) for r in reqs}


def install_commands(text: str) -> list[str]:
    """The arguments of every ``pip install`` in a markdown text: in code
    blocks (one per shell command) and in inline code spans (which may wrap
    across lines)."""
    chunks = [m.group(2) for m in FENCE.finditer(text)]
    prose = FENCE.sub("", text)
    chunks += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose)]
    found = []
    for chunk in chunks:
        for command in re.split(r"&&|\|\||;|\n", chunk):
            m = re.search(r"\bpip3?\s+install\s+(.*)", command)
            if m:
                found.append(m.group(1).strip())
    return found


def problems(args: str) -> list[str]:
    """What is wrong with one ``pip install ARGS`` (empty: it installs the
    checkout with declared extras, or a known third-party package)."""
    tokens, out, targets = shlex.split(args), [], []
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t in ("-e", "--editable"):
            targets.append(tokens[i + 1] if i + 1 < len(tokens) else "")
            i += 2
            continue
        if t in OPTIONS_WITH_VALUE:
            out.append(f"option {t} {tokens[i + 1:i + 2]}: install the checkout instead")
            i += 2
            continue
        if not t.startswith("-"):
            targets.append(t)
        i += 1
    if not targets:
        out.append("nothing to install")
    for t in targets:
        m = CHECKOUT.match(t)
        if m:
            for extra in filter(None, (e.strip() for e in (m.group("extras") or "").split(","))):
                if extra not in EXTRAS:
                    out.append(f"extra {extra!r} is not in pyproject.toml (has {sorted(EXTRAS)})")
            continue
        r = REQUIREMENT.match(t)
        if not r:
            out.append(f"{t!r} is neither the checkout ('.', '-e .[extra]') nor a package")
        elif _norm(r.group("name")) in {"brainscale", _norm(DIST)}:
            out.append(f"{t!r} installs from PyPI, where 'brainscale' is another project: "
                       "use pip install -e '.[extra]' in the checkout")
        elif _norm(r.group("name")) not in _known_packages():
            out.append(f"{t!r} is not a dependency declared in pyproject.toml")
    return out


def test_the_distribution_is_not_pypis_brainscale():
    assert _norm(DIST) != "brainscale"
    assert PROJECT["scripts"]["brainscale"] == "brainscale.cli.main:main"   # the command stays
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    assert "brainscale*" in include and "transforms*" in include            # so do the imports


def test_every_install_line_in_the_docs_installs_the_checkout():
    seen, bad = 0, []
    for page in pages():
        for args in install_commands(page.read_text()):
            seen += 1
            bad += [f"{page.relative_to(ROOT)}: pip install {args}: {p}" for p in problems(args)]
    assert seen >= 5, "the install lines were not found"
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("args, wanted", [
    ('-q -e ".[test]"', []),
    ('-e ".[test,peer]"', []),
    ("nir", []),
    ('"brainscale[brainpy]"', ["another project"]),
    ("brainscale", ["another project"]),
    (f"{DIST}", ["another project"]),
    ('-e ".[nope]"', ["extra 'nope'"]),
    ("-r requirements.txt", ["option -r", "nothing to install"]),
    ("torch", ["not a dependency"]),
])
def test_the_install_line_checker(args, wanted):
    got = problems(args)
    assert len(got) == len(wanted) and all(w in g for w, g in zip(wanted, got)), got


def test_install_lines_are_found_in_blocks_and_wrapped_spans():
    text = ('Run:\n\n```bash\npython3 -m venv .venv && .venv/bin/pip install -q -e ".[demo]" '
            '&& x\n```\n\nthe extra: `pip install\n"brainscale[brainpy]"`; and `pip install nir`.')
    assert install_commands(text) == ['-q -e ".[demo]"', '"brainscale[brainpy]"', "nir"]


def test_version_is_pyprojects():
    import brainscale
    assert brainscale.__version__ == PROJECT["version"]
    try:
        installed = importlib.metadata.version(DIST)
    except importlib.metadata.PackageNotFoundError:
        return                           # run from a checkout that is not pip-installed
    assert installed == PROJECT["version"], "reinstall: pip install -e ."
