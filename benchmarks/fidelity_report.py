"""Tables, notes and the figure of ``benchmarks/fidelity.py``: per model and
online learner, the cosine and norm ratio to BPTT (overall, per layer, the
readout), the layers' firing rates and the time per step."""
from __future__ import annotations

import numpy as np

import common

GROUPS = ("l1", "l2", "out")
LOW_RATE, HIGH_RATE = 0.01, 0.40
EXPLODING = 1e3   # a BPTT gradient norm above this (cross-entropy loss) is flagged

FIELDS = (["model", "label", "seed", "algorithm", "cos_all"] + [f"cos_{k}" for k in GROUPS]
          + ["ratio_all"] + [f"ratio_{k}" for k in GROUPS]
          + ["norm_all"] + [f"norm_{k}" for k in GROUPS]
          + ["norm_bptt", "loss", "loss_diff_vs_bptt", "ms_step", "rate_l1", "rate_l2",
             "T", "B", "n_in", "n_rec", "n_out", "p_in", "decay", "seconds"])


def online(rows) -> list[str]:
    """The online algorithms of ``rows``, in the order they were run."""
    return [a for a in dict.fromkeys(r["algorithm"] for r in rows) if a != "bptt"]


def rate_cell(values) -> str:
    """Mean rate in percent, flagged when outside [1 %, 40 %]."""
    m = float(np.nanmean(values))
    flag = " ⚠ LOW (<1%)" if m < LOW_RATE else (" ⚠ high" if m > HIGH_RATE else "")
    return f"{100 * m:.1f}%{flag}"


def summary_table(rows) -> str:
    headers = (["model", "algorithm", "cos all", "cos l1", "cos l2", "cos readout",
                "‖g‖/‖g_bptt‖ all", "ratio l1", "ratio l2", "ratio readout",
                "rate l1", "rate l2", "‖g_bptt‖", "ms / step"])
    out = []
    for name in dict.fromkeys(r["model"] for r in rows):
        for alg in online(rows):
            sel = [r for r in rows if r["model"] == name and r["algorithm"] == alg]
            if not sel:
                continue
            col = lambda key: [r[key] for r in sel]  # noqa: E731
            out.append([sel[0]["label"], alg]
                       + [common.mean_std(col(f"cos_{k}")) for k in ("all",) + GROUPS]
                       + [common.mean_std(col(f"ratio_{k}")) for k in ("all",) + GROUPS]
                       + [rate_cell(col("rate_l1")), rate_cell(col("rate_l2")),
                          bptt_norm_cell(col("norm_bptt")), f"{np.median(col('ms_step')):.2f}"])
    return common.md_table(headers, out)


def bptt_norm_cell(values) -> str:
    m = float(np.mean(values))
    if not np.isfinite(m):
        return "⚠ overflow (inf/nan)"
    return f"{m:.3g}" + (" ⚠ exploding" if m > EXPLODING else "")


def notes(rows) -> list[str]:
    """Observations the table alone hides: online gradients that are
    identically zero for a layer, exploding BPTT gradients."""
    out = []
    for name in dict.fromkeys(r["model"] for r in rows):
        sel = [r for r in rows if r["model"] == name]
        label = sel[0]["label"]
        for alg in online(rows):
            zero = [k for k in GROUPS
                    if all(r[f"norm_{k}"] == 0 for r in sel if r["algorithm"] == alg)
                    and any(r[f"norm_{k}"] > 0 for r in sel if r["algorithm"] == "bptt")]
            if zero:
                out.append(f"- {label}, {alg}: the gradient of {', '.join(zero)} is identically "
                           "zero (cosine reported as 0): no path from that layer to the loss "
                           "within one step, which is all the one-step learning signal sees.")
        norms = np.asarray([r["norm_bptt"] for r in sel if r["algorithm"] == "bptt"])
        bad = int(np.sum(~np.isfinite(norms)))
        online_bad = sorted({r["algorithm"] for r in sel if r["algorithm"] != "bptt"
                             and not np.isfinite(r["norm_all"])})
        if bad:
            out.append(f"- {label}: the BPTT gradient overflowed (inf/nan) for {bad} of "
                       f"{norms.size} seeds; similarities to it are undefined (n/a)"
                       + (f"; so did {', '.join(online_bad)}." if online_bad else "."))
        elif np.mean(norms) > EXPLODING:
            out.append(f"- {label}: the BPTT gradient norm is {np.mean(norms):.3g} (exploding "
                       "through the dynamics), so similarities to it mean little.")
    return out


