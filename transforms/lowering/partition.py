"""Partition a netlist onto cores under a hardware profile.

A *block* is a slice of one population with all its incoming synapses; a
core holds one or more blocks. Per core, with S the set of distinct
presynaptic neurons reaching it:

    neurons              = sum of block sizes                 <= max_neurons
    input axons          = |S| * axons_per_input              <= max_axons_in
    output axons         = sum over its neurons of the number
                           of distinct cores they project to  <= max_axons_out
    synaptic memory      = synapses into it * weight bits / 8 <= synapse_memory_bytes

1. each population is cut greedily into the largest blocks that fit;
2. blocks are packed first-fit decreasing onto shared cores;
3. cores over the output-axon limit have their largest block halved;
4. METIS (pymetis), on the neuron graph weighted by measured spike rates,
   proposes a partition with fewer spikes crossing cores; it is kept only if
   it fits the profile, the chip, and beats the greedy one. When METIS is
   not used, ``Partition.metis`` says why (pymetis not installed, one core,
   not kept, ...), and the report prints it. Messages per step count the
   spikes leaving their core plus every input message.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

from transforms.lowering.hardware import Profile
from transforms.lowering.netlist import LoweringError, Netlist
from transforms.lowering.optional import INSTALL, missing

LIMITS = ("neurons", "axons_in", "axons_out", "memory")


@dataclasses.dataclass
class Block:
    population: str
    neurons: np.ndarray            # indices within the population


@dataclasses.dataclass
class Partition:
    cores: list                    # list of lists of Block
    method: str                    # "greedy" or "metis"
    traffic: float                 # spike messages leaving cores per step
    alternative: dict = dataclasses.field(default_factory=dict)
    metis: str = ""                # what became of METIS, and why


class NeuronIndex:
    """Global neuron ids and the incidence of synapses, for fast counting."""

    def __init__(self, net: Netlist):
        self.net = net
        self.offset, n = {}, 0
        for name, p in net.populations.items():
            self.offset[name] = n
            n += p.size
        self.n = n
        rows = np.concatenate([c.post_idx + self.offset[c.post] for c in net.connections])
        cols = np.concatenate([c.pre_idx + self.offset[c.pre] for c in net.connections])
        self.syn = np.bincount(rows, minlength=n)                     # synapses per post
        inc = sp.csr_matrix((np.ones(rows.size, bool), (rows, cols)), shape=(n, n))
        inc.sum_duplicates()
        self.inc = inc                                                # post x pre
        self.out = inc.T.tocsr()                                      # pre x post
        self.rate = np.concatenate([net.rates[name] for name in net.populations])
        self.is_input = np.concatenate([np.full(p.size, p.kind == "input")
                                        for p in net.populations.values()])

    def ids(self, block: Block) -> np.ndarray:
        return block.neurons + self.offset[block.population]

    def core_ids(self, core) -> np.ndarray:
        return np.concatenate([self.ids(b) for b in core])


def usage(index: NeuronIndex, cores, profile: Profile, bits: int) -> list[dict]:
    """Per core: neurons, input axons, output axons, memory bytes."""
    axon_sets = [np.unique(index.inc[index.core_ids(core)].indices) for core in cores]
    # destination cores of every source neuron
    dests = sp.csr_matrix((np.ones(sum(a.size for a in axon_sets)),
                           (np.concatenate(axon_sets) if axon_sets else np.zeros(0, int),
                            np.repeat(np.arange(len(cores)), [a.size for a in axon_sets]))),
                          shape=(index.n, len(cores)))
    n_dest = np.asarray((dests > 0).sum(1)).ravel()
    out = []
    for c, core in enumerate(cores):
        ids = index.core_ids(core)
        out.append({"neurons": int(ids.size),
                    "axons_in": int(axon_sets[c].size) * profile.axons_per_input,
                    "axons_out": int(n_dest[ids].sum()),
                    "memory": int(np.ceil(index.syn[ids].sum() * bits / 8))})
    return out


def core_capacities(profile: Profile) -> dict:
    return {"neurons": profile.max_neurons, "axons_in": profile.max_axons_in,
            "axons_out": profile.max_axons_out, "memory": profile.synapse_memory_bytes}


def _fits_in(index, ids, profile, bits) -> bool:
    axons = np.unique(index.inc[ids].indices).size * profile.axons_per_input
    mem = index.syn[ids].sum() * bits / 8
    return (ids.size <= profile.max_neurons and axons <= profile.max_axons_in
            and (profile.synapse_memory_bytes is None or mem <= profile.synapse_memory_bytes))


def _split_population(index, name, neurons, profile, bits) -> list[Block]:
    """Greedy contiguous blocks of ``neurons`` (indices in population ``name``)."""
    caps_mem = profile.synapse_memory_bytes
    off = index.offset[name]
    blocks, start = [], 0
    seen = np.zeros(index.n, bool)
    n_axons, mem = 0, 0.0
    for k, i in enumerate(neurons):
        row = index.inc[off + i].indices
        new = row[~seen[row]]
        ax = (n_axons + new.size) * profile.axons_per_input
        m = mem + index.syn[off + i] * bits / 8
        if (k - start + 1 > profile.max_neurons or ax > profile.max_axons_in
                or (caps_mem is not None and m > caps_mem)):
            if k == start:
                _too_big(index, name, i, profile, bits)
            blocks.append(Block(name, np.asarray(neurons[start:k])))
            start, seen[:] = k, False
            new, m = row, index.syn[off + i] * bits / 8
            n_axons = 0
        seen[new] = True
        n_axons += new.size
        mem = m
    blocks.append(Block(name, np.asarray(neurons[start:])))
    return blocks


def _too_big(index, name, i, profile, bits):
    off = index.offset[name]
    fan_in = index.inc[off + i].indices.size * profile.axons_per_input
    mem = index.syn[off + i] * bits / 8
    if fan_in > profile.max_axons_in:
        why = (f"it receives {fan_in} input axons and a {profile.name} core has "
               f"{profile.max_axons_in} (max_axons_in)")
        hint = "prune the fan-in; splitting one neuron's inputs over cores is not supported"
    else:
        why = (f"its {index.syn[off + i]} synapses at {bits} bits need {mem:.0f} bytes and a "
               f"{profile.name} core has {profile.synapse_memory_bytes} (synapse_memory_bytes)")
        hint = "lower the weight bits or prune the fan-in"
    raise LoweringError(f"population {name}: neuron {i} alone does not fit one core: {why}",
                        hint=hint)


def _pack(index, blocks, profile, bits) -> list:
    """First-fit decreasing: blocks onto shared cores."""
    cores, ids = [], []
    for b in sorted(blocks, key=lambda b: -b.neurons.size):
        bid = index.ids(b)
        for c, core in enumerate(cores):
            joint = np.concatenate([ids[c], bid])
            if _fits_in(index, joint, profile, bits):
                core.append(b)
                ids[c] = joint
                break
        else:
            cores.append([b])
            ids.append(bid)
    return cores


def _repair_out(index, cores, profile, bits) -> list:
    """Halve the largest block of every core over the output-axon limit."""
    if profile.max_axons_out is None:
        return cores
    for _ in range(64):
        use = usage(index, cores, profile, bits)
        bad = [c for c, u in enumerate(use) if u["axons_out"] > profile.max_axons_out]
        if not bad:
            return cores
        for c in bad:
            core = cores[c]
            big = max(range(len(core)), key=lambda k: core[k].neurons.size)
            b = core[big]
            if b.neurons.size == 1 and len(core) == 1:
                raise LoweringError(
                    f"population {b.population}: neuron {int(b.neurons[0])} projects to "
                    f"{use[c]['axons_out']} cores; a {profile.name} core has "
                    f"{profile.max_axons_out} output axons (max_axons_out)")
            if b.neurons.size == 1:
                cores.append([core.pop(big)])
                continue
            half = b.neurons.size // 2
            core[big] = Block(b.population, b.neurons[:half])
            cores.append([Block(b.population, b.neurons[half:])])
    raise LoweringError("output-axon repair did not converge")


def traffic(index: NeuronIndex, cores) -> float:
    """Spike messages per step that leave their core (inputs: all of them)."""
    from transforms.lowering.placement import core_flows

    flows, inflow = core_flows(index, cores)
    return float(flows.sum() + inflow.sum())


def _packed(index, net, profile, bits, subsets=None) -> list:
    """Every population (or its ``subsets``) cut into blocks and packed."""
    blocks = []
    for p in net.neurons():
        neurons = np.arange(p.size) if subsets is None else subsets[p.name]
        if neurons.size:
            blocks += _split_population(index, p.name, neurons, profile, bits)
    return _pack(index, blocks, profile, bits)


def metis_refine(index, net, profile, bits, nparts) -> tuple[list | None, str]:
    """METIS's cores for ``nparts`` parts, or ``None`` and the reason it did not run."""
    gone = missing("pymetis")
    absent = f"pymetis not installed ({gone['pymetis']}): {INSTALL}" if gone else ""
    if nparts < 2:
        return None, ("METIS not run: the greedy partition uses one core, nothing to cut"
                      + (f"; {absent}" if absent else ""))
    if absent:
        return None, f"METIS skipped: {absent}"
    import pymetis

    ids = np.concatenate([np.arange(p.size) + index.offset[p.name] for p in net.neurons()])
    local = np.full(index.n, -1)
    local[ids] = np.arange(ids.size)
    sub = index.inc[ids][:, ids].tocoo()
    w = index.rate[ids][sub.col]                      # post <- pre, weighted by pre's rate
    sym = sp.coo_matrix((np.concatenate([w, w]), (np.concatenate([sub.row, sub.col]),
                                                   np.concatenate([sub.col, sub.row]))),
                        shape=(ids.size, ids.size)).tocsr()
    sym.setdiag(0)
    sym.eliminate_zeros()
    if sym.nnz == 0:
        return None, "METIS not run: no synapses between on-chip neurons to cut"
    ew = np.maximum(1, np.round(sym.data * 1000)).astype(int)
    adjacency = pymetis.CSRAdjacency(sym.indptr.tolist(), sym.indices.tolist())
    _, parts = pymetis.part_graph(nparts, adjacency=adjacency, eweights=ew.tolist())
    parts = np.asarray(parts)
    cores = []
    for q in range(nparts):
        mine = ids[parts == q]
        subsets = {p.name: mine[(mine >= index.offset[p.name])
                                & (mine < index.offset[p.name] + p.size)] - index.offset[p.name]
                   for p in net.neurons()}
        cores += _packed(index, net, profile, bits, subsets)
    return _repair_out(index, cores, profile, bits), ""


