"""Read back what a benchmark script wrote, without knowing its fields.

gpu_suite.py runs the benchmark scripts unchanged and merges their output
folders into one JSON file. The scripts' report fields change over time, so
nothing here names a field: every ``*.csv`` becomes a list of row dicts
(numbers parsed), every ``*.json`` is loaded as it is, every ``*.md`` is kept
as text, and other files (plots) are listed by name. Non-finite numbers
become the strings ``"nan"``/``"inf"`` so that the merged file is strict JSON.
"""
from __future__ import annotations

import csv
import json
import math
import pathlib


def number(text: str):
    """A CSV cell as int, float, None (empty) or the text itself; a
    non-finite float stays text."""
    if text == "":
        return None
    for kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            continue
        return value if math.isfinite(value) else text
    return text


def strict(obj):
    """``obj`` with every non-finite float replaced by its string."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    return obj


def read_csv(path: pathlib.Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: number(v or "") for k, v in row.items()} for row in csv.DictReader(f)]


def read_folder(folder: pathlib.Path) -> dict:
    """``{file name: content}`` for the files directly in ``folder``: rows
    for CSV, the object for JSON, text for markdown, None for anything else
    (listed only). A file that cannot be parsed (one being written when its
    run was killed) gives ``{"unreadable": reason}``."""
    files = {}
    if not folder.is_dir():
        return files
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            if path.suffix == ".csv":
                files[path.name] = read_csv(path)
            elif path.suffix == ".json":
                files[path.name] = strict(json.loads(path.read_text()))
            elif path.suffix == ".md":
                files[path.name] = path.read_text()
            else:
                files[path.name] = None
        except (OSError, ValueError, csv.Error) as e:
            files[path.name] = {"unreadable": f"{type(e).__name__}: {e}"}
    return files


def rows_of(files: dict, primary: str | None, tags: dict) -> list[dict]:
    """A run's rows: those of its ``primary`` CSV if it has one (none when
    that file is missing, so that a section's rows are always of one kind);
    else of every CSV (each row tagged with its file); else each JSON object
    as one row. Every row also gets ``tags`` (the run's label and size)."""
    tables = {n: c for n, c in files.items() if n.endswith(".csv") and isinstance(c, list)}
    if primary is not None:
        return [{**tags, **r} for r in tables.get(primary, [])]
    if tables:
        return [{**tags, "file": n, **r} for n, rows in tables.items() for r in rows]
    return [{**tags, "file": n, **c} for n, c in files.items()
            if n.endswith(".json") and isinstance(c, dict) and "unreadable" not in c]


def tail(path: pathlib.Path, chars: int = 3000) -> str:
    """The last ``chars`` characters of a log file ('' if there is none)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-chars:]
