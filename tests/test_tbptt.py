"""Truncated BPTT: gradients through each chunk of k steps only, the hidden
state passed on. Checked against a hand-written reference (a Python loop over
the steps with ``stop_gradient`` on the hidden state every k steps, one
``jax.grad`` of the whole thing), on models written in several styles; its
compiled memory grows with k, not with T."""
import subprocess
import sys

import jax
import jax.numpy as jnp
import optax
import pytest

import brainscale as bs
from gradcheck import float64, rel_err, spike
from test_exactness import data


def snntorch_style(I, N, C):
    """snnTorch Leaky: beta * mem + input, reset by subtraction of the
    previous step's spike; recurrent weights; leaky readout."""
    def init(key, x):
        k1, k2, k3 = jax.random.split(key, 3)
        return ({"fc1": {"w": jax.random.normal(k1, (N, I)) * 0.9, "b": jnp.zeros(N)},
                 "rec": jax.random.normal(k2, (N, N)) * 0.4,
                 "fc2": jax.random.normal(k3, (C, N)) * 0.6},
                {"mem": jnp.zeros(N), "spk": jnp.zeros(N), "out": jnp.zeros(C)})

    def apply(p, h, x):
        cur = p["fc1"]["w"] @ x + p["fc1"]["b"] + p["rec"] @ h["spk"]
        mem = 0.9 * h["mem"] + cur - h["spk"]
        spk = spike(mem - 1.0)
        out = 0.8 * h["out"] + p["fc2"] @ spk
        return {"mem": mem, "spk": spk, "out": out}, out
    return bs.StepModel(init, apply)


def gru_style(I, N, C):
    """A GRU cell as a paper writes it, on a tuple hidden state."""
    def init(key, x):
        ks = jax.random.split(key, 4)
        return ({"Wz": jax.random.normal(ks[0], (I + N, N)) * 0.5,
                 "Wr": jax.random.normal(ks[1], (I + N, N)) * 0.5,
                 "Wh": jax.random.normal(ks[2], (I + N, N)) * 0.5,
                 "Wo": jax.random.normal(ks[3], (N, C))}, (jnp.zeros(N),))

    def apply(p, h, x):
        (hh,) = h
        xh = jnp.concatenate([x, hh])
        z = jax.nn.sigmoid(xh @ p["Wz"])
        r = jax.nn.sigmoid(xh @ p["Wr"])
        cand = jnp.tanh(jnp.concatenate([x, r * hh]) @ p["Wh"])
        new = (1 - z) * hh + z * cand
        return (new,), new @ p["Wo"]
    return bs.StepModel(init, apply)


def reference(model, params, hidden, xs, ys, k):
    """d/dparams of the mean loss, the hidden state's gradient stopped every
    k steps: a Python loop over the steps, one jax.grad."""
    def total(params):
        h, losses = hidden, []
        for t in range(xs.shape[0]):
            if t % k == 0:
                h = jax.lax.stop_gradient(h)
            h, out = jax.vmap(lambda hh, x: model.apply(params, hh, x))(h, xs[t])
            losses.append(jnp.mean(jax.vmap(bs.losses.cross_entropy)(out, ys[t])))
        return jnp.mean(jnp.stack(losses))
    return jax.grad(total)(params)


@pytest.mark.parametrize("make", [snntorch_style, gru_style])
@pytest.mark.parametrize("k", [1, 3, 4, 10, 25])
def test_tbptt_equals_the_hand_written_truncation(make, k):
    """T = 10: k = 3 and 4 leave a shorter last chunk, k >= T is BPTT."""
    with float64():
        xs, ys = data(10, 2, 4, 3, p=0.6)
        model = make(4, 5, 3)
        learner = bs.online(model, "tbptt", k=k)
        state = learner.init(jax.random.PRNGKey(0), xs[0])
        grads, losses = learner.sequence_grad(state, xs, ys)
        want = reference(model, state.params, state.hidden, xs, ys, k)
        assert rel_err(grads, want) < 1e-12
        full, full_losses = bs.online(model, "bptt").sequence_grad(state, xs, ys)
        assert losses.shape == (10,)       # truncation leaves the forward pass alone
        assert float(jnp.max(jnp.abs(losses - full_losses))) < 1e-12
        if k >= 10:
            assert rel_err(grads, full) < 1e-12
        else:   # the truncation changes the gradient on these recurrent models
            full = reference(model, state.params, state.hidden, xs, ys, 10)
            assert rel_err(grads, full) > 1e-6


