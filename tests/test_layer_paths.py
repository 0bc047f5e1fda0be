"""ES-D-RTRL's paths through the spiking layers above
(``bs.es_d_rtrl(through_layers=True)``): a lower layer's credit through the
upper layers' memory and the leaky readout, measured against BPTT on deep
networks written two ways (separate input and recurrent products, and one
product of concatenated spikes)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import brainscale as bs
from gradcheck import cosine, flat, float64, spike

N_IN, N, N_OUT, T, B = 12, 24, 4, 80, 4


def deep_lif(layers: int, concat: bool, beta=0.9, kappa=0.9):
    """snnTorch-style stack: v = beta v + I, s = H(v - 1), v -= s, under a
    leaky readout o = kappa o + s_L @ w_out."""
    def init(rng, x):
        keys = jax.random.split(rng, 2 * layers + 1)
        p, h = {}, {"o": jnp.zeros(N_OUT, x.dtype)}
        for i in range(layers):
            n_in = N_IN if i == 0 else N
            w_in = 3.0 * jax.random.normal(keys[2 * i], (n_in, N), x.dtype) / np.sqrt(n_in)
            w_rec = 0.5 * jax.random.normal(keys[2 * i + 1], (N, N), x.dtype) / np.sqrt(N)
            p[f"l{i}"] = ({"w": jnp.concatenate([w_in, w_rec])} if concat
                          else {"w_in": w_in, "w_rec": w_rec})
            h[f"l{i}"] = {"v": jnp.zeros(N, x.dtype), "s": jnp.zeros(N, x.dtype)}
        p["out"] = jax.random.normal(keys[-1], (N, N_OUT), x.dtype) / np.sqrt(N)
        return p, h

    def apply(p, h, x):
        new = {}
        for i in range(layers):
            q, st = p[f"l{i}"], h[f"l{i}"]
            cur = (jnp.concatenate([x, st["s"]]) @ q["w"] if concat
                   else x @ q["w_in"] + st["s"] @ q["w_rec"])
            v = beta * st["v"] + cur
            s = spike(v - 1.0)
            new[f"l{i}"] = {"v": v - s, "s": s}
            x = s
        o = kappa * h["o"] + x @ p["out"]
        new["o"] = o
        return new, o
    return bs.StepModel(init, apply)


def _grads(model, algorithms, xs, ys):
    out = {}
    for name, alg in algorithms.items():
        learner = bs.online(model, alg)
        state = learner.init(jax.random.PRNGKey(0), xs[0])
        out[name] = learner.sequence_grad(state, xs, ys)[0]
    return out


def _data(dtype=jnp.float32):
    xs = jax.random.bernoulli(jax.random.PRNGKey(1), 0.2, (T, B, N_IN)).astype(dtype)
    ys = jax.random.randint(jax.random.PRNGKey(2), (T, B), 0, N_OUT)
    return xs, ys


@pytest.mark.parametrize("concat", [False, True])
def test_bottom_layer_credit_through_the_layers_above(concat):
    xs, ys = _data()
    g = _grads(deep_lif(3, concat), {"bptt": bs.bptt(), "es": bs.es_d_rtrl(0.9),
                                     "layers": bs.es_d_rtrl(0.9, through_layers=True)}, xs, ys)
    ref = g["bptt"]
    for layer in ("l0", "l1"):
        ratio = lambda a: float(np.linalg.norm(flat(g[a][layer])) /  # noqa: E731
                                np.linalg.norm(flat(ref[layer])))
        assert ratio("es") < 0.2, (layer, ratio("es"))          # the paths it drops
        assert 0.3 < ratio("layers") < 1.5, (layer, ratio("layers"))
        assert cosine(g["layers"][layer], ref[layer]) > cosine(g["es"][layer], ref[layer])
    # the top layer and the readout are untouched by the option
    for key in ("l2", "out"):
        np.testing.assert_allclose(flat(g["layers"][key]), flat(g["es"][key]), rtol=1e-5,
                                   atol=1e-7)


def test_windows_give_the_step_by_step_gradient():
    with float64():
        xs, ys = _data(jnp.float64)
        model = deep_lif(2, True)
        g = _grads(model, {w: bs.es_d_rtrl(0.9, window=w, through_layers=True)
                           for w in (1, 7, None)}, xs, ys)
        for w in (7, None):
            np.testing.assert_allclose(flat(g[w]), flat(g[1]), rtol=1e-9, atol=1e-12)


def test_paths_found_and_chained():
    xs, _ = _data()
    model = deep_lif(3, True)
    plain = bs.online(model, bs.es_d_rtrl()).graph_for(xs[0])
    deep = bs.online(model, bs.es_d_rtrl(through_layers=True)).graph_for(xs[0])
    assert not any(p.through for p in plain.readout_paths)
    through = [p for p in deep.readout_paths if p.through]
    layer = lambda g: next(n for n in ("l0", "l1", "l2")  # noqa: E731
                           if f"['{n}']" in deep.groups[g].paths[0])
    # layer 1 -> 2 and 2 -> 3, each into the layer and on via the paths above it
    assert {(layer(p.group), layer(p.readout_group)) for p in through} == {("l0", "l1"),
                                                                          ("l1", "l2")}
    assert any(p.via is not None and deep.readout_paths[p.via].through for p in through)
    for p in through:
        assert p.x_slice == (0, N)       # the lower layer's spikes, not the layer's own
    with pytest.raises(ValueError, match="through_layers"):
        bs.es_d_rtrl(adaptive=True, through_layers=True)


def test_side_by_side_runs_name_the_variant():
    from brainscale.train.compare import learner_options
    from brainscale.train.plot_labels import algorithm_label

    assert learner_options("es_d_rtrl:layers", 0.9) == (
        "es_d_rtrl", {"decay": 0.9, "through_layers": True})
    assert algorithm_label("es_d_rtrl:layers") == "ES-D-RTRL-layers"