def write_markdown(path, rows, args, info, cmd, seconds, models) -> str:
    """The run's markdown page; ``models``: name -> spec (label, note, scales)."""
    table = summary_table(rows)
    lines = common.header_lines("Gradient fidelity of online learners vs BPTT", info, cmd)
    readout = (f"leaky readout {args.n_out} (tau {args.tau_out})" if args.tau_out > 0
               else f"memoryless readout {args.n_out}")
    lines += [f"- network: {args.n_in} Bernoulli({args.p_in}) inputs -> recurrent {args.n_rec} "
              f"-> recurrent {args.n_rec} -> {readout}; "
              f"T {args.T}, B {args.batch}, seeds {list(args.seeds)}; cross-entropy every step "
              f"against one random label per sample; ES-D-RTRL decay {args.decay}",
              "- mean ± std over seeds; cos = cosine similarity to the BPTT gradient; "
              "ratio = gradient norm online / BPTT; l1, l2 = the recurrent layers' weights, "
              "readout = the leaky readout's weights",
              "- rate = fraction of neuron-steps that spike in the layer (flagged below 1 % "
              "or above 40 %); ‖g_bptt‖ = BPTT gradient norm (flagged above "
              f"{EXPLODING:g})",
              "- reading it: the overall cosine is dominated by the readout, whose gradient is "
              "the largest; look at the per-layer columns. A high cosine with a norm ratio well "
              "below 1 means the online gradient points the right way but misses credit carried "
              "through state its traces do not follow (e.g. l1's effect on later losses through "
              "l2's and the readout's memory); `--tau-out 0` gives a memoryless readout",
              "- ms / step: median over seeds of each seed's median time per step of "
              "`sequence_grad` (forward, traces and gradient over the sequence; jit-compiled, "
              f"{args.time_reps} timed calls)",
              f"- total time {seconds:.1f} s", "", table, ""]
    found = notes(rows)
    lines += (["Notes:", ""] + found + [""]) if found else []
    lines += ["Models:", ""]
    lines += [f"- {s.label}: {s.note}; weight scales (l1 in, l1 rec, l2 in, l2 rec) = "
              f"{s.scales}" for k, s in models.items() if k in args.models]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return table


def plot(path, rows, labels: dict):
    """Cosine (top) and norm ratio (bottom) per model, overall and per layer;
    ``labels``: model name -> its label."""
    plt = common.pyplot()
    names = list(dict.fromkeys(r["model"] for r in rows))
    labels = [labels[n] for n in names]
    parts = (("all", "overall"), ("l1", "layer 1"), ("l2", "layer 2"))
    fig, axes = plt.subplots(2, 3, figsize=(max(12, 2.4 * len(names) + 4), 7.5), sharex=True)
    algs = online(rows)
    x, w = np.arange(len(names)), 0.8 / len(algs)
    for row, (metric, what) in enumerate((("cos", "cosine to BPTT"),
                                          ("ratio", "norm ratio online / BPTT"))):
        for ax, (part, title) in zip(axes[row], parts):
            key = f"{metric}_{part}"
            for i, alg in enumerate(algs):
                vals = [[r[key] for r in rows if r["model"] == n and r["algorithm"] == alg]
                        for n in names]
                ax.bar(x + (i - (len(algs) - 1) / 2) * w, [np.nanmean(v) for v in vals], w,
                       yerr=[np.nanstd(v) for v in vals], capsize=3,
                       color=f"C{i}", label=alg.replace("_", "-"))
            ax.axhline(1.0, color="grey", lw=0.8, ls="--")
            ax.set_title(f"{what}: {title}", fontsize=10)
            if metric == "cos":
                ax.set_ylim(min(-0.1, np.nanmin([r[key] for r in rows]) - 0.05), 1.05)
    for ax in axes[1]:
        ax.set_xticks(x, labels, rotation=35, ha="right")
    handles, names_ = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names_, loc="upper center", ncol=len(algs))
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)
