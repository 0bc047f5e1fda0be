"""Weights shared by several neurons: convolution kernels over pixels (in the
layouts PyTorch / snnTorch, flax and spyx code use) and one dense matrix
applied at every position. D-RTRL keeps a trace per neuron and patch
element, so on one feed-forward layer it equals an independent ``jax.grad``
of a scan in float64."""
import jax
import jax.numpy as jnp
import pytest
from jax import lax

import brainscale as bs
from gradcheck import cosine, float64, rel_err, scan_reference, spike

T, B = 6, 2


def ce(out, y):
    return -jax.nn.log_softmax(out)[y]


def _normal(key, shape, fan_in):
    return jax.random.normal(key, shape) * (2.0 / fan_in) ** 0.5


def lif(v, i, beta=0.8, thr=0.4):
    v = beta * v + i
    s = spike(v - thr)
    return v - thr * s, s


# -- snnTorch style: NCHW frames, OIHW kernel, stride 2, no padding -----------
def torch_init(rng, x):
    k1, k2 = jax.random.split(rng)
    return ({"conv": _normal(k1, (3, 2, 3, 3), 18), "fc": _normal(k2, (3 * 3 * 3, 2), 27)},
            {"mem": jnp.zeros((3, 3, 3))})


def torch_apply(p, h, x):                  # x: (2, 7, 7), one sample's frame
    cur = lax.conv(x[None], p["conv"], (2, 2), "VALID")[0]
    mem, spk = lif(h["mem"], cur)
    return {"mem": mem}, spk.reshape(-1) @ p["fc"]


# -- flax style: NHWC, HWIO kernel, SAME padding, a bias per channel ------------
def flax_init(rng, x):
    k1, k2 = jax.random.split(rng)
    return ({"kernel": _normal(k1, (3, 3, 2, 4), 18), "bias": jnp.full((4,), 0.1),
             "out": _normal(k2, (5 * 5 * 4, 2), 100)}, {"v": jnp.zeros((5, 5, 4))})


def flax_apply(p, h, x):                   # x: (5, 5, 2)
    y = lax.conv_general_dilated(x[None], p["kernel"], (1, 1), "SAME",
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))[0] + p["bias"]
    v, s = lif(h["v"], y)
    return {"v": v}, s.reshape(-1) @ p["out"]


# -- spyx style: a 1-D dilated convolution over channels-last time bins ----------
def spyx_init(rng, x):
    k1, k2 = jax.random.split(rng)
    return ({"w": _normal(k1, (3, 2, 3), 6), "ro": _normal(k2, (6 * 3, 2), 18)},
            {"v": jnp.zeros((6, 3))})


def spyx_apply(p, h, x):                   # x: (10, 2)
    y = lax.conv_general_dilated(x[None], p["w"], (1,), [(0, 0)], rhs_dilation=(2,),
                                 dimension_numbers=("NWC", "WIO", "NWC"))[0]
    v, s = lif(h["v"], y)
    return {"v": v}, s.reshape(-1) @ p["ro"]


# -- one dense matrix at every position (a pointwise layer), both operand orders ---
def positions_init(rng, x):
    k1, k2 = jax.random.split(rng)
    return ({"w": _normal(k1, (3, 4), 3), "wo": _normal(k2, (5 * 4, 2), 20)},
            {"v": jnp.zeros((5, 4))})


def positions_apply(p, h, x):              # x: (5, 3) -> (5, 4)
    v, s = lif(h["v"], jnp.einsum("pi,io->po", x, p["w"]))
    return {"v": v}, s.reshape(-1) @ p["wo"]


def transposed_init(rng, x):
    p, _ = positions_init(rng, x)
    return p, {"v": jnp.zeros((4, 5))}


def transposed_apply(p, h, x):             # W on the left: neurons (out, position)
    v, s = lif(h["v"], jnp.einsum("io,pi->op", p["w"], x))
    return {"v": v}, s.reshape(-1) @ p["wo"]


MODELS = {"torch_nchw_stride2": (torch_init, torch_apply, (2, 7, 7)),
          "flax_nhwc_same_bias": (flax_init, flax_apply, (5, 5, 2)),
          "spyx_1d_dilated": (spyx_init, spyx_apply, (10, 2)),
          "dense_per_position": (positions_init, positions_apply, (5, 3)),
          "dense_w_left": (transposed_init, transposed_apply, (5, 3))}


def reference(init, apply, shape):
    xs = jax.random.uniform(jax.random.PRNGKey(1), (T, B) + shape, jnp.float64) * 1.5
    ys = jax.random.randint(jax.random.PRNGKey(2), (T, B), 0, 2)
    return xs, ys, scan_reference(init, apply, xs, ys, loss=ce)


def grads(init, apply, algorithm, xs, ys):
    learner = bs.online(bs.StepModel(init, apply), algorithm, loss=ce)
    state = learner.init(jax.random.PRNGKey(0), xs[0])
    return learner.sequence_grad(state, xs, ys)[0], learner


@pytest.mark.parametrize("name", sorted(MODELS))
def test_shared_weights_d_rtrl_exact(name):
    init, apply, shape = MODELS[name]
    with float64():
        xs, ys, ref = reference(init, apply, shape)
        assert min(float(jnp.abs(g).max()) for g in jax.tree.leaves(ref)) > 0   # all trained
        g, learner = grads(init, apply, bs.d_rtrl(), xs, ys)
        assert rel_err(g, ref) < 1e-10, rel_err(g, ref)
        assert "D-RTRL unavailable" not in str(learner.graph)
        g, _ = grads(init, apply, bs.es_d_rtrl(decay=0.5), xs, ys)
        assert cosine(g, ref) > 0.5


def test_shared_weight_trace_memory_is_per_neuron_and_patch():
    """The graph's D-RTRL memory counts a trace entry per neuron and patch
    element: 5 x 5 x 4 neurons x 18 patch elements for the kernel, and one
    per neuron for the bias (the readout drives no neuron: no trace)."""
    with float64():
        xs, ys, _ = reference(flax_init, flax_apply, (5, 5, 2))
        _, learner = grads(flax_init, flax_apply, bs.d_rtrl(), xs, ys)
    text = str(learner.graph)
    assert f"D-RTRL {5 * 5 * 4 * 18 + 5 * 5 * 4}," in text


def test_grouped_convolution_refused_by_d_rtrl():
    def init(rng, x):
        return ({"k": _normal(rng, (3, 3, 1, 4), 9), "o": jnp.ones((5 * 5 * 4, 2))},
                {"v": jnp.zeros((5, 5, 4))})

    def apply(p, h, x):                    # depthwise-style: 2 groups
        y = lax.conv_general_dilated(x[None], p["k"], (1, 1), "SAME", feature_group_count=2,
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))[0]
        v, s = lif(h["v"], y)
        return {"v": v}, s.reshape(-1) @ p["o"]
    xs = jnp.ones((T, B, 5, 5, 2))
    ys = jnp.zeros((T, B), jnp.int32)
    learner = bs.online(bs.StepModel(init, apply), bs.d_rtrl(), loss=ce)
    with pytest.raises(bs.CompileError) as e:
        learner.sequence_grad(learner.init(jax.random.PRNGKey(0), xs[0]), xs, ys)
    msg = str(e.value)
    assert "conv_general_dilated" in msg and "params['k']" in msg and "es_d_rtrl" in msg
    assert "test_shared_weights.py" in msg
