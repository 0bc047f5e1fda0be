"""Steps written the way people write them: shared parameters, learnable
neuron parameters, state vectors, delay lines, integer counters, complex
states, weight ops under ``cond``, sub-stepping, mixing between neurons.
Each against an independent ``jax.grad`` of a scan (float64): BPTT exact
everywhere, D-RTRL exact on every single feed-forward layer; where neurons
are mixed outside a weight op the graph lists the cut. ES-D-RTRL is an
approximation everywhere; here it must give a descent direction (its
cosine to BPTT on each model is measured in ``benchmarks/zoo_coverage.py``)."""
import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import brainscale as bs
from gradcheck import algorithm, cosine, float64, rel_err, scan_reference, spike

N, I, T, B = 4, 3, 8, 2


def ce(out, y):
    return -jax.nn.log_softmax(out)[y]


def reference(init, apply, derivative=jax.grad):
    """Data, and the gradient of the mean loss by jax.grad through lax.scan
    (``derivative=jax.jacfwd``: forward mode, for steps reverse mode cannot
    differentiate)."""
    xs = jax.random.uniform(jax.random.PRNGKey(1), (T, B, I), jnp.float64)
    ys = jax.random.randint(jax.random.PRNGKey(2), (T, B), 0, 2)
    return xs, ys, scan_reference(init, apply, xs, ys, derivative, ce)


def grads(init, apply, name, xs, ys):
    learner = bs.online(bs.StepModel(init, apply), algorithm(name, 0.5), loss=ce)
    state = learner.init(jax.random.PRNGKey(0), xs[0])
    return learner.sequence_grad(state, xs, ys)[0], learner


def params(rng, **extra):
    k1, k2 = jax.random.split(rng)
    return dict({"w": jax.random.normal(k1, (I, N)), "wo": jax.random.normal(k2, (N, 2))},
                **extra)


# -- feed-forward single layers: D-RTRL exact ------------------------------------
def thr_init(rng, x):
    return params(rng, thr=jnp.asarray(0.5)), {"v": jnp.zeros(N)}


def thr_apply(p, h, x):          # snnTorch-style learnable threshold, used twice
    v = 0.8 * h["v"] + x @ p["w"]
    s = spike(v - p["thr"])
    return {"v": v - s * p["thr"]}, s @ p["wo"] + 0.1 * v @ p["wo"]


def tau_init(rng, x):
    return params(rng, tau=jnp.linspace(2.0, 5.0, N)), {"v": jnp.zeros(N)}


def tau_apply(p, h, x):          # per-neuron time constant read twice
    a = jnp.exp(-1.0 / p["tau"])
    v = a * h["v"] + (1 - a) * (x @ p["w"])
    s = spike(v - 0.3)
    return {"v": v - 0.3 * s}, v @ p["wo"]


def div_init(rng, x):
    return params(rng, tau=jnp.full((N,), 4.0), reset=jnp.asarray(0.1)), {"v": jnp.zeros(N)}


def div_apply(p, h, x):          # tau in a division, a learnable reset value in a where
    v = h["v"] + (x @ p["w"] - h["v"]) / p["tau"]
    s = spike(v - 0.4)
    return {"v": jnp.where(s > 0, p["reset"], v)}, v @ p["wo"]


def stacked_init(rng, x):
    return params(rng), {"z": jnp.zeros((N, 2))}


def stacked_apply(p, h, x):      # resonate-and-fire with a state axis
    v, u = h["z"][..., 0], h["z"][..., 1]
    v2, u2 = 0.9 * v - 0.2 * u + x @ p["w"], 0.2 * v + 0.9 * u
    s = spike(v2 - 0.5)
    return {"z": jnp.stack([v2 - 0.5 * s, u2], -1)}, (v2 + u2) @ p["wo"]


def separate_init(rng, x):
    return params(rng), {"v": jnp.zeros(N), "u": jnp.zeros(N)}


def separate_apply(p, h, x):     # the same neuron, one array per state
    v, u = h["v"], h["u"]
    v2, u2 = 0.9 * v - 0.2 * u + x @ p["w"], 0.2 * v + 0.9 * u
    s = spike(v2 - 0.5)
    return {"v": v2 - 0.5 * s, "u": u2}, (v2 + u2) @ p["wo"]


def chunked_init(rng, x):
    return params(rng), {"vt": jnp.zeros(2 * N)}


