"""The examples of docs/bring_your_model.md run as written, each in a fresh
interpreter, and learn (the printed accuracy on new trials is high)."""
import os
import re
import subprocess
import sys

import pytest

DOC = os.path.join(os.path.dirname(__file__), "..", "docs", "bring_your_model.md")


def blocks():
    with open(DOC) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


def run(code):
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    acc = float(re.search(r"accuracy on new trials ([0-9.]+)", proc.stdout).group(1))
    return proc.stdout, acc


def test_the_page_has_one_brainpy_and_one_flax_example():
    b = blocks()
    assert len(b) == 2 and "brainpy.state" in b[0] and "from flax import nnx" in b[1]


def test_brainpy_example():
    pytest.importorskip("brainpy")
    out, acc = run(blocks()[0])
    assert "hidden['lif']['V']" in out          # the printed graph names the LIF membrane
    assert acc >= 0.9


def test_flax_example():
    _, acc = run(blocks()[1])
    assert acc >= 0.9


def test_importing_brainscale_needs_no_brainpy():
    code = ("import sys\n"
            "for m in ('brainpy', 'brainstate', 'brainunit', 'braintools', 'tonic'):\n"
            "    sys.modules[m] = None\n"
            "import brainscale, brainscale.interop.brainstate_adapter, brainscale.train\n"
            "print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]
