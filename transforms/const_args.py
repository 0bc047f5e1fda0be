"""``jax.jit`` with the function's large closed-over arrays passed as arguments.

A model that closes over arrays (the index arrays of sparse connectivity,
``segment_sum(W * s[pre], post)``, a fixed mask, a feedback matrix) puts them
in the traced program as constants, and ``jax.jit`` writes constants into the
compiled program as literals: at 10^8 synapses that is gigabytes of HLO
text, a slow compile, constant folding over the whole array, and a second
copy of every index array inside the executable. ``jit_const_args(fn)``
traces ``fn`` once per input signature (``jax.make_jaxpr``), and compiles the
traced program with every constant of at least ``min_bytes`` as an argument
instead: the compiled program holds no large literal, and the arrays stay
where they were, shared by every compiled function that reads them.

    step = jit_const_args(learner_step, donate_argnums=0)
    state, out = step(state, x)               # as jax.jit(learner_step)
    step.lower(state, x).compile().memory_analysis()

Behaves as ``jax.jit`` otherwise: cached per input shapes and dtypes,
composes with ``jax.vmap`` / ``jax.grad`` / an enclosing ``jax.jit``, donates
the buffers of ``donate_argnums``. Inputs placed on several devices get the
hoisted arrays replicated on those devices once, not copied on every call.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from transforms.ir.trace import evaluate

MIN_BYTES = 64 * 1024
"""Constants from this size up become arguments; smaller ones stay literals
(XLA folds those, and they cost nothing to compile)."""


class _Entry(NamedTuple):
    jitted: Any            # jax.jit of (hoisted constants, *flat inputs) -> flat outputs
    hoisted: list          # the hoisted constants
    out_tree: Any


class _Lowered:
    """A lowered program that takes the hoisted constants as arguments."""

    def __init__(self, lowered, entry: _Entry, hoisted):
        self._lowered, self._entry, self._hoisted = lowered, entry, hoisted

    def compile(self, *args, **kwargs):
        return _Compiled(self._lowered.compile(*args, **kwargs), self._entry, self._hoisted)

    def __getattr__(self, attr):
        return getattr(self._lowered, attr)


class _Compiled:
    """A compiled executable called like the original function."""

    def __init__(self, compiled, entry: _Entry, hoisted):
        self._compiled, self._entry, self._hoisted = compiled, entry, hoisted

    def __call__(self, *args, **kwargs):
        flat = jax.tree_util.tree_leaves((args, kwargs))
        out = self._compiled(self._hoisted, *flat)
        return jax.tree_util.tree_unflatten(self._entry.out_tree, out)

    def __getattr__(self, attr):
        return getattr(self._compiled, attr)


class ConstArgsJit:
    """A jitted function whose large closed-over constants are arguments
    (see the module docstring); make one with ``jit_const_args``."""

    def __init__(self, fn: Callable, donate_argnums=(), min_bytes: int = MIN_BYTES):
        self._fn = fn
        self._donate = (donate_argnums,) if isinstance(donate_argnums, int) \
            else tuple(donate_argnums)
        self._min_bytes = min_bytes
        self._entries: dict = {}
        self._placed: dict = {}    # (signature, mesh) -> hoisted constants placed there
        self.__doc__ = getattr(fn, "__doc__", None)
        self.__wrapped__ = fn

    def __call__(self, *args, **kwargs):
        entry, flat, key = self._entry(args, kwargs)
        out = entry.jitted(self._place(entry, flat, key), *flat)
        return jax.tree_util.tree_unflatten(entry.out_tree, out)

    def lower(self, *args, **kwargs):
        """``jax.jit(...).lower`` for these inputs: ``.compile()`` gives an
        executable called with the same arguments as this function (the
        hoisted constants are added), and ``.memory_analysis()``,
        ``.as_text()``... are the underlying program's."""
        entry, flat, key = self._entry(args, kwargs)
        hoisted = self._place(entry, flat, key)
        return _Lowered(entry.jitted.lower(hoisted, *flat), entry, hoisted)

    def eval_shape(self, *args, **kwargs):
        return jax.eval_shape(self, *args, **kwargs)

    def hoisted(self, *args, **kwargs) -> list:
        """The constants passed as arguments for inputs like these."""
        return list(self._entry(args, kwargs)[0].hoisted)

    def _cache_size(self) -> int:
        """Input signatures traced so far (as ``jax.jit``'s ``_cache_size``)."""
        return len(self._entries)

    # -- tracing -----------------------------------------------------------------
    def _entry(self, args, kwargs):
        flat, tree = jax.tree_util.tree_flatten((args, kwargs))
        key = (tree, tuple(jax.typeof(a) for a in flat), jax.config.read("jax_enable_x64"))
        entry = self._entries.get(key)
        if entry is None:
            entry = self._trace(tree, flat)
            if not any(isinstance(c, jax.core.Tracer) for c in entry.hoisted):
                self._entries[key] = entry     # a traced outer value is not kept
        return entry, flat, key

    def _trace(self, tree, flat) -> _Entry:
        out_tree = []

        def flat_fn(*leaves):
            a, kw = jax.tree_util.tree_unflatten(tree, leaves)
            out, t = jax.tree_util.tree_flatten(self._fn(*a, **kw))
            out_tree.append(t)
            return out

        closed = jax.make_jaxpr(flat_fn)(*flat)
        consts = list(closed.consts)
        big = [i for i, c in enumerate(consts) if self._hoist(c)]
        hoisted = [c if isinstance(c, jax.core.Tracer) else jax.numpy.asarray(c)
                   for c in (consts[i] for i in big)]
        jaxpr = closed.jaxpr

        def run(hoisted_now, *leaves):
            cs = list(consts)
            for i, c in zip(big, hoisted_now):
                cs[i] = c
            return evaluate(jaxpr, cs, leaves)

        for i in big:
            consts[i] = None            # held once, in ``hoisted``
        donate = self._flat_positions(tree, len(flat))
        jitted = jax.jit(run, donate_argnums=tuple(p + 1 for p in donate))
        return _Entry(jitted, hoisted, out_tree[0])

    def _hoist(self, c) -> bool:
        if isinstance(c, jax.core.Tracer):
            return True                 # a value of an enclosing trace: pass it in
        return np.ndim(c) > 0 and getattr(c, "nbytes", 0) >= self._min_bytes

    def _flat_positions(self, tree, n) -> list[int]:
        """Flat input positions of the leaves of the donated arguments."""
        args, _ = jax.tree_util.tree_unflatten(tree, list(range(n)))
        return [p for i in self._donate if i < len(args)
                for p in jax.tree_util.tree_leaves(args[i])]

    # -- placement ----------------------------------------------------------------
    def _place(self, entry: _Entry, flat, key) -> list:
        """The hoisted constants placed once on the devices of inputs that
        span several devices (else jit would copy them every call): a
        constant shaped like a split input is split the same way (a sparse
        layer's index arrays with its synapse weights, on a model mesh),
        the others are replicated."""
        placed = [a for a in flat if isinstance(a, jax.Array)
                  and not isinstance(a, jax.core.Tracer)
                  and isinstance(a.sharding, NamedSharding) and len(a.sharding.device_set) > 1]
        if not placed or not entry.hoisted:
            return entry.hoisted
        mesh = placed[0].sharding.mesh
        split = {}
        for a in placed:
            if a.sharding.mesh == mesh and any(s is not None for s in a.sharding.spec):
                split.setdefault(a.shape, a.sharding.spec)
        key = (key, mesh)
        if key not in self._placed:
            self._placed[key] = [
                jax.device_put(c, NamedSharding(mesh, split.get(c.shape, PartitionSpec())))
                if isinstance(c, jax.Array) and not isinstance(c, jax.core.Tracer)
                and len(c.sharding.device_set) == 1 else c for c in entry.hoisted]
        return self._placed[key]


def jit_const_args(fn: Callable, *, donate_argnums=(), min_bytes: int = MIN_BYTES) -> ConstArgsJit:
    """``jax.jit(fn, donate_argnums=...)`` with every closed-over constant of
    at least ``min_bytes`` passed as an argument of the compiled program
    instead of written into it as a literal."""
    return ConstArgsJit(fn, donate_argnums, min_bytes)
