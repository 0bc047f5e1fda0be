"""Local rules on the compiled graph: each rule's update equals a
hand-written numpy version of its published equation; the STDP pairing
window has the right signs and time constants; the plasticity engine finds
each op's presynaptic input and postsynaptic spikes in the graph."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import brainscale as bs
from brainscale.nn.neurons import LIF
from brainscale.plasticity import plasticity
from gradcheck import float64
from transforms.plasticity.engine import LocalSignals, post_activity_vars
from transforms.plasticity.rules import hebbian, stdp


@pytest.fixture(autouse=True)
def x64():
    with float64():
        yield


def signals(B=5, I=4, O=3, seed=0, spikes=False):
    r = np.random.default_rng(seed)
    x = (r.random((B, I)) < 0.4).astype(float) if spikes else r.normal(size=(B, I))
    w = r.normal(size=(I, O)) * 0.5
    u = x @ w
    post = (r.random((B, O)) < 0.4).astype(float) if spikes else np.tanh(u)
    return LocalSignals(jnp.asarray(x), jnp.asarray(u), jnp.asarray(post), jnp.asarray(w), None)


def run(rule, sig):
    state = rule.init(sig.w, sig.x.shape[1:], sig.post.shape[1:], sig.x.shape[0])
    return np.asarray(rule.update(state, sig)[0])


def test_hebb_with_decay():
    s = signals()
    x, y, w = map(np.asarray, (s.x, s.post, s.w))
    want = np.zeros_like(w)
    for j in range(w.shape[0]):
        for k in range(w.shape[1]):
            want[j, k] = 0.1 * (np.mean(y[:, k] * x[:, j]) - 0.01 * w[j, k])
    np.testing.assert_allclose(run(hebbian.hebb(0.1, decay=0.01), s), want, rtol=1e-12)


def test_oja():
    s = signals(seed=1)
    x, y, w = map(np.asarray, (s.x, s.post, s.w))
    want = np.zeros_like(w)
    for j in range(w.shape[0]):
        for k in range(w.shape[1]):
            want[j, k] = 0.05 * np.mean(y[:, k] * (x[:, j] - y[:, k] * w[j, k]))
    np.testing.assert_allclose(run(hebbian.oja(0.05), s), want, rtol=1e-12)


def _competitive_numpy(x, u, w, y, eta):
    want = np.zeros_like(w)
    for k in range(w.shape[1]):
        for b in range(x.shape[0]):
            want[:, k] += eta * y[b, k] * (x[b] - u[b, k] * w[:, k]) / x.shape[0]
    return want


def test_hard_wta():
    s = signals(seed=2)
    x, u, w = map(np.asarray, (s.x, s.y, s.w))
    y = np.zeros_like(u)
    y[np.arange(len(u)), u.argmax(1)] = 1.0
    np.testing.assert_allclose(run(hebbian.hard_wta(0.1), s),
                               _competitive_numpy(x, u, w, y, 0.1), rtol=1e-12)


def test_softhebb():
    s = signals(seed=3)
    x, u, w = map(np.asarray, (s.x, s.y, s.w))
    e = np.exp(u / 0.5 - (u / 0.5).max(1, keepdims=True))
    y = e / e.sum(1, keepdims=True)
    np.testing.assert_allclose(run(hebbian.softhebb(0.1, tau=0.5), s),
                               _competitive_numpy(x, u, w, y, 0.1), rtol=1e-12)


def test_multilayer_softhebb_anti_hebbian_and_adaptive_rate():
    s = signals(seed=4)
    x, u, w = map(np.asarray, (s.x, s.y, s.w))
    e = np.exp(u - u.max(1, keepdims=True))
    soft = e / e.sum(1, keepdims=True)
    y = -soft
    y[np.arange(len(u)), u.argmax(1)] *= -1.0                  # the winner: +softmax
    rate = 0.2 * np.abs(np.linalg.norm(w, axis=0) - 1.0) ** 0.5
    want = _competitive_numpy(x, u, w, y, 1.0) * rate[None, :]
    np.testing.assert_allclose(run(hebbian.multilayer_softhebb(0.2, p=0.5), s), want,
                               rtol=1e-12)


def _stdp_numpy(xs, posts, w, a_plus, a_minus, ap, aq, mult=None):
    """The docstring's equations, one synapse at a time."""
    T, B, I = xs.shape
    O = posts.shape[2]
    pre, post = np.zeros((B, I)), np.zeros((B, O))
    w = w.copy()
    for t in range(T):
        pre = ap * pre + xs[t]
        before = aq * post
        post = before + posts[t]
        dw = np.zeros_like(w)
        for j in range(I):
            for k in range(O):
                for b in range(B):
                    ltp, ltd = pre[b, j] * posts[t, b, k], xs[t, b, j] * before[b, k]
                    if mult is None:
                        dw[j, k] += (a_plus * ltp - a_minus * ltd) / B
                    else:
                        lo, hi = mult
                        dw[j, k] += (a_plus * (hi - w[j, k]) * ltp
                                     - a_minus * (w[j, k] - lo) * ltd) / B
        w = w + dw
    return w


