"""Spiking CNNs with leaky neurons through NIR: ``LIF``, ``CubaLIF``, ``LI``
and ``CubaLI`` on feature maps ``(C, H, W)``, as snnTorch and Norse write
them after a ``Conv2d`` or a pooling layer. Graphs built with ``nir``'s own
constructors run as NIR's equations say under the project's step (input
held over a step; ``np_neuron`` in test_nir_conv); a BrainScale CNN with
``LIF`` and ``Expon`` + ``LIF`` goes to a file and back with the same
spikes; D-RTRL's gradient on a conv -> LIF layer equals BPTT's; a field
that does not fit the feature map is an error naming node and field."""
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

nir = pytest.importorskip("nir")

import brainscale as bs  # noqa: E402
from brainscale.interop.nir import NIRImportError, from_nir, write_nir  # noqa: E402
from gradcheck import float64, rel_err, sequence_grads  # noqa: E402
from test_nir import assert_exports_the_same_graph, run, run_both  # noqa: E402
from test_nir_conv import chain, conv_data, imported_cnn_trains_exactly, reference  # noqa: E402,E501


def fields(shape, **values):
    return {k: np.full(shape, float(v)) for k, v in values.items()}


# one value per node; ``snntorch``: its export with beta = 0.8, alpha = 0.7 at
# dt = 1e-4 (tau = dt / (1 - beta), r = tau / dt, w_in = tau_syn / dt)
PARAMS = {
    "own": dict(lif=dict(tau=4.0, r=2.0, v_leak=0.1, v_threshold=1.0, v_reset=-0.2),
                cuba=dict(tau_syn=2.0, tau_mem=5.0, r=3.0, w_in=1.5, v_leak=0.0,
                          v_threshold=1.0, v_reset=0.0),
                li=dict(tau=3.0, r=1.5, v_leak=0.1)),
    "snntorch": dict(lif=dict(tau=5e-4, r=5.0, v_leak=0.0, v_threshold=1.0, v_reset=0.0),
                     cuba=dict(tau_syn=1e-4 / 0.3, tau_mem=5e-4, r=5.0, w_in=1 / 0.3,
                               v_leak=0.0, v_threshold=1.0, v_reset=0.0),
                     li=dict(tau=5e-4, r=5.0, v_leak=0.0)),
}


def leaky_cnn(params="own", one_value=None, pool="SumPool2d", readout="LI", seed=0,
              scale=1.0, dt=None):
    """Input (2, 10, 10) -> Conv2d (pad 1) -> LIF on (4, 10, 10) -> pool 2 ->
    Conv2d (stride 2, pad 1) -> CubaLIF on (6, 3, 3) -> Flatten -> Affine ->
    readout on 5 (LI, LIF or CubaLI) -> Output. Each field holds one value,
    as an array of the population's shape, or of shape ``one_value`` (``()``
    as snnTorch writes a scalar beta, or ``(1,)``) and ``(6, 1, 1)`` for the
    CubaLIF (per channel), swapped in after NIR typed the graph (its type
    check refuses them after a Conv2d). ``dt`` goes into the metadata."""
    rs, p = np.random.default_rng(seed), PARAMS[params]
    cuba_li = {k: v for k, v in p["cuba"].items() if not k.startswith("v_") or k == "v_leak"}
    neurons = lambda shapes: {  # noqa: E731
        "lif1": nir.LIF(**fields(shapes[0], **p["lif"])),
        "cuba": nir.CubaLIF(**fields(shapes[1], **p["cuba"])),
        "readout": {"LI": lambda: nir.LI(**fields(shapes[2], **p["li"])),
                    "LIF": lambda: nir.LIF(**fields(shapes[2], **p["lif"])),
                    "CubaLI": lambda: nir.CubaLI(**fields(shapes[2], **cuba_li))}[readout]()}
    n = neurons([(4, 10, 10), (6, 3, 3), (5,)])
    nodes = {
        "input": nir.Input(np.array([2, 10, 10])),
        "conv1": nir.Conv2d(input_shape=(10, 10), weight=rs.normal(0.2, 0.5, (4, 2, 3, 3))
                            * scale, stride=1, padding=1, dilation=1, groups=1,
                            bias=np.zeros(4, np.float32)),
        "lif1": n["lif1"],
        "pool": getattr(nir, pool)(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                                   padding=np.array([0, 0])),
        "conv2": nir.Conv2d(input_shape=None, weight=rs.normal(0.1, 0.5, (6, 4, 3, 3))
                            * scale, stride=2, padding=1, dilation=1, groups=1,
                            bias=rs.normal(0, 0.2, 6)),
        "cuba": n["cuba"],
        "flat": nir.Flatten(input_type=None, start_dim=0, end_dim=-1),
        "fc": nir.Affine(weight=rs.normal(0.1, 0.5, (5, 54)) * scale, bias=np.full(5, 0.1)),
        "readout": n["readout"], "output": nir.Output(np.array([5]))}
    keys = list(nodes)
    g = nir.NIRGraph(nodes=nodes, edges=list(zip(keys[:-1], keys[1:])),
                     metadata={} if dt is None else {"dt": dt})
    if one_value is not None:
        g.nodes.update(neurons([one_value, (6, 1, 1), one_value]))
    return g


