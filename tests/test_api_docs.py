"""The HTML API reference builds from the docstrings (``python
docs/build_api.py OUT``, pdoc) and documents the main names with their
shapes, so neither the build nor the docstrings can rot unnoticed."""
import html
import re
import subprocess
import sys

import pytest

from docs_snippets import ROOT


def _text(path):
    """The rendered text of an HTML page (signatures and docstrings; no
    scripts, no source listings), whitespace collapsed."""
    raw = re.sub(r"<(script|style)\b.*?</\1>", " ", path.read_text(), flags=re.S)
    raw = re.sub(r'<div class="pdoc-code codehilite">.*?</pre></div>', " ", raw, flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", raw)))


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    out = tmp_path_factory.mktemp("api")
    proc = subprocess.run([sys.executable, "-W", "error::UserWarning", "docs/build_api.py",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_the_reference_builds_with_every_package(api):
    assert (api / "index.html").exists()
    for page in ("brainscale.html", "brainscale/learner.html", "brainscale/model.html",
                 "brainscale/train.html", "brainscale/rules.html", "brainscale/nn.html",
                 "brainscale/interop.html", "transforms.html"):
        assert (api / page).exists(), page


@pytest.mark.parametrize("page, wanted", [
    ("brainscale.html", ["class StepModel", "def online", "class Learner", "rules"]),
    ("brainscale/model.html", ["class StepModel", "init(rng, x) -> (params, hidden)",
                               "The learner adds the batch axis"]),
    ("brainscale/learner.html", [
        "def online", "xs (T, B, ...)",
        "step(state, x, y) -> (state, out, metrics)",
        "sequence_grad(state, xs, ys) -> (grads, losses)",
        "train_sequence(state, xs, ys) -> (state, metrics)",
        "predict(state, xs) -> outs", "reset(state) -> state",
        "def init", "example_x : one time step of a batch, (B, ...)"]),
    ("brainscale/train.html", ["def fit", "inputs xs (T, B, ...) and labels ys (T, B)",
                               "Keys of the result"]),
])
def test_main_names_are_documented_with_shapes(api, page, wanted):
    text = _text(api / page)
    missing = [w for w in wanted if w not in text]
    assert not missing, f"{page} lacks {missing}"


@pytest.mark.parametrize("page", ["brainscale.html", "brainscale/learner.html",
                                  "brainscale/model.html", "brainscale/train.html",
                                  "brainscale/input_checks.html"])
def test_no_broken_markup_in_the_main_pages(api, page):
    """A ``code span`` broken across a docstring's lines shows its backticks."""
    text = _text(api / page)
    assert "``" not in text, text[max(0, text.find("``") - 200):text.find("``") + 200]
