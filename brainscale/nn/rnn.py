"""Rate-based recurrent cells (vanilla RNN, GRU, LSTM) as flax.nnx modules.

Each cell keeps its state as ``HiddenState`` arrays of shape ``(n_hidden,)``
and maps ``x`` of shape ``(n_in,)`` to the new ``h``. Every gate has its own
input weight, recurrent weight and bias Params, each used by exactly one
``@`` or ``+``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from brainscale.nn.state import HiddenState, default_float

__all__ = ["VanillaRNN", "GRU", "LSTM"]


class _Cell(nnx.Module):
    def _weights(self, rngs, gates, n_in, n_hidden, bias_init):
        w_in = jax.nn.initializers.lecun_normal()
        w_rec = jax.nn.initializers.orthogonal()
        for g in gates:
            setattr(self, f"W_i{g}", nnx.Param(w_in(rngs.params(), (n_in, n_hidden), default_float())))
            setattr(self, f"W_h{g}", nnx.Param(w_rec(rngs.params(), (n_hidden, n_hidden), default_float())))
            setattr(self, f"b_{g}", nnx.Param(jnp.full((n_hidden,), bias_init.get(g, 0.0), default_float())))

    def _pre(self, g, x, h):
        """``x @ W_ig + h @ W_hg + b_g``."""
        return x @ getattr(self, f"W_i{g}")[...] + h @ getattr(self, f"W_h{g}")[...] + getattr(self, f"b_{g}")[...]


class VanillaRNN(_Cell):
    """Elman cell. Hidden state: ``h``::

        h' = activation(x @ W_ih + h @ W_hh + b_h)
    """

    def __init__(self, n_in, n_hidden, *, rngs, activation=jnp.tanh):
        self.n_in, self.n_hidden = int(n_in), int(n_hidden)
        self.activation = activation
        self._weights(rngs, "h", self.n_in, self.n_hidden, {})
        self.h = HiddenState(jnp.zeros((self.n_hidden,), default_float()))

    def __call__(self, x):
        h = self.activation(self._pre("h", x, self.h[...]))
        self.h[...] = h
        return h


class GRU(_Cell):
    """Gated recurrent unit (Cho et al. 2014, PyTorch convention). Hidden
    state: ``h``::

        z  = sigmoid(x @ W_iz + h @ W_hz + b_z)
        r  = sigmoid(x @ W_ir + h @ W_hr + b_r)
        n  = tanh(x @ W_in + b_in + r * (h @ W_hn + b_hn))
        h' = (1 - z) * n + z * h
    """

    def __init__(self, n_in, n_hidden, *, rngs):
        self.n_in, self.n_hidden = int(n_in), int(n_hidden)
        self._weights(rngs, "zr", self.n_in, self.n_hidden, {})
        w_in = jax.nn.initializers.lecun_normal()
        w_rec = jax.nn.initializers.orthogonal()
        self.W_in = nnx.Param(w_in(rngs.params(), (self.n_in, self.n_hidden), default_float()))
        self.W_hn = nnx.Param(w_rec(rngs.params(), (self.n_hidden, self.n_hidden), default_float()))
        self.b_in = nnx.Param(jnp.zeros((self.n_hidden,), default_float()))
        self.b_hn = nnx.Param(jnp.zeros((self.n_hidden,), default_float()))
        self.h = HiddenState(jnp.zeros((self.n_hidden,), default_float()))

    def __call__(self, x):
        h = self.h[...]
        z = jax.nn.sigmoid(self._pre("z", x, h))
        r = jax.nn.sigmoid(self._pre("r", x, h))
        n = jnp.tanh(x @ self.W_in[...] + self.b_in[...]
                     + r * (h @ self.W_hn[...] + self.b_hn[...]))
        h = (1.0 - z) * n + z * h
        self.h[...] = h
        return h


class LSTM(_Cell):
    """Long short-term memory cell (forget bias initialised to 1). Hidden
    state: ``h`` and cell ``c``::

        i  = sigmoid(x @ W_ii + h @ W_hi + b_i)
        f  = sigmoid(x @ W_if + h @ W_hf + b_f)
        g  = tanh(x @ W_ig + h @ W_hg + b_g)
        o  = sigmoid(x @ W_io + h @ W_ho + b_o)
        c' = f * c + i * g;   h' = o * tanh(c')
    """

    def __init__(self, n_in, n_hidden, *, rngs):
        self.n_in, self.n_hidden = int(n_in), int(n_hidden)
        self._weights(rngs, "ifgo", self.n_in, self.n_hidden, {"f": 1.0})
        self.h = HiddenState(jnp.zeros((self.n_hidden,), default_float()))
        self.c = HiddenState(jnp.zeros((self.n_hidden,), default_float()))

    def __call__(self, x):
        h, c = self.h[...], self.c[...]
        i = jax.nn.sigmoid(self._pre("i", x, h))
        f = jax.nn.sigmoid(self._pre("f", x, h))
        g = jnp.tanh(self._pre("g", x, h))
        o = jax.nn.sigmoid(self._pre("o", x, h))
        c = f * c + i * g
        h = o * jnp.tanh(c)
        self.h[...] = h
        self.c[...] = c
        return h
