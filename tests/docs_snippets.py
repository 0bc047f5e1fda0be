"""The ```python blocks of README.md and docs/**/*.md, as programs to run.

Convention (what a page's author writes):

- every ```python block is a program on its own, run as written in a fresh
  interpreter from the repository root;
- a block preceded by the line ``<!-- continues -->`` (right before its
  fence) continues the block before it on the same page: the two (or more)
  run as one program.

Other fences (```bash, indented code) are never run.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONTINUES = "<!-- continues -->"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", flags=re.M | re.S)


@dataclass
class Program:
    page: str            # path relative to the repository root
    line: int            # line of the first block's fence (1-based)
    code: str

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def pages() -> list[Path]:
    """README.md and every markdown page under docs/."""
    return [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))


def programs(path: Path, root: Path = ROOT) -> list[Program]:
    """The page's python programs, continuation blocks joined to the one before."""
    text = path.read_text()
    rel = str(path.relative_to(root))
    out: list[Program] = []
    for m in FENCE.finditer(text):
        if m.group(1) != "python":
            continue
        line = text.count("\n", 0, m.start()) + 1
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        if before == CONTINUES:
            if not out:
                raise ValueError(f"{rel}:{line}: '{CONTINUES}' on the page's first python block")
            out[-1].code += "\n" + m.group(2)
        else:
            out.append(Program(rel, line, m.group(2)))
    return out


def all_programs() -> list[Program]:
    return [p for page in pages() for p in programs(page)]