VARIANTS = {   # (graph options, dt argument to from_nir, through a .nir file)
    "arrays_sumpool_li": (dict(dt=0.5), None, False),
    "snntorch_scalars_avgpool_lif": (dict(params="snntorch", one_value=(), pool="AvgPool2d",
                                          readout="LIF", scale=0.5, seed=1), 1e-4, False),
    "one_value_cubali_file": (dict(one_value=(1,), readout="CubaLI", seed=2, dt=0.5), None,
                              True),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_an_snntorch_style_leaky_cnn_runs_nirs_equations(name, tmp_path):
    opts, dt, through_file = VARIANTS[name]
    g = leaky_cnn(**opts)
    src = g
    if through_file:      # NIR reads it back only unchecked: from_nir checks the shapes
        src = tmp_path / "cnn.nir"
        nir.write(src, g)
    T = 30
    xs = (np.random.default_rng(5).random((T, 1, 2, 10, 10)) < 0.4).astype(np.float64)
    with float64():
        net = from_nir(src, dt=dt)
        got = run(net, xs, lambda m, x: m.step(x))
    ref = reference(g, xs[:, 0], dt or g.metadata["dt"])
    assert dict(net.shapes)["lif1"] == (4, 10, 10) and dict(net.shapes)["cuba"] == (6, 3, 3)
    for k, r in ref.items():
        assert dict(net.shapes)[k] == r.shape[1:], k
        if isinstance(g.nodes[k], (nir.LIF, nir.CubaLIF)):
            assert 0.02 < r.mean() < 0.9, (k, r.mean())      # every layer spikes, not all
            assert np.array_equal(got[k][:, 0], r), k
        else:
            assert k != "readout" or np.abs(r).max() > 0.5
            np.testing.assert_allclose(got[k][:, 0], r, rtol=1e-9, atol=1e-9, err_msg=k)


# -- BrainScale -> .nir file -> BrainScale ---------------------------------------
def bs_leaky_cnn():
    """Conv -> LIF on (4, 8, 8) -> AvgPool -> AlignPost(Conv, Expon, LIF) on
    (6, 4, 4) -> SumPool -> Conv 1x1 -> Expon -> LIF (a CubaLIF in a sequence)
    -> Flatten -> LeakyReadout."""
    r, dt = nnx.Rngs(5), 0.5
    return nnx.Sequential(
        bs.nn.Conv2d(2, 4, 3, padding=1, rngs=r, scale=8.0, use_bias=True),
        bs.nn.LIF((4, 8, 8), reset="hard", dt=dt, tau=4.0, R=2.0, v_rest=0.1, v_init=0.1),
        bs.nn.AvgPool2d(2),
        bs.nn.AlignPost(bs.nn.Conv2d(4, 6, 3, padding=1, rngs=r, scale=10.0),
                        bs.nn.Expon((6, 4, 4), tau=2.0, dt=dt),
                        bs.nn.LIF((6, 4, 4), reset="hard", dt=dt, tau=5.0, v_reset=-0.2)),
        bs.nn.SumPool2d(2),
        bs.nn.Conv2d(6, 6, 1, rngs=r, scale=4.0),
        bs.nn.Expon((6, 2, 2), tau=3.0, dt=dt),
        bs.nn.LIF((6, 2, 2), reset="hard", dt=dt, tau=6.0, v_th=0.8, spike_fn=bs.nn.Arctan()),
        bs.nn.Flatten(),
        bs.nn.LeakyReadout(24, 5, rngs=r, dt=dt, tau=8.0, use_bias=True))


def test_brainscale_leaky_cnn_round_trip_through_a_file(tmp_path):
    net = bs_leaky_cnn()
    path = tmp_path / "cnn.nir"
    g = write_nir(net, path, input_shape=(2, 8, 8))
    assert [type(n).__name__ for n in g.nodes.values()] == [
        "Input", "Conv2d", "LIF", "AvgPool2d", "Conv2d", "CubaLIF", "SumPool2d", "Conv2d",
        "CubaLIF", "Flatten", "Affine", "LI", "Output"]
    assert g.nodes["layers[1]"].tau.shape == (4, 8, 8)
    assert g.nodes["layers[3].post"].tau_syn.shape == (6, 4, 4)
    assert g.nodes["layers[7]"].v_threshold.shape == (6, 2, 2)
    back = from_nir(path)
    xs = (np.random.default_rng(7).random((60, 3, 2, 8, 8)) < 0.3).astype(np.float32)

    (y0, s0), (y1, s1) = run_both(net, back, xs, {1: "layers[1]", 3: "layers[3].post",
                                                   7: "layers[7]"})
    for a, b in zip(s0, s1):
        assert 0.02 < a.mean() < 0.9, a.mean()
        assert np.array_equal(a, b)
    assert np.abs(y0).max() > 0.5
    np.testing.assert_allclose(y1, y0, rtol=1e-6, atol=1e-6)
    assert_exports_the_same_graph(back, g)      # and out again: the same graph


# -- online learning: LIF on a feature map ----------------------------------------
class ConvLIF(nnx.Module):
    """Conv2d (stride 2, padding 1, bias) -> [Expon ->] LIF on the (3, 4, 4)
    map -> Flatten -> a stateless readout: one feed-forward layer, where
    D-RTRL's per-neuron traces are exact."""

    def __init__(self, rngs, reset="soft", syn=False):
        conv = bs.nn.Conv2d(2, 3, 3, stride=2, padding=1, use_bias=True, rngs=rngs, scale=3.0)
        lif = bs.nn.LIF((3, 4, 4), tau=4.0, R=2.0 if syn else 3.0, reset=reset,
                        spike_fn=bs.nn.SuperSpike())
        self.layer = bs.nn.AlignPost(conv, bs.nn.Expon((3, 4, 4), tau=2.0) if syn else None,
                                     lif)
        self.flat = bs.nn.Flatten()
        self.out = bs.nn.LinearReadout(48, 3, rngs=rngs)

    def __call__(self, x):
        s = self.layer(x)
        self.rate = s
        return self.out(self.flat(s))


@pytest.mark.parametrize("reset, syn", [("soft", False), ("hard", False), ("hard", True)])
def test_conv_lif_layer_d_rtrl_equals_bptt(reset, syn):
    with float64():
        xs, ys = conv_data()
        rate = run(ConvLIF(nnx.Rngs(0), reset, syn), xs, lambda m, x: (m(x), m.rate)[1]).mean()
        assert 0.05 < rate < 0.9, rate
        g, _ = sequence_grads(ConvLIF(nnx.Rngs(0), reset, syn), xs, ys, ("bptt", "d_rtrl"))
        assert float(jnp.abs(g["bptt"]["layer"]["comm"]["W"]).max()) > 1e-3
        assert rel_err(g["d_rtrl"], g["bptt"]) < 1e-10


def test_an_imported_cubalif_cnn_trains_online():
    """CubaLIF on the conv's feature map: D-RTRL's gradient is BPTT's."""
    imported_cnn_trains_exactly("cuba", nir.CubaLIF(**fields((3, 4, 4), **PARAMS["own"]["cuba"])))


# -- errors ----------------------------------------------------------------------
def damaged(node, **fields):
    """``node`` with fields NIR's constructor would refuse, as a file may hold."""
    for k, v in fields.items():
        setattr(node, k, v)
    return node



def lif(shape, **kw):
    return nir.LIF(**fields(shape, **{**PARAMS["own"]["lif"], **kw}))


def conv():
    return nir.Conv2d(input_shape=None, weight=np.ones((3, 2, 3, 3)), bias=np.zeros(3),
                      stride=1, padding=0, dilation=1, groups=1)


@pytest.mark.parametrize("graph, match", [
    (lambda: chain(("c", conv()), ("lif", lif((3,)))),
     r"node 'lif' \(LIF\): field 'tau' has shape \(3,\), which does not broadcast to the "
     r"population's shape \(3, 4, 4\)"),
    (lambda: chain(("c", conv()), ("lif", damaged(lif((3, 4, 4)), v_leak=np.zeros((4, 4, 3))))),
     r"node 'lif' \(LIF\): field 'v_leak' has shape \(4, 4, 3\)"),
    (lambda: chain(("c", conv()), ("li", nir.LI(**fields((2, 3, 4, 4), **PARAMS["own"]["li"])))),
     r"node 'li' \(LI\): field 'tau' has shape \(2, 3, 4, 4\)"),
    (lambda: chain(("c", conv()), ("cuba", damaged(nir.CubaLIF(**fields(
        (3, 1, 1), **PARAMS["own"]["cuba"])), w_in=np.ones(5)))),
     r"node 'cuba' \(CubaLIF\): field 'w_in' has shape \(5,\)"),
    (lambda: chain(("c", conv()), ("lif", damaged(lif((3, 4, 4)),
                                                  tau=np.linspace(2, 3, 48).reshape(3, 4, 4)))),
     r"node 'lif' \(LIF\): tau differs across neurons"),
])
def test_fields_that_do_not_fit_the_feature_map_name_node_and_field(graph, match):
    with pytest.raises(NIRImportError, match=match):
        from_nir(graph(), dt=1.0)


def test_a_leaky_feature_map_needs_dt():
    with pytest.raises(NIRImportError, match=r"node 'lif1' \(LIF\) needs a time step"):
        from_nir(leaky_cnn())