def chunked_apply(p, h, x):      # spyx-style ALIF: v and the threshold in one (2N,) array
    v, thr = jnp.split(h["vt"], 2)
    s = spike(v - 0.5 - thr)
    v = 0.8 * v + x @ p["w"] - s * (0.5 + thr)
    thr = 0.9 * thr + 0.1 * s
    return {"vt": jnp.concatenate([v, thr])}, v @ p["wo"]


def sliced_apply(p, h, x):       # the same with slices
    v, thr = h["vt"][:N], h["vt"][N:]
    s = spike(v - 0.5 - thr)
    v = 0.8 * v + x @ p["w"] - s * (0.5 + thr)
    thr = 0.9 * thr + 0.1 * s
    return {"vt": jnp.concatenate([v, thr])}, v @ p["wo"]


def delay_init(rng, x):
    return params(rng), {"v": jnp.zeros(N), "buf": jnp.zeros((3, N))}


def delay_apply(p, h, x):        # a 3-step spike delay line as a shift buffer
    v = 0.8 * h["v"] + x @ p["w"]
    s = spike(v - 0.3)
    buf = jnp.concatenate([h["buf"][1:], s[None]])
    return {"v": v - 0.3 * s, "buf": buf}, h["buf"][0] @ p["wo"] + 0.1 * v @ p["wo"]


def ring_init(rng, x):
    return params(rng), {"v": jnp.zeros(N), "buf": jnp.zeros((3, N)),
                         "i": jnp.zeros((), jnp.int32)}


def ring_apply(p, h, x):         # a delay line as a ring buffer written at a moving index
    v = 0.8 * h["v"] + x @ p["w"]
    s = spike(v - 0.3)
    i = h["i"]
    delayed = h["buf"][(i + 1) % 3]
    buf = h["buf"].at[i].set(s)
    return {"v": v - 0.3 * s, "buf": buf, "i": (i + 1) % 3}, delayed @ p["wo"] + 0.1 * v @ p["wo"]


def counter_init(rng, x):
    return params(rng), {"v": jnp.zeros(N), "ref": jnp.zeros(N, jnp.int32)}


def counter_apply(p, h, x):      # integer refractory counter
    v = jnp.where(h["ref"] == 0, 0.8 * h["v"] + x @ p["w"], h["v"])
    s = spike(v - 0.3)
    ref = jnp.where(s > 0, 2, jnp.maximum(h["ref"] - 1, 0)).astype(jnp.int32)
    return {"v": v - 0.3 * s, "ref": ref}, v @ p["wo"]


def complex_init(rng, x):
    return params(rng), {"z": jnp.zeros(N, jnp.complex128)}


def complex_apply(p, h, x):      # complex resonator, spikes from the imaginary part
    z = h["z"] * jnp.exp(-0.1 + 0.5j) + x @ p["w"]
    s = spike(z.imag - 0.3)
    return {"z": z}, (s + 0.1 * z.real) @ p["wo"]


def cond_init(rng, x):
    return params(rng, w2=jax.random.normal(jax.random.PRNGKey(3), (I, N))), {"v": jnp.zeros(N)}


def cond_apply(p, h, x):         # a weight op under lax.cond on a mode flag
    i = jax.lax.cond(x[-1] > 0.5, lambda: x @ p["w"], lambda: 0.5 * (x @ p["w2"]))
    v = 0.8 * h["v"] + i
    s = spike(v - 0.3)
    return {"v": v - 0.3 * s}, v @ p["wo"]


def substep_init(rng, x):
    return params(rng), {"v": jnp.zeros(N)}


def substep_apply(p, h, x):      # 4 Euler sub-steps per time step
    i = x @ p["w"]
    v = jax.lax.fori_loop(0, 4, lambda k, v: v + 0.25 * (i - v), h["v"])
    s = spike(v - 0.3)
    return {"v": v - 0.3 * s}, v @ p["wo"]


EXACT = {"threshold": (thr_init, thr_apply), "tau": (tau_init, tau_apply),
         "div_where": (div_init, div_apply), "stacked": (stacked_init, stacked_apply),
         "delay": (delay_init, delay_apply), "ring": (ring_init, ring_apply),
         "counter": (counter_init, counter_apply), "chunked": (chunked_init, chunked_apply),
         "sliced": (chunked_init, sliced_apply),
         "complex": (complex_init, complex_apply), "cond": (cond_init, cond_apply),
         "substep": (substep_init, substep_apply)}


