"""A zoo of single-sample SNN step functions written the way users of
snnTorch, Norse, spyx, brainpy and paper reference code write them.

    from zoo import ZOO, Entry            # benchmarks/ on sys.path
    for e in ZOO: params, hidden = e.init(rng, x); hidden, out = e.apply(params, hidden, x)

``check()`` prints each entry's spike fraction over a 20-step run on
uniform [0, 1] inputs (it should lie in [2%, 60%]).
"""
from __future__ import annotations

from . import brainpy_style, norse_style, paper_style, snntorch_style, spyx_style
from .entry import Entry, spike_fraction

ZOO: list[Entry] = [*snntorch_style.ENTRIES, *norse_style.ENTRIES, *spyx_style.ENTRIES,
                    *brainpy_style.ENTRIES, *paper_style.ENTRIES]

assert len({e.name for e in ZOO}) == len(ZOO), "zoo entry names must be unique"

BY_NAME = {e.name: e for e in ZOO}


def check(entries=None, lo=0.02, hi=0.60) -> bool:
    """Print the spike fraction of every entry; True when all lie in [lo, hi]."""
    ok = True
    for e in entries or ZOO:
        f = spike_fraction(e)
        good = lo <= f <= hi
        ok &= good
        print(f"{e.name:34s} spikes {100 * f:5.1f}%  {'ok' if good else 'OUT OF RANGE'}")
    return ok


__all__ = ["ZOO", "BY_NAME", "Entry", "check", "spike_fraction"]
