"""Place cores on the profile's 2-D mesh and route spikes between them.

Cost of a placement: sum over core pairs of spike messages per step times
router hops (Manhattan distance), plus the off-chip inputs, which enter at
router (0, 0). A greedy start puts the busiest cores first, each on the
free slot that adds the least cost; simulated annealing then swaps slots
(empty ones included) and keeps the best placement seen. Routes are
dimension-order (along the row first, then the column), which gives the
load of every directed mesh link.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from transforms.lowering.hardware import Profile

PORT = (0, 0)


@dataclasses.dataclass
class Placement:
    routers: np.ndarray            # (n_cores, 2): row, col of each core's router
    cost: float                    # spike-hops per step
    greedy_cost: float
    flows: np.ndarray              # (n_cores, n_cores) messages per step, a -> b
    inflow: np.ndarray             # (n_cores,) messages per step from the inputs
    links: dict                    # ((r, c), (r2, c2)) -> messages per step

    def hops(self) -> dict:
        """Traffic-weighted mean and max hops, and hop counts by direction."""
        r = self.routers
        pairs = [(self.flows, r[:, None, :], r[None, :, :]),
                 (self.inflow[None, :], np.array(PORT)[None, None, :], r[None, :, :])]
        total = ns = ew = 0.0
        hmax = 0
        for f, a, b in pairs:
            d = np.abs(a - b)
            ns += float((f * d[..., 0]).sum())
            ew += float((f * d[..., 1]).sum())
            total += float(f.sum())
            used = d.sum(-1)[f > 0]
            hmax = max(hmax, int(used.max()) if used.size else 0)
        return {"messages": total, "mean": (ns + ew) / total if total else 0.0,
                "max": hmax, "north_south": ns, "east_west": ew}


def core_flows(index, cores):
    """Messages per step from core a to core b (a spike sent once per
    destination core) and from the off-chip inputs to each core."""
    owner = np.full(index.n, -1)
    for c, core in enumerate(cores):
        owner[index.core_ids(core)] = c
    n = len(cores)
    flows, inflow = np.zeros((n, n)), np.zeros(n)
    out = index.out
    for i in np.flatnonzero(index.rate > 0):
        targets = np.unique(owner[out.indices[out.indptr[i]:out.indptr[i + 1]]])
        targets = targets[targets >= 0]
        if index.is_input[i]:
            inflow[targets] += index.rate[i]
        else:
            src = owner[i]
            flows[src, targets[targets != src]] += index.rate[i]
    return flows, inflow


def _slots(profile: Profile) -> np.ndarray:
    rows, cols = profile.mesh
    return np.array([(r, c) for r in range(rows) for c in range(cols)
                     for _ in range(profile.cores_per_router)])


def _cost(sym, inflow, pos) -> float:
    d = np.abs(pos[:, None, :] - pos[None, :, :]).sum(-1)
    return float((sym * d).sum() / 2 + (inflow * np.abs(pos - PORT).sum(-1)).sum())


def place(flows, inflow, profile: Profile, iters: int | None = None,
          seed: int = 0) -> Placement:
    n = flows.shape[0]
    slots = _slots(profile)
    if n > len(slots):
        raise ValueError(f"{n} cores do not fit the {len(slots)} slots of {profile.name}")
    sym = flows + flows.T
    # greedy: busiest core first, each on the free slot adding least cost
    order = np.argsort(-(sym.sum(1) + inflow), kind="stable")
    slot_of = np.full(n, -1)
    free = np.ones(len(slots), bool)
    for a in order:
        placed = np.flatnonzero(slot_of >= 0)
        cand = np.flatnonzero(free)
        d = np.abs(slots[cand][:, None, :] - slots[slot_of[placed]][None, :, :]).sum(-1)
        add = d @ sym[a, placed] + inflow[a] * np.abs(slots[cand] - PORT).sum(-1)
        best = cand[int(np.argmin(add))]
        slot_of[a], free[best] = best, False
    greedy = _cost(sym, inflow, slots[slot_of])
    # simulated annealing over slot swaps
    rng = np.random.default_rng(seed)
    occupant = np.full(len(slots), -1)
    occupant[slot_of] = np.arange(n)
    cur, best_cost, best_slots = greedy, greedy, slot_of.copy()
    iters = min(20000, 400 * n) if iters is None else iters
    temp0 = max(cur, 1e-9) / max(n, 1) * 0.1
    for k in range(iters if n > 1 else 0):
        a = int(rng.integers(n))
        s = int(rng.integers(len(slots)))
        b = occupant[s]
        if s == slot_of[a]:
            continue
        pos = slots[slot_of]
        pa, ps = pos[a], slots[s]
        da = np.abs(ps - pos).sum(-1) - np.abs(pa - pos).sum(-1)     # a moves pa -> ps
        mask = np.ones(n, bool)
        mask[a] = False
        delta = sym[a, mask] @ da[mask] + inflow[a] * (np.abs(ps - PORT).sum()
                                                       - np.abs(pa - PORT).sum())
        if b >= 0:                                                    # b moves ps -> pa
            mask[b] = False
            delta = (sym[a, mask] @ da[mask] - sym[b, mask] @ da[mask]
                     + (inflow[a] - inflow[b]) * (np.abs(ps - PORT).sum()
                                                  - np.abs(pa - PORT).sum()))
        temp = temp0 * (1 - k / iters) + 1e-12
        if delta <= 0 or rng.random() < np.exp(-delta / temp):
            occupant[slot_of[a]] = b
            occupant[s] = a
            if b >= 0:
                slot_of[b] = slot_of[a]
            slot_of[a] = s
            cur += float(delta)
            if cur < best_cost - 1e-9:
                best_cost, best_slots = cur, slot_of.copy()
    routers = slots[best_slots]
    return Placement(routers, _cost(sym, inflow, routers), greedy, flows, inflow, route(flows, inflow, routers))


def dimension_order_path(a, b):
    """Dimension-order route: along the row (east-west) first, then the column."""
    (r, c), (r2, c2) = a, b
    hops = []
    while c != c2:
        step = 1 if c2 > c else -1
        hops.append(((r, c), (r, c + step)))
        c += step
    while r != r2:
        step = 1 if r2 > r else -1
        hops.append(((r, c), (r + step, c)))
        r += step
    return hops


def route(flows, inflow, routers) -> dict:
    links: dict = {}
    pos = [tuple(int(v) for v in p) for p in routers]
    for a, b in zip(*np.nonzero(flows)):
        for link in dimension_order_path(pos[a], pos[b]):
            links[link] = links.get(link, 0.0) + float(flows[a, b])
    for b in np.flatnonzero(inflow):
        for link in dimension_order_path(PORT, pos[b]):
            links[link] = links.get(link, 0.0) + float(inflow[b])
    return links
