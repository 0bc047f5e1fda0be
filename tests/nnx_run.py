"""Run an nnx module step by step (jitted), alone or vmapped over a batch:
shared by the model-library tests."""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from brainscale.nn.state import HiddenState


def _step_impl(graphdef, h, rest, x):
    m = nnx.merge(graphdef, h, rest)
    y = m(x)
    return nnx.state(m, HiddenState), y


step = jax.jit(_step_impl, static_argnums=0)
batched_step = jax.jit(jax.vmap(_step_impl, in_axes=(None, 0, None, 0)), static_argnums=0)


def run(model, xs):
    """Runs ``model`` over ``xs`` (T, n); returns outputs (T, ...) and a list of
    {hidden name: value} per step."""
    graphdef, h, rest = nnx.split(model, HiddenState, ...)
    ys, states = [], []
    for x in xs:
        h, y = step(graphdef, h, rest, jnp.asarray(x))
        ys.append(np.asarray(y))
        states.append(jax.tree.map(np.asarray, h.to_pure_dict()))
    return np.stack(ys), states


def run_batched(model, xs):
    """jit(vmap(step)) over xs (T, B, n) from the module's hidden state."""
    graphdef, hidden, rest = nnx.split(model, HiddenState, ...)
    B = xs.shape[1]
    hb = jax.tree.map(lambda a: jnp.broadcast_to(a, (B,) + a.shape), hidden)
    ys = []
    for x in xs:
        hb, y = batched_step(graphdef, hb, rest, jnp.asarray(x))
        ys.append(np.asarray(y))
    return np.stack(ys)


def check_batched(make, xs, rtol=1e-5, atol=1e-5):
    """The batched run equals running each sample alone."""
    ys = run_batched(make(), xs)
    for b in range(xs.shape[1]):
        np.testing.assert_allclose(ys[:, b], run(make(), xs[:, b])[0], rtol=rtol, atol=atol)
