"""The hidden state seen as per-neuron state slots.

A hidden leaf may hold several states of each neuron: a state vector
``z`` of shape (N, 2) (resonate-and-fire), a delay line ``buf`` (D, N), a
complex membrane. The learners work on *slots*: arrays of the neuron shape,
one per state of a neuron. A real leaf with neuron axes A and state axes S
gives prod(S) slots (its state axes moved last and split); a complex leaf
gives its real and its imaginary part. A leaf without state axes is one slot
and passes through untouched. Integer leaves (counters) have no slots: no
gradient flows through them.

``split`` turns leaf values (tangents, cotangents) into slot values and
``join`` slot values back into leaves, both for any number of leading batch
axes.
"""
from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class LeafLayout:
    """How one hidden leaf holds its neurons' states. ``chunked`` lists axes
    that are k equal chunks (a (2N,) state holding v then a): each such
    axis is first reshaped to (k, N); ``neuron_axes`` and ``state_axes``
    count axes of that expanded shape."""
    shape: tuple                 # the leaf's per-sample shape
    dtype: object
    neuron_axes: tuple           # axes that index neurons
    state_axes: tuple            # axes that index states of one neuron
    complex: bool = False
    differentiable: bool = True  # False for integer leaves
    chunked: tuple = ()          # ((axis, k), ...)

    @property
    def expanded_shape(self) -> tuple:
        k = dict(self.chunked)
        out = []
        for a, n in enumerate(self.shape):
            out += [k[a], n // k[a]] if a in k else [n]
        return tuple(out)

    @property
    def neuron_shape(self):
        return tuple(self.expanded_shape[a] for a in self.neuron_axes)

    @property
    def state_shape(self):
        return tuple(self.expanded_shape[a] for a in self.state_axes)

    @property
    def n_slots(self) -> int:
        if not self.differentiable:
            return 0
        return math.prod(self.state_shape) * (2 if self.complex else 1)

    @property
    def plain(self) -> bool:
        return (self.differentiable and not self.state_axes and not self.complex
                and not self.chunked)


@dataclasses.dataclass(frozen=True)
class HiddenView:
    layouts: tuple               # per hidden leaf
    first_slot: tuple            # per hidden leaf: index of its first slot

    @classmethod
    def build(cls, layouts):
        first, n = [], 0
        for lay in layouts:
            first.append(n)
            n += lay.n_slots
        return cls(tuple(layouts), tuple(first))

    @property
    def n_slots(self) -> int:
        return sum(l.n_slots for l in self.layouts)

    def slots_of(self, j: int) -> list[int]:
        return list(range(self.first_slot[j], self.first_slot[j] + self.layouts[j].n_slots))

    def split(self, leaves, lead: int = 0) -> list:
        """Leaf values (with ``lead`` leading batch axes) -> slot values."""
        out = []
        for lay, v in zip(self.layouts, leaves):
            if not lay.differentiable:
                continue
            if lay.plain:
                out.append(v)
                continue
            v = jnp.reshape(v, v.shape[:lead] + lay.expanded_shape)
            perm = tuple(range(lead)) + tuple(lead + a for a in lay.neuron_axes + lay.state_axes)
            v = jnp.transpose(v, perm)
            v = jnp.reshape(v, v.shape[:lead + len(lay.neuron_axes)] + (-1,))
            parts = [v[..., k] for k in range(v.shape[-1])]
            if lay.complex:     # the (re, im) of jax's cotangent convention are (re, -im)
                parts = [p.real for p in parts] + [p.imag for p in parts]
            out.extend(parts)
        return out

    def join(self, slots, like, lead: int = 0) -> list:
        """Slot values -> leaf values; ``like`` gives the leaves (for shapes,
        dtypes and the values of leaves without slots)."""
        out, pos = [], 0
        for lay, ref in zip(self.layouts, like):
            n = lay.n_slots
            if not lay.differentiable:
                out.append(ref)
                continue
            if lay.plain:
                out.append(slots[pos])
                pos += 1
                continue
            parts = slots[pos:pos + n]
            pos += n
            if lay.complex:
                half = n // 2
                parts = [re + 1j * im for re, im in zip(parts[:half], parts[half:])]
            v = jnp.stack(parts, axis=-1)
            batch = ref.shape[:lead]
            v = jnp.reshape(v, batch + lay.neuron_shape + lay.state_shape)
            order = lay.neuron_axes + lay.state_axes
            inv = [0] * len(order)
            for k, a in enumerate(order):
                inv[a] = k
            v = jnp.transpose(v, tuple(range(lead)) + tuple(lead + k for k in inv))
            out.append(jnp.reshape(v, batch + lay.shape).astype(ref.dtype))
        return out

    def cotangent_slots(self, cots, lead: int = 0) -> list:
        """Cotangents of the leaves (jax's convention for a complex leaf is
        dl/dre - i dl/dim) -> slot cotangents dl/d(slot)."""
        fixed = [jnp.conj(c) if lay.complex else c for lay, c in zip(self.layouts, cots)]
        return self.split(fixed, lead)
