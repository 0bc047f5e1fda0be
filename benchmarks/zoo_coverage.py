"""Which zoo step functions (benchmarks/zoo: snnTorch, Norse, spyx, brainpy
and paper-style models written the way their users write them) compile
through BrainScale, and how close each learner's gradient is to an
independent reference (``zoo/reference.py``: jax.grad through lax.scan of
the vmapped step, no brainscale), in float64.

    python benchmarks/zoo_coverage.py [--out docs/coverage.md | FOLDER] [--quick] [--only NAME]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import brainscale as bs  # noqa: E402
import common  # noqa: E402
from zoo import ZOO  # noqa: E402
from zoo.reference import bptt_grads, cross_entropy, make_data, sequence_losses  # noqa: E402

ALGORITHMS = ("bptt", "d_rtrl", "es_d_rtrl")
EXACT = 1e-10
QUICK = ["snntorch.Leaky", "snntorch.RLeaky", "norse.LIF+LI", "spyx.ALIF", "brainpy.LIF.delay",
         "paper.RF.stacked", "paper.substep.fori_loop", "paper.complex_resonator",
         "paper.adaptive_ode.while"]


def ce(out, y):
    return cross_entropy(out, y)


def _flat(tree):
    return np.concatenate([np.ravel(np.asarray(a, np.float64)) for a in jax.tree.leaves(tree)])


def _source(tb) -> str:
    """The innermost frame of the failure inside the repository (brainscale/,
    transforms/ or the zoo), as path:line (function)."""
    best = None
    for fr in traceback.extract_tb(tb):
        path = os.path.abspath(fr.filename)
        if path.startswith(ROOT) and "site-packages" not in path:
            best = f"{os.path.relpath(path, ROOT)}:{fr.lineno} ({fr.name})"
    return best or "outside the repository"


def _error(exc) -> dict:
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else ""
    named = isinstance(exc, bs.CompileError) and all(
        getattr(exc, k, None) for k in ("primitive", "source", "hint"))
    return {"status": "error", "error": f"{type(exc).__name__}: {first}"[:300],
            "where": _source(exc.__traceback__), "named": named}


def _compare(g, g_ref) -> dict:
    if jax.tree.structure(g) != jax.tree.structure(g_ref):
        return {"status": "error", "error": "ResultError: gradient tree differs from params",
                "where": "coverage"}
    a, b = _flat(g), _flat(g_ref)
    if not np.all(np.isfinite(a)):
        return {"status": "error", "error": "ResultError: non-finite gradient", "where": "coverage"}
    nb, na = np.linalg.norm(b), np.linalg.norm(a)
    rel = float(np.linalg.norm(a - b) / nb) if nb > 0 else float(np.linalg.norm(a - b))
    cos = float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0
    return {"status": "ok", "rel": rel, "cos": cos, "zero": bool(na == 0)}


def run_entry(entry, T, B, algorithms=ALGORITHMS) -> dict:
    row = {"name": entry.name, "style": entry.style, "note": entry.note,
           "feedforward": entry.feedforward, "has_while": entry.has_while}
    xs, ys = make_data(entry, T, B)
    t0 = time.perf_counter()
    try:   # identical params / hidden to learner.init(PRNGKey(0), xs[0])
        params, hidden0 = entry.init(jax.random.PRNGKey(0), xs[0][0])
        g_ref = bptt_grads(entry, params, hidden0, xs, ys)
        ref_losses = np.asarray(sequence_losses(entry, params, hidden0, xs, ys)[0])
        row["reference"] = {"status": "ok", "norm": float(np.linalg.norm(_flat(g_ref)))}
    except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
        row["reference"] = _error(exc)
        for alg in algorithms:
            row[alg] = {"status": "error", "error": "reference failed", "where": "reference"}
        return row
    for alg in algorithms:
        try:
            # decay is ES-D-RTRL's option (the other algorithms refuse it)
            opts = {"decay": 0.5} if alg == "es_d_rtrl" else {}
            learner = bs.online(bs.StepModel(entry.init, entry.apply), algorithm=alg, loss=ce,
                                **opts)
            state = learner.init(jax.random.PRNGKey(0), xs[0])
            grads, losses = learner.sequence_grad(state, xs, ys)
            res = _compare(grads, g_ref)
            lo = np.asarray(losses, np.float64).reshape(T, -1).mean(-1)
            res["loss_err"] = float(np.max(np.abs(lo - ref_losses)))
        except Exception as exc:  # noqa: BLE001
            res = _error(exc)
        row[alg] = res
    row["seconds"] = time.perf_counter() - t0
    return row


def run(entries, T=12, B=3, algorithms=ALGORITHMS, verbose=False) -> list[dict]:
    """One row per entry (call with jax_enable_x64 on, as ``main`` does);
    ``verbose``: a progress line as each starts and ends."""
    rows = []
    progress = common.Progress(len(entries)) if verbose else None
    for e in entries:
        i = progress.start(e.name) if verbose else None
        row = run_entry(e, T, B, algorithms)
        rows.append(row)
        if verbose:
            progress.done(i, _line(row, algorithms))
    return rows


# -- output ----------------------------------------------------------------------------------

def _cell(res, kind) -> str:
    if res["status"] != "ok":
        return res["error"]
    if res.get("zero"):
        return f"{res['rel']:.1e} (zero gradient)"
    if kind == "bptt":
        return f"{res['rel']:.1e}"
    if kind == "d_rtrl":
        return f"{res['rel']:.1e} / {res['cos']:.4f}"
    return f"{res['cos']:.4f}"


def _line(row, algorithms=ALGORITHMS) -> str:
    if row["reference"]["status"] != "ok":
        return "reference failed: " + row["reference"]["error"]
    return "  ".join(f"{alg}: " + (_cell(row[alg], alg) if row[alg]["status"] == "ok"
                                   else f"{row[alg]['error'][:70]} [{row[alg]['where']}]")
                     for alg in algorithms)


def summary(rows, algorithms=ALGORITHMS) -> list[str]:
    """Per algorithm: how many compile, how many are exact where they should
    be (BPTT: every model without a while_loop; D-RTRL: every feed-forward
    single layer), and whether each refusal is a CompileError naming the
    primitive, the source line and a fix."""
    lines = []
    ff = [r for r in rows if r["feedforward"]]
    no_while = [r for r in rows if not r["has_while"]]
    for alg in algorithms:
        ok = sum(r[alg]["status"] == "ok" for r in rows)
        pool = no_while if alg == "bptt" else ff
        exact = sum(r[alg]["status"] == "ok" and r[alg]["rel"] < EXACT for r in pool)
        refused = [r[alg] for r in rows if r[alg]["status"] != "ok"]
        named = sum(bool(e.get("named")) for e in refused)
        where = "models without a while_loop" if alg == "bptt" else "feed-forward single layers"
        lines.append(f"{alg}: compiles {ok}/{len(rows)} ({100 * ok / max(len(rows), 1):.0f}%), "
                     f"exact (<1e-10) on {where}: {exact}/{len(pool)}, refusals that are a "
                     f"CompileError naming primitive, line and fix: {named}/{len(refused)}")
    return lines


def _md(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def markdown(rows, T, B, algorithms=ALGORITHMS) -> str:
    out = ["# Zoo coverage", "",
           "Step functions written the way snnTorch, Norse, spyx, brainpy and paper code "
           "write them (`benchmarks/zoo/`), compiled with `bs.online(bs.StepModel(init, apply), "
           "algorithm)`, ES-D-RTRL with `decay=0.5`; each gradient of the mean cross-entropy over a sequence "
           f"(T = {T}, B = {B}, float64, uniform inputs) is compared with an independent "
           "reference (`benchmarks/zoo/reference.py`: `jax.grad` through `lax.scan` of the "
           "vmapped step; forward mode for `lax.while_loop`). Relative error "
           "`||g - g_ref|| / ||g_ref||`, cosine. `*`: one feed-forward layer of neurons read "
           "out without state or by one fixed-decay leaky integrator, where D-RTRL is exact. "
           "ES-D-RTRL is an approximation everywhere; its cosine is what to compare.", "",
           f"Generated by `python benchmarks/zoo_coverage.py` (jax {jax.__version__}, "
           f"{jax.default_backend()}).", "",
           "| model | style | quirk | BPTT rel. error | D-RTRL (rel err / cosine or error) "
           "| ES-D-RTRL (cosine or error) |",
           "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        name = r["name"] + (" *" if r["feedforward"] else "")
        if r["reference"]["status"] != "ok":
            cells = ["reference failed: " + r["reference"]["error"]] * 3
        else:
            cells = [_cell(r[a], a) for a in ("bptt", "d_rtrl", "es_d_rtrl") if a in r]
        out.append("| " + " | ".join(_md(c) for c in [name, r["style"], r["note"], *cells]) + " |")
    out += ["", "## Summary", ""] + [f"- {s}" for s in summary(rows, algorithms)]
    errs = [(r["name"], a, r[a]) for r in rows for a in algorithms
            if r[a]["status"] != "ok" and r["reference"]["status"] == "ok"]
    if errs:
        out += ["", "## Failures", ""]
        out += [f"- {n}, {a}: {_md(e['error'])} (at `{e['where']}`)" for n, a, e in errs]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/coverage.md")
    ap.add_argument("--quick", action="store_true", help="T=6, B=2 and one entry per quirk family")
    ap.add_argument("--only", default=None, help="keep entries whose name contains this")
    ap.add_argument("-T", type=int, default=12)
    ap.add_argument("-B", type=int, default=3)
    args = ap.parse_args(argv)
    jax.config.update("jax_enable_x64", True)     # the comparison is made in float64
    entries = list(ZOO)
    T, B = args.T, args.B
    if args.quick:
        missing = set(QUICK) - {e.name for e in entries}
        assert not missing, f"--quick names entries the zoo lacks: {sorted(missing)}"
        entries = [e for e in entries if e.name in QUICK]
        T, B = 6, 2
    if args.only:
        entries = [e for e in entries if args.only in e.name]
    if not entries:
        print("no entry matches", file=sys.stderr)
        return 1
    rows = run(entries, T, B, verbose=True)
    print()
    for s in summary(rows):
        print(s)
    if args.out:
        out = args.out if args.out.endswith(".md") else os.path.join(args.out, "coverage.md")
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as f:
            f.write(markdown(rows, T, B))
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
