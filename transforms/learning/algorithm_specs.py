"""Algorithms named by a short string, as the command lines and benchmark
tables write them: ``"tbptt:50"`` is truncated BPTT with k = 50,
``"low_rank_d_rtrl:4"`` low-rank D-RTRL of rank 4, ``"es_d_rtrl:adaptive"``
ES-D-RTRL with modal decays. A suffix is either a count (``COUNTS``: the
option it sets) or a named variant (``VARIANTS``: the options it sets);
adding one is a line in these tables.
"""
from __future__ import annotations

# name:N -> {option: N}; the letter messages write for N, what it is, an example
COUNTS = {"tbptt": ("k", "K", "a positive number of steps", 50),
          "low_rank_d_rtrl": ("rank", "R", "the rank, a positive integer", 4)}
VARIANTS = {"es_d_rtrl": {"adaptive": {"adaptive": True}, "layers": {"through_layers": True}},
            "e_prop": {"random": {"feedback": "random"}}}   # name:variant -> its options


def suffixes() -> list[str]:
    """Every accepted form with a suffix, for error messages."""
    return ([f"{n}:{c[1]}" for n, c in COUNTS.items()]
            + [f"{n}:{v}" for n in VARIANTS for v in VARIANTS[n]])


def parse_spec(spec: str, known) -> tuple[str, dict]:
    """(name, options) of ``spec``: ``"tbptt:50"`` -> ("tbptt", {"k": 50});
    ``"e_prop:random"`` -> ("e_prop", {"feedback": "random"}); a plain name
    -> (name, {}). ``known``: the algorithm names there are."""
    name, colon, suffix = spec.partition(":")
    if name not in known:
        raise ValueError(f"algorithm {spec!r}: unknown; choose from {sorted(known)} "
                         "(truncated BPTT as tbptt:K)")
    if not colon:
        return name, {}
    if name in COUNTS:
        option, letter, what, example = COUNTS[name]
        if not suffix.isdigit() or int(suffix) < 1:
            raise ValueError(f"algorithm {spec!r}: write it as {name}:{letter} with {letter} "
                             f"{what} (its option {option!r}), e.g. {name}:{example}")
        return name, {option: int(suffix)}
    if name in VARIANTS:
        if suffix not in VARIANTS[name]:
            raise ValueError(f"algorithm {spec!r}: {name}'s variants are "
                             + ", ".join(f"{name}:{v}" for v in VARIANTS[name]))
        return name, dict(VARIANTS[name][suffix])
    raise ValueError(f"algorithm {spec!r}: only " + ", ".join(suffixes())
                     + " take a ':' suffix")
