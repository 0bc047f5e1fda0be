"""NIR rules for spiking CNNs: ``Conv2d``, ``SumPool2d``, ``AvgPool2d``,
``Flatten`` and the ``IF`` neuron, both ways, as tables keyed by node type.

* ``IMPORT[nir type](key, node, dt, shape)`` builds the BrainScale module
  for the per-sample input ``shape``; ``STATEFUL`` lists the types that are
  neurons (they need ``dt``, a cycle is cut at their outputs, and their
  population has the shape of their input);
* ``EXPORT_WEIGHT`` / ``EXPORT_LAYER`` / ``EXPORT_NEURON`` map a BrainScale
  class to ``rule(exporter, module, path, *sources)``, which adds the node
  and returns its key (``nir_export._Exporter`` asks them before its own
  cases).

Semantics follow NIR (the ``nir`` package's node definitions), one sample
channels first ``(C, H, W)``:

* ``Conv2d``: PyTorch's cross-correlation, weight ``(out, in / groups, kh,
  kw)``; ``stride``, ``dilation`` and ``padding`` an int or a pair, or
  ``padding`` ``'valid'`` / ``'same'`` (stride 1: PyTorch's placement,
  ``floor`` of half the ``d (k - 1)`` zeros before); a bias always (zeros
  when the module has none; an all-zero bias is imported as no bias);
* ``SumPool2d`` / ``AvgPool2d``: window sums (averages over ``kh * kw``,
  padded zeros included) with ``kernel_size``, ``stride``, ``padding``;
* ``Flatten``: ``start_dim`` .. ``end_dim`` of the per-sample shape;
* ``IF``: ``dv/dt = r I`` stepped exactly with ``I`` held over the step,
  ``v' = v + r I dt``; fires on ``v > v_threshold``, resets to ``v_reset``;
  starts at ``v_reset`` (NIR stores no state).
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from brainscale.interop.nir_common import NIRExportError, NIRImportError, scalar, values
from brainscale.nn.conv import Conv2d, pair
from brainscale.nn.integrate_fire import IF
from brainscale.nn.pooling import AvgPool2d, Flatten, SumPool2d
from brainscale.nn.surrogate import Surrogate

__all__ = ["IMPORT", "STATEFUL", "EXPORT_WEIGHT", "EXPORT_LAYER", "EXPORT_NEURON",
           "declared_input"]

STATEFUL = ("IF",)


# -- import -------------------------------------------------------------------
def _field(key, node, name):
    if getattr(node, name, None) is None:
        raise NIRImportError(f"node {key!r} ({type(node).__name__}): field {name!r} is missing")
    return getattr(node, name)


def _pair(key, node, name, minimum=1):
    try:
        return pair(_field(key, node, name), name, minimum)
    except ValueError as e:
        raise NIRImportError(f"node {key!r} ({type(node).__name__}): field {e}") from None


def _int(key, node, name, minimum=None):
    raw = _field(key, node, name)
    arr = np.asarray(raw)
    ok = arr.size == 1 and arr.dtype.kind in "iuf" and float(arr.reshape(-1)[0]).is_integer()
    if not ok or (minimum is not None and int(arr.reshape(-1)[0]) < minimum):
        at_least = "" if minimum is None else f" >= {minimum}"
        raise NIRImportError(f"node {key!r} ({type(node).__name__}): field {name!r} must be "
                             f"one integer{at_least}, got {raw!r}")
    return int(arr.reshape(-1)[0])


def _padding(key, node, stride):
    raw = _field(key, node, "padding")
    if isinstance(raw, (bytes, np.bytes_)):
        raw = raw.decode()
    if isinstance(raw, (str, np.str_)):
        if str(raw) not in ("same", "valid"):
            raise NIRImportError(f"node {key!r} (Conv2d): field 'padding' {str(raw)!r} is "
                                 "not 'same', 'valid', an int or a pair")
        if raw == "same" and stride != (1, 1):
            raise NIRImportError(f"node {key!r} (Conv2d): field 'padding' 'same' with stride "
                                 f"{stride}: 'same' keeps the size only at stride 1 (PyTorch "
                                 "refuses it too); give the padding as ints")
        return str(raw)
    return _pair(key, node, "padding", minimum=0)


def _import_conv(key, node, dt, shape):
    w = values(key, node, "weight")
    if w.ndim != 4 or min(w.shape) < 1:
        raise NIRImportError(f"node {key!r} (Conv2d): field 'weight' of shape {w.shape} is "
                             "not (out, in / groups, kh, kw)")
    groups = _int(key, node, "groups", minimum=1)
    if w.shape[0] % groups:
        raise NIRImportError(f"node {key!r} (Conv2d): field 'groups' = {groups} does not "
                             f"divide the {w.shape[0]} output channels of 'weight'")
    stride = _pair(key, node, "stride")
    dilation = _pair(key, node, "dilation")
    padding = _padding(key, node, stride)
    bias = values(key, node, "bias").reshape(-1)
    if bias.size != w.shape[0]:
        raise NIRImportError(f"node {key!r} (Conv2d): field 'bias' has {bias.size} values for "
                             f"{w.shape[0]} output channels")
    conv = Conv2d(w.shape[1] * groups, w.shape[0], w.shape[2:], rngs=nnx.Rngs(0),
                  stride=stride, padding=padding, dilation=dilation, groups=groups,
                  use_bias=bool(np.any(bias != 0)), w_init=lambda k, s, d: jnp.asarray(w, d))
    if conv.b is not None:
        conv.b[...] = jnp.asarray(bias, conv.b[...].dtype)
    return conv


def _import_pool(cls):
    def rule(key, node, dt, shape):
        return cls(_pair(key, node, "kernel_size"), _pair(key, node, "stride"),
                   _pair(key, node, "padding", minimum=0))
    return rule


def _import_flatten(key, node, dt, shape):
    return Flatten(_int(key, node, "start_dim"), _int(key, node, "end_dim"))


def _import_if(key, node, dt, shape):
    r, v_th = scalar(key, node, "r", shape=shape), scalar(key, node, "v_threshold", shape=shape)
    v_reset = scalar(key, node, "v_reset", shape=shape)
    if not v_th > v_reset:
        raise NIRImportError(f"node {key!r} (IF): needs v_threshold > v_reset (got {v_th}, "
                             f"{v_reset})")
    return IF(shape, dt=dt, R=r, v_th=v_th, v_reset=v_reset, reset="hard",
              v_init=v_reset)


IMPORT = {"Conv2d": _import_conv, "SumPool2d": _import_pool(SumPool2d),
          "AvgPool2d": _import_pool(AvgPool2d), "Flatten": _import_flatten, "IF": _import_if}


def declared_input(node):
    """The per-sample input shape a node declares, or ``None``. NIR's
    ``Conv2d`` types its input with ``weight.shape[1]`` channels, which is
    ``in / groups``; the input it takes has ``in`` channels."""
    if type(node).__name__ == "Conv2d":
        spatial = getattr(node, "input_shape", None)
        if spatial is None:
            return None
        w = np.shape(node.weight)
        return (int(w[1]) * int(np.asarray(node.groups).reshape(-1)[0]),) + \
            tuple(int(n) for n in np.atleast_1d(spatial))
    declared = (getattr(node, "input_type", None) or {}).get("input")
    if declared is None:
        return None
    return tuple(int(n) for n in np.atleast_1d(np.asarray(declared)))


# -- export -------------------------------------------------------------------
def _where(path):
    return path or "(root)"


def _export_conv(ex, m, path, *sources):
    if m.groups != 1:
        raise NIRExportError(
            f"{_where(path)}: Conv2d with groups={m.groups}: NIR {ex.nir_version} types a "
            "Conv2d's input with "
            "weight.shape[1] = in / groups channels, so a grouped convolution's graph does "
            "not type-check when read back; use groups=1 to export")
    kh, kw = m.kernel_size
    if kh != kw:
        raise NIRExportError(
            f"{_where(path)}: Conv2d with a {kh} x {kw} kernel: NIR {ex.nir_version} works "
            "out a Conv2d's output size with weight.shape[2] along both axes, so a graph "
            "with kh != kw does not type-check when read back; use a square kernel")
    w = np.asarray(m.W[...], np.float64).copy()
    bias = (np.zeros(m.out_channels) if m.b is None else np.asarray(m.b[...], np.float64).copy())
    pad = m.padding if isinstance(m.padding, str) else np.array(m.padding)
    node = ex.nir.Conv2d(input_shape=None, weight=w, stride=np.array(m.stride), padding=pad,
                         dilation=np.array(m.dilation), groups=1, bias=bias)
    return ex.add(path, node, *sources)


def _export_pool(ex, m, path, *sources):
    cls = getattr(ex.nir, type(m).__name__)
    return ex.add(path, cls(kernel_size=np.array(m.kernel_size), stride=np.array(m.stride),
                            padding=np.array(m.padding)), *sources)


def _export_flatten(ex, m, path, *sources):
    return ex.add(path, ex.nir.Flatten(input_type=None, start_dim=m.start_dim,
                                       end_dim=m.end_dim), *sources)


def _export_if(ex, n, path, *sources):
    where = _where(path)
    if n.reset != "hard":
        raise NIRExportError(f"{where}: IF with reset='soft' (reset by subtraction): NIR's IF "
                             "resets to v_reset; use reset='hard' to export")
    if not isinstance(n.spike_fn, Surrogate):
        raise NIRExportError(f"{where}: spike_fn {type(n.spike_fn).__name__} is not a "
                             "brainscale Surrogate; NIR's IF fires with the Heaviside step "
                             "v > v_threshold")
    if not n.v_th > n.v_reset:
        raise NIRExportError(f"{where}: IF needs v_th > v_reset (got {n.v_th}, {n.v_reset})")
    ex.use_dt(path, n.dt)
    node = ex.nir.IF(r=np.full(n.shape, n.R), v_threshold=np.full(n.shape, n.v_th),
                     v_reset=np.full(n.shape, n.v_reset))
    return ex.add(path, node, *sources)


EXPORT_WEIGHT = {Conv2d: _export_conv}
EXPORT_LAYER = {SumPool2d: _export_pool, AvgPool2d: _export_pool, Flatten: _export_flatten}
EXPORT_NEURON = {IF: _export_if}
