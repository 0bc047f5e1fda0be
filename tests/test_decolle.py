"""DECOLLE: the rule on a 2-layer DecolleLayer network equals a hand-written
numpy DECOLLE step by step; it trains on spike-encoded digits above chance
by a measured margin; its state does not grow with T."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from brainscale.nn.decolle_layer import DecolleLayer
from brainscale.plasticity import plasticity
from gradcheck import float64
from transforms.plasticity.rules.decolle import decolle, local_readout

A, BETA, ARP, WRP = 0.9, 0.8, 0.65, 1.0


class Net(nnx.Module):
    def __init__(self, rngs, n_in=6, n1=8, n2=5, scale=3.0):
        kw = dict(rngs=rngs, alpha=A, beta=BETA, alpha_rp=ARP, w_rp=WRP, scale=scale)
        self.l1 = DecolleLayer(n_in, n1, **kw)
        self.l2 = DecolleLayer(n1, n2, **kw)

    def __call__(self, x):
        return self.l2(self.l1(x))


RULES = {"params['l1']['fc']['W']": decolle(optax.sgd(0.5), 3, seed=1),
         "params['l2']['fc']['W']": decolle(optax.sgd(0.5), 3, seed=2)}


def numpy_decolle(params, Gs, xs, ys, lr=0.5):
    """The equations of brainscale/nn/decolle_layer.py and the rule, in numpy."""
    W = [np.array(params[k]["fc"]["W"]) for k in ("l1", "l2")]
    b = [np.array(params[k]["fc"]["b"]) for k in ("l1", "l2")]
    T, B, _ = xs.shape
    Q = [np.zeros((B, W[0].shape[0])), np.zeros((B, W[1].shape[0]))]
    P = [q.copy() for q in Q]
    R = [np.zeros((B, W[0].shape[1])), np.zeros((B, W[1].shape[1]))]
    S = [r.copy() for r in R]
    for t in range(T):
        s_in = xs[t]
        grads = []
        for l in range(2):
            Q[l] = BETA * Q[l] + (1 - BETA) * s_in
            P[l] = A * P[l] + (1 - A) * Q[l]
            R[l] = ARP * R[l] - (1 - ARP) * WRP * S[l]
            U = P[l] @ W[l] + b[l] + R[l]
            S[l] = (U > 0).astype(float)
            slope = 1.0 / (10 * np.abs(U) + 1) ** 2
            logits = S[l] @ Gs[l]
            p = np.exp(logits - logits.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            err = p - np.eye(3)[ys[t]]
            grads.append(P[l].T @ ((err @ Gs[l].T) * slope) / B)
            s_in = S[l]
        W = [w - lr * g for w, g in zip(W, grads)]
    return W


def test_decolle_equals_numpy():
    with float64():
        net = plasticity(Net(nnx.Rngs(0)), RULES)
        xs = jax.random.bernoulli(jax.random.PRNGKey(1), 0.5, (30, 4, 6)).astype(jnp.float64)
        ys = jax.random.randint(jax.random.PRNGKey(2), (30, 4), 0, 3)
        state = net.init(jax.random.PRNGKey(0), xs[0])
        Gs = [np.asarray(state.rules[k]["G"]) for k in RULES]
        want = numpy_decolle(state.params, Gs, np.asarray(xs), np.asarray(ys))
        final, _ = net.run(state, xs, targets=ys)
        for k, w in zip(("l1", "l2"), want):
            moved = np.max(np.abs(w - np.asarray(state.params[k]["fc"]["W"])))
            assert moved > 1e-3, k                         # the layer spiked and learned
            np.testing.assert_allclose(final.params[k]["fc"]["W"], w, rtol=1e-9, atol=1e-12)


def test_decolle_trains_on_digits_and_its_state_is_flat_in_T():
    """2 DECOLLE layers (64 -> 100 -> 60) on rate-coded digits (T 30), each
    layer with its own random readout to 10 classes, Adamax 3e-3, burn-in 5,
    3 epochs. The top layer's local readout, majority vote over the last 10
    steps, on the 352 held-out digits scored: measured 90.6%; chance is 10%."""
    pytest.importorskip("sklearn")
    from brainscale.tasks.digits import load_digits_split, rate_encode
    x_tr, y_tr, x_te, y_te = load_digits_split()
    T, B = 30, 32

    def rules(opt):
        return {"params['l1']['fc']['W']": decolle(opt, 10, burn_in=5, seed=1),
                "params['l2']['fc']['W']": decolle(opt, 10, burn_in=5, seed=2)}

    model = Net(nnx.Rngs(0), n_in=64, n1=100, n2=60, scale=4.0)
    net = plasticity(model, rules(optax.adamax(3e-3)))
    state = net.init(jax.random.PRNGKey(0), rate_encode(x_tr[:B], T, jax.random.PRNGKey(0))[0])
    sizes = sum(a.size for a in jax.tree.leaves(state.rules))

    rng = np.random.default_rng(0)
    for epoch in range(3):
        order = rng.permutation(len(x_tr))
        for i in range(0, len(order) - B + 1, B):
            idx = order[i:i + B]
            xs = rate_encode(x_tr[idx], T, jax.random.PRNGKey(epoch * 10000 + i))
            ys = jnp.broadcast_to(jnp.asarray(y_tr[idx]), (T, B))
            state, _ = net.run(net.reset(state), xs, targets=ys)
    assert sum(a.size for a in jax.tree.leaves(state.rules)) == sizes      # flat in T

    frozen = plasticity(model, rules(optax.sgd(0.0)))             # the same readouts, lr 0
    ev = frozen.init(jax.random.PRNGKey(0), rate_encode(x_tr[:B], T, jax.random.PRNGKey(0))[0])
    ev = ev._replace(params=state.params)
    G = ev.rules["params['l2']['fc']['W']"]
    correct, n_test = 0, (len(x_te) // B) * B
    for i in range(0, n_test, B):
        xs = rate_encode(x_te[i:i + B], T, jax.random.PRNGKey(10 ** 6 + i))
        _, outs = frozen.run(frozen.reset(ev), xs, targets=jnp.full((T, B), -1))
        votes = np.asarray(local_readout(G, outs[-10:])).argmax(-1)
        pred = np.array([np.bincount(v, minlength=10).argmax() for v in votes.T])
        correct += int((pred == y_te[i:i + B]).sum())
    acc = correct / n_test
    print(f"DECOLLE digits accuracy {acc:.3f}")
    assert acc >= 0.7, acc