@pytest.mark.parametrize("bounds", ["additive", "multiplicative"])
def test_stdp_equals_numpy(bounds):
    r = np.random.default_rng(5)
    T, B, I, O = 12, 2, 3, 2
    xs = (r.random((T, B, I)) < 0.3).astype(float)
    posts = (r.random((T, B, O)) < 0.3).astype(float)
    w0 = r.random((I, O))
    kw = dict(a_plus=0.01, a_minus=0.012, tau_pre=10.0, tau_post=15.0)
    if bounds == "multiplicative":
        rule = stdp.stdp(**kw, bounds="multiplicative", w_min=0.0, w_max=1.0)
        mult = (0.0, 1.0)
    else:
        rule, mult = stdp.stdp(**kw), None
    state = rule.init(jnp.asarray(w0), (I,), (O,), B)
    w = jnp.asarray(w0)
    for t in range(T):
        sig = LocalSignals(jnp.asarray(xs[t]), None, jnp.asarray(posts[t]), w, None)
        dw, state = rule.update(state, sig)
        w = w + dw
    want = _stdp_numpy(xs, posts, w0, 0.01, 0.012, math.exp(-1 / 10), math.exp(-1 / 15), mult)
    np.testing.assert_allclose(w, want, rtol=1e-12)


def pairing_dw(rule, delay, T=80, t_pre=30):
    """Total dw of one synapse for one pre spike at t_pre and one post spike
    at t_pre + delay."""
    state = rule.init(jnp.zeros((1, 1)), (1,), (1,), 1)
    total = 0.0
    for t in range(T):
        pre = jnp.full((1, 1), float(t == t_pre))
        post = jnp.full((1, 1), float(t == t_pre + delay))
        dw, state = rule.update(state, LocalSignals(pre, None, post, jnp.zeros((1, 1)), None))
        total += float(dw[0, 0])
    return total


def test_stdp_pairing_curve_signs_and_time_constants():
    tau_p, tau_m = 16.8, 33.7                                # Bi & Poo's fitted window
    rule = stdp.stdp(a_plus=0.01, a_minus=0.005, tau_pre=tau_p, tau_post=tau_m)
    delays = list(range(-25, 26, 5))
    dws = {d: pairing_dw(rule, d) for d in delays}
    for d, dw in dws.items():
        if d >= 0:
            assert dw > 0 and math.isclose(dw, 0.01 * math.exp(-d / tau_p), rel_tol=1e-9)
        else:
            assert dw < 0 and math.isclose(dw, -0.005 * math.exp(d / tau_m), rel_tol=1e-9)
    # the decay constants read back from the curve
    assert math.isclose(5 / math.log(dws[5] / dws[10]), tau_p, rel_tol=1e-9)
    assert math.isclose(5 / math.log(dws[-5] / dws[-10]), tau_m, rel_tol=1e-9)


