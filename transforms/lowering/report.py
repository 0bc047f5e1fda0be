"""The lowering pass: netlist -> cores -> mesh -> a report of what it costs.

``lower(net, profile)`` partitions, places and routes, then counts per time
step (rates are events per neuron per step):

    synaptic ops   = sum over synapses of the presynaptic rate
    neuron updates = every neuron once; "active" ones (at least one input
                     event, P = 1 - prod_j (1 - r_j) over its sources) at the
                     active energy, the others at the inactive one
    network        = messages leaving a core x within-tile energy
                     + east-west hops x E_ew + north-south hops x E_ns

and whether a learning rule's state fits beside the weights: ES-D-RTRL keeps
per neuron K traces and per input axon one presynaptic trace, D-RTRL K
traces per synapse. The report is a dict of plain numbers (JSON) and
``format_report`` prints it for people; each figure says what it rests on.
"""
from __future__ import annotations

import numpy as np

from transforms.lowering.hardware import Profile
from transforms.lowering.netlist import Netlist
from transforms.lowering.partition import LIMITS, core_capacities, NeuronIndex, partition, usage
from transforms.lowering.placement import core_flows, place


def _blocks(core) -> list[str]:
    out = []
    for b in core:
        n = b.neurons
        if n.size and np.all(np.diff(n) == 1):
            out.append(f"{b.population}[{int(n[0])}:{int(n[-1]) + 1}]")
        else:
            out.append(f"{b.population} ({n.size} neurons)")
    return out


def _energy(net: Netlist, index: NeuronIndex, hops: dict, profile: Profile) -> dict:
    e = profile.energy_pj or {}
    syn_ops = float(sum(net.rates[c.pre][c.pre_idx].sum() for c in net.connections))
    neurons = sum(p.size for p in net.neurons())
    silent = np.ones(index.n)                 # P(no input event) per post neuron
    for c in net.connections:
        r = net.rates[c.pre][c.pre_idx]
        post = c.post_idx + index.offset[c.post]
        np.multiply.at(silent, post, 1 - np.clip(r, 0, 1))
    on_chip = np.concatenate([np.full(p.size, p.kind == "neurons")
                              for p in net.populations.values()])
    active = float((1 - silent)[on_chip].sum())
    parts = {
        "synaptic_ops": (syn_ops, ["synaptic_op"],
                         lambda: syn_ops * e["synaptic_op"]),
        "neuron_updates": (neurons, ["neuron_update_inactive", "neuron_update_active"],
                           lambda: (neurons - active) * e["neuron_update_inactive"]
                           + active * e["neuron_update_active"]),
        "network": (hops["messages"], ["spike_within_tile", "hop_east_west", "hop_north_south"],
                    lambda: hops["messages"] * e["spike_within_tile"]
                    + hops["east_west"] * e["hop_east_west"]
                    + hops["north_south"] * e["hop_north_south"]),
    }
    out = {"counts_per_step": {"synaptic_ops": syn_ops, "neuron_updates": neurons,
                               "active_neurons": active, "messages": hops["messages"]}}
    for name, (_, keys, f) in parts.items():
        out[name + "_pj"] = f() if all(k in e for k in keys) else None
    known = [v for k, v in out.items() if k.endswith("_pj") and v is not None]
    out["total_pj"] = sum(known) if len(known) == 3 else None
    out["basis"] = f"{profile.sources.get('energy_pj', '')}; spike rates {net.rates_basis}"
    return out


