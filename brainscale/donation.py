"""State donation: ``bs.online(..., donate=True)``.

With donation, ``step``, ``train_sequence`` and ``reset`` hand the buffers
of the state they are given to XLA, which writes the new state into them:
the old and the new parameters, optimizer state and traces never coexist,
and no fresh memory is touched for them, which at 10^8 synapses saves
gigabytes and the time to page them in. The state passed in is consumed:

    state, out, metrics = learner.step(state, x, y)   # rebind: the old state is gone

Reading a consumed state afterwards (another call with it, or one of its
arrays) is an error; the learner's calls say so in words before JAX would
fail with "Array has been deleted".
"""
from __future__ import annotations

import jax

__all__ = ["DonatedStateError", "check_live", "unshared"]


class DonatedStateError(ValueError):
    """A learner call got a state whose buffers an earlier call consumed."""


def _concrete_arrays(tree):
    return [a for a in jax.tree_util.tree_leaves(tree)
            if isinstance(a, jax.Array) and not isinstance(a, jax.core.Tracer)]


def check_live(state, where: str) -> None:
    """Raise ``DonatedStateError`` if any array of ``state`` was donated."""
    if any(a.is_deleted() for a in _concrete_arrays(state)):
        raise DonatedStateError(
            f"{where}the state was donated to an earlier call of this learner "
            "(bs.online(..., donate=True)) and its arrays are gone: pass the state "
            "that call returned (state, out, metrics = learner.step(state, x, y)), "
            "or make the learner with donate=False to keep every state usable")


def unshared(state):
    """``state`` with every array that appears more than once copied, so that
    no buffer is donated twice (XLA refuses that), e.g. one zeros array
    returned by a model's ``init`` for two hidden leaves."""
    seen: set[int] = set()

    def once(a):
        if not isinstance(a, jax.Array) or isinstance(a, jax.core.Tracer):
            return a
        if id(a) in seen:
            return a.copy()
        seen.add(id(a))
        return a
    return jax.tree.map(once, state)
