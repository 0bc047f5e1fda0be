"""What a learner's public calls check before they run (``check=True``).

Static checks, also under a caller's ``jax.jit``: every input leaf has the
batch (and time) axes of the state, the step function accepts the
per-sample input shape (else the error names the shape, not the line inside
the user's step where JAX failed), labels have the leading (T, B) / (B,)
shape of the inputs, and a class loss (``cross_entropy``) gets integer
labels. Value checks, on concrete arrays only (one jitted reduction and a
few scalars to the host): NaN or inf in the inputs or float targets, class
labels outside [-1, n_classes) (-1 means "no loss at this step"; any other
negative label is an error). Each error names the argument, its pytree
path, the time step and the sample.

A model is written for one sample; the learner adds the batch axis. So
``init`` probes the model with the per-sample slice ``example_x[0]``, and a
model that rejects it (e.g. ``init`` was given a whole sequence, or one
unbatched sample) fails with an error that says so, not with the JAX error
from deep inside the step (a broadcast or concatenate shape error).
"""
from __future__ import annotations

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np

from brainscale import donation
from brainscale.losses import cross_entropy
from transforms.const_args import jit_const_args
from transforms.errors import CompileError, ShapeMismatchError

__all__ = ["CheckedCall", "checked", "check_batch_axis", "check_call", "per_sample_init",
           "CLASS_LOSSES", "PER_SAMPLE"]

CLASS_LOSSES = (cross_entropy,)       # losses whose target is an integer class per step
PER_SAMPLE = ("the model is written with per-sample shapes (one sample, no batch axis) and "
              "the learner adds the batch axis: init and step take x of shape (B, ...), "
              "e.g. xs[0]; train_sequence, sequence_grad and predict take xs of shape "
              "(T, B, ...)")


class CheckedCall:
    """A learner's public call: inputs and labels checked (``check``), then
    the jitted method ``_<name>`` (whose ``lower``, ``eval_shape``... it
    exposes, and whose docstring it carries). Jitted with the model's large
    closed-over arrays as arguments (``transforms.const_args``); a call that
    returns the state consumes the one it is given when the learner donates
    (``brainscale.donation``)."""

    def __init__(self, learner, name, time_axis=True, returns_state=False):
        self._learner, self._name, self._time_axis = learner, name, time_axis
        method = getattr(learner, "_" + name)
        self.__doc__ = method.__doc__
        self._signature = inspect.signature(method)
        self._donate = returns_state and learner.donate
        self._jitted = jit_const_args(method, donate_argnums=0 if self._donate else ())

    def __call__(self, *args, **kwargs):
        if self._learner.check or self._learner.donate:
            bound = self._signature.bind(*args, **kwargs).arguments
            state, x, *y = bound.values()
            if self._learner.donate:
                donation.check_live(state, f"{self._name}: ")
            if self._learner.check:
                check_call(self._learner, state, x, y[0] if y else None,
                           time_axis=self._time_axis, where=f"{self._name}: ")
            if self._donate:
                bound["state"] = donation.unshared(state)
                return self._jitted(*bound.values())
        return self._jitted(*args, **kwargs)

    def __getattr__(self, attr):
        return getattr(self._jitted, attr)


class checked:
    """Class attribute ``step = checked(_step, time_axis=False)``: on an
    instance, the ``CheckedCall`` of ``_step`` (made once per learner); on
    the class, this descriptor, documented with ``_step``'s docstring.
    ``returns_state``: the call returns a new state (donation applies)."""

    def __init__(self, method, time_axis=True, returns_state=False):
        self.__doc__, self._time_axis = method.__doc__, time_axis
        self._returns_state = returns_state

    def __set_name__(self, owner, name):
        self._name = name

    def __get__(self, learner, owner=None):
        if learner is None:
            return self
        calls = learner.__dict__.setdefault("_checked_calls", {})
        if self._name not in calls:
            calls[self._name] = CheckedCall(learner, self._name, self._time_axis,
                                            self._returns_state)
        return calls[self._name]

    def __set__(self, learner, value):
        raise AttributeError(f"the learner's {self._name} is fixed; make a new learner")


