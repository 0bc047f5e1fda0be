"""Shared helpers for the gradient tests: run several learners on one model
and data, compare gradient pytrees."""
import contextlib

import jax
import jax.numpy as jnp
import numpy as np

import brainscale as bs


@contextlib.contextmanager
def float64():
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", old)


def algorithm(name, decay):
    """The algorithm ``name``; ``decay`` is ES-D-RTRL's (the others have none)."""
    return bs.es_d_rtrl(decay=decay) if name == "es_d_rtrl" else bs.ALGORITHMS[name]()


def sequence_grads(model, xs, ys, algorithms=("bptt", "d_rtrl", "es_d_rtrl"), decay=0.5,
                   loss=bs.losses.cross_entropy, seed=0):
    grads, losses = {}, {}
    for alg in algorithms:
        learner = bs.online(model, algorithm(alg, decay), loss=loss)
        state = learner.init(jax.random.PRNGKey(seed), xs[0])
        grads[alg], losses[alg] = learner.sequence_grad(state, xs, ys)
    return grads, losses


def flat(tree):
    return np.concatenate([np.ravel(np.asarray(l, np.float64)) for l in jax.tree.leaves(tree)])


def rel_err(a, b):
    a, b = flat(a), flat(b)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def cosine(a, b):
    a, b = flat(a), flat(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@jax.custom_jvp
def spike(u):
    """Heaviside with the SuperSpike surrogate 1 / (1 + 4|u|)^2, written here
    so the compiler tests do not depend on the library's surrogates."""
    return (u > 0).astype(u.dtype)


@spike.defjvp
def _spike_jvp(primals, tangents):
    (u,), (du,) = primals, tangents
    return spike(u), du / (1.0 + 4.0 * jnp.abs(u)) ** 2


def class_ce(out, y):
    """Cross-entropy of logits ``out`` with an integer label ``y``."""
    return -jax.nn.log_softmax(out)[y]


def scan_reference(init, apply, xs, ys, derivative=jax.grad, loss=class_ce):
    """The gradient of the mean per-step loss of ``apply`` vmapped over the
    batch and scanned over time, by ``derivative`` (``jax.grad``, or
    ``jax.jacfwd`` for steps reverse mode cannot differentiate): the
    independent reference the learners are compared with."""
    p0, h0 = init(jax.random.PRNGKey(0), xs[0, 0])
    B = xs.shape[1]

    def total(p):
        def body(h, inp):
            h2, out = jax.vmap(apply, (None, 0, 0))(p, h, inp[0])
            return h2, jnp.mean(jax.vmap(loss)(out, inp[1]))
        hb = jax.tree.map(lambda a: jnp.broadcast_to(a, (B,) + a.shape), h0)
        return jnp.mean(jax.lax.scan(body, hb, (xs, ys))[1])
    return derivative(total)(p0)
