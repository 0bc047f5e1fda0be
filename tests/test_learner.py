"""The learner API: pure, jit/vmap-able, optax-compatible, no retracing, and
the online per-step path consistent with the sequence path."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import brainscale as bs
from gradcheck import algorithm as gradcheck_algorithm, float64, rel_err, spike
from test_exactness import data, lif_layer


def recording():
    """An optax transform that leaves params unchanged and sums the gradients
    it sees into its state."""
    return optax.GradientTransformation(
        init=lambda p: jax.tree.map(jnp.zeros_like, p),
        update=lambda g, s, p=None: (jax.tree.map(jnp.zeros_like, g),
                                     jax.tree.map(jnp.add, s, g)))


@pytest.mark.parametrize("algorithm", ["d_rtrl", "es_d_rtrl"])
def test_online_steps_accumulate_to_the_sequence_gradient(algorithm):
    """T calls of step() (traces carried in the state, ES warm-up counted per
    trace step) give T x the sequence gradient of one sequence_grad call."""
    with float64():
        T, B, I, C = 7, 3, 4, 3
        xs, ys = data(T, B, I, C, p=0.6)
        learner = bs.online(lif_layer(I, 5, C), gradcheck_algorithm(algorithm, 0.8),
                            optimizer=recording())
        state = learner.init(jax.random.PRNGKey(0), xs[0])
        grads, losses = learner.sequence_grad(state, xs, ys)
        s = state
        step_losses = []
        for t in range(T):
            s, out, m = learner.step(s, xs[t], ys[t])
            step_losses.append(m["loss"])
        summed = jax.tree.map(lambda a: a / T, s.opt_state)
        assert rel_err(summed, grads) < 1e-10
        assert np.allclose(np.array(step_losses), np.asarray(losses))


def test_second_call_does_not_retrace():
    xs, ys = data(6, 2, 4, 3)
    xs = xs.astype(jnp.float32)
    learner = bs.online(lif_layer(4, 5, 3), algorithm="es_d_rtrl", optimizer=optax.adam(1e-2))
    state = learner.init(jax.random.PRNGKey(0), xs[0])
    state, _, _ = learner.step(state, xs[0], ys[0])
    state, _ = learner.train_sequence(state, xs, ys)
    n = learner.step._cache_size(), learner.train_sequence._cache_size()
    for t in range(1, 4):
        state, _, _ = learner.step(state, xs[t], ys[t])
    state, _ = learner.train_sequence(state, xs * 0.5, ys)
    assert (learner.step._cache_size(), learner.train_sequence._cache_size()) == n


def test_vmap_over_independent_learner_states():
    """Two seeds trained side by side under vmap equal two separate runs."""
    xs, ys = data(5, 2, 4, 3)
    xs = xs.astype(jnp.float32)
    learner = bs.online(lif_layer(4, 5, 3), algorithm="d_rtrl", optimizer=optax.sgd(0.1))
    states = [learner.init(jax.random.PRNGKey(k), xs[0]) for k in (0, 1)]
    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), *states)
    vs, _ = jax.vmap(learner.train_sequence, (0, None, None))(stacked, xs, ys)
    for k in (0, 1):
        single, _ = learner.train_sequence(states[k], xs, ys)
        for a, b in zip(jax.tree.leaves(single.params), jax.tree.leaves(vs.params)):
            np.testing.assert_allclose(a, b[k], rtol=1e-5, atol=1e-6)


def test_bptt_has_no_online_step():
    xs, ys = data(3, 2, 4, 3)
    learner = bs.online(lif_layer(4, 5, 3), algorithm="bptt")
    state = learner.init(jax.random.PRNGKey(0), xs[0].astype(jnp.float32))
    with pytest.raises(ValueError, match="sequence_grad"):
        learner.step(state, xs[0].astype(jnp.float32), ys[0])


class NnxLIF(nnx.Module):
    """A recurrent LIF layer + readout written directly with flax.nnx."""

    def __init__(self, n_in, n, n_out, rngs):
        self.inp = nnx.Linear(n_in, n, rngs=rngs)
        self.rec = nnx.Linear(n, n, use_bias=False, rngs=rngs)
        self.out = nnx.Linear(n, n_out, rngs=rngs)
        self.v = bs.HiddenState(jnp.zeros(n))
        self.s = bs.HiddenState(jnp.zeros(n))

    def __call__(self, x):
        v = 0.8 * self.v[...] + self.inp(x) * 2.0 + self.rec(self.s[...])
        s = spike(v - 1.0)
        self.v[...] = v - s
        self.s[...] = s
        return self.out(s)


def test_flax_nnx_module_trains_and_round_trips():
    labels = jnp.arange(8) % 3                      # class c: input channel c fires often
    rates = 0.1 + 0.6 * jax.nn.one_hot(labels, 4)
    xs = jax.random.bernoulli(jax.random.PRNGKey(3), rates, (12, 8, 4)).astype(jnp.float32)
    ys = jnp.broadcast_to(labels, (12, 8))
    module = NnxLIF(4, 6, 3, nnx.Rngs(0))
    learner = bs.online(module, algorithm="es_d_rtrl", optimizer=optax.adam(0.05))
    state = learner.init(jax.random.PRNGKey(0), xs[0])
    assert {op.kind for op in learner.graph.ops} == {"dense", "bias"}
    first = None
    for _ in range(25):
        state, m = learner.train_sequence(state, xs, ys)
        first = m["loss"] if first is None else first
    assert m["loss"] < 0.5 * first
    bs.to_nnx(module, state.params)
    np.testing.assert_array_equal(module.rec.kernel[...], state.params["rec"]["kernel"])
    learner2 = bs.online(module, algorithm="es_d_rtrl")
    state2 = learner2.init(jax.random.PRNGKey(0), xs[0])
    np.testing.assert_array_equal(state2.params["out"]["bias"], state.params["out"]["bias"])


def test_predict_matches_the_step_outputs():
    xs, ys = data(5, 2, 4, 3)
    xs = xs.astype(jnp.float32)
    learner = bs.online(lif_layer(4, 5, 3), algorithm="es_d_rtrl", optimizer=optax.sgd(0.0))
    state = learner.init(jax.random.PRNGKey(0), xs[0])
    outs = learner.predict(state, xs)
    assert outs.shape == (5, 2, 3)
    s = state
    for t in range(5):
        s, out, _ = learner.step(s, xs[t], ys[t])
        np.testing.assert_allclose(out, outs[t], rtol=1e-6)


def test_es_d_rtrl_matches_a_hand_written_numpy_version():
    """The ES-D-RTRL equations (README, "The gradient"), in numpy for
    v' = a v + x W + b, s = H(v' - 1), v = v' - s, out = s Wo:
    D = a (1 - g), Df = 1 - g with g the surrogate slope at v' - 1."""
    with float64():
        T, B, I, N, C, a, alpha = 6, 2, 3, 4, 3, 0.8, 0.6
        xs, ys = data(T, B, I, C, p=0.6)
        model = lif_layer(I, N, C)
        learner = bs.online(model, algorithm="es_d_rtrl", decay=alpha)
        state = learner.init(jax.random.PRNGKey(0), xs[0])
        grads, _ = learner.sequence_grad(state, xs, ys)
        p = {k: np.asarray(v) for k, v in state.params.items()}
        X, Y = np.asarray(xs), np.asarray(ys)
        v = np.zeros((B, N))
        ex, ef, ef_b, n = np.zeros((B, I)), np.zeros((B, N)), np.zeros((B, N)), 0
        eb = np.zeros((B,))
        gw, gb, gwo = np.zeros((I, N)), np.zeros(N), np.zeros((N, C))
        for t in range(T):
            u = a * v + X[t] @ p["w"] + p["b"]            # lif_layer leaks by a = 0.8
            s = (u > 1.0).astype(float)
            g = 1.0 / (1.0 + 4.0 * np.abs(u - 1.0)) ** 2
            logits = s @ p["wo"]
            prob = np.exp(logits - logits.max(1, keepdims=True))
            prob /= prob.sum(1, keepdims=True)
            dlogits = (prob - np.eye(C)[Y[t]]) / B           # d(batch-mean CE)/d logits
            ds = dlogits @ p["wo"].T
            du = ds * g                                        # d l / d u
            gwo += s.T @ dlogits
            gw += X[t].T @ du                                  # immediate terms
            gb += du.sum(0)
            L = du * a                                         # d l / d v_{t-1}
            if n > 0:
                c = 1 - alpha ** n
                gw += ex.T @ (L * ef) / c
                gb += (eb[:, None] * L * ef_b).sum(0) / c
            D, Df = a * (1 - g), 1 - g
            ex, eb = alpha * ex + X[t], alpha * eb + 1.0
            ef = alpha * D * ef + (1 - alpha) * Df
            ef_b = ef
            v = u - s
            n += 1
        want = {"w": gw / T, "b": gb / T, "wo": gwo / T}
        assert rel_err(grads, want) < 1e-10


