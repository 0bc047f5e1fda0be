"""D-RTRL equals BPTT wherever the per-neuron diagonal is exact: one
feed-forward layer of elementwise neurons, loss at every step (float64)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import brainscale as bs
from gradcheck import cosine, flat, float64, rel_err, sequence_grads, spike

TOL = 1e-6


def lif_layer(I, N, C, reset="soft"):
    """LIF + bias, spikes from the pre-reset potential, non-leaky readout."""
    def init(rng, x):
        k1, k2 = jax.random.split(rng)
        return ({"w": jax.random.normal(k1, (I, N)) * 1.5, "b": jnp.full((N,), 0.2),
                 "wo": jax.random.normal(k2, (N, C))}, {"v": jnp.zeros(N)})

    def apply(p, h, x):
        v = 0.8 * h["v"] + x @ p["w"] + p["b"]
        s = spike(v - 1.0)
        v = v - s if reset == "soft" else jnp.where(s > 0, 0.0, v)
        return {"v": v}, s @ p["wo"]
    return bs.StepModel(init, apply)


def data(T, B, I, C, seed=1, p=0.5):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    xs = jax.random.bernoulli(k1, p, (T, B, I)).astype(jnp.zeros(()).dtype)
    ys = jax.random.randint(k2, (T, B), 0, C)
    return xs, ys


@settings(max_examples=6, deadline=None)
@given(I=st.integers(1, 6), N=st.integers(1, 7), C=st.integers(2, 4), B=st.integers(1, 3),
       T=st.integers(1, 9), reset=st.sampled_from(["soft", "hard"]))
def test_lif_layer_d_rtrl_equals_bptt(I, N, C, B, T, reset):
    with float64():
        xs, ys = data(T, B, I, C)
        g, losses = sequence_grads(lif_layer(I, N, C, reset), xs, ys, ("bptt", "d_rtrl"))
        assert np.allclose(losses["bptt"], losses["d_rtrl"])
        assert np.linalg.norm(flat(g["bptt"])) > 0
        assert rel_err(g["d_rtrl"], g["bptt"]) < TOL


def resonate_and_fire(I, N, C, omega=0.6, damp=-0.1, dt=0.5):
    """Izhikevich's resonate-and-fire neuron (complex state z = x + i y), a
    model the library does not ship: the compiler must handle it unchanged."""
    def init(rng, x):
        k1, k2 = jax.random.split(rng)
        return ({"w": jax.random.normal(k1, (I, N)), "wo": jax.random.normal(k2, (N, C))},
                {"x": jnp.zeros(N), "y": jnp.zeros(N)})

    def apply(p, h, inp):
        cur = inp @ p["w"]
        x = h["x"] + dt * (damp * h["x"] - omega * h["y"]) + cur
        y = h["y"] + dt * (omega * h["x"] + damp * h["y"])
        s = spike(y - 0.5)
        return {"x": x * (1 - s), "y": y * (1 - s)}, s @ p["wo"]
    return bs.StepModel(init, apply)


def two_compartment(I, N, C):
    """Dendrite driven by the input, soma driven by the dendrite, with its
    own bias; spikes reset the soma (a Pinsky-Rinzel-like reduction)."""
    def init(rng, x):
        k1, k2 = jax.random.split(rng)
        return ({"w": jax.random.normal(k1, (I, N)) * 2, "b": jnp.zeros(N) + 0.1,
                 "wo": jax.random.normal(k2, (N, C))},
                {"soma": jnp.zeros(N), "dend": jnp.zeros(N)})

    def apply(p, h, x):
        dend = 0.7 * h["dend"] + x @ p["w"] + 0.1 * (h["soma"] - h["dend"])
        soma = 0.8 * h["soma"] + 0.5 * jnp.tanh(dend) + p["b"]
        s = spike(soma - 1.0)
        return {"soma": soma - s, "dend": dend}, s @ p["wo"]
    return bs.StepModel(init, apply)


@pytest.mark.parametrize("make", [resonate_and_fire, two_compartment])
def test_unknown_neurons_need_no_compiler_change(make):
    with float64():
        I, N, C = 4, 5, 3
        xs, ys = data(10, 2, I, C, p=0.6)
        g, _ = sequence_grads(make(I, N, C), xs, ys, ("bptt", "d_rtrl"))
        learner = bs.online(make(I, N, C), algorithm="d_rtrl")
        learner.init(jax.random.PRNGKey(0), xs[0])
        assert [grp.k for grp in learner.graph.groups] == [2]
        assert np.linalg.norm(np.asarray(g["bptt"]["w"])) > 0
        assert rel_err(g["d_rtrl"], g["bptt"]) < TOL


def sparse_layer(I, N, C, pre, post, dense):
    """The same layer with the weights stored sparsely (segment_sum) or as a
    dense matrix that is zero off the connectivity."""
    pre, post = jnp.asarray(pre), jnp.asarray(post)

    def init(rng, x):
        k1, k2 = jax.random.split(rng)
        vals = jax.random.normal(k1, (pre.shape[0],)) * 2
        w = jnp.zeros((I, N)).at[pre, post].add(vals) if dense else vals
        return {"w": w, "wo": jax.random.normal(k2, (N, C))}, {"v": jnp.zeros(N)}

    def apply(p, h, x):
        cur = x @ p["w"] if dense else jax.ops.segment_sum(p["w"] * x[pre], post, num_segments=N)
        v = 0.8 * h["v"] + cur
        s = spike(v - 1.0)
        return {"v": v - s}, s @ p["wo"]
    return bs.StepModel(init, apply)


def test_sparse_connectivity_exact_and_equal_to_dense():
    with float64():
        I, N, C = 6, 5, 3
        rng = np.random.default_rng(0)
        pairs = rng.permutation(I * N)[:12]
        pre, post = pairs // N, pairs % N
        xs, ys = data(8, 2, I, C, p=0.6)
        gs, _ = sequence_grads(sparse_layer(I, N, C, pre, post, False), xs, ys,
                               ("bptt", "d_rtrl", "es_d_rtrl"))
        gd, _ = sequence_grads(sparse_layer(I, N, C, pre, post, True), xs, ys,
                               ("bptt", "d_rtrl", "es_d_rtrl"))
        learner = bs.online(sparse_layer(I, N, C, pre, post, False), algorithm="d_rtrl")
        learner.init(jax.random.PRNGKey(0), xs[0])
        assert learner.graph.ops[0].kind == "sparse"
        assert rel_err(gs["d_rtrl"], gs["bptt"]) < TOL
        for alg in ("bptt", "d_rtrl", "es_d_rtrl"):
            dense_on_synapses = np.asarray(gd[alg]["w"])[pre, post]
            assert np.allclose(np.asarray(gs[alg]["w"]), dense_on_synapses, rtol=1e-9, atol=1e-12)


def test_elementwise_gain_and_dale_chain_exact():
    """W * x (per-neuron gain) and a Dale's-law chain abs(W) * sign are weight
    ops; the gain's path through v_{t-1} stays inside the neuron's diagonal."""
    with float64():
        I, N, C = 4, 4, 3
        sign = jnp.array([1.0, -1.0, 1.0, 1.0])[:, None]

        def init(rng, x):
            k1, k2 = jax.random.split(rng)
            return ({"w": jax.random.normal(k1, (I, N)), "gain": jnp.full((N,), 1.5),
                     "wo": jax.random.normal(k2, (N, C))}, {"v": jnp.zeros(N)})

        def apply(p, h, x):
            cur = x @ (jnp.abs(p["w"]) * sign)
            v = 0.6 * h["v"] + p["gain"] * (cur + 0.2 * h["v"])
            s = spike(v - 1.0)
            return {"v": v - s}, s @ p["wo"]
        model = bs.StepModel(init, apply)
        xs, ys = data(9, 3, I, C, p=0.5)
        g, _ = sequence_grads(model, xs, ys, ("bptt", "d_rtrl"))
        learner = bs.online(model, algorithm="d_rtrl")
        learner.init(jax.random.PRNGKey(0), xs[0])
        kinds = sorted(op.kind for op in learner.graph.ops)
        assert kinds == ["dense", "dense", "scale"]
        assert rel_err(g["d_rtrl"], g["bptt"]) < TOL


@pytest.mark.parametrize("T", [1, 2])
def test_es_d_rtrl_equals_d_rtrl_on_first_steps(T):
    """At T = 1 both are the immediate gradient; at T = 2 the ES trace of step
    0, (1-a) Df (x) x / (1 - a), is the D-RTRL trace exactly."""
    with float64():
        xs, ys = data(T, 3, 5, 3, p=0.6)
        g, _ = sequence_grads(lif_layer(5, 6, 3), xs, ys, ("d_rtrl", "es_d_rtrl"), decay=0.7)
        assert rel_err(g["es_d_rtrl"], g["d_rtrl"]) < TOL


def test_negative_control_recurrent_network_is_approximate():
    """On a recurrent network the diagonal drops the cross-neuron Jacobian:
    D-RTRL must differ from BPTT (measured: rel. error ~0.3, cosine ~0.95)."""
    with float64():
        I, N, C = 4, 8, 3

        def init(rng, x):
            k1, k2, k3 = jax.random.split(rng, 3)
            return ({"w": jax.random.normal(k1, (I + N, N)) * 1.2,
                     "wo": jax.random.normal(k3, (N, C))}, {"v": jnp.zeros(N), "s": jnp.zeros(N)})

        def apply(p, h, x):
            v = 0.8 * h["v"] + jnp.concatenate([x, h["s"]]) @ p["w"]
            s = spike(v - 1.0)
            return {"v": v - s, "s": s}, s @ p["wo"]
        xs, ys = data(20, 4, I, C, p=0.5)
        g, _ = sequence_grads(bs.StepModel(init, apply), xs, ys, ("bptt", "d_rtrl"))
        err = rel_err(g["d_rtrl"], g["bptt"])
        assert err > 1e-3
        assert cosine(g["d_rtrl"], g["bptt"]) > 0.5


def leaky_readout_layer(I, N, C, kappa=0.7, readout_bias=False):
    """One LIF layer + bias read out by a leaky integrator r = kappa r + s Wo
    (+ bo, added last, as ``nnx.Linear`` and most readouts add theirs): the
    loss reaches the layer's weights through r's leak over time."""
    base = lif_layer(I, N, C)

    def init(rng, x):
        params, hidden = base.init(rng, x)
        if readout_bias:
            params = dict(params, bo=jnp.linspace(-0.2, 0.3, C, dtype=x.dtype))
        return params, dict(hidden, r=jnp.zeros(C))

    def apply(p, h, x):
        hv, y = base.apply(p, {"v": h["v"]}, x)
        r = kappa * h["r"] + y
        if readout_bias:
            r = r + p["bo"]
        return dict(hv, r=r), r
    return bs.StepModel(init, apply)


@pytest.mark.parametrize("readout_bias", [False, True])
def test_readout_paths_make_d_rtrl_exact_through_a_leaky_readout(readout_bias):
    """With readout paths the filtered trace carries the readout's leak:
    D-RTRL equals BPTT again; without them it does not (measured rel. error
    ~0.5, the deficit of the published implementation). A readout bias
    added after the leak keeps the readout linear."""
    with float64():
        I, N, C = 5, 6, 3
        xs, ys = data(12, 3, I, C, p=0.5)
        model = leaky_readout_layer(I, N, C, readout_bias=readout_bias)
        learner = bs.online(model, algorithm="d_rtrl")
        learner.init(jax.random.PRNGKey(0), xs[0])
        assert len(learner.graph.readout_paths) == 2         # weight and bias of the layer
        assert learner.graph.readout_paths[0].kappa == pytest.approx(0.7)
        g, _ = sequence_grads(model, xs, ys, ("bptt", "d_rtrl"))
        assert rel_err(g["d_rtrl"], g["bptt"]) < TOL
        plain = bs.online(model, algorithm="d_rtrl", readout_paths=False)
        state = plain.init(jax.random.PRNGKey(0), xs[0])
        assert rel_err(plain.sequence_grad(state, xs, ys)[0], g["bptt"]) > 0.05


@pytest.mark.parametrize("leak", ["beta", "euler", "one_minus_beta"])
def test_snntorch_style_linear_into_a_leaky_output_is_a_readout_path(leak):
    """snnTorch habit: ``fc2 = nn.Linear(...)`` (with its bias) feeding an
    output membrane kept as state, mem = beta mem + fc2(spk), or written as
    an Euler step mem + (fc2(spk) - mem) / tau, or with (1 - beta) on the
    input. The bias op's output is the whole sum s Wo + b, and the readout
    is still found: two paths (fc1's kernel and bias), kappa 0.9, and
    D-RTRL equal to BPTT."""
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            f64 = dict(dtype=jnp.float64, param_dtype=jnp.float64)
            self.fc1 = nnx.Linear(5, 6, rngs=rngs, **f64)
            self.fc2 = nnx.Linear(6, 3, rngs=rngs, **f64)
            self.mem1 = bs.HiddenState(jnp.zeros(6, jnp.float64))
            self.mem2 = bs.HiddenState(jnp.zeros(3, jnp.float64))

        def __call__(self, x):
            cur1 = self.fc1(2.0 * x)
            mem1 = 0.8 * self.mem1[...] + cur1
            spk1 = spike(mem1 - 1.0)
            self.mem1[...] = mem1 - spk1
            m = self.mem2[...]
            mem2 = {"beta": lambda: 0.9 * m + self.fc2(spk1),
                    "euler": lambda: m + (self.fc2(spk1) - m) / 10.0,
                    "one_minus_beta": lambda: 0.9 * m + (1 - 0.9) * self.fc2(spk1)}[leak]()
            self.mem2[...] = mem2
            return mem2

    with float64():
        xs, ys = data(12, 3, 5, 3, p=0.5)
        learner = bs.online(Net(nnx.Rngs(0)), algorithm="d_rtrl")
        state = learner.init(jax.random.PRNGKey(0), xs[0])
        assert [(p.kappa, learner.graph.ops[p.readout_op].path)
                for p in learner.graph.readout_paths] == [
            (pytest.approx(0.9), "params['fc2']['kernel']")] * 2
        g = learner.sequence_grad(state, xs, ys)[0]
        ref = bs.online(Net(nnx.Rngs(0)), algorithm="bptt")
        want = ref.sequence_grad(ref.init(jax.random.PRNGKey(0), xs[0]), xs, ys)[0]
        assert rel_err(g, want) < TOL


@pytest.mark.parametrize("coupled", [True, False])
def test_a_two_state_leaky_readout_is_two_readout_paths(coupled):
    """Norse's leaky-integrator readout: a synaptic current i driven by the
    spikes and a membrane v integrating it (Euler steps), the loss on v.
    Its update r_t = A r_{t-1} + c y_t splits into A's two modes, two
    readout paths (kappa 0.9 and 0.8), and D-RTRL equals BPTT. Two states
    that are not coupled (v also driven directly) work the same."""
    with float64():
        I, N, C = 5, 6, 3

        def init(rng, x):
            k1, k2 = jax.random.split(rng)
            return ({"w": jax.random.normal(k1, (I, N)) * 1.5,
                     "wo": jax.random.normal(k2, (N, C))},
                    {"v": jnp.zeros(N), "lv": jnp.zeros(C), "li": jnp.zeros(C)})

        def apply(p, h, x):
            v = 0.8 * h["v"] + x @ p["w"]
            s = spike(v - 1.0)
            y = s @ p["wo"]
            li = h["li"] + 0.2 * (-h["li"]) + y
            lv = h["lv"] + 0.1 * (-h["lv"] + (h["li"] if coupled else 0.5 * y))
            return {"v": v - s, "lv": lv, "li": li}, lv
        model = bs.StepModel(init, apply)
        xs, ys = data(14, 3, I, C, p=0.5)
        learner = bs.online(model, algorithm="d_rtrl")
        learner.init(jax.random.PRNGKey(0), xs[0])
        assert sorted(p.kappa for p in learner.graph.readout_paths) == pytest.approx([0.8, 0.9])
        g, _ = sequence_grads(model, xs, ys, ("bptt", "d_rtrl"))
        assert rel_err(g["d_rtrl"], g["bptt"]) < TOL
        plain = bs.online(model, algorithm="d_rtrl", readout_paths=False)
        state = plain.init(jax.random.PRNGKey(0), xs[0])
        assert rel_err(plain.sequence_grad(state, xs, ys)[0], g["bptt"]) > 0.05


@pytest.mark.parametrize("readout_bias", [False, True])
def test_es_d_rtrl_is_exact_for_a_linear_readout(readout_bias):
    """A leaky readout r = kappa r + s Wo (+ bo) is a linear group: ES-D-RTRL
    keeps its exact trace (input filtered by kappa), so the readout's gradient
    equals BPTT's; the layer's does not (it is factorised)."""
    with float64():
        I, N, C = 5, 6, 3
        xs, ys = data(12, 3, I, C, p=0.5)
        model = leaky_readout_layer(I, N, C, readout_bias=readout_bias)
        learner = bs.online(model, algorithm="es_d_rtrl")
        learner.init(jax.random.PRNGKey(0), xs[0])
        assert [learner.graph.groups[g].paths for g in learner.graph.linear_groups] == [["hidden['r']"]]
        g, _ = sequence_grads(model, xs, ys, ("bptt", "es_d_rtrl"), decay=0.6)
        assert rel_err(g["es_d_rtrl"]["wo"], g["bptt"]["wo"]) < TOL
        if readout_bias:
            assert rel_err(g["es_d_rtrl"]["bo"], g["bptt"]["bo"]) < TOL
        assert rel_err(g["es_d_rtrl"]["w"], g["bptt"]["w"]) > 1e-3