@pytest.mark.parametrize("name", sorted(EXACT))
def test_single_layer_exact(name):
    with float64():
        init, apply = EXACT[name]
        xs, ys, ref = reference(init, apply)
        for alg in ("bptt", "d_rtrl"):
            g, _ = grads(init, apply, alg, xs, ys)
            assert rel_err(g, ref) < 1e-10, (alg, rel_err(g, ref))
        g, _ = grads(init, apply, "es_d_rtrl", xs, ys)   # approximate: a descent direction
        assert cosine(g, ref) > 0.5


def test_stacked_state_equals_separate_arrays():
    with float64():
        xs, ys, _ = reference(stacked_init, stacked_apply)
        for alg in ("bptt", "d_rtrl", "es_d_rtrl"):
            a, learner = grads(stacked_init, stacked_apply, alg, xs, ys)
            b, _ = grads(separate_init, separate_apply, alg, xs, ys)
            np.testing.assert_allclose(np.asarray(a["w"]), np.asarray(b["w"]), rtol=1e-12)
            np.testing.assert_allclose(np.asarray(a["wo"]), np.asarray(b["wo"]), rtol=1e-12)
        assert "hidden['z']: axis 1 (2 states)" in str(learner.graph)


def test_chunked_state_is_listed():
    with float64():
        xs, ys, _ = reference(chunked_init, chunked_apply)
        _, learner = grads(chunked_init, chunked_apply, "d_rtrl", xs, ys)
    assert f"hidden['vt']: axis 0: 2 chunks of {N} neurons" in str(learner.graph)


def test_shared_parameter_gets_one_op_per_use():
    with float64():
        xs, ys, _ = reference(thr_init, thr_apply)
        _, learner = grads(thr_init, thr_apply, "d_rtrl", xs, ys)
    uses = [op for op in learner.graph.ops if op.path == "params['thr']"]
    assert len(uses) == 2 and all(op.groups == [0] for op in uses)


# -- mixing between neurons: cut for the traces, exact for BPTT ----------------------
def lateral_init(rng, x):
    return params(rng), {"v": jnp.zeros(N)}


def lateral_apply(p, h, x):
    v = 0.8 * h["v"] + x @ p["w"]
    s = spike(v - 0.3)
    v = v - 0.1 * (jnp.sum(s) - s)  # lateral inhibition
    return {"v": v - 0.3 * s}, v @ p["wo"]


def norm_apply(p, h, x):
    i = x @ p["w"]
    i = (i - jnp.mean(i)) / jnp.sqrt(jnp.var(i) + 1e-3)  # normalised current
    v = 0.8 * h["v"] + i
    s = spike(v - 0.3)
    return {"v": v - 0.3 * s}, v @ p["wo"]


def global_init(rng, x):
    return params(rng), {"v": jnp.zeros(N), "g": jnp.zeros(())}


def global_apply(p, h, x):       # a scalar inhibitory population read by every neuron
    v = 0.8 * h["v"] + x @ p["w"] - 0.3 * h["g"]
    s = spike(v - 0.3)
    g = 0.9 * h["g"] + jnp.sum(s)  # inhibition from all neurons
    return {"v": v - 0.3 * s, "g": g}, v @ p["wo"]


def tied_init(rng, x):
    return (params(rng, r=0.3 * jax.random.normal(jax.random.PRNGKey(5), (N, N))),
            {"v": jnp.zeros(N), "s": jnp.zeros(N)})


def tied_apply(p, h, x):         # symmetric recurrent weights
    v = 0.8 * h["v"] + x @ p["w"] + h["s"] @ p["r"] + h["s"] @ p["r"].T
    s = spike(v - 0.3)
    return {"v": v - 0.3 * s, "s": s}, v @ p["wo"]


@pytest.mark.parametrize("init,apply,cut", [
    (lateral_init, lateral_apply, "reduce_sum"), (lateral_init, norm_apply, "reduce_sum"),
    (global_init, global_apply, "reduce_sum"), (tied_init, tied_apply, None)])
def test_mixing_is_cut_and_listed(init, apply, cut):
    with float64():
        xs, ys, ref = reference(init, apply)
        g, _ = grads(init, apply, "bptt", xs, ys)
        assert rel_err(g, ref) < 1e-10
        for alg in ("d_rtrl", "es_d_rtrl"):
            g, learner = grads(init, apply, alg, xs, ys)
            assert cosine(g, ref) > 0.9, (alg, cosine(g, ref))
    text = str(learner.graph)
    if cut:
        import inspect
        line = inspect.getsourcelines(apply)[1] + next(
            k for k, l in enumerate(inspect.getsource(apply).splitlines())
            if "inhibition" in l or "normalised" in l)
        assert "approximations" in text and cut in text
        assert f"test_general_steps.py:{line}" in text
    else:
        assert "approximations" not in text