@pytest.mark.parametrize("algorithm", ["d_rtrl", "es_d_rtrl"])
def test_skipping_silent_steps_and_bf16_traces(algorithm):
    """Steps without loss (label -1) skip the contraction with no change to the
    gradient; bfloat16 D-RTRL traces stay close to float32 ones."""
    xs, ys = data(10, 3, 4, 3, p=0.6)
    xs = xs.astype(jnp.float32)
    ys = ys.at[:6].set(-1)
    grads = {}
    for skip in (True, False):
        learner = bs.online(lif_layer(4, 5, 3), algorithm=algorithm, skip_silent=skip)
        state = learner.init(jax.random.PRNGKey(0), xs[0])
        grads[skip] = learner.sequence_grad(state, xs, ys)[0]
    assert rel_err(grads[True], grads[False]) < 1e-6
    if algorithm == "d_rtrl":
        learner = bs.online(lif_layer(4, 5, 3), algorithm=algorithm, trace_dtype=jnp.bfloat16)
        state = learner.init(jax.random.PRNGKey(0), xs[0])
        assert all(e.dtype == jnp.bfloat16 for e in jax.tree.leaves(state.traces.E))
        assert rel_err(learner.sequence_grad(state, xs, ys)[0], grads[True]) < 2e-2


@pytest.mark.parametrize("window", [3, 5, None])
def test_es_d_rtrl_window_gives_the_same_gradient(window):
    """A window's signals from one VJP and its weight gradient from one
    contraction, against step by step (T = 10: windows of 3 with a last one
    of 1, of 5, and the automatic one, all 10 steps at B = 3)."""
    with float64():
        xs, ys = data(10, 3, 4, 3, p=0.6)
        grads = {}
        for k in (1, window):
            learner = bs.online(lif_layer(4, 5, 3), algorithm="es_d_rtrl", window=k, decay=0.8)
            state = learner.init(jax.random.PRNGKey(0), xs[0])
            grads[k], losses = learner.sequence_grad(state, xs, ys)
            assert losses.shape == (10,)
        assert rel_err(grads[window], grads[1]) < 1e-12


