"""brainpy.state / brainstate models compile unmodified.

For each model of ``brainpy_models`` (brainpy's LIF, ALIF, Izhikevich, Gif,
ExpIF, AdExIF neurons; Expon and DualExpon synapses through AlignPostProj;
STD and STP; plain ParamStates in a matmul), in float64:
- BPTT through BrainScale equals the gradient brainstate's own
  ``brainstate.transform.grad`` computes on the unmodified, batched model;
- D-RTRL equals BPTT (one feed-forward layer: the diagonal trace is exact);
- the gradients are not trivially zero (the neurons spike).
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

brainstate = pytest.importorskip("brainstate")
u = pytest.importorskip("brainunit")
pytest.importorskip("brainpy")

import brainscale as bs  # noqa: E402
from brainscale.interop.brainstate_adapter import from_brainstate, to_brainstate  # noqa: E402
from brainpy_models import MODELS, N_IN, N_OUT  # noqa: E402
from transforms.errors import CompileError  # noqa: E402

T, B = 40, 3


@pytest.fixture(autouse=True)
def float64():
    prev = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    with brainstate.environ.context(precision=64):
        yield
    jax.config.update("jax_enable_x64", prev)


def data():
    xs = jax.random.bernoulli(jax.random.PRNGKey(1), 0.4, (T, B, N_IN)).astype(jnp.float64)
    ys = jax.random.randint(jax.random.PRNGKey(2), (T, B), 0, N_OUT)
    return xs, ys


def build(name):
    brainstate.random.seed(0)
    return MODELS[name]()


def mantissas(tree):
    return jax.tree.map(u.get_mantissa, tree, is_leaf=lambda a: isinstance(a, u.Quantity))


def brainstate_grads(net, dt, xs, ys):
    """The reference: brainstate runs the model batched and differentiates."""
    brainstate.nn.init_all_states(net, batch_size=xs.shape[1])
    params = net.states(brainstate.ParamState)
    ce = jax.vmap(bs.losses.cross_entropy)

    def loss():
        def body(x, y):
            return ce(u.get_mantissa(net(x)), y)
        with brainstate.environ.context(dt=dt):
            return brainstate.transform.for_loop(body, xs, ys).mean()

    grads = brainstate.transform.grad(loss, params)()
    nested = {}
    for path, g in grads.items():
        d = nested
        for k in path[:-1]:
            d = d.setdefault(str(k), {})
        d[str(path[-1])] = mantissas(g)
    return nested


def assert_tree_close(a, b, rtol):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
        scale = float(np.max(np.abs(y)))
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * scale,
                                   err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_bptt_equals_brainstate_grad_and_d_rtrl_is_exact(name):
    net, dt = build(name)
    step = from_brainstate(net, dt=dt)
    xs, ys = data()
    grads = {}
    for alg in ("bptt", "d_rtrl"):
        learner = bs.online(step, alg)
        grads[alg], _ = learner.sequence_grad(learner.init(jax.random.PRNGKey(0), xs[0]), xs, ys)
    ref = brainstate_grads(net, dt, xs, ys)
    assert_tree_close(grads["bptt"], ref, rtol=1e-9)
    assert_tree_close(grads["d_rtrl"], grads["bptt"], rtol=1e-9)
    # every weight gets a gradient: the neurons spike and the surrogate passes
    for path, g in jax.tree_util.tree_flatten_with_path(ref)[0]:
        if path[-1].key == "weight" or len(path) == 1:
            assert np.max(np.abs(g)) > 1e-6, jax.tree_util.keystr(path)


def test_hidden_states_and_units_are_found():
    net, dt = build("adexif")
    step = from_brainstate(net, dt=dt)
    params, hidden = step.init(None, jnp.zeros(N_IN))
    assert set(hidden["neuron"]) == {"V", "w"}            # membrane and adaptation current
    assert set(params) == {"fc", "readout"}
    np.testing.assert_allclose(hidden["neuron"]["V"], -65.0)   # mV stripped to its mantissa
    learner = bs.online(step, "d_rtrl")
    learner.init(jax.random.PRNGKey(0), data()[0][0])
    (group,) = learner.graph.groups                      # V and w: one per-neuron 2x2 block
    assert group.k == 2


def test_model_is_left_unchanged_by_compiling_and_training():
    net, dt = build("expon")
    step = from_brainstate(net, dt=dt)
    before = {p: mantissas(s.value) for p, s in net.states().items()}
    learner = bs.online(step, "es_d_rtrl", optimizer=optax.adam(1e-2))
    xs, ys = data()
    state = learner.init(jax.random.PRNGKey(0), xs[0])
    state, _ = learner.train_sequence(state, xs, ys)
    after = {p: mantissas(s.value) for p, s in net.states().items()}
    assert before.keys() == after.keys()
    for p in before:
        for a, b in zip(jax.tree.leaves(before[p]), jax.tree.leaves(after[p])):
            assert not isinstance(b, jax.core.Tracer)
            np.testing.assert_array_equal(a, b)


def test_trained_params_written_back_give_the_learners_outputs():
    net, dt = build("alif")
    step = from_brainstate(net, dt=dt)
    learner = bs.online(step, "es_d_rtrl", optimizer=optax.adam(1e-2))
    xs, ys = data()
    state = learner.init(jax.random.PRNGKey(0), xs[0])
    for _ in range(3):
        state, _ = learner.train_sequence(state, xs, ys)
    expected = learner.predict(state, xs)
    to_brainstate(net, state.params)
    brainstate.nn.init_all_states(net, batch_size=B)
    with brainstate.environ.context(dt=dt):
        got = brainstate.transform.for_loop(lambda x: u.get_mantissa(net(x)), xs)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_a_module_passed_to_online_uses_the_environment_dt():
    net, dt = build("lif")
    xs, ys = data()
    with brainstate.environ.context(dt=dt):
        learner = bs.online(net, "bptt")
    g1, _ = learner.sequence_grad(learner.init(jax.random.PRNGKey(0), xs[0]), xs, ys)
    explicit = bs.online(from_brainstate(build("lif")[0], dt=dt), "bptt")
    g2, _ = explicit.sequence_grad(explicit.init(jax.random.PRNGKey(0), xs[0]), xs, ys)
    assert_tree_close(g1, g2, rtol=1e-12)


def test_missing_dt_is_a_clear_error():
    net, _ = build("lif")
    with _no_dt():
        with pytest.raises(ValueError, match="no dt: pass dt="):
            from_brainstate(net)


class _no_dt:
    """brainstate.environ without a dt, restored afterwards."""

    def __enter__(self):
        self.saved = brainstate.environ.all()
        if "dt" in self.saved:
            brainstate.environ.pop("dt")

    def __exit__(self, *exc):
        if "dt" in self.saved:
            brainstate.environ.set(dt=self.saved["dt"])


class _Noisy(brainstate.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = brainstate.ParamState(jnp.ones((N_IN, 3)))
        self.v = brainstate.HiddenState(jnp.zeros(3))
        self.rng = brainstate.random.RandomState(0)

    def update(self, x):
        self.v.value = 0.9 * self.v.value + x @ self.w.value + self.rng.normal(size=(3,))
        return self.v.value


def test_random_state_in_the_step_is_named():
    with pytest.raises(CompileError, match="RandomState") as e:
        from_brainstate(_Noisy(), dt=1.0, init_states=False)
    assert "state['rng']" in str(e.value)


class _UnitFlip(brainstate.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = brainstate.ParamState(jnp.ones((N_IN, 3)))
        self.v = brainstate.HiddenState(jnp.zeros(3) * u.mV)

    def update(self, x):
        self.v.value = (x @ self.w.value) * u.mA
        return u.get_mantissa(self.v.value)


def test_a_state_changing_its_unit_is_named():
    step = from_brainstate(_UnitFlip(), dt=1.0, init_states=False)
    learner = bs.online(step, "bptt")
    with pytest.raises(CompileError, match="changed the unit") as e:
        learner.init(jax.random.PRNGKey(0), data()[0][0])
    assert "hidden['v']" in str(e.value)


def test_coverage_benchmark_rows(tmp_path):
    """benchmarks/brainpy_coverage.py on a refractory neuron (it reads t: the
    adapter's clock), a neuron with a bundled synapse and a presynaptic
    conductance whose spike-arrival time is compared with t."""
    import os
    import subprocess
    import sys
    script = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "brainpy_coverage.py")
    out = tmp_path / "coverage.md"
    proc = subprocess.run([sys.executable, script, "--only", "LIFRef", "CubaLIF", "AMPA",
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in out.read_text().splitlines() if line.startswith("| neuron")
            or line.startswith("| presynaptic")]
    assert len(rows) == 3 and all("| compiles |" in r for r in rows), rows
    assert "['_clock']" in next(r for r in rows if "| LIFRef |" in r)