def test_reward_stdp_equals_numpy():
    r = np.random.default_rng(6)
    T, B, I, O = 10, 3, 2, 2
    xs = (r.random((T, B, I)) < 0.4).astype(float)
    posts = (r.random((T, B, O)) < 0.4).astype(float)
    mods = r.normal(size=(T, B))
    rule = stdp.reward_stdp(eta=0.5, a_plus=1.0, a_minus=0.8, tau_pre=10.0, tau_post=10.0,
                            tau_e=50.0)
    state = rule.init(jnp.zeros((I, O)), (I,), (O,), B)
    got = np.zeros((I, O))
    ap, ae = math.exp(-0.1), math.exp(-1 / 50)
    pre, post, e, want = np.zeros((B, I)), np.zeros((B, O)), np.zeros((B, I, O)), np.zeros((I, O))
    for t in range(T):
        sig = LocalSignals(jnp.asarray(xs[t]), None, jnp.asarray(posts[t]),
                           jnp.zeros((I, O)), jnp.asarray(mods[t]))
        dw, state = rule.update(state, sig)
        got += np.asarray(dw)
        pre = ap * pre + xs[t]
        before = ap * post
        post = before + posts[t]
        e = ae * e + (pre[:, :, None] * posts[t][:, None, :]
                      - 0.8 * xs[t][:, :, None] * before[:, None, :])
        want += 0.5 * np.einsum("b,bio->io", mods[t], e) / B
    np.testing.assert_allclose(got, want, rtol=1e-12)


class TwoLayer(nnx.Module):
    def __init__(self, rngs, n_in=5, n1=6, n2=4):
        f64 = dict(dtype=jnp.float64, param_dtype=jnp.float64)
        self.fc1 = nnx.Linear(n_in, n1, use_bias=False, rngs=rngs, **f64)
        self.lif1 = LIF(n1, tau=5.0, v_th=0.3)
        self.fc2 = nnx.Linear(n1, n2, use_bias=False, rngs=rngs, **f64)
        self.lif2 = LIF(n2, tau=5.0, v_th=0.3)

    def __call__(self, x):
        return self.lif2(self.fc2(self.lif1(self.fc1(x))))


def lif_numpy(v, current, tau=5.0, v_th=0.3):
    """brainscale's LIF (exp integrator, soft reset), forward pass."""
    d = math.exp(-1.0 / tau)
    v = v * d + current * (1 - d)
    s = (v >= v_th).astype(float)
    return v - v_th * s, s


def test_engine_finds_pre_and_post_and_applies_the_rule():
    """Hebb on both layers of a 2-layer LIF network: each step adds
    eta * mean_b(x_j post_k) to each weight, with x and the spikes of an
    independent numpy run of the same equations."""
    model = TwoLayer(nnx.Rngs(0))
    net = plasticity(model, {"params['fc1']['kernel']": hebbian.hebb(0.1),
                             "params['fc2']['kernel']": hebbian.hebb(0.2)})
    T, B = 8, 3
    xs = jax.random.bernoulli(jax.random.PRNGKey(1), 0.6, (T, B, 5)).astype(jnp.float64)
    state = net.init(jax.random.PRNGKey(0), xs[0])
    assert len(post_activity_vars(net.graph)) == 2       # both populations emit spikes
    w1, w2 = np.asarray(model.fc1.kernel[...]), np.asarray(model.fc2.kernel[...])
    v1, v2 = np.zeros((B, 6)), np.zeros((B, 4))
    n_spikes = 0
    for t in range(T):
        x = np.asarray(xs[t])
        v1, s1 = lif_numpy(v1, x @ w1)
        v2, s2 = lif_numpy(v2, s1 @ w2)
        n_spikes += s1.sum() + s2.sum()
        w1 = w1 + 0.1 * np.einsum("bi,bo->io", x, s1) / B
        w2 = w2 + 0.2 * np.einsum("bi,bo->io", s1, s2) / B
        state, out, dws = net.step(state, xs[t])
        np.testing.assert_array_equal(out, s2)
        np.testing.assert_allclose(state.params["fc1"]["kernel"], w1, rtol=1e-12)
        np.testing.assert_allclose(state.params["fc2"]["kernel"], w2, rtol=1e-12)
    assert n_spikes > 10
    # a scan over the sequence gives the same weights
    state2, outs = net.run(net.init(jax.random.PRNGKey(0), xs[0]), xs)
    np.testing.assert_allclose(state2.params["fc2"]["kernel"], w2, rtol=1e-12)