def concat_recurrent_layer(n_in, n, n_out):
    """paper-style: [x, s_prev] @ W in one product (the input part has no
    tangent in the signals' VJP, the recurrent part has)."""
    def init(key, x):
        k1, k2 = jax.random.split(key)
        return ({"w": jax.random.normal(k1, (n_in + n, n)) * 0.8,
                 "wo": jax.random.normal(k2, (n, n_out)) * 0.5}, {"v": jnp.zeros(n)})

    def apply(p, h, x):
        s_prev = spike(h["v"] - 1.0)
        v = 0.8 * (h["v"] - s_prev) + jnp.concatenate([x, s_prev]) @ p["w"]
        return {"v": v}, spike(v - 1.0) @ p["wo"]
    return bs.StepModel(init, apply)


@pytest.mark.parametrize("make", [lif_layer, concat_recurrent_layer])
def test_differentiating_through_the_window_path(make):
    """A gradient taken through the learner (meta-learning): the window path
    holds the products' outputs (a custom JVP), the step-by-step path is
    plain autodiff of the step; d/dW of a scalar of the sequence gradient
    agrees (surrogate spikes rule out a finite-difference check)."""
    with float64():
        xs, ys = data(8, 2, 4, 3, p=0.6)
        model = make(4, 5, 3)

        def meta(learner):
            state = learner.init(jax.random.PRNGKey(0), xs[0])

            def f(params):
                g, _ = learner.sequence_grad(state._replace(params=params), xs, ys)
                return sum(jnp.sum(jnp.sin(3.0 * a)) for a in jax.tree.leaves(g))
            return f, state.params

        f_win, params = meta(bs.online(model, bs.es_d_rtrl(decay=0.8, window=4)))
        f_step, _ = meta(bs.online(model, bs.es_d_rtrl(decay=0.8, window=1)))
        g_win, g_step = jax.grad(f_win)(params), jax.grad(f_step)(params)
        assert rel_err(g_win, g_step) < 1e-10
        assert min(float(jnp.abs(a).max()) for a in jax.tree.leaves(g_win)) > 0


