"""Weight ops and projections between populations.

``Linear`` (dense, ``x @ W``) and ``SparseLinear`` (fixed random
connectivity, ``segment_sum(W * x[pre_idx], post_idx)``) are the weight ops
the compiler recognises. ``AlignPost`` and ``AlignPre`` wire a weight op, a
synapse and a postsynaptic neuron together; ``Recurrent`` is the common
recurrent spiking layer.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from brainscale.nn.state import HiddenState, default_float
from brainscale.nn.synapses import Delta

__all__ = ["Linear", "SparseLinear", "AlignPost", "AlignPre", "Recurrent"]


def _sign_array(dale, n):
    sign = np.asarray(dale, dtype=np.float32).reshape(-1)
    if sign.shape != (n,) or not np.all(np.abs(sign) == 1):
        raise ValueError(f"dale must hold +1/-1 for each of the {n} presynaptic neurons")
    return sign


class Linear(nnx.Module):
    """Dense weight op ``y = x @ W (+ b)``; ``W`` of shape ``(n_in, n_out)``.

    ``w_init(key, shape, dtype)`` defaults to LeCun normal
    (std ``1/sqrt(n_in)``); initial weights are multiplied by ``scale``. With
    ``dale`` (+1/-1 per presynaptic neuron) the op is
    ``x @ (|W| * sign[:, None])``. No hidden state.
    """

    def __init__(self, n_in, n_out, *, rngs, w_init=None, use_bias=False,
                 scale=1.0, dale=None):
        self.n_in, self.n_out = int(n_in), int(n_out)
        w_init = jax.nn.initializers.lecun_normal() if w_init is None else w_init
        w = w_init(rngs.params(), (self.n_in, self.n_out), default_float())
        self.W = nnx.Param(jnp.asarray(w * scale if scale != 1 else w, default_float()))
        self.b = nnx.Param(jnp.zeros((self.n_out,), default_float())) if use_bias else None
        self.sign = (nnx.Variable(jnp.asarray(_sign_array(dale, self.n_in)[:, None]))
                     if dale is not None else None)

    def weight(self):
        """The effective ``(n_in, n_out)`` matrix (Dale's law applied)."""
        w = self.W[...]
        return jnp.abs(w) * self.sign[...] if self.sign is not None else w

    def __call__(self, x):
        y = x @ self.weight()
        return y + self.b[...] if self.b is not None else y


class SparseLinear(nnx.Module):
    """Sparse weight op with fixed random connectivity::

        y = segment_sum(W * x[pre_idx], post_idx, num_segments=n_out)

    ``W`` (Param) has one value per synapse, shape ``(n_syn,)``;
    ``pre_idx``/``post_idx`` are non-trainable ``nnx.Variable`` constants
    drawn with numpy at construction, sorted by postsynaptic neuron. Give
    exactly one of ``prob`` (each pair connected independently) or ``fan_in``
    (each postsynaptic neuron gets ``fan_in`` distinct presynaptic ones).
    Initial values are normal with std ``w_init_std`` (default
    ``1/sqrt(mean in-degree)``). With ``dale`` (+1/-1 per presynaptic neuron)
    the values used are ``|W| * sign[pre_idx]``. No hidden state.

    ``compute="dense"`` keeps the same per-synapse parameters but scatters
    them into a dense ``(n_in, n_out)`` matrix each step and multiplies,
    ``y = x @ dense(W)``: on CPU a BLAS product beats a batched scatter-add
    by an order of magnitude while ``n_in * n_out`` is small (about 10^6);
    the compiler sees a dense op whose weight is a function of ``W``, and
    the gradient reaches ``W`` through that function (only the synapses
    that exist). ``"segment"`` (default) scales to 10^5 neurons.
    """

    def __init__(self, n_in, n_out, *, rngs, prob=None, fan_in=None,
                 w_init_std=None, seed=None, dale=None, compute="segment"):
        if (prob is None) == (fan_in is None):
            raise ValueError("give exactly one of prob or fan_in")
        if compute not in ("segment", "dense"):
            raise ValueError(f"compute must be 'segment' or 'dense', got {compute!r}")
        self.compute = compute
        self.n_in, self.n_out = int(n_in), int(n_out)
        if seed is None:
            seed = int(jax.random.randint(rngs.params(), (), 0, 2**31 - 1))
        rs = np.random.default_rng(seed)
        if fan_in is not None:
            fan_in = int(fan_in)
            if not 0 < fan_in <= self.n_in:
                raise ValueError(f"fan_in must be in 1..{self.n_in}")
            pre = np.stack([np.sort(rs.choice(self.n_in, fan_in, replace=False))
                            for _ in range(self.n_out)])
            post = np.repeat(np.arange(self.n_out), fan_in)
            pre = pre.reshape(-1)
        else:
            if not 0 < prob <= 1:
                raise ValueError("prob must be in (0, 1]")
            mask = rs.random((self.n_out, self.n_in)) < prob
            post, pre = np.nonzero(mask)  # row-major: sorted by post
        self.n_syn = int(pre.size)
        if self.n_syn == 0:
            raise ValueError("the connectivity has no synapse")
        std = (1.0 / np.sqrt(max(self.n_syn / self.n_out, 1.0))
               if w_init_std is None else float(w_init_std))
        w = jax.random.normal(rngs.params(), (self.n_syn,), default_float()) * std
        self.W = nnx.Param(w)
        self.pre_idx = nnx.Variable(jnp.asarray(pre, jnp.int32))
        self.post_idx = nnx.Variable(jnp.asarray(post, jnp.int32))
        self.sign = (nnx.Variable(jnp.asarray(_sign_array(dale, self.n_in)[pre]))
                     if dale is not None else None)

    def values(self):
        """The effective per-synapse weights (Dale's law applied)."""
        w = self.W[...]
        return jnp.abs(w) * self.sign[...] if self.sign is not None else w

    def __call__(self, x):
        if self.compute == "dense":
            return x @ self.to_dense()
        return jax.ops.segment_sum(self.values() * x[self.pre_idx[...]],
                                   self.post_idx[...], num_segments=self.n_out)

    def to_dense(self):
        """The equivalent dense ``(n_in, n_out)`` matrix."""
        return _coo_to_dense(self.values(), self.pre_idx[...], self.post_idx[...],
                             self.n_in, self.n_out)


@partial(jax.jit, static_argnums=(3, 4))
def _coo_to_dense(values, pre_idx, post_idx, n_in, n_out):
    return jnp.zeros((n_in, n_out), values.dtype).at[pre_idx, post_idx].add(values)


def _output_current(g, out, E, post):
    if out == "cuba":
        return g
    return g * (E - post.v[...])


def _check_out(out, E):
    if out not in ("cuba", "coba"):
        raise ValueError(f"out must be 'cuba' or 'coba', got {out!r}")
    if out == "coba" and E is None:
        raise ValueError("out='coba' needs a reversal potential E")


class AlignPost(nnx.Module):
    """Projection with postsynaptic synapse state::

        g = syn(comm(pre_spikes))            (syn on n_post neurons)
        I = g                    (out='cuba')
        I = g (E - v_post)       (out='coba', v_post = post.v)
        return post(I)

    Hidden state: that of ``syn`` and ``post``. ``syn=None`` means ``Delta``.
    """

    def __init__(self, comm, syn, post, *, out="cuba", E=None):
        _check_out(out, E)
        self.comm = comm
        self.syn = Delta() if syn is None else syn
        self.post = post
        self.out = out
        self.E = None if E is None else float(E)

    def __call__(self, pre_spikes):
        g = self.syn(self.comm(pre_spikes))
        return self.post(_output_current(g, self.out, self.E, self.post))


class AlignPre(nnx.Module):
    """Projection with presynaptic synapse state::

        g = comm(syn(pre_spikes))            (syn on n_pre neurons, e.g. STD/STP)
        I = g  or  g (E - v_post)            (out='cuba' / 'coba')
        return post(I)

    Hidden state: that of ``syn`` and ``post``. ``syn=None`` means ``Delta``.
    """

    def __init__(self, syn, comm, post, *, out="cuba", E=None):
        _check_out(out, E)
        self.syn = Delta() if syn is None else syn
        self.comm = comm
        self.post = post
        self.out = out
        self.E = None if E is None else float(E)

    def __call__(self, pre_spikes):
        g = self.comm(self.syn(pre_spikes))
        return self.post(_output_current(g, self.out, self.E, self.post))


class Recurrent(nnx.Module):
    """Recurrent spiking layer: one dense weight op on the input and the
    population's own spikes from the previous step. Hidden state: ``spk``
    (previous spikes, per neuron) plus that of ``syn`` and ``neuron``::

        I   = concatenate([x, spk]) @ W          W: (n_in + n_rec, n_rec)
        I   = syn(I)                             (if syn is given)
        s   = neuron(I);   spk' = s;   return s

    Input rows of ``W`` start as N(0, w_in_scale^2 / n_in), recurrent rows as
    N(0, w_rec_scale^2 / n_rec). With ``syn=None`` and a soft-reset ``LIF``
    this is the 'lif-delta' layer.
    """

    def __init__(self, n_in, n_rec, neuron, *, rngs, syn=None, w_in_scale=1.0,
                 w_rec_scale=1.0, use_bias=False):
        self.n_in, self.n_rec = int(n_in), int(n_rec)
        if getattr(neuron, "size", self.n_rec) != self.n_rec:
            raise ValueError(f"neuron has size {neuron.size}, expected {self.n_rec}")
        row_std = np.concatenate([
            np.full(self.n_in, w_in_scale / np.sqrt(self.n_in)),
            np.full(self.n_rec, w_rec_scale / np.sqrt(self.n_rec))]).astype(np.float32)

        def w_init(key, shape, dtype):
            return jax.random.normal(key, shape, dtype) * row_std[:, None]

        self.linear = Linear(self.n_in + self.n_rec, self.n_rec, rngs=rngs,
                             use_bias=use_bias, w_init=w_init)
        self.syn = syn
        self.neuron = neuron
        self.spk = HiddenState(jnp.zeros((self.n_rec,), default_float()))

    def __call__(self, x):
        current = self.linear(jnp.concatenate([x, self.spk[...]]))
        if self.syn is not None:
            current = self.syn(current)
        s = self.neuron(current)
        self.spk[...] = s
        return s