def _learning(net, index, cores, use, profile, bits) -> dict:
    k = np.concatenate([np.full(p.size, p.k) for p in net.populations.values()])
    tb = profile.trace_bits / 8
    rows = []
    for core, u in zip(cores, use):
        ids = index.core_ids(core)
        axons = u["axons_in"] // profile.axons_per_input
        syn = int(index.syn[ids].sum())
        free = (None if profile.synapse_memory_bytes is None
                else profile.synapse_memory_bytes - u["memory"])
        rows.append({"es_d_rtrl": (axons + int(k[ids].sum())) * tb,
                     "d_rtrl": int((k[ids] * index.syn[ids]).sum()) * tb,
                     "synapses": syn, "free": free})
    out = {"trace_bits": profile.trace_bits, "basis": profile.sources.get("trace_bits", "")}
    for rule in ("es_d_rtrl", "d_rtrl"):
        need = max(r[rule] for r in rows) if rows else 0
        fits = [r["free"] is None or r[rule] <= r["free"] for r in rows]
        out[rule] = {"max_bytes_per_core": need,
                     "fits": None if profile.synapse_memory_bytes is None else all(fits),
                     "cores_over": int(len(fits) - sum(fits))}
    out["free_bytes_min"] = (None if profile.synapse_memory_bytes is None
                             else min(r["free"] for r in rows))
    e = (profile.energy_pj or {}).get("learning_update")
    n_syn = sum(r["synapses"] for r in rows)
    out["update_pj_per_step"] = None if e is None else n_syn * e
    return out


def lower(net: Netlist, profile: Profile, bits: int | None = None, T: int | None = None,
          refine: bool = True, seed: int = 0) -> dict:
    """Partition, place, route and cost ``net`` on ``profile``; a JSON-able dict."""
    bits = profile.check_weight_bits(profile.default_weight_bits if bits is None else bits)
    part = partition(net, profile, bits, refine=refine)
    index = NeuronIndex(net)
    use = usage(index, part.cores, profile, bits)
    flows, inflow = core_flows(index, part.cores)
    pl = place(flows, inflow, profile, seed=seed)
    hops = pl.hops()
    caps = core_capacities(profile)
    cores = []
    for c, (core, u) in enumerate(zip(part.cores, use)):
        util = {k: (u[k] / caps[k] if caps[k] else None) for k in LIMITS}
        bind = max((k for k in LIMITS if util[k] is not None), key=lambda k: util[k])
        cores.append({"core": c, "router": [int(v) for v in pl.routers[c]],
                      "blocks": _blocks(core), **u,
                      "utilisation": util, "binding": bind})
    link, load = max(pl.links.items(), key=lambda kv: kv[1]) if pl.links else (None, 0.0)
    energy = _energy(net, index, hops, profile)
    report = {
        "profile": {"name": profile.name, "title": profile.title, "weight_bits": bits,
                    "sources": profile.sources},
        "network": {"populations": {p.name: {"size": p.size, "kind": p.kind, "k": p.k}
                                    for p in net.populations.values()},
                    "synapses": net.n_synapses, "rates": net.rates_basis,
                    "mean_rate": {n: float(np.mean(r)) for n, r in net.rates.items()}},
        "cores_used": len(part.cores), "cores_available": profile.n_cores,
        "partition": {"method": part.method, "alternative": part.alternative,
                      "metis": part.metis},
        "cores": cores,
        "traffic": {"spikes_crossing_cores_per_step": float(flows.sum()),
                    "input_messages_per_step": float(inflow.sum()),
                    "mean_hops": hops["mean"], "max_hops": hops["max"],
                    "max_link_load": load,
                    "max_link": None if link is None else [list(link[0]), list(link[1])],
                    "placement_cost": pl.cost, "greedy_cost": pl.greedy_cost},
        "energy_per_step": energy,
        "learning_state": _learning(net, index, part.cores, use, profile, bits),
    }
    if T is not None and energy["total_pj"] is not None:
        report["energy_per_inference_pj"] = {"T": int(T), "total": energy["total_pj"] * T}
    return report


def _f(v, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.1f}{unit}" if abs(v) >= 10 else f"{v:.3g}{unit}"
    return f"{v:,}{unit}"


def _partition_line(part: dict) -> str:
    """``greedy; METIS skipped: ...``: the method kept and what became of METIS
    (a report saved before the ``metis`` field: the other method's figures)."""
    if part.get("metis"):
        return f"{part['method']}; {part['metis']}"
    alt = part.get("alternative")
    return part["method"] + (f"; {alt['method']} gave {alt['cores']} cores, "
                             f"{_f(alt['traffic'])} messages/step" if alt else "")


