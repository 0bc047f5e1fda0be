"""Errors raised while compiling a time step.

Every error names what the compiler could not handle (the primitive), where it
is in the user's pytrees (the path), where it is in the user's code (file and
line), and what to do about it. All derive from ``CompileError``, a
``ValueError``, so callers can catch one type.
"""
from __future__ import annotations


class CompileError(ValueError):
    """A step function the compiler cannot turn into an online learner."""

    def __init__(self, message: str, *, primitive: str | None = None,
                 path: str | None = None, source: str | None = None,
                 hint: str | None = None):
        self.primitive = primitive
        self.path = path
        self.source = source
        self.hint = hint
        parts = [message]
        if primitive:
            parts.append(f"  primitive: {primitive}")
        if path:
            parts.append(f"  pytree path: {path}")
        if source:
            parts.append(f"  at: {source}")
        if hint:
            parts.append(f"  fix: {hint}")
        super().__init__("\n".join(parts))


class HiddenStructureError(CompileError):
    """The hidden state returned by the step does not match the one it read
    (a leaf read but not returned, a leaf added, or a shape/dtype change)."""


class UnsupportedWeightUseError(CompileError):
    """A parameter leaf reaches the computation through a primitive that is not
    a recognised weight op (dense, conv, elementwise scale, bias, sparse)."""


class NonElementwiseCouplingError(CompileError):
    """Hidden states coupled within each neuron do not share one neuron
    shape, or a weight op drives a population of another shape, so the
    per-neuron Jacobian blocks the traces rely on do not exist."""


class UnusedWeightError(CompileError):
    """A parameter leaf reaches no hidden state and no output: its gradient
    would silently be zero."""


class UnsupportedAlgorithmError(CompileError):
    """The chosen algorithm cannot handle a weight op of the graph (e.g. a
    grouped convolution under D-RTRL, a recurrent weight under OSTL)."""


class ShapeMismatchError(CompileError):
    """Runtime inputs do not have the shapes the learner was built for."""