def test_es_d_rtrl_window_is_picked_by_rows():
    """About 256 rows (window x B), a divisor of T within a factor 1.5 when
    there is one; a fixed window is kept (capped at T)."""
    auto = bs.es_d_rtrl()
    assert auto.window_for(100, 32) == 10 and auto.window_for(1000, 32) == 8
    assert auto.window_for(500, 16) == 20 and auto.window_for(97, 32) == 8
    assert auto.window_for(5, 32) == 5 and auto.window_for(100, 1000) == 1
    assert bs.es_d_rtrl(window=3).window_for(10, 3) == 3
    assert bs.es_d_rtrl(window=30).window_for(10, 3) == 10


def test_algorithms_are_values_with_their_own_options():
    model = lif_layer(4, 5, 3)
    xs, ys = data(6, 2, 4, 3)
    by_value = bs.online(model, bs.es_d_rtrl(decay=0.7, window=3))
    by_name = bs.online(model, "es_d_rtrl", decay=0.7, window=3)
    assert by_value.algorithm == by_name.algorithm == bs.es_d_rtrl(0.7, 3)
    g1 = by_value.sequence_grad(by_value.init(jax.random.PRNGKey(0), xs[0]), xs, ys)[0]
    g2 = by_name.sequence_grad(by_name.init(jax.random.PRNGKey(0), xs[0]), xs, ys)[0]
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), g1, g2))
    with pytest.raises(ValueError, match="'es_d_rtrl' has no option 'trace_dtype'"):
        bs.online(model, "es_d_rtrl", trace_dtype=jnp.bfloat16)
    with pytest.raises(ValueError, match="'bptt' has no option 'decay'"):
        bs.online(model, "bptt", decay=0.5)
    with pytest.raises(ValueError, match="belong to the algorithm value"):
        bs.online(model, bs.d_rtrl(), decay=0.5)
    with pytest.raises(TypeError):
        bs.es_d_rtrl(trace_dtype=jnp.bfloat16)
    with pytest.raises(ValueError, match="decay must be in"):
        bs.es_d_rtrl(decay=1.5)


def test_algorithm_names_take_the_command_line_suffixes():
    """``bs.online(model, "tbptt:5")`` is what ``--algorithms tbptt:5`` runs:
    the suffix sets the option (a keyword may repeat it, not contradict it),
    and a wrong suffix names the forms there are."""
    model = lif_layer(4, 5, 3)
    for spec, kw, want in [("tbptt:5", {}, bs.tbptt(5)), ("tbptt:5", {"k": 5}, bs.tbptt(5)),
                           ("low_rank_d_rtrl:3", {}, bs.low_rank_d_rtrl(3)),
                           ("es_d_rtrl:adaptive", {"decay": 0.8},
                            bs.es_d_rtrl(0.8, adaptive=True)),
                           ("es_d_rtrl:layers", {}, bs.es_d_rtrl(through_layers=True)),
                           ("e_prop:random", {}, bs.e_prop(feedback="random"))]:
        assert bs.online(model, spec, **kw).algorithm == want, spec
    with pytest.raises(ValueError, match="suffix sets k=5 and the keyword k=6"):
        bs.online(model, "tbptt:5", k=6)
    with pytest.raises(ValueError, match=r"tbptt:K with K a positive number.*tbptt:50"):
        bs.online(model, "tbptt:0")
    with pytest.raises(ValueError, match="only tbptt:K, low_rank_d_rtrl:R, es_d_rtrl:adaptive"):
        bs.online(model, "bptt:2")
    with pytest.raises(ValueError, match=r"unknown algorithm 'esdrtrl:adaptive'.*tbptt:K"):
        bs.online(model, "esdrtrl:adaptive")
