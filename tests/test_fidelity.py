"""Gradient fidelity of the online learners on a 2-layer recurrent LIF
network (input and own spikes concatenated into one dense op per layer, as in
the lif-delta benchmark). Thresholds are set below the values measured over
seeds 0-2 (printed by ``python tests/test_fidelity.py``), not assumed."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import brainscale as bs
from gradcheck import cosine, flat, sequence_grads, spike

I, N, C, T, B = 20, 32, 5, 60, 8


def two_layer(readout_tau=None):
    def init(rng, x):
        k = jax.random.split(rng, 3)
        return ({"l1": jax.random.normal(k[0], (I + N, N)) * jnp.concatenate(
                    [jnp.full((I, 1), 1.2), jnp.full((N, 1), 0.25)]),
                 "l2": jax.random.normal(k[1], (N + N, N)) * jnp.concatenate(
                    [jnp.full((N, 1), 0.6), jnp.full((N, 1), 0.25)]),
                 "out": jax.random.normal(k[2], (N, C)) / np.sqrt(N)},
                {"v1": jnp.zeros(N), "s1": jnp.zeros(N), "v2": jnp.zeros(N),
                 "s2": jnp.zeros(N), "r": jnp.zeros(C)})

    def apply(p, h, x):
        v1 = 0.9 * h["v1"] + jnp.concatenate([x, h["s1"]]) @ p["l1"]
        s1 = spike(v1 - 1.0)
        v2 = 0.9 * h["v2"] + jnp.concatenate([s1, h["s2"]]) @ p["l2"]
        s2 = spike(v2 - 1.0)
        y = s2 @ p["out"]
        r = y if readout_tau is None else np.exp(-1 / readout_tau) * h["r"] + y
        return {"v1": v1 - s1, "s1": s1, "v2": v2 - s2, "s2": s2, "r": r}, r
    return bs.StepModel(init, apply)


def measure(seed, readout_tau=None):
    k1, k2 = jax.random.split(jax.random.PRNGKey(100 + seed))
    xs = jax.random.bernoulli(k1, 0.1, (T, B, I)).astype(jnp.float32)
    ys = jax.random.randint(k2, (B,), 0, C)
    ys = jnp.broadcast_to(ys, (T, B))
    g, _ = sequence_grads(two_layer(readout_tau), xs, ys, decay=0.9, seed=seed)
    learner = bs.online(two_layer(readout_tau), algorithm="bptt")
    state = learner.init(jax.random.PRNGKey(seed), xs[0])
    layers = {k: g["bptt"][k] for k in ("l1", "l2")}
    out = {"rates": rates(learner, state, xs)}
    for alg in ("d_rtrl", "es_d_rtrl"):
        out[alg] = (cosine(g[alg], g["bptt"]),
                    cosine({k: g[alg][k] for k in layers}, layers),
                    np.linalg.norm(flat({k: g[alg][k] for k in layers})) / np.linalg.norm(flat(layers)))
    return out


def rates(learner, state, xs):
    """Fraction of neuron-steps that spike in each layer (silent networks make
    any similarity meaningless)."""
    h = state.hidden
    s1, s2 = [], []
    for x in xs:
        h, _ = jax.vmap(lambda hh, xx: learner.model.apply(state.params, hh, xx))(h, x)
        s1.append(h["s1"]), s2.append(h["s2"])
    return float(jnp.mean(jnp.stack(s1))), float(jnp.mean(jnp.stack(s2)))


@pytest.mark.parametrize("seed", [0, 1])
def test_cosine_to_bptt_on_two_layer_recurrent_lif(seed):
    m = measure(seed)
    r1, r2 = m["rates"]
    assert 0.02 < r1 < 0.6 and 0.02 < r2 < 0.6
    # measured (seeds 0/1/2): D-RTRL overall 0.976/0.996/0.977, LIF layers
    # 0.844/0.896/0.898, layer norm ratio 0.84-0.94; ES-D-RTRL (decay 0.9)
    # overall 0.972/0.995/0.971, layers 0.842/0.890/0.897, norm ratio 0.63-0.69
    assert m["d_rtrl"][0] > 0.95 and m["d_rtrl"][1] > 0.8 and m["d_rtrl"][2] > 0.7
    assert m["es_d_rtrl"][0] > 0.95 and m["es_d_rtrl"][1] > 0.8 and m["es_d_rtrl"][2] > 0.5
    assert m["d_rtrl"][0] < 0.9999        # approximate, not silently exact


if __name__ == "__main__":
    for tau in (None, 10.0):
        for seed in range(3):
            print("readout tau", tau, "seed", seed, measure(seed, tau))