def check_batch_axis(state, x, time_axis=False) -> None:
    """Every leaf of ``x`` has the state's batch size B on its batch axis
    (axis 1 under a time axis); checked even with ``check=False``."""
    hidden = jax.tree_util.tree_leaves(state.hidden)
    if not hidden:
        raise ShapeMismatchError("the state has no batched hidden leaf to read the batch "
                                 "size from", hint="give the model a hidden state")
    B = int(jnp.shape(hidden[0])[0])
    lead = 1 if time_axis else 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(x)[0]:
        if jnp.ndim(leaf) <= lead or jnp.shape(leaf)[lead] != B:
            want = "(T, B, ...)" if time_axis else "(B, ...)"
            raise ShapeMismatchError(
                f"input leaf has shape {jnp.shape(leaf)}, expected {want} with B = {B} "
                "(the batch size the state was initialised with)",
                path="x" + jax.tree_util.keystr(path),
                hint="re-initialise the learner with a batch of this size, or pad the batch")


def per_sample_init(learner, rng, example_x):
    """``(params, hidden0, x0)``: ``learner.model.init(rng, x0)`` on the
    per-sample ``x0 = example_x[0]``, with the step probed on ``x0``; a model
    that rejects it gets an error naming the per-sample shape (``PER_SAMPLE``)."""
    leaves = jax.tree_util.tree_leaves(example_x)
    if not leaves or any(jnp.ndim(a) == 0 for a in leaves):
        raise ShapeMismatchError(
            "init: example_x needs a leading batch axis, got shapes "
            f"{jax.tree.map(jnp.shape, example_x)}", hint=PER_SAMPLE)
    x0 = jax.tree.map(_first_sample, example_x)
    try:
        params, hidden0 = learner.model.init(rng, x0)
    except CompileError:
        raise
    except Exception as e:                  # noqa: BLE001 - re-raised with the shapes
        if not _about_shapes(e):
            raise
        raise _per_sample_error("init: ", "example_x without its batch axis", x0, e,
                                "the model's init") from None
    spec = lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a))
    _step_output(learner, jax.tree.map(spec, params), jax.tree.map(spec, hidden0),
                 jax.tree.map(spec, x0), "example_x without its batch axis", "init: ")
    return params, hidden0, x0


def _first_sample(a):
    """``a[0]``, sliced on the host for a concrete array (an eager slice of a
    new shape would compile a program of its own)."""
    if isinstance(a, jax.core.Tracer):
        return jnp.asarray(a)[0]
    return jnp.asarray(np.asarray(a)[0])


def _per_sample_error(where, what_x, x0, e, what="the step function"):
    """The error for a model that fails on the per-sample input ``x0``."""
    shapes = jax.tree.map(jnp.shape, x0)
    first = str(e).strip().splitlines()[0].rstrip(".") if str(e).strip() else ""
    return ShapeMismatchError(
        f"{where}{what} does not accept inputs of per-sample shape {shapes} "
        f"({what_x}): {type(e).__name__}: {first}. "
        f"Note: {PER_SAMPLE}",
        hint="give inputs of the shape the model was initialised with, with the batch "
             "(and time) axes in front; write the model for one sample")


def _about_shapes(e: Exception) -> bool:
    """Whether JAX refused the step for its input shapes (then the per-sample
    note helps) rather than the step having a bug of its own."""
    text = str(e).lower()
    return isinstance(e, (TypeError, ValueError, IndexError)) and any(
        w in text for w in ("shape", "dimension", "broadcast", "rank", "axis", "size"))


def _concrete(tree) -> bool:
    return not any(isinstance(a, jax.core.Tracer) for a in jax.tree_util.tree_leaves(tree))


def _lead(shape, n):
    return tuple(shape[:n])