def partition(net: Netlist, profile: Profile, bits: int | None = None,
              refine: bool = True) -> Partition:
    """Blocks and cores for ``net`` on ``profile`` at ``bits`` weight bits."""
    bits = profile.check_weight_bits(profile.default_weight_bits if bits is None else bits)
    index = NeuronIndex(net)
    cores = _repair_out(index, _packed(index, net, profile, bits), profile, bits)
    best = Partition(cores, "greedy", traffic(index, cores),
                     metis="METIS not run: refine=False")
    if refine:
        m, best.metis = metis_refine(index, net, profile, bits, len(cores))
        if m is not None:
            t = traffic(index, m)
            best.alternative = {"method": "metis", "cores": len(m), "traffic": t}
            if len(m) > profile.n_cores:
                best.metis = (f"METIS tried, not kept: its {len(m)} cores exceed the "
                              f"chip's {profile.n_cores}")
            elif t >= best.traffic:
                best.metis = (f"METIS tried, not kept: {len(m)} cores, {t:,.1f} messages/step "
                              f"against greedy's {best.traffic:,.1f}")
            else:
                best = Partition(m, "metis", t, {"method": "greedy", "cores": len(cores),
                                                 "traffic": best.traffic},
                                 metis=f"METIS kept: {t:,.1f} messages/step against greedy's "
                                       f"{best.traffic:,.1f} on {len(cores)} cores")
    if len(best.cores) > profile.n_cores:
        raise LoweringError(f"the network needs {len(best.cores)} cores and one "
                            f"{profile.name} chip has {profile.n_cores}")
    return best