def format_report(r: dict) -> str:
    """The report as text: a summary, a per-core table and the sources."""
    p, t, e, ls = r["profile"], r["traffic"], r["energy_per_step"], r["learning_state"]
    n_pop = r["network"]["populations"]
    lines = [f"{p['title']} ({p['name']}), weights at {p['weight_bits']} bits",
             "network: " + ", ".join(f"{k} {v['size']}{' (off chip)' if v['kind'] == 'input' else ''}"
                                     for k, v in n_pop.items())
             + f"; {r['network']['synapses']:,} synapses; spike rates {r['network']['rates']}",
             f"cores used: {r['cores_used']} of {r['cores_available']} "
             f"(partition: {_partition_line(r['partition'])})", ""]
    head = ("core", "router", "neurons", "axons in", "axons out", "memory B", "binds", "blocks")
    rows = [head]
    for c in r["cores"]:
        u = c["utilisation"]
        rows.append((str(c["core"]), f"({c['router'][0]},{c['router'][1]})",
                     f"{c['neurons']} ({u['neurons']:.0%})",
                     f"{c['axons_in']} ({u['axons_in']:.0%})",
                     f"{c['axons_out']}" + (f" ({u['axons_out']:.0%})" if u["axons_out"] is not None else ""),
                     f"{c['memory']:,}" + (f" ({u['memory']:.0%})" if u["memory"] is not None else ""),
                     c["binding"], ", ".join(c["blocks"])))
    w = [max(len(x[i]) for x in rows) for i in range(len(head))]
    lines += ["  " + "  ".join(x[i].ljust(w[i]) for i in range(len(head))).rstrip() for x in rows]
    lines.insert(len(lines) - len(rows) + 1, "  " + "  ".join("-" * v for v in w))
    lines += ["", f"spikes crossing cores per step: {_f(t['spikes_crossing_cores_per_step'])} "
              f"(+ {_f(t['input_messages_per_step'])} input messages); hops mean "
              f"{t['mean_hops']:.2f}, max {t['max_hops']}; max link load "
              f"{_f(t['max_link_load'])} messages/step; placement cost {_f(t['placement_cost'])} "
              f"spike-hops/step (greedy start {_f(t['greedy_cost'])})"]
    cnt = e["counts_per_step"]
    lines += [f"energy per step: synaptic ops {_f(e['synaptic_ops_pj'], ' pJ')} "
              f"({_f(cnt['synaptic_ops'])} ops), neuron updates {_f(e['neuron_updates_pj'], ' pJ')} "
              f"({cnt['neuron_updates']} neurons, {_f(cnt['active_neurons'])} active), network "
              f"{_f(e['network_pj'], ' pJ')}; total {_f(e['total_pj'], ' pJ')}"]
    if "energy_per_inference_pj" in r:
        ei = r["energy_per_inference_pj"]
        lines.append(f"energy per inference ({ei['T']} steps): {_f(ei['total'] / 1e3, ' nJ')}")
    lines.append(f"  rests on: {e['basis']}")
    for rule, what in (("es_d_rtrl", "per-neuron traces"), ("d_rtrl", "per-synapse traces")):
        s = ls[rule]
        fit = {True: "fits", False: f"does NOT fit ({s['cores_over']} cores over)",
               None: "no memory figure to check against"}[s["fits"]]
        lines.append(f"learning state {rule} ({what}): up to {_f(s['max_bytes_per_core'])} "
                     f"bytes per core; {fit}"
                     + (f" (least free synaptic memory on a core: {ls['free_bytes_min']:,} B)"
                        if ls["free_bytes_min"] is not None else ""))
    lines.append(f"  rests on: traces at {ls['trace_bits']} bits ({ls['basis']})")
    q = r.get("quantisation")
    if q:
        lines.append(f"quantisation to {q['bits']}-bit weights: {q['task']} accuracy "
                     f"{q['accuracy_float']:.1%} with float weights, "
                     f"{q['accuracy_quantised']:.1%} quantised")
    if "run" in r:
        run = r["run"]
        lines.insert(0, f"run {run['dir']}: task {run['task']}, {run['algorithm']}, "
                        f"step {run['step']}")
    lines += ["", "profile figures:"] + [f"  {k}: {v}" for k, v in p["sources"].items()]
    return "\n".join(lines)