def test_rule_on_a_missing_or_unsupported_weight_is_named():
    model = TwoLayer(nnx.Rngs(0))
    x = jnp.ones((2, 5))
    with pytest.raises(bs.CompileError, match="params\\['fc3'\\]"):
        plasticity(model, {"params['fc3']['kernel']": hebbian.hebb(0.1)}).init(
            jax.random.PRNGKey(0), x)
    from brainscale.models.ei_network import ei_network
    ei = ei_network(5, 2, n_rec=20, rec_compute="segment")
    with pytest.raises(bs.CompileError, match="sparse op"):
        plasticity(ei, {"params['rec']['W']": hebbian.hebb(0.1)}).init(
            jax.random.PRNGKey(0), x)


class Hybrid(nnx.Module):
    """fc1 (local rule) -> LIF -> fc2 (gradient) -> LIF -> readout (gradient)."""

    def __init__(self, rngs, n_in=4, n1=12, n2=8, n_out=2):
        f64 = dict(dtype=jnp.float64, param_dtype=jnp.float64)
        self.fc1 = nnx.Linear(n_in, n1, use_bias=False, rngs=rngs, **f64)
        self.lif1 = LIF(n1, tau=5.0, v_th=0.3)
        self.fc2 = nnx.Linear(n1, n2, rngs=rngs, **f64)
        self.lif2 = LIF(n2, tau=5.0, v_th=0.3)
        self.out = nnx.Linear(n2, n_out, rngs=rngs, **f64)

    def __call__(self, x):
        return self.out(self.lif2(self.fc2(self.lif1(self.fc1(2.0 * x)))))


