"""Every pattern the compiler cannot handle raises a specific error naming
the primitive, the pytree path and the user's source line (this file)."""
import jax
import jax.numpy as jnp
import pytest

import brainscale as bs
from transforms import errors
from gradcheck import spike

HERE = "test_diagnostics.py"
X = jnp.ones((2, 3))


def compile_(apply, params, hidden, algorithm="es_d_rtrl"):
    learner = bs.online(bs.StepModel(lambda rng, x: (params, hidden), apply), algorithm=algorithm)
    return learner.init(jax.random.PRNGKey(0), X)


def line_of(fn, text):
    import inspect
    src, start = inspect.getsourcelines(fn)
    return start + next(i for i, l in enumerate(src) if text in l)


P = {"w": jnp.ones((3, 4)), "wo": jnp.ones((4, 2))}
H = {"v": jnp.zeros(4)}


def test_weight_consumed_by_two_ops_is_two_uses():
    def apply(p, h, x):
        v = 0.9 * h["v"] + x @ p["w"]
        v = v + (x * 2.0) @ p["w"]  # second use
        return {"v": v}, spike(v) @ p["wo"]
    learner = bs.online(bs.StepModel(lambda rng, x: (P, H), apply))
    learner.init(jax.random.PRNGKey(0), X)
    uses = [op for op in learner.graph.ops if op.path == "params['w']"]
    assert len(uses) == 2
    assert f"{HERE}:{line_of(apply, 'second use')}" in uses[1].source


def test_hidden_coupled_across_neurons_is_listed():
    def apply(p, h, x):
        inhib = jnp.sum(h["v"])  # global inhibition
        v = 0.9 * h["v"] + x @ p["w"] - 0.1 * inhib
        return {"v": v}, spike(v) @ p["wo"]
    learner = bs.online(bs.StepModel(lambda rng, x: (P, H), apply))
    learner.init(jax.random.PRNGKey(0), X)
    text = str(learner.graph)
    assert "approximations" in text and "reduce_sum" in text
    assert f"{HERE}:{line_of(apply, 'global inhibition')}" in text


def test_hidden_read_but_not_returned():
    def apply(p, h, x):
        v = 0.9 * h["v"] + x @ p["w"] - h["a"]
        return {"v": v}, spike(v) @ p["wo"]
    with pytest.raises(errors.HiddenStructureError) as e:
        compile_(apply, P, {"v": jnp.zeros(4), "a": jnp.zeros(4)})
    assert "hidden['a']" in str(e.value) and "not returned" in str(e.value)


def test_hidden_shape_and_dtype_change():
    def apply(p, h, x):
        v = 0.9 * h["v"][None, :] + x @ p["w"]  # adds an axis
        return {"v": v}, spike(v[0]) @ p["wo"]
    with pytest.raises(errors.HiddenStructureError) as e:
        compile_(apply, P, H)
    assert "hidden['v']" in str(e.value) and "[4]" in str(e.value) and "[1, 4]" in str(e.value)

    def apply2(p, h, x):
        v = (0.9 * h["v"] + x @ p["w"]).astype(jnp.bfloat16)
        return {"v": v}, spike(v.astype(jnp.float32)) @ p["wo"]
    with pytest.raises(errors.HiddenStructureError) as e:
        compile_(apply2, P, H)
    assert "float32" in str(e.value) and "bfloat16" in str(e.value)


def test_weight_reaching_nothing():
    def apply(p, h, x):
        v = 0.9 * h["v"] + x @ p["w"]
        x @ p["dead"]  # result dropped
        return {"v": v}, spike(v) @ p["wo"]
    with pytest.raises(errors.UnusedWeightError) as e:
        compile_(apply, dict(P, dead=jnp.ones((3, 4))), H)
    assert "params['dead']" in str(e.value) and "reaches no hidden state" in str(e.value)
    assert f"{HERE}:{line_of(apply, 'result dropped')}" in str(e.value)


def test_parameter_in_neuron_dynamics_is_an_elementwise_op():
    def apply(p, h, x):
        v = h["v"] + (x @ p["w"] - h["v"]) / p["tau"]  # learnable tau
        return {"v": v}, spike(v) @ p["wo"]
    learner = bs.online(bs.StepModel(lambda rng, x: (dict(P, tau=jnp.full((4,), 10.0)), H),
                                     apply), algorithm="d_rtrl")
    learner.init(jax.random.PRNGKey(0), X)
    (op,) = [op for op in learner.graph.ops if op.path == "params['tau']"]
    assert op.kind == "elementwise" and op.groups == [0]
    assert f"{HERE}:{line_of(apply, 'learnable tau')}" in op.source