def test_while_loop_bptt_names_the_line():
    def apply(p, h, x):
        i = x @ p["w"]
        _, v = jax.lax.while_loop(lambda c: c[0] < 1.0,
                                  lambda c: (c[0] + 0.3, c[1] + 0.3 * (i - c[1])),
                                  (0.0, h["v"]))  # adaptive integrator
        return {"v": v}, v @ p["wo"]
    xs = jnp.ones((T, B, I))
    learner = bs.online(bs.StepModel(lambda r, x: (params(r), {"v": jnp.zeros(N)}), apply),
                        algorithm="bptt", loss=ce)
    state = learner.init(jax.random.PRNGKey(0), xs[0])
    with pytest.raises(bs.CompileError) as e:
        learner.sequence_grad(state, xs, jnp.zeros((T, B), jnp.int32))
    assert e.value.primitive == "while" and "test_general_steps.py" in str(e.value)


def while_init(rng, x):
    return params(rng), {"v": jnp.zeros(N)}


def while_apply(p, h, x):        # an integrator with a run-time step count
    i = x @ p["w"]

    def body(c):
        t, v = c
        dt = jnp.minimum(0.3, 1.0 - t)
        return t + dt, v + dt * (i - v)
    _, v = jax.lax.while_loop(lambda c: c[0] < 1.0, body, (0.0, h["v"]))
    s = spike(v - 0.3)
    return {"v": v - 0.3 * s}, v @ p["wo"]


def test_while_loop_trains_online_exactly():
    """Reverse mode cannot go through the loop; the reference is forward mode
    (jax.jacfwd of the same scan) and D-RTRL matches it."""
    with float64():
        xs, ys, ref = reference(while_init, while_apply, jax.jacfwd)
        g, _ = grads(while_init, while_apply, "d_rtrl", xs, ys)
        assert rel_err(g, ref) < 1e-10
        g, _ = grads(while_init, while_apply, "es_d_rtrl", xs, ys)
        assert cosine(g, ref) > 0.5


def nest_apply(p, h, x):
    """NEST-style adaptive integrator: a step size per neuron, the loop runs
    while any neuron has time left, a scalar instability flag reduced over
    neurons, a size-one constant shared by all neurons, and brainstate's
    run-time error check after the loop (a ``cond`` whose taken branch calls
    back and raises)."""
    i = x @ p["w"]
    gain = jnp.asarray([1.5])          # one receptor's constant, shape (1,), shared

    def body(c):
        t, v, dt, bad, n = c
        active = t < 1.0
        dt = jnp.where(active, jnp.minimum(dt, 1.0 - t), dt)
        v_new = v + dt * (gain * i - v)
        bad = bad | jnp.any(active & (v_new < -1e3))
        return (jnp.where(active, t + dt, t), jnp.where(active, v_new, v),
                jnp.where(active, dt * 1.5, dt), bad, n + 1)
    c0 = (jnp.zeros(N), h["v"], h["dt"], jnp.array(False), jnp.array(0, jnp.int32))
    _, v, dt, bad, _ = jax.lax.while_loop(lambda c: jnp.any(c[0] < 1.0) & (c[4] < 100),
                                          body, c0)
    brainstate.transform.jit_error_if(bad, "numerical instability")
    s = spike(v - 0.3)
    return {"v": v - 0.3 * s, "dt": dt}, v @ p["wo"]


def test_adaptive_integrator_with_error_check_trains_online_exactly():
    """The error check's callback runs only when its condition holds (its
    branch is never computed unconditionally), and D-RTRL matches forward mode."""
    init = lambda rng, x: (params(rng), {"v": jnp.zeros(N), "dt": jnp.linspace(0.1, 0.4, N)})
    with float64():
        xs, ys, ref = reference(init, nest_apply, jax.jacfwd)
        for name in ("d_rtrl", "es_d_rtrl"):
            g, _ = grads(init, nest_apply, name, xs, ys)
            jax.effects_barrier()
            if name == "d_rtrl":
                assert rel_err(g, ref) < 1e-10
            else:
                assert cosine(g, ref) > 0.5
