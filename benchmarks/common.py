"""Helpers shared by the benchmark scripts: environment record, data,
gradient comparisons, progress lines, CSV / markdown output.

The benchmark scripts import this module by putting their own folder on
``sys.path`` (``benchmarks/`` is not a package).
"""
from __future__ import annotations

import csv
import math
import os
import shlex
import sys
import threading
import time

import numpy as np


# -- environment ---------------------------------------------------------------

def device_info() -> dict:
    """jax version, backend and first device, as strings (imports jax)."""
    import jax
    return {"jax": jax.__version__, "backend": jax.default_backend(),
            "device": str(jax.devices()[0])}


def command_line(script: str, argv=None) -> str:
    """The command that reproduces this run: ``script`` (a path) with ``argv``
    (None: this process's arguments)."""
    try:
        script = os.path.relpath(script)
    except ValueError:  # another drive
        pass
    args = sys.argv[1:] if argv is None else list(argv)
    return shlex.join(["python", script] + [str(a) for a in args])


def header_lines(title: str, info: dict, cmd: str) -> list[str]:
    """The first lines of a results markdown file."""
    return [f"# {title}", "",
            f"- jax {info['jax']}, backend `{info['backend']}`, device `{info['device']}`",
            f"- command: `{cmd}`", ""]


# -- data ----------------------------------------------------------------------

def bernoulli_inputs(seed: int, T: int, B: int, n_in: int, p: float, n_out: int):
    """Bernoulli(p) spikes ``(T, B, n_in)`` float32 and one random label per
    sample repeated over time ``(T, B)`` int32 (loss at every step)."""
    rs = np.random.default_rng(seed)
    xs = (rs.random((T, B, n_in)) < p).astype(np.float32)
    labels = rs.integers(0, n_out, size=(B,)).astype(np.int32)
    return xs, np.ascontiguousarray(np.broadcast_to(labels, (T, B)))


# -- gradient comparisons --------------------------------------------------------

def flat(tree) -> np.ndarray:
    import jax
    leaves = [np.asarray(a, np.float64).ravel() for a in jax.tree_util.tree_leaves(tree)]
    return np.concatenate(leaves) if leaves else np.zeros(0)


def cosine(a, b) -> float:
    """Cosine similarity of two pytrees of the same structure; 0 when exactly
    one of them is zero (no alignment), nan when both are or either is not
    finite."""
    fa, fb = flat(a), flat(b)
    na, nb = np.linalg.norm(fa), np.linalg.norm(fb)
    if not (np.isfinite(na) and np.isfinite(nb)):
        return float("nan")
    if na > 0 and nb > 0:
        return float(np.clip(fa @ fb / (na * nb), -1.0, 1.0))
    return float("nan") if na == nb == 0 else 0.0


def norm(tree) -> float:
    return float(np.linalg.norm(flat(tree)))


def ratio(a, b) -> float:
    nb = norm(b)
    return norm(a) / nb if nb > 0 else float("nan")


# -- progress ------------------------------------------------------------------

class Progress:
    """One stdout line, flushed at once, as each configuration starts and
    ends: ``i = progress.start("es_d_rtrl T=1000 H=256")`` prints
    ``[3/12] es_d_rtrl T=1000 H=256 ...``; ``progress.done(i, "0.123 s/step")``
    prints ``[3/12] es_d_rtrl T=1000 H=256: 0.123 s/step (2.1 s; 41 s elapsed)``
    (that configuration's time; the time since the counter was made).
    ``skip(label, why)``: a configuration not run, one line (no time of its
    own). Configurations run side by side (threads) are numbered as they
    start; ``prefix`` sets a caller's lines apart from those of the
    benchmarks it runs."""

    def __init__(self, total: int, prefix: str = ""):
        self.total, self.prefix, self.count = total, prefix, 0
        self.t0 = time.perf_counter()
        self._open = {}                    # number -> (label, start time)
        self._lock = threading.Lock()

    def _next(self, label: str | None = None) -> int:
        with self._lock:
            self.count += 1
            if label is not None:
                self._open[self.count] = (label, time.perf_counter())
            return self.count

    def _line(self, i: int, text: str) -> None:
        # one write per line, so that threads do not interleave within a line
        sys.stdout.write(f"{self.prefix}[{i}/{self.total}] {text}\n")
        sys.stdout.flush()

    def _elapsed(self) -> str:
        return f"{time.perf_counter() - self.t0:.0f} s elapsed"

    def start(self, label: str) -> int:
        i = self._next(label)
        self._line(i, f"{label} ...")
        return i

    def done(self, i: int, result: str) -> None:
        with self._lock:
            label, t = self._open.pop(i)
        self._line(i, f"{label}: {result} ({time.perf_counter() - t:.1f} s; {self._elapsed()})")

    def skip(self, label: str, why: str) -> None:
        self._line(self._next(), f"{label}: {why} ({self._elapsed()})")


# -- output --------------------------------------------------------------------

def write_csv(path: str, rows: list[dict], fields: list[str] | None = None) -> None:
    if fields is None:
        fields = list(rows[0]) if rows else []
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _csv_value(r.get(k)) for k in fields})


def _csv_value(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def md_table(headers: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(headers) + " |",
           "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def mean_std(values, digits: int = 3) -> str:
    """'m ± s' over finite values ('n/a' when there are none)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], float)
    if v.size == 0:
        return "n/a"
    s = float(np.std(v, ddof=1)) if v.size > 1 else 0.0
    return f"{np.mean(v):.{digits}f} ± {s:.{digits}f}"


def fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def pyplot():
    """matplotlib.pyplot with a non-interactive backend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB: VmHWM, which (unlike
    ru_maxrss) is not inherited from the parent of a subprocess."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def algorithm(name: str, decay: float):
    """The algorithm ``name`` for a side-by-side run; ``decay`` is
    ES-D-RTRL's smoothing factor (the other algorithms have none);
    ``es_adaptive`` is ES-D-RTRL with modal decays (``adaptive=True``),
    ``es_layers`` with paths through the spiking layers above
    (``through_layers=True``); a side-by-side spec such as
    ``low_rank_d_rtrl:4`` or ``tbptt:50`` gives those options."""
    import brainscale as bs
    from brainscale.train.compare import learner_options
    if name in ("es_d_rtrl", "es_adaptive", "es_layers"):
        return bs.es_d_rtrl(decay=decay, adaptive=name == "es_adaptive",
                            through_layers=name == "es_layers")
    base, options = learner_options(name, decay)
    return bs.ALGORITHMS[base](**options)
