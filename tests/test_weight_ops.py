"""Weight ops are found in plain JAX however the user writes them, and the
learners' gradients stay exact where the diagonal is exact."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import sparse

import brainscale as bs
from gradcheck import float64, rel_err, sequence_grads, spike
from test_exactness import data

I, N, C = 5, 4, 3
PRE = np.array([0, 1, 1, 3, 4, 2])
POST = np.array([0, 0, 2, 1, 3, 3])

APPLY_W = {
    "matmul": lambda w, x: x @ w,
    "jnp.dot": lambda w, x: jnp.dot(x, w),
    "einsum": lambda w, x: jnp.einsum("i,io->o", x, w),
    "transposed": lambda w, x: x @ w.T.T,
    "bcoo": lambda w, x: sparse.BCOO((w, jnp.stack([PRE, POST], 1)), shape=(I, N)).T @ x,
}


def layer(kind, gated=False):
    def init(rng, x):
        k1, k2 = jax.random.split(rng)
        shape = (len(PRE),) if kind == "bcoo" else (I, N)
        return ({"w": jax.random.normal(k1, shape) * 1.5, "wo": jax.random.normal(k2, (N, C))},
                {"v": jnp.zeros(N)})

    def apply(p, h, x):
        v = 0.8 * h["v"] + APPLY_W[kind](p["w"], x)
        if gated:   # lax.cond on a runtime scalar, elementwise in each branch
            v = jax.lax.cond(jnp.sum(x) > 1.0, lambda u: u * 0.9, lambda u: u + 0.05, v)
        s = spike(v - 1.0)
        return {"v": v - s}, s @ p["wo"]
    return bs.StepModel(init, apply)


@pytest.mark.parametrize("kind", sorted(APPLY_W))
def test_weight_op_forms_are_recognised_and_exact(kind):
    with float64():
        xs, ys = data(7, 2, I, C, p=0.6)
        learner = bs.online(layer(kind), algorithm="d_rtrl")
        learner.init(jax.random.PRNGKey(0), xs[0])
        op = learner.graph.ops[0]
        assert op.path == "params['w']" and op.groups == [0]
        assert op.kind == ("bcoo" if kind == "bcoo" else "dense")
        g, _ = sequence_grads(layer(kind), xs, ys, ("bptt", "d_rtrl"))
        assert rel_err(g["d_rtrl"], g["bptt"]) < 1e-6


CONCAT_FORMS = {   # how a user joins input and recurrent spikes before one product
    "x@W": (lambda x, s, w: jnp.concatenate([x, s]) @ w, (I + N, N), 1),
    "W.T@x": (lambda x, s, w: w.T @ jnp.concatenate([x, s]), (I + N, N), 1),
    "einsum W first": (lambda x, s, w: jnp.einsum("oi,i->o", w, jnp.concatenate([x, s])),
                       (N, I + N), 1),
    "hstack, axis=-1": (lambda x, s, w: jnp.hstack([x, s]) @ w, (I + N, N), 1),
    "through a reshape: not split": (lambda x, s, w: (jnp.hstack([x, s])[None] @ w)[0],
                                     (I + N, N), None),
    "stacked rows, not contracted": (lambda x, s, w: (jnp.stack([x[:N], s]) @ w).sum(0),
                                     (N, N), None),
}


@pytest.mark.parametrize("form", sorted(CONCAT_FORMS))
def test_concatenated_input_is_recorded_only_along_a_contracted_axis(form):
    """[x, s] @ W is x @ W_x + s @ W_s: the dense rule records the parts and
    W's axis so a derivative skips the input part; gradients stay exact."""
    apply_w, w_shape, parts = CONCAT_FORMS[form]

    def make():
        def init(rng, x):
            k1, k2 = jax.random.split(rng)
            return ({"w": jax.random.normal(k1, w_shape), "wo": jax.random.normal(k2, (N, C))},
                    {"v": jnp.zeros(N), "s": jnp.zeros(N)})

        def apply(p, h, x):
            v = 0.8 * (h["v"] - h["s"]) + apply_w(x, h["s"], p["w"])
            s = spike(v - 1.0)
            return {"v": v, "s": s}, s @ p["wo"]
        return bs.StepModel(init, apply)

    with float64():
        xs, ys = data(9, 2, I, C, p=0.6)
        grads = {}
        for window in (1, 3):     # 1: plain autodiff of the step; 3: held products, by parts
            learner = bs.online(make(), bs.es_d_rtrl(decay=0.8, window=window))
            state = learner.init(jax.random.PRNGKey(0), xs[0])
            grads[window], _ = learner.sequence_grad(state, xs, ys)
        op = learner.graph.ops[0]
        if parts is None:
            assert op.x_parts is None
        else:
            cat = learner.graph.traced.eqns[op.x_parts[0]]
            assert cat.primitive.name == "concatenate" and op.x_parts[1] == op.weff_shape.index(I + N)
        assert rel_err(grads[3], grads[1]) < 1e-12
        assert min(float(jnp.abs(a).max()) for a in jax.tree.leaves(grads[3])) > 0


def test_lax_cond_in_the_dynamics():
    with float64():
        xs, ys = data(8, 3, I, C, p=0.4)
        g, _ = sequence_grads(layer("matmul", gated=True), xs, ys, ("bptt", "d_rtrl"))
        assert rel_err(g["d_rtrl"], g["bptt"]) < 1e-6


def conv_layer():
    """A 1-D convolutional spiking layer (per sample: width 8, 2 channels)."""
    def init(rng, x):
        k1, k2 = jax.random.split(rng)
        return ({"k": jax.random.normal(k1, (3, 1, 2)), "wo": jax.random.normal(k2, (16, C)) / 4},
                {"v": jnp.zeros((8, 2))})

    def apply(p, h, x):
        y = jax.lax.conv_general_dilated(x[None, :, None], p["k"], (1,), "SAME",
                                         dimension_numbers=("NWC", "WIO", "NWC"))[0]
        v = 0.8 * h["v"] + y
        s = spike(v - 1.0)
        return {"v": v - s}, s.reshape(-1) @ p["wo"]
    return bs.StepModel(init, apply)


def test_convolution_es_d_rtrl():
    """Conv kernels drive many neurons each: ES-D-RTRL applies the conv's own
    VJP to the input trace. At T = 1 it is the exact gradient, and its
    gradient over a sequence stays close to BPTT's."""
    with float64():
        xs, ys = data(6, 2, 8, C, p=0.5)
        learner = bs.online(conv_layer(), algorithm="es_d_rtrl")
        learner.init(jax.random.PRNGKey(0), xs[0])
        assert learner.graph.ops[0].kind == "conv"
        g1, _ = sequence_grads(conv_layer(), xs[:1], ys[:1], ("bptt", "es_d_rtrl"))
        assert rel_err(g1["es_d_rtrl"], g1["bptt"]) < 1e-10
        g, _ = sequence_grads(conv_layer(), xs, ys, ("bptt", "es_d_rtrl"), decay=0.5)
        assert 0 < rel_err(g["es_d_rtrl"], g["bptt"]) < 0.5
