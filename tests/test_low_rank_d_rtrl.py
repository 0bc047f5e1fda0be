"""Low-rank D-RTRL: D-RTRL's per-sample traces cut to their best rank r each
step. Checked against numpy's SVD (the truncation), against D-RTRL itself
where no truncation can bite (rank above the trace's, or inputs along one
direction), on models written in several styles."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import brainscale as bs
from brainscale.train.compare import parse_algorithm
from brainscale.train.plot_labels import algorithm_label
from gradcheck import float64, rel_err, spike
from test_exactness import data
from test_tbptt import gru_style, snntorch_style
from transforms.learning.low_rank_d_rtrl import truncate


def norse_style(I, N, C):
    """Norse's LIF with a synaptic current (two states per neuron, explicit
    Euler with dt / tau), the input weights read into the current, spikes
    fed back through their own weights; memoryless readout of the membrane."""
    dt, tau_syn, tau_mem = 1e-3, 5e-3, 1e-2

    def init(key, x):
        k1, k2, k3 = jax.random.split(key, 3)
        return ({"input_weights": jax.random.normal(k1, (N, I)) * 40.0,
                 "recurrent_weights": jax.random.normal(k2, (N, N)) * 10.0,
                 "readout": jax.random.normal(k3, (C, N))},
                {"v": jnp.zeros(N), "i": jnp.zeros(N), "z": jnp.zeros(N)})

    def apply(p, s, x):
        v = s["v"] + dt / tau_mem * ((0.0 - s["v"]) + s["i"])
        i = s["i"] - dt / tau_syn * s["i"]
        z = spike(v - 1.0)
        v = (1 - z) * v
        i = i + p["input_weights"] @ x + p["recurrent_weights"] @ s["z"]
        return {"v": v, "i": i, "z": z}, p["readout"] @ v
    return bs.StepModel(init, apply)


def grads(model, algorithm, xs, ys):
    learner = bs.online(model, algorithm)
    state = learner.init(jax.random.PRNGKey(0), xs[0])
    return learner.sequence_grad(state, xs, ys)[0]


@pytest.mark.parametrize("m, n, c, rank", [(40, 30, 3, 2), (40, 30, 5, 4), (40, 30, 5, 1),
                                           (7, 1, 3, 2), (3, 9, 5, 4)])
def test_truncate_is_the_best_rank_r_approximation(m, n, c, rank):
    rng = np.random.default_rng(m + n + c + rank)
    A = rng.normal(size=(m, c)) * np.logspace(1, -2, c)      # spread singular values
    B = rng.normal(size=(n, c))
    with float64():
        a, b = truncate(jnp.asarray(A.T), jnp.asarray(B.T), rank)    # one factor per row
    U, S, Vt = np.linalg.svd(A @ B.T, full_matrices=False)
    best = (U[:, :rank] * S[:rank]) @ Vt[:rank]
    assert a.shape == (rank, m) and b.shape == (rank, n)
    assert np.linalg.norm(np.asarray(a).T @ np.asarray(b) - best) <= 1e-8 * np.linalg.norm(best)


def test_truncate_of_a_zero_or_lower_rank_product_is_exact_and_finite():
    a, b = truncate(jnp.zeros((3, 6)), jnp.zeros((3, 4)), 2)
    assert np.all(np.asarray(a) == 0) and np.all(np.asarray(b) == 0)
    rng = np.random.default_rng(0)
    A = rng.normal(size=(6, 3)).astype(np.float32)
    B = np.outer(rng.normal(size=5), [1.0, -2.0, 0.5]).astype(np.float32)   # rank 1
    a, b = truncate(jnp.asarray(A.T), jnp.asarray(B.T), 2)
    assert np.all(np.isfinite(np.asarray(a))) and np.all(np.isfinite(np.asarray(b)))
    np.testing.assert_allclose(np.asarray(a).T @ np.asarray(b), A @ B.T, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("make", [snntorch_style, gru_style, norse_style])
def test_at_full_rank_it_is_d_rtrl(make):
    """Rank above every trace's (min(rows, inputs) <= 12 here): no truncation
    bites, so the gradient is D-RTRL's (leaky readout path, several ops per
    group, two states per neuron)."""
    with float64():
        xs, ys = data(12, 2, 4, 3, p=0.5)
        model = make(4, 5, 3)
        exact = grads(model, bs.d_rtrl(), xs, ys)
        low = grads(model, bs.low_rank_d_rtrl(rank=12), xs, ys)
    assert rel_err(low, exact) < 1e-6


def test_rank_one_is_exact_when_the_input_keeps_one_direction():
    """x_t = c_t x0 per sample: the input weights' trace sum_s M(s..t) Df_s
    (x) x_s = (...) (x) x0 has rank one, so rank 1 loses nothing there (the
    recurrent weights, read from spikes in many directions, do lose)."""
    with float64():
        _, ys = data(15, 3, 4, 3)
        rng = np.random.default_rng(3)
        x0 = rng.random((3, 4))
        c = rng.random((15, 3, 1)) * (rng.random((15, 3, 1)) < 0.6)
        xs = jnp.asarray(2.0 * c * x0[None])
        model = snntorch_style(4, 5, 3)
        exact = grads(model, bs.d_rtrl(), xs, ys)
        low = grads(model, bs.low_rank_d_rtrl(rank=1), xs, ys)
    assert rel_err(low["fc1"]["w"], exact["fc1"]["w"]) < 1e-8
    assert rel_err(low["rec"], exact["rec"]) > 1e-3


def test_rank_is_checked_and_named_everywhere():
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="rank"):
            bs.low_rank_d_rtrl(bad)
    assert bs.low_rank_d_rtrl(np.int64(3)).rank == 3
    assert bs.ALGORITHMS["low_rank_d_rtrl"](rank=4).rank == 4
    with pytest.raises(ValueError, match="no option 'decay'"):
        from transforms.learning.algorithms import from_name
        from_name("low_rank_d_rtrl", decay=0.9)
    assert parse_algorithm("low_rank_d_rtrl:4") == ("low_rank_d_rtrl", {"rank": 4})
    assert parse_algorithm("low_rank_d_rtrl") == ("low_rank_d_rtrl", {})
    with pytest.raises(ValueError, match="low_rank_d_rtrl:R"):
        parse_algorithm("low_rank_d_rtrl:two")
    assert algorithm_label("low_rank_d_rtrl:4") == "low-rank D-RTRL (rank 4)"
    assert algorithm_label("tbptt:50") == "TBPTT-50"


def test_train_command_takes_low_rank_d_rtrl_and_rank(tmp_path):
    """``brainscale train --algorithm low_rank_d_rtrl --rank 3`` records the
    rank in the config and builds that learner; a rank below 1 stops at the
    build, before any training, naming the rank."""
    from brainscale.cli.main import build_parser
    from brainscale.cli.train import config_from_args
    from brainscale.train.runner import build

    def config(rank):
        return config_from_args(build_parser().parse_args(
            ["train", "--task", "digits", "--algorithm", "low_rank_d_rtrl", "--rank", rank,
             "--batch-size", "4", "--set", "model.hidden=[8]", "--out", str(tmp_path)]))
    cfg = config("3")
    assert cfg.algorithm == "low_rank_d_rtrl" and cfg.learner == {"rank": 3}
    _, learner, state = build(cfg)
    assert learner.algorithm.rank == 3
    assert jax.tree.leaves(state.traces.V)[0].shape[:2] == (4, 3)
    with pytest.raises(ValueError, match="rank must be an integer >= 1"):
        build(config("0"))