def test_tbptt_trains_and_its_memory_grows_with_k_not_t():
    """XLA's temp bytes for T = 64 and 512: flat for tbptt(k=8), growing
    about with T for BPTT; and a training step lowers the loss."""
    model = snntorch_style(6, 32, 3)
    temps = {}
    for name, alg in (("tbptt", bs.tbptt(k=8)), ("bptt", bs.bptt())):
        learner = bs.online(model, alg, optimizer=optax.adam(1e-2))
        for T in (64, 512):
            xs, ys = data(T, 4, 6, 3, p=0.3)
            state = learner.init(jax.random.PRNGKey(0), xs[0])
            compiled = learner.train_sequence.lower(state, xs, ys).compile()
            temps[name, T] = compiled.memory_analysis().temp_size_in_bytes
    assert temps["tbptt", 512] < 1.2 * temps["tbptt", 64], temps
    assert temps["bptt", 512] > 4 * temps["bptt", 64], temps
    assert temps["tbptt", 512] * 10 < temps["bptt", 512], temps

    learner = bs.online(model, bs.tbptt(k=8), optimizer=optax.adam(1e-2))
    xs, ys = data(40, 8, 6, 3, p=0.3)
    state = learner.init(jax.random.PRNGKey(0), xs[0])
    first = None
    for _ in range(30):
        state, m = learner.train_sequence(state, xs, ys)
        first = float(m["loss"]) if first is None else first
    assert float(m["loss"]) < 0.8 * first


@pytest.mark.parametrize("k", [0, -3, 2.5, True, "10", None, float("nan"), float("inf")])
def test_bad_k_is_refused_by_name(k):
    model = snntorch_style(3, 4, 2)
    with pytest.raises(ValueError, match=r"tbptt's k .* got"):
        bs.online(model, bs.tbptt(k=k))
    if k is not None:              # None as a keyword means "not given": the default k
        with pytest.raises(ValueError, match="tbptt's k"):
            bs.online(model, "tbptt", k=k)


def test_integral_k_of_any_numeric_type_is_taken():
    import numpy as np

    assert bs.tbptt(np.int64(12)).k == 12 and bs.tbptt(12.0).k == 12
    assert type(bs.tbptt(np.int32(3)).k) is int


def test_tbptt_has_no_online_step_and_says_so():
    model = snntorch_style(3, 4, 2)
    xs, ys = data(5, 2, 3, 2)
    learner = bs.online(model, "tbptt", k=2)
    state = learner.init(jax.random.PRNGKey(0), xs[0])
    with pytest.raises(ValueError, match="tbptt needs the whole sequence"):
        learner.step(state, xs[0], ys[0])


def test_train_command_takes_tbptt_and_k(tmp_path):
    """``brainscale train --algorithm tbptt --k 5`` runs and records k; a k
    below 1 stops before any work with the key named."""
    run = [sys.executable, "-m", "brainscale.cli.main", "train", "--task", "digits",
           "--algorithm", "tbptt", "--steps", "2", "--batch-size", "4"]
    ok = subprocess.run(run + ["--k", "5", "--out", str(tmp_path / "ok")],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert '"k": 5' in (tmp_path / "ok" / "config.json").read_text()
    bad = subprocess.run(run + ["--k", "0", "--out", str(tmp_path / "bad")],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "tbptt's k" in bad.stderr
    assert "Traceback" not in bad.stderr
