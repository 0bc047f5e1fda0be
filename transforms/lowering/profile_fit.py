"""Fitting an unpublished per-core limit to a vendor's compile result.

Loihi 2's per-core limits are not published; Lava reports that a dense
200 -> 256 -> 200 network compiles to 5 cores. ``fit_max_neurons`` finds the
largest neurons-per-core limit under which our partitioner gives the same
core count (the other limits held at the profile's values). The result is
stored in ``profiles/loihi2.json`` once and a test checks it still holds.
"""
from __future__ import annotations

from transforms.lowering.hardware import Profile
from transforms.lowering.netlist import LoweringError, dense_chain
from transforms.lowering.partition import partition

LAVA_DENSE = ((200, 256, 200), 5)       # network sizes, cores Lava's compiler reports


def _cores(net, profile, n) -> int:
    try:
        return len(partition(net, profile.replace(max_neurons=n), refine=False).cores)
    except LoweringError:           # more cores than one chip has
        return 10 ** 9


def fit_max_neurons(profile: Profile, sizes=LAVA_DENSE[0], cores=LAVA_DENSE[1],
                    upper: int = 8192) -> int:
    """The largest ``max_neurons`` for which ``sizes`` maps to ``cores`` cores
    (bisection: the core count does not grow with the limit)."""
    net = dense_chain(sizes)
    lo, hi = 1, upper                # invariant: count(lo) >= cores > count(hi + 1)
    if _cores(net, profile, lo) < cores:
        raise ValueError(f"{sizes} needs fewer than {cores} cores even at 1 neuron per core")
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _cores(net, profile, mid) >= cores:
            lo = mid
        else:
            hi = mid - 1
    if _cores(net, profile, lo) != cores:
        raise ValueError(f"no neurons-per-core limit maps {sizes} to exactly {cores} cores "
                         f"with the other limits of {profile.name}")
    return lo
