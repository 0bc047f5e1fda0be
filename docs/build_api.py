"""Build the HTML API reference from the docstrings, with pdoc.

    pip install -e ".[docs]"            # pdoc (the test extra has it too)
    python docs/build_api.py [OUT]      # default docs/api; open OUT/index.html

``tests/test_api_docs.py`` builds it on every test run, so it cannot rot.
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# brainscale (with the subpackages its __all__ names: nn, models, rules, interop...),
# the modules behind its main names, the other public subpackages, and the compiler
MODULES = ["brainscale", "brainscale.learner", "brainscale.model", "brainscale.input_checks",
           "brainscale.bptt_sequence", "brainscale.train", "brainscale.tasks",
           "brainscale.datasets", "brainscale.hybrid", "brainscale.sharding",
           "brainscale.model_parallel", "brainscale.mapping", "transforms"]


def build(out: Path) -> Path:
    """Write the reference into ``out``; returns the path of its index page."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import pdoc

    with warnings.catch_warnings():
        # NamedTuples under `from __future__ import annotations`: pdoc cannot
        # evaluate their generated __init__'s annotations; the fields are shown
        warnings.filterwarnings("ignore", message="Error parsing type annotation")
        pdoc.pdoc(*MODULES, output_directory=Path(out))
    return Path(out) / "index.html"


if __name__ == "__main__":
    index = build(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "api")
    print(f"API reference: {index}")
