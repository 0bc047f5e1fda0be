"""The report of vs_braintrace.py: CSV and markdown tables and a time plot."""
from __future__ import annotations

import math
import pathlib

import numpy as np

from common import md_table, mean_std, pyplot, write_csv


def _csv(path, rows):
    write_csv(path, rows, sorted({k for r in rows for k in r}))


def _ms(x):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def write_vs_braintrace(out: pathlib.Path, agree, rel_hand, rates, timing, command):
    """vs_braintrace.md/.csv and a time plot."""
    import jax
    _csv(out / "agreement.csv", agree)
    _csv(out / "timing.csv", timing)
    seeds = sorted({r["seed"] for r in agree})
    lines = ["# BrainScale vs braintrace on lif-delta", "",
             f"command: `{command}`  ", f"jax {jax.__version__}, device {jax.devices()[0]}, "
             f"seeds {seeds}", ""]
    if agree:
        lines += _agreement(agree, rel_hand, rates, seeds)
    lines += ["## Time and memory per training step (reset + gradient over T + SGD)", "",
              "Each configuration ran in its own process; median over repetitions after "
              "two warm-up calls.", ""]
    rows = []
    for r in timing:
        if "error" in r:
            rows.append([r["lib"], r["algo"], r["T"], "error: " + r["error"], "", "", ""])
        else:
            rows.append([r["lib"], r["algo"], r["T"], _ms(r["step_s"]),
                         _ms(r["build_s"] + r["compile_s"]),
                         _ms(r["temp_MiB"]), _ms(r["rss_MiB"])])
    lines += [md_table(["library", "algorithm", "T", "s / step", "build + first call s", "XLA temp MiB",
                        "peak RSS MiB"], rows), ""]
    ratio_rows = []
    for T in sorted({r["T"] for r in timing}):
        for algo in ("bptt", "d_rtrl", "es_d_rtrl"):
            get = lambda lib: next((r for r in timing if r["lib"] == lib and r["algo"] == algo
                                    and r["T"] == T and "error" not in r), None)
            peer, hand = get("braintrace"), get("hand")
            for name in ("brainscale", "brainscale_plain"):
                ours = get(name)
                if not (ours and peer):
                    continue
                ratio_rows.append([name, algo, T, f"{ours['step_s'] / peer['step_s']:.2f}",
                                   f"{(ours['build_s'] + ours['compile_s']) / (peer['build_s'] + peer['compile_s']):.2f}",
                                   f"{ours['temp_MiB'] / max(peer['temp_MiB'], 1e-9):.2f}",
                                   f"{ours['rss_MiB'] / peer['rss_MiB']:.2f}",
                                   f"{ours['step_s'] / hand['step_s']:.2f}" if hand else "-"])
    lines += ["## Ratios BrainScale / braintrace (below 1: BrainScale better)", "",
              md_table(["BrainScale learner", "algorithm", "T", "time", "build + first call",
                        "XLA temp", "peak RSS", "time / hand-written floor"], ratio_rows), "",
              "`brainscale` is the default (readout paths on); `brainscale_plain` has "
              "`readout_paths=False`, the same algorithm as braintrace's.", ""]
    (out / "vs_braintrace.md").write_text("\n".join(lines))
    _plot_times(out / "vs_braintrace_time.png", timing)


def _agreement(agree, rel_hand, rates, seeds):
    lines = ["## Gradient agreement (T = %d)" % agree[0]["T"], "",
             "Firing (fraction of neuron-steps): " + ", ".join(
                 f"seed {s}: layer 1 {r[0]:.3f}, layer 2 {r[1]:.3f}" for s, r in zip(seeds, rates)),
             "", "Compiled BrainScale learners vs the hand-written floor (relative error): " +
             "; ".join(f"seed {s}: " + ", ".join(f"{a} {e:.1e}" for a, e in rel_hand[s].items())
                       for s in seeds), ""]
    rows = []
    for lib in ("braintrace", "brainscale", "brainscale_plain", "hand"):
        for algo in ("d_rtrl", "es_d_rtrl"):
            sel = [r for r in agree if r["lib"] == lib and r["algo"] == algo]
            if not sel:
                continue
            rows.append([lib, algo] + [mean_std([r[k] for r in sel]) for k in (
                "cos_bptt", "norm_ratio", "lif_cos_bptt", "lif_norm_ratio", "cos_other_lib",
                "lif_cos_other_lib")])
    return lines + [md_table(["library", "algorithm", "cos to BPTT", "norm ratio",
                              "LIF layers cos", "LIF layers norm ratio", "cos to other library",
                              "LIF cos to other library"], rows), ""]


def _plot_times(path, timing):
    plt = pyplot()
    Ts = sorted({r["T"] for r in timing})
    libs = [l for l in ("brainscale", "brainscale_plain", "braintrace", "hand")
            if any(r["lib"] == l for r in timing)]
    algos = ("bptt", "es_d_rtrl", "d_rtrl")
    fig, axes = plt.subplots(1, len(Ts), figsize=(4.5 * len(Ts), 3.5), squeeze=False)
    for ax, T in zip(axes[0], Ts):
        for i, lib in enumerate(libs):
            vals = [next((r["step_s"] for r in timing if r["lib"] == lib and r["algo"] == a
                          and r["T"] == T and "error" not in r), np.nan) for a in algos]
            width = 0.8 / len(libs)
            ax.bar(np.arange(len(algos)) + width * (i - (len(libs) - 1) / 2), vals, width, label=lib)
        ax.set_xticks(range(len(algos)), algos)
        ax.set_yscale("log")
        ax.set_title(f"T = {T}")
        ax.set_ylabel("s per training step")
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
