"""Every python example on the docs/rules pages runs as written, in a fresh
interpreter, and prints what it promises."""
import os
import re
import subprocess
import sys

import pytest

DOCS = os.path.join(os.path.dirname(__file__), "..", "docs", "rules")
PAGES = ["hebbian.md", "stdp.md", "decolle.md", "e_prop.md", "sbp.md"]


def blocks(page):
    with open(os.path.join(DOCS, page)) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


@pytest.mark.parametrize("page", PAGES)
def test_examples_run(page):
    pytest.importorskip("sklearn")
    found = blocks(page)
    assert found, page
    for code in found:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=600, cwd=os.path.join(os.path.dirname(__file__), ".."))
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.strip(), "the example prints nothing"
        print(proc.stdout)


def test_stdp_page_prints_the_window():
    code = blocks("stdp.md")[0]
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600, cwd=os.path.join(os.path.dirname(__file__), ".."))
    dw = {int(m.group(1)): float(m.group(2))
          for m in re.finditer(r"delay\s+([+-]\d+): dw ([+-][0-9.]+)", proc.stdout)}
    assert dw[0] > dw[5] > dw[20] > 0 > dw[-20] > dw[-5]
