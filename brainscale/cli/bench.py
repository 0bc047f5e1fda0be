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
    here = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"
    if not (here / "fidelity.py").exists():
        raise SystemExit("brainscale bench needs the repository checkout: the benchmarks/ "
                         f"folder was not found at {here} (install with pip install -e .)")
    return here


def _on_path() -> pathlib.Path:
    """benchmarks/ on sys.path (where the scripts find their ``common``)."""
    folder = benchmarks_dir()
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return folder


def _load(name: str):
    folder = _on_path()
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def peer_available() -> bool:
    return importlib.util.find_spec("braintrace") is not None


def run_bench(out: str, only=None) -> dict:
    """Run the quick benchmarks; returns {name: seconds or the reason skipped}.
    Prints ``== [2/5] memory_time --quick ...`` as each starts and its time
    when it ends (the benchmarks' own ``[i/n]`` lines come in between)."""
    _on_path()
    import common      # benchmarks/common.py: the progress lines the scripts print

    root = pathlib.Path(out)
    names = [name for name in QUICK if not only or name in only]
    progress = common.Progress(len(names), prefix="== ")
    done = {}
    for name in names:
        flags = QUICK[name]
        if name == "vs_braintrace" and not peer_available():
            done[name] = "skipped: braintrace is not installed (pip install -e '.[peer]')"
            progress.skip(name, done[name])
            continue
        i = progress.start(f"{name} {' '.join(flags)}")
        t0 = time.time()
        code = _load(name).main(flags + ["--out", str(root / name)])
        done[name] = round(time.time() - t0, 1)
        progress.done(i, f"wrote {root / name}" + (f", exit code {code}" if code else ""))
    print(f"wrote {root}: " + ", ".join(f"{k} {v}" for k, v in done.items()), flush=True)
    return done
