"""``brainscale bench``: a quick run of every benchmark into one folder.

The benchmark scripts live in the repository's ``benchmarks/`` folder (they
are not installed with the package); each writes CSV, markdown and PNG files.
Quick settings keep the whole run under ten minutes on two CPU cores; the
full settings and their results are in docs/benchmarks.md.
"""
from __future__ import annotations

import importlib.util
import pathlib
import sys
import time

QUICK = {
    "fidelity": ["--quick"],
    "memory_time": ["--quick"],
    "vs_braintrace": ["--T", "100", "--seeds", "0", "--reps", "2"],
    "local_rules": ["--steps", "40"],
    "zoo_coverage": ["--quick"],
}


def benchmarks_dir() -> pathlib.Path:
    here = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"
    if not (here / "fidelity.py").exists():
        raise SystemExit("brainscale bench needs the repository checkout: the benchmarks/ "
                         f"folder was not found at {here} (install with pip install -e .)")
    return here


def _load(name: str):
    folder = benchmarks_dir()
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def peer_available() -> bool:
    return importlib.util.find_spec("braintrace") is not None


def run_bench(out: str, only=None) -> dict:
    """Run the quick benchmarks; returns {name: seconds or the reason skipped}."""
    root = pathlib.Path(out)
    done = {}
    for name, flags in QUICK.items():
        if only and name not in only:
            continue
        if name == "vs_braintrace" and not peer_available():
            done[name] = "skipped: braintrace is not installed (pip install -e '.[peer]')"
            print(f"== {name}: {done[name]}", flush=True)
            continue
        print(f"== {name} ({' '.join(flags)})", flush=True)
        t0 = time.time()
        _load(name).main(flags + ["--out", str(root / name)])
        done[name] = round(time.time() - t0, 1)
    print(f"wrote {root}: " + ", ".join(f"{k} {v}" for k, v in done.items()))
    return done
