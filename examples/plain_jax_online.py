"""Online learning of a plain-JAX recurrent LIF network, one step at a time.

No BrainScale class in the model: a step function over pytrees, a spike
function with a custom_jvp surrogate, and ``x @ W``. The learner updates the
weights at every time step (ES-D-RTRL); the task is to report which of two
input channels fired more often so far.

    python examples/plain_jax_online.py [--steps 3000] [--algorithm d_rtrl]
"""
import argparse

import jax
import jax.numpy as jnp
import optax

import brainscale as bs

N_IN, N, N_OUT = 2, 32, 2


@jax.custom_jvp
def spike(u):
    return (u > 0).astype(u.dtype)


@spike.defjvp
def _spike_jvp(primals, tangents):
    (u,), (du,) = primals, tangents
    return spike(u), du / (1.0 + 5.0 * jnp.abs(u)) ** 2


def init(rng, x):
    k1, k2, k3 = jax.random.split(rng, 3)
    params = {"w_in": jax.random.normal(k1, (N_IN, N)) * 1.0,
              "w_rec": jax.random.normal(k2, (N, N)) / jnp.sqrt(N),
              "b": jnp.zeros(N),
              "w_out": jax.random.normal(k3, (N, N_OUT)) / jnp.sqrt(N)}
    hidden = {"v": jnp.zeros(N), "s": jnp.zeros(N), "r": jnp.zeros(N_OUT)}
    return params, hidden


def step(p, h, x):
    v = 0.95 * h["v"] + x @ p["w_in"] + h["s"] @ p["w_rec"] + p["b"]
    s = spike(v - 1.0)
    r = 0.9 * h["r"] + s @ p["w_out"]
    return {"v": v - s, "s": s, "r": r}, r


def stream(key, batch, length):
    """Two Poisson channels with a per-sample rate bias; the label at each
    step is the channel with more spikes so far."""
    k1, k2 = jax.random.split(key)
    bias = jax.random.uniform(k1, (batch, 1), minval=-0.15, maxval=0.15)
    rates = jnp.concatenate([0.2 + bias, 0.2 - bias], axis=1)
    xs = jax.random.bernoulli(k2, rates, (length, batch, N_IN)).astype(jnp.float32)
    counts = jnp.cumsum(xs, axis=0)
    return xs, jnp.argmax(counts, axis=-1).astype(jnp.int32)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--algorithm", default="es_d_rtrl", choices=["es_d_rtrl", "d_rtrl"])
    args = ap.parse_args(argv)
    xs, ys = stream(jax.random.PRNGKey(1), 16, args.steps)
    algorithm = bs.es_d_rtrl(decay=0.95) if args.algorithm == "es_d_rtrl" else bs.d_rtrl()
    learner = bs.online(bs.StepModel(init, step), algorithm, optimizer=optax.adam(3e-3))
    state = learner.init(jax.random.PRNGKey(0), xs[0])
    print(learner.graph)
    correct = []
    for t in range(args.steps):
        state, out, metrics = learner.step(state, xs[t], ys[t])
        correct.append(jnp.mean(jnp.argmax(out, -1) == ys[t]))
    tail = max(1, args.steps // 5)
    first, last = float(jnp.mean(jnp.array(correct[:tail]))), float(jnp.mean(jnp.array(correct[-tail:])))
    print(f"accuracy over the first {tail} steps: {first:.3f}, over the last {tail}: {last:.3f}")
    return first, last


if __name__ == "__main__":
    main()
