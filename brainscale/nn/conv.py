"""2-D convolution as a weight op, per sample, channels first.

``Conv2d`` maps one sample's feature map ``x`` of shape ``(C_in, H, W)`` to
``(C_out, H', W')`` by cross-correlation (no kernel flip), the convention
of PyTorch, snnTorch, sinabs and NIR, so a kernel travels between them
unchanged. As with every BrainScale module the batch is added with
``jax.vmap``. The op is one ``lax.conv_general_dilated``, which the
compiler recognises as a shared-weight op (one trace per neuron and patch
element for D-RTRL; exact on one feed-forward layer).

The shape helpers (``pair``, ``out_size``) are shared with the pooling
modules.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from brainscale.nn.state import default_float

__all__ = ["Conv2d", "pair", "out_size"]


def pair(value, name, minimum=1):
    """``value`` (an int or two ints) as a tuple ``(a, b)`` of ints >= ``minimum``."""
    try:
        arr = np.asarray(value, np.float64).reshape(-1)
    except (TypeError, ValueError):
        arr = np.zeros(0)
    if arr.size == 1:
        arr = np.repeat(arr, 2)
    if arr.size != 2 or not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)) \
            or arr.min() < minimum:
        raise ValueError(f"{name!r} must be an int or a pair of ints >= {minimum}, "
                         f"got {value!r}")
    return int(arr[0]), int(arr[1])


def out_size(n, k, stride, lo, hi, dilation=1):
    """Output length along one axis: ``floor((n + lo + hi - d (k - 1) - 1) / s) + 1``."""
    return (n + lo + hi - dilation * (k - 1) - 1) // stride + 1


class Conv2d(nnx.Module):
    """2-D convolution (cross-correlation) of one channels-first sample::

        y[o, i, j] = b[o] + sum_{c, p, q} W[o, c, p, q] *
                     x_pad[g(o) * C_in/groups + c, i s_h + p d_h, j s_w + q d_w]

    ``x`` is ``(C_in, H, W)``; ``W`` (``nnx.Param``) is
    ``(C_out, C_in / groups, kh, kw)`` (OIHW, as NIR and PyTorch store it);
    ``b`` (``nnx.Param``, ``use_bias=True``) is ``(C_out,)``; output channel
    ``o`` belongs to group ``g(o) = o // (C_out / groups)`` and sees only that
    group's input channels. ``x_pad`` is ``x`` padded with zeros:

    * ``padding=p`` or ``(p_h, p_w)``: that many zeros on both sides;
    * ``"valid"``: none;
    * ``"same"`` (``stride`` 1 only): ``d (k - 1)`` zeros in all per axis,
      ``floor`` of half before and the rest after (PyTorch's rule), so the
      output has the input's size.

    Output size per axis: ``floor((n + pad - d (k - 1) - 1) / s) + 1``
    (``output_shape``). ``w_init(key, shape, dtype)`` defaults to LeCun
    normal over the fan-in ``C_in / groups * kh * kw``; initial weights are
    multiplied by ``scale``. No hidden state. The online learners train
    ``W`` and ``b``; D-RTRL refuses a grouped convolution (``groups > 1``)
    and says what to use instead.
    """

    def __init__(self, in_channels, out_channels, kernel_size, *, rngs, stride=1, padding=0,
                 dilation=1, groups=1, use_bias=False, w_init=None, scale=1.0):
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.groups = int(groups)
        if self.groups < 1 or self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} and "
                             f"out_channels={out_channels}")
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.dilation = pair(dilation, "dilation")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"padding must be 'same', 'valid', an int or a pair, "
                                 f"got {padding!r}")
            if padding == "same" and self.stride != (1, 1):
                raise ValueError("padding='same' needs stride 1 (the output would not have "
                                 "the input's size)")
            self.padding = padding
        else:
            self.padding = pair(padding, "padding", minimum=0)
        self.pads = self._pads()
        shape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        w_init = (jax.nn.initializers.lecun_normal(in_axis=1, out_axis=0)
                  if w_init is None else w_init)
        w = w_init(rngs.params(), shape, default_float())
        self.W = nnx.Param(jnp.asarray(w * scale if scale != 1 else w, default_float()))
        self.b = (nnx.Param(jnp.zeros((self.out_channels,), default_float()))
                  if use_bias else None)

    def _pads(self):
        """``((lo_h, hi_h), (lo_w, hi_w))`` zeros added around the map."""
        if self.padding == "valid":
            return ((0, 0), (0, 0))
        if self.padding == "same":
            total = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size)]
            return tuple((t // 2, t - t // 2) for t in total)
        return tuple((p, p) for p in self.padding)

    def output_shape(self, input_shape):
        """``(C_out, H', W')`` for an input of shape ``(C_in, H, W)``; a
        ``ValueError`` if the channels differ or the map is too small."""
        shape = tuple(int(n) for n in input_shape)
        if len(shape) != 3 or shape[0] != self.in_channels:
            raise ValueError(f"Conv2d takes (C_in={self.in_channels}, H, W) per sample, "
                             f"got {shape}")
        hw = tuple(out_size(n, k, s, lo, hi, d) for n, k, s, (lo, hi), d in
                   zip(shape[1:], self.kernel_size, self.stride, self.pads, self.dilation))
        if min(hw) < 1:
            raise ValueError(f"Conv2d: input {shape} is smaller than the dilated kernel "
                             f"{self.kernel_size} (dilation {self.dilation})")
        return (self.out_channels,) + hw

    def __call__(self, x):
        if x.ndim != 3:
            raise ValueError(f"Conv2d takes one sample (C_in, H, W), got shape {x.shape}; "
                             "use jax.vmap for a batch")
        y = jax.lax.conv_general_dilated(
            x[None], self.W[...], window_strides=self.stride, padding=self.pads,
            rhs_dilation=self.dilation, feature_group_count=self.groups,
            dimension_numbers=("NCHW", "OIHW", "NCHW"))[0]
        return y + self.b[...][:, None, None] if self.b is not None else y