def test_weight_output_reaching_hidden_through_a_reduction_is_listed():
    def apply(p, h, x):
        y = x @ p["w"]
        v = 0.9 * h["v"] + jnp.cumsum(y)  # mixes the op's outputs
        return {"v": v}, spike(v) @ p["wo"]
    learner = bs.online(bs.StepModel(lambda rng, x: (P, H), apply))
    learner.init(jax.random.PRNGKey(0), X)
    text = str(learner.graph)
    assert "weight op params['w'] -> hidden['v'] through cumsum" in text
    assert f"{HERE}:{line_of(apply, 'mixes the op')}" in text


def test_grouped_convolution_under_d_rtrl_points_to_es_d_rtrl():
    """A plain convolution is exact under D-RTRL (tests/test_shared_weights.py);
    a grouped one has no patch form and is refused with the way out."""
    def apply(p, h, x):
        xx = jnp.stack([x, x], -1)[None]                     # (1, W, 2 channels)
        y = jax.lax.conv_general_dilated(xx, p["k"], (1,), "SAME", feature_group_count=2,
                                         dimension_numbers=("NWC", "WIO", "NWC"))[0]
        v = 0.9 * h["v"] + y
        return {"v": v}, spike(v).reshape(-1) @ p["wo"]
    params = {"k": jnp.ones((2, 1, 2)), "wo": jnp.ones((6, 2))}
    compile_(apply, params, {"v": jnp.zeros((3, 2))}, "es_d_rtrl")  # fine under ES-D-RTRL
    with pytest.raises(errors.UnsupportedAlgorithmError) as e:
        compile_(apply, params, {"v": jnp.zeros((3, 2))}, "d_rtrl")
    assert "es_d_rtrl" in str(e.value) and "params['k']" in str(e.value)


def test_combined_parameters():
    def apply(p, h, x):
        v = 0.9 * h["v"] + x @ (p["u"] @ p["w"])  # low rank
        return {"v": v}, spike(v) @ p["wo"]
    with pytest.raises(errors.UnsupportedWeightUseError) as e:
        compile_(apply, dict(P, u=jnp.ones((3, 3))), H)
    assert "params['u']" in str(e.value) and "params['w']" in str(e.value)


def test_integer_parameter_leaf():
    def apply(p, h, x):
        v = 0.9 * h["v"] + x @ p["w"]
        return {"v": v}, spike(v) @ p["wo"]
    with pytest.raises(errors.CompileError) as e:
        compile_(apply, dict(P, idx=jnp.arange(3)), H)
    assert "params['idx']" in str(e.value) and "int" in str(e.value)


def test_errors_leave_state_untouched():
    """A failing call raises before producing a state; the old one still works."""
    model = bs.StepModel(lambda r, x: (P, H), lambda p, h, x: (
        {"v": 0.9 * h["v"] + x @ p["w"]}, spike(h["v"]) @ p["wo"]))
    learner = bs.online(model, algorithm="es_d_rtrl")
    state = learner.init(jax.random.PRNGKey(0), X)
    with pytest.raises(errors.ShapeMismatchError) as e:
        learner.step(state, jnp.ones((5, 3)), jnp.zeros(5, jnp.int32))
    assert "B = 2" in str(e.value) and "x" in str(e.value)
    state2, out, _ = learner.step(state, X, jnp.zeros(2, jnp.int32))
    assert out.shape == (2, 2)


def test_while_loop_that_mixes_neurons_names_why():
    def apply(p, h, x):
        i = x @ p["w"]

        def body(c):
            t, v = c
            return t + 0.5, v + 0.5 * (i - v + 0.1 * jnp.mean(v))    # a population term
        _, v = jax.lax.while_loop(lambda c: c[0] < 1.0, body, (0.0, h["v"]))
        return {"v": v}, spike(v) @ p["wo"]
    with pytest.raises(errors.CompileError) as e:
        compile_(apply, P, H, "d_rtrl")
    msg = str(e.value)
    assert "not per neuron: its body combines the states of different neurons" in msg
    assert e.value.primitive == "while" and "test_diagnostics.py" in msg
