"""The "lif-delta" benchmark network, and its learners written out by hand.

Network (the published library's own memory/speed benchmark model):
Bernoulli input 100 -> LIF 200 -> LIF 200 -> leaky readout 10. Each LIF layer
takes its input concatenated with its own previous spikes through one dense
op (weights + bias); tau_mem 10, threshold 1, soft reset, ReLU-shaped
surrogate ``max(0, 0.3 (1 - |u|))``; readout tau 10; cross-entropy against a
fixed label at every step, averaged over the T steps. Per step, per layer:

    s_prev = H(v - 1);  y = [x, s_prev] @ W + b
    v = (v - s_prev) exp(-dt/tau) + y;  s = H(v - 1)
    r = exp(-dt/tau_o) r + s2 @ W_out

``hand_grads`` computes BPTT, D-RTRL and ES-D-RTRL for it in plain JAX (one
``lax.scan``, traces spelled out): an independent reference for the compiled
learners and the speed floor they should approach. Online gradients follow
BrainScale's per-step form  g_t = dl_t/dtheta|_(h_{t-1}) + L_t . E_{t-1},
L_t = dl_t/dh_{t-1}.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from brainscale.model import StepModel
from brainscale.nn.surrogate import Triangle

N_IN, N_REC, N_OUT = 100, 200, 10
DECAY = math.exp(-1.0 / 10.0)          # tau_mem = tau_out = 10 steps, dt = 1
spike = Triangle(width=1.0, height=0.3)


def init_params(seed=0, n_in=N_IN, n_rec=N_REC, n_out=N_OUT, ff_scale=10.0, rec_scale=2.0):
    """Kaiming-normal weights (feed-forward rows scaled by ff_scale, recurrent
    rows by rec_scale, as in the reference benchmark), zero biases."""
    k = jax.random.split(jax.random.PRNGKey(seed), 5)

    def kaiming(key, fan_in, shape, scale):
        return jax.random.normal(key, shape) * scale * math.sqrt(2.0 / fan_in) / math.sqrt(2.0)

    def layer(k_ff, k_rec, n):
        w = jnp.concatenate([kaiming(k_ff, n, (n, n_rec), ff_scale),
                             kaiming(k_rec, n_rec, (n_rec, n_rec), rec_scale)])
        return {"w": w, "b": jnp.zeros(n_rec)}
    return {"l1": layer(k[0], k[1], n_in), "l2": layer(k[2], k[3], n_rec),
            "out": {"w": kaiming(k[4], n_rec, (n_rec, n_out), 1.0)}}


def _layer(p, v, x):
    s_prev = spike(v - 1.0)
    y = jnp.concatenate([x, s_prev]) @ p["w"] + p["b"]
    v = (v - s_prev) * DECAY + y
    return v, spike(v - 1.0)


def apply(params, hidden, x):
    v1, s1 = _layer(params["l1"], hidden["v1"], x)
    v2, s2 = _layer(params["l2"], hidden["v2"], s1)
    r = DECAY * hidden["r"] + s2 @ params["out"]["w"]
    return {"v1": v1, "v2": v2, "r": r}, r


def zero_hidden(n_rec=N_REC, n_out=N_OUT):
    return {"v1": jnp.zeros(n_rec), "v2": jnp.zeros(n_rec), "r": jnp.zeros(n_out)}


def model(params) -> StepModel:
    """The network as a BrainScale StepModel with the given initial params."""
    hidden = zero_hidden(params["l1"]["w"].shape[1], params["out"]["w"].shape[1])
    return StepModel(lambda rng, x: (params, hidden), apply)


def add_network_args(ap, T=100, B=32):
    """``--T``, ``--B`` and ``--size IN HIDDEN OUT`` (default 100 200 10)."""
    ap.add_argument("--T", type=int, default=T)
    ap.add_argument("--B", type=int, default=B)
    ap.add_argument("--size", type=int, nargs=3, default=[N_IN, N_REC, N_OUT],
                    metavar=("IN", "HIDDEN", "OUT"))


def es_setup(T, B, size, window=None, readout_paths=False, decay=0.99):
    """(learner, state, xs, ys): ES-D-RTRL with SGD on the network of
    ``size`` (IN, HIDDEN, OUT) and data of T steps, batch B."""
    import jax
    import optax

    import brainscale as bs

    n_in, n_rec, n_out = size
    params = init_params(0, n_in, n_rec, n_out)
    xs, ys = make_data(T, B, 1, n_in=n_in, n_out=n_out)
    learner = bs.online(model(params), bs.es_d_rtrl(decay=decay, window=window),
                        optimizer=optax.sgd(1e-3), readout_paths=readout_paths)
    return learner, learner.init(jax.random.PRNGKey(0), xs[0]), xs, ys


def make_data(T, B, seed=1, rate=0.05, n_in=N_IN, n_out=N_OUT):
    rng = np.random.RandomState(seed)
    xs = (rng.rand(T, B, n_in) < rate).astype(np.float32)
    labels = rng.randint(0, n_out, size=(B,)).astype(np.int32)
    return jnp.asarray(xs), jnp.asarray(np.broadcast_to(labels, (T, B)))


def _loss(out, label):
    return -jax.nn.log_softmax(out)[label]


def _batch_loss(params, hidden, x, y):
    """Mean loss over the batch; aux: new hidden, layer inputs, D per layer."""
    def one(h, xx, yy):
        h2, out = apply(params, h, xx)
        return _loss(out, yy), h2
    ls, h2 = jax.vmap(one)(hidden, x, y)
    return jnp.mean(ls), h2


def _layer_inputs_and_diag(params, hidden, x):
    """[x, s_prev] of each layer, s2 (the readout's input), D = dv_t/dv_{t-1}
    with the dense ops cut, decay (1 - spike'(v_{t-1} - 1)), and layer 2's
    surrogate slope spike'(v2_t - 1) = ds2_t/dv2_t."""
    def one(h, xx):
        s1p = spike(h["v1"] - 1.0)
        _, s1 = _layer(params["l1"], h["v1"], xx)
        s2p = spike(h["v2"] - 1.0)
        v2, s2 = _layer(params["l2"], h["v2"], s1)
        slope = jax.vmap(jax.grad(lambda u: spike(u - 1.0)))
        d1, d2 = DECAY * (1.0 - slope(h["v1"])), DECAY * (1.0 - slope(h["v2"]))
        return jnp.concatenate([xx, s1p]), jnp.concatenate([s1, s2p]), s2, d1, d2, slope(v2)
    return jax.vmap(one)(hidden, x)


def hand_grads(params, xs, ys, algorithm, decay=0.9, readout_paths=True):
    """Gradient of the mean per-step loss (and the losses) for one of
    "bptt", "d_rtrl", "es_d_rtrl", written without the compiler.

    ``readout_paths``: layer 2 also keeps a copy of its traces filtered by the
    readout's leak, X_t = kappa X_{t-1} + ds2_t/dW2 = kappa X_{t-1} + g2 o E_t
    (g2 the surrogate slope at v2_t - 1), and gains the term
    (dl_t/dr_{t-1} W_out^T) . X_{t-1}."""
    B = xs.shape[1]
    hidden0 = jax.tree.map(lambda h: jnp.broadcast_to(h, (B,) + h.shape),
                           zero_hidden(params["l1"]["w"].shape[1], params["out"]["w"].shape[1]))
    T = xs.shape[0]
    if algorithm == "bptt":
        def total(p):
            def body(h, inp):
                loss, h = _batch_loss(p, h, *inp)
                return h, loss
            _, losses = jax.lax.scan(body, hidden0, (xs, ys))
            return jnp.mean(losses), losses
        grads, losses = jax.grad(total, has_aux=True)(params)
        return grads, losses

    zeros = jax.tree.map(jnp.zeros_like, params)
    n1, n2 = params["l1"]["w"].shape[0], params["l2"]["w"].shape[0]
    H, C = params["l1"]["w"].shape[1], params["out"]["w"].shape[1]
    if algorithm == "d_rtrl":
        tr = {"E1": jnp.zeros((B, n1, H)), "E2": jnp.zeros((B, n2, H)), "Eo": jnp.zeros((B, H, C)),
              "b1": jnp.zeros((B, H)), "b2": jnp.zeros((B, H)),
              "X2": jnp.zeros((B, n2, H)), "Xb2": jnp.zeros((B, H))}
    else:
        tr = {"x1": jnp.zeros((B, n1)), "x2": jnp.zeros((B, n2)), "xo": jnp.zeros((B, H)),
              "xb": jnp.zeros((B,)), "f1": jnp.zeros((B, H)), "f2": jnp.zeros((B, H)),
              "xi2": jnp.zeros((B, H)), "n": jnp.zeros((), jnp.int32)}
    use_paths = 1.0 if readout_paths else 0.0

    def body(carry, inp):
        h, tr, g = carry
        x, y = inp
        (loss, h_new), vjp = jax.vjp(lambda p, hh: _batch_loss(p, hh, x, y), params, h)
        g_imm, L = vjp((jnp.ones(()), jax.tree.map(jnp.zeros_like, h_new)))
        xin1, xin2, s2, d1, d2, g2 = _layer_inputs_and_diag(params, h, x)
        L1, L2, Lr = L["v1"], L["v2"], L["r"]
        Lx = use_paths * (Lr @ params["out"]["w"].T)     # dl/dr_{t-1} through W_out, per neuron
        g = jax.tree.map(jnp.add, g, g_imm)
        if algorithm == "d_rtrl":
            g["l1"]["w"] += jnp.einsum("bo,bio->io", L1, tr["E1"])
            g["l1"]["b"] += jnp.einsum("bo,bo->o", L1, tr["b1"])
            g["l2"]["w"] += (jnp.einsum("bo,bio->io", L2, tr["E2"])
                             + jnp.einsum("bo,bio->io", Lx, tr["X2"]))
            g["l2"]["b"] += jnp.einsum("bo,bo->o", L2, tr["b2"]) + jnp.einsum("bo,bo->o", Lx, tr["Xb2"])
            g["out"]["w"] += jnp.einsum("bc,bnc->nc", Lr, tr["Eo"])
            E2 = d2[:, None, :] * tr["E2"] + xin2[:, :, None]
            b2 = d2 * tr["b2"] + 1.0
            tr = {"E1": d1[:, None, :] * tr["E1"] + xin1[:, :, None], "E2": E2,
                  "Eo": DECAY * tr["Eo"] + s2[:, :, None],
                  "b1": d1 * tr["b1"] + 1.0, "b2": b2,
                  "X2": DECAY * tr["X2"] + g2[:, None, :] * E2, "Xb2": DECAY * tr["Xb2"] + g2 * b2}
        else:
            a, n = decay, tr["n"].astype(params["l1"]["w"].dtype)
            scale = jnp.where(tr["n"] > 0, 1.0 / jnp.maximum(1.0 - a ** n, 1e-30), 0.0)
            c1, co = L1 * tr["f1"] * scale, Lr       # the readout's trace is exact: xo filtered by its leak
            c2 = (L2 * tr["f2"] + Lx * tr["xi2"]) * scale
            g["l1"]["w"] += tr["x1"].T @ c1
            g["l1"]["b"] += tr["xb"] @ c1
            g["l2"]["w"] += tr["x2"].T @ c2
            g["l2"]["b"] += tr["xb"] @ c2
            g["out"]["w"] += tr["xo"].T @ co
            f2 = a * d2 * tr["f2"] + (1 - a)
            tr = {"x1": a * tr["x1"] + xin1, "x2": a * tr["x2"] + xin2, "xo": DECAY * tr["xo"] + s2,
                  "xb": a * tr["xb"] + 1.0,
                  "f1": a * d1 * tr["f1"] + (1 - a), "f2": f2,
                  "xi2": DECAY * tr["xi2"] + g2 * f2,
                  "n": tr["n"] + 1}
        return (h_new, tr, g), loss

    (_, _, g), losses = jax.lax.scan(body, (hidden0, tr, zeros), (xs, ys))
    return jax.tree.map(lambda a: a / T, g), losses