def check_call(learner, state, x, y=None, time_axis=True, where="") -> None:
    """Raise a ``ValueError`` (``ShapeMismatchError`` for shapes) naming the
    argument, path, step and sample of the first bad entry of ``x`` / ``y``."""
    hidden = jax.tree_util.tree_leaves(state.hidden)
    if not hidden:
        raise ShapeMismatchError(f"{where}the state has no batched hidden leaf to read the "
                                 "batch size from", hint="give the model a hidden state")
    B = hidden[0].shape[0]
    n = 2 if time_axis else 1
    xname, yname = ("xs", "ys") if time_axis else ("x", "y")
    xl = jax.tree_util.tree_flatten_with_path(x)[0]
    if not xl:
        raise ShapeMismatchError(f"{where}{xname} holds no arrays")
    lead = _lead(jnp.shape(xl[0][1]), n)
    want = "(T, B, ...)" if time_axis else "(B, ...)"
    for path, a in xl:
        name = xname + jax.tree_util.keystr(path)
        if jnp.ndim(a) < n or _lead(jnp.shape(a), n) != lead or lead[-1] != B:
            raise ShapeMismatchError(
                f"{where}{name} has shape {jnp.shape(a)}, expected {want} with B = {B} (the "
                "batch size the state was initialised with) and one T for every leaf",
                hint="re-initialise the learner with a batch of this size, or pad the batch")
        dt = jnp.result_type(a)
        if not (jnp.issubdtype(dt, jnp.number) or dt == jnp.bool_):
            raise ValueError(f"{where}{name} has dtype {jnp.result_type(a)}, expected numbers")
    out = _per_sample_output(learner, state, x, n, xname, where)
    class_loss = learner.loss in CLASS_LOSSES
    if y is not None:
        n_labels = len(jax.tree_util.tree_leaves(y))
        for path, a in jax.tree_util.tree_flatten_with_path(y)[0]:
            name = yname + jax.tree_util.keystr(path)
            if _lead(jnp.shape(a), n) != lead:
                raise ShapeMismatchError(f"{where}{name} has shape {jnp.shape(a)}, expected "
                                         f"leading axes {lead} to match {xname}")
            if class_loss and not jnp.issubdtype(jnp.result_type(a), jnp.integer):
                raise ValueError(f"{where}{name} has dtype {jnp.result_type(a)}: "
                                 "cross_entropy takes integer class labels (-1: no loss)")
            per_label = tuple(jnp.shape(a)[n:])
            per_out = tuple(getattr(out, "shape", ()))[:-1]
            if class_loss and n_labels == 1 and per_label != per_out:
                raise ShapeMismatchError(
                    f"{where}{name} has shape {jnp.shape(a)}: cross_entropy takes one integer "
                    f"class label per output, shape {lead + per_out} (the model's output "
                    f"{lead + tuple(getattr(out, 'shape', ()))} without its class axis)",
                    hint="one-hot labels: pass their argmax over the class axis")
    if not (_concrete(x) and _concrete(y)):
        return                      # under the caller's jit: the shapes were checked
    fl = [(xname + jax.tree_util.keystr(p), a) for p, a in xl
          if jnp.issubdtype(jnp.result_type(a), jnp.inexact) and np.size(a)]
    yl = [(yname + jax.tree_util.keystr(p), a)
          for p, a in jax.tree_util.tree_flatten_with_path(y)[0] if np.size(a)] \
        if y is not None else []
    yf = [(nm, a) for nm, a in yl if jnp.issubdtype(jnp.result_type(a), jnp.inexact)]
    shape = tuple(getattr(out, "shape", ()))
    n_classes = int(shape[-1]) if shape else 1
    labels = yl if class_loss else []
    floats, ints = [a for _, a in fl + yf], [a for _, a in labels]
    bad = _first_bad_host if all(map(_on_host, floats + ints)) else _first_bad
    firsts = bad(floats, ints, n_classes)
    if isinstance(firsts, jax.core.Tracer):
        return                      # constants under the caller's jit: values are not known
    firsts = np.asarray(firsts)
    for (nm, a), i in zip(fl + yf, firsts):
        if i >= 0:
            raise ValueError(f"{where}{nm} holds NaN or inf, first at {_at(a, int(i), n)}")
    for (nm, a), i in zip(labels, firsts[len(fl + yf):]):
        if i >= 0:
            v = int(np.asarray(a).reshape(-1)[int(i)])
            raise ValueError(
                f"{where}{nm}: label {v} at {_at(a, int(i), n)} is outside [-1, {n_classes}): "
                f"the model has {n_classes} outputs (classes 0..{n_classes - 1}; -1 = no "
                "loss at this step)")