def rate_task(key, T=30, B=16, n_in=4):
    """Which half of the input channels fires more? Asked at every step."""
    k1, k2 = jax.random.split(key)
    label = jax.random.randint(k1, (B,), 0, 2)
    hi = jnp.repeat(jax.nn.one_hot(label, 2), n_in // 2, axis=1)
    xs = jax.random.bernoulli(k2, 0.1 + 0.5 * hi, (T, B, n_in)).astype(jnp.float64)
    return xs, jnp.broadcast_to(label, (T, B))


def test_a_hebbian_layer_beside_an_es_d_rtrl_layer():
    """SoftHebb on the first layer, ES-D-RTRL on the rest. The gradient of the
    other weights is the plain learner's, the ruled weight moves by its
    rule's summed update, and the network trains."""
    import optax
    rule = {"params['fc1']['kernel']": hebbian.softhebb(0.05)}
    xs, ys = rate_task(jax.random.PRNGKey(0))
    hybrid = bs.online(Hybrid(nnx.Rngs(0)), "es_d_rtrl", optimizer=optax.adam(2e-2), rules=rule)
    plain = bs.online(Hybrid(nnx.Rngs(0)), "es_d_rtrl")
    sh = hybrid.init(jax.random.PRNGKey(0), xs[0])
    sp = plain.init(jax.random.PRNGKey(0), xs[0])
    assert [op.path for op in hybrid.graph.trained_ops()] == [
        "params['fc2']['kernel']", "params['fc2']['bias']"]
    gh, _ = hybrid.sequence_grad(sh, xs, ys)
    gp, _ = plain.sequence_grad(sp, xs, ys)
    for name in ("fc2", "out"):
        for k in gh[name]:
            np.testing.assert_allclose(gh[name][k], gp[name][k], rtol=1e-10, atol=1e-14)
    # the ruled weight: W + sum_t dw_t, with the rule fed the recorded x and spikes
    alone = plasticity(Hybrid(nnx.Rngs(0)), rule)
    s_alone = alone.init(jax.random.PRNGKey(0), xs[0])
    total = 0.0
    for t in range(xs.shape[0]):
        s_alone, _, dw = alone.step(s_alone._replace(params=sh.params), xs[t])
        total = total + dw["params['fc1']['kernel']"]
    sh1, _ = hybrid.train_sequence(sh, xs, ys)
    np.testing.assert_allclose(sh1.params["fc1"]["kernel"], sh.params["fc1"]["kernel"] + total,
                               rtol=1e-10)
    # and the whole network learns the task
    state, first = sh, None
    for i in range(40):
        state, m = hybrid.train_sequence(state, *rate_task(jax.random.PRNGKey(i + 1)))
        first = float(m["loss"]) if first is None else first
    acc = np.mean([float(jnp.mean(hybrid.predict(state, xt)[-1].argmax(-1) == yt[-1]))
                   for xt, yt in (rate_task(jax.random.PRNGKey(900 + i)) for i in range(4))])
    assert float(m["loss"]) < 0.5 * first and acc >= 0.85, (first, float(m["loss"]), acc)


def test_triplet_stdp_equals_numpy_and_reduces_to_pairs():
    r = np.random.default_rng(7)
    T, B, I, O = 40, 2, 3, 2
    xs = (r.random((T, B, I)) < 0.3).astype(float)
    posts = (r.random((T, B, O)) < 0.3).astype(float)
    kw = dict(a2_plus=5e-3, a3_plus=6e-3, a2_minus=7e-3, a3_minus=2e-4,
              tau_plus=16.8, tau_x=101.0, tau_minus=33.7, tau_y=125.0)
    rule = stdp.triplet_stdp(**kw)
    state = rule.init(jnp.zeros((I, O)), (I,), (O,), B)
    got = np.zeros((I, O))
    for t in range(T):
        dw, state = rule.update(state, LocalSignals(jnp.asarray(xs[t]), None,
                                                    jnp.asarray(posts[t]), None, None))
        got += np.asarray(dw)
    dec = {k: math.exp(-1 / kw[k]) for k in ("tau_plus", "tau_x", "tau_minus", "tau_y")}
    r1, r2 = np.zeros((B, I)), np.zeros((B, I))
    o1, o2 = np.zeros((B, O)), np.zeros((B, O))
    want = np.zeros((I, O))
    for t in range(T):
        r1, r2, o1, o2 = (r1 * dec["tau_plus"], r2 * dec["tau_x"], o1 * dec["tau_minus"],
                          o2 * dec["tau_y"])
        for b in range(B):
            for j in range(I):
                for k in range(O):
                    ltp = posts[t, b, k] * (r1[b, j] + xs[t, b, j]) * (
                        kw["a2_plus"] + kw["a3_plus"] * o2[b, k])
                    ltd = xs[t, b, j] * o1[b, k] * (kw["a2_minus"] + kw["a3_minus"] * r2[b, j])
                    want[j, k] += (ltp - ltd) / B
        r1, r2, o1, o2 = r1 + xs[t], r2 + xs[t], o1 + posts[t], o2 + posts[t]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    # without the triplet terms it is the pair rule
    pair = stdp.stdp(a_plus=5e-3, a_minus=7e-3, tau_pre=16.8, tau_post=33.7)
    no3 = stdp.triplet_stdp(**{**kw, "a3_plus": 0.0, "a3_minus": 0.0})
    s1 = pair.init(jnp.zeros((I, O)), (I,), (O,), B)
    s2 = no3.init(jnp.zeros((I, O)), (I,), (O,), B)
    for t in range(T):
        sig = LocalSignals(jnp.asarray(xs[t]), None, jnp.asarray(posts[t]), jnp.zeros((I, O)),
                           None)
        d1, s1 = pair.update(s1, sig)
        d2, s2 = no3.update(s2, sig)
        np.testing.assert_allclose(d1, d2, rtol=1e-12, atol=1e-15)