def _per_sample_output(learner, state, x, n, xname, where):
    """The step's output for one sample (shapes only, cached by the shapes
    like a jit); a step that rejects the input shape is named by that shape."""
    spec = lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a))
    x0 = jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a)[n:], jnp.result_type(a)), x)
    return _step_output(learner, jax.tree.map(spec, state.params),
                        jax.tree.map(spec, state.hidden0), x0,
                        f"{xname} without its leading axes", where)


def _step_output(learner, params, hidden0, x0, xname, where):
    """First output leaf of ``model.apply`` on per-sample shape specs,
    cached in ``learner.checked_shapes``."""
    args = (params, hidden0, x0)
    key = tuple((jax.tree_util.tree_structure(t), tuple(jax.tree_util.tree_leaves(t)))
                for t in args)
    cache = learner.checked_shapes
    if key in cache:
        return cache[key]
    try:
        _, out = jax.eval_shape(learner.model.apply, *args)
    except CompileError:
        raise
    except Exception as e:                  # noqa: BLE001 - re-raised with the shapes
        if not _about_shapes(e):
            raise                           # a bug in the step: its own error and traceback
        raise _per_sample_error(where, xname, x0, e) from None
    leaves = jax.tree_util.tree_leaves(out)
    cache[key] = leaves[0] if leaves else jax.ShapeDtypeStruct((), jnp.float32)
    return cache[key]


def _at(a, flat_index, n):
    idx = np.unravel_index(flat_index, np.shape(a))
    parts = (["time step t=%d" % idx[0], "sample b=%d" % idx[1]] if n == 2
             else ["sample b=%d" % idx[0]])
    rest = tuple(int(i) for i in idx[n:])
    return ", ".join(parts) + (f", element {rest}" if rest else "")


def _on_host(a) -> bool:
    """A numpy array, or a concrete jax array on CPU devices only."""
    if isinstance(a, np.ndarray):
        return True
    return isinstance(a, jax.Array) and not isinstance(a, jax.core.Tracer) and all(
        d.platform == "cpu" for d in a.devices())


def _first_bad_host(floats, labels, n_classes):
    """``_first_bad`` in numpy, for arrays already in host memory: no program
    to compile on a learner's first call."""
    def first(bad):
        bad = bad.reshape(-1)
        return int(np.argmax(bad)) if bad.any() else -1
    out = [first(~np.isfinite(np.asarray(a))) for a in floats]
    out += [first((np.asarray(a) < -1) | (np.asarray(a) >= n_classes)) for a in labels]
    return np.asarray(out, np.int64)


@functools.partial(jax.jit, static_argnums=2)
def _first_bad(floats, labels, n_classes):
    """Per array, the flat index of its first bad entry (-1: none): NaN or
    inf in ``floats``, outside [-1, n_classes) in ``labels``. One dispatch."""
    def first(bad):
        bad = bad.reshape(-1)
        return jnp.where(bad.any(), jnp.argmax(bad), -1)
    out = [first(~jnp.isfinite(a)) for a in floats]
    out += [first((a < -1) | (a >= n_classes)) for a in labels]
    return jnp.stack(out) if out else jnp.zeros(0, jnp.int32)
