"""Spiking CNNs through NIR: graphs built with the ``nir`` package's own
constructors (as sinabs writes them) run as NIR's equations say, checked
against a numpy simulation written here with loops; a BrainScale CNN goes
to a ``.nir`` file and back with the same spikes; the conv layer trains
online with D-RTRL's exact gradient; what cannot be read or written is an
error naming the node and the field."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

nir = pytest.importorskip("nir")

import brainscale as bs  # noqa: E402
from brainscale.interop.nir import NIRExportError, NIRImportError, from_nir, to_nir  # noqa: E402
from gradcheck import cosine, float64, rel_err, sequence_grads  # noqa: E402
from test_nir import assert_exports_the_same_graph, run, run_both  # noqa: E402


# -- NIR's equations in numpy ---------------------------------------------------
def np_conv(x, node):
    """NIR/PyTorch Conv2d on one sample (C, H, W), by loops over outputs."""
    w, b = np.asarray(node.weight, np.float64), np.asarray(node.bias, np.float64)
    O, Cg, kh, kw = w.shape
    groups = int(node.groups)
    (sh, sw), (dh, dw) = np.broadcast_to(node.stride, 2), np.broadcast_to(node.dilation, 2)
    if isinstance(node.padding, str):
        total = (0, 0) if node.padding == "valid" else (dh * (kh - 1), dw * (kw - 1))
        pads = [(t // 2, t - t // 2) for t in total]
    else:
        pads = [(p, p) for p in np.broadcast_to(node.padding, 2)]
    xp = np.pad(x, [(0, 0)] + pads)
    Ho = (xp.shape[1] - dh * (kh - 1) - 1) // sh + 1
    Wo = (xp.shape[2] - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((O, Ho, Wo))
    for o in range(O):
        g = o // (O // groups)
        for i in range(Ho):
            for j in range(Wo):
                patch = xp[g * Cg:(g + 1) * Cg, i * sh:i * sh + dh * (kh - 1) + 1:dh,
                           j * sw:j * sw + dw * (kw - 1) + 1:dw]
                y[o, i, j] = np.sum(patch * w[o]) + b[o]
    return y


def np_pool(x, node, average):
    (kh, kw), (sh, sw) = np.broadcast_to(node.kernel_size, 2), np.broadcast_to(node.stride, 2)
    ph, pw = np.broadcast_to(node.padding, 2)
    xp = np.pad(x, [(0, 0), (ph, ph), (pw, pw)])
    Ho, Wo = (xp.shape[1] - kh) // sh + 1, (xp.shape[2] - kw) // sw + 1
    y = np.zeros((x.shape[0], Ho, Wo))
    for i in range(Ho):
        for j in range(Wo):
            y[:, i, j] = xp[:, i * sh:i * sh + kh, j * sw:j * sw + kw].sum(axis=(1, 2))
    return y / (kh * kw) if average else y


NEURONS = (nir.IF, nir.LIF, nir.CubaLIF, nir.LI, nir.CubaLI)


def np_neuron(n, s, x, dt):
    """One step of a NIR neuron node (state dict ``s``, empty at rest), exact
    for x held over the step: IF ``dv/dt = r x`` (starts at v_reset);
    LIF / LI ``tau dv/dt = (v_leak - v) + r I`` (start at v_leak) with
    ``I = x``, or for Cuba* the current ``tau_syn dI/dt = -I + w_in x``
    (starts at 0) stepped first and held. Spiking nodes fire on
    ``v > v_threshold`` and reset to ``v_reset``. Fields broadcast."""
    f = lambda name: np.asarray(getattr(n, name), np.float64)  # noqa: E731
    if isinstance(n, nir.IF):
        v = s.get("v", f("v_reset")) + dt * f("r") * x
    else:
        cuba = isinstance(n, (nir.CubaLIF, nir.CubaLI))
        if cuba:
            e = np.exp(-dt / f("tau_syn"))
            x = s["i"] = s.get("i", 0.0) * e + f("w_in") * (1.0 - e) * x
        d = np.exp(-dt / f("tau_mem" if cuba else "tau"))
        v = f("v_leak") + (s.get("v", f("v_leak")) - f("v_leak")) * d + f("r") * x * (1.0 - d)
    if isinstance(n, (nir.LI, nir.CubaLI)):
        s["v"] = v
        return v
    z = (v > f("v_threshold")).astype(np.float64)
    s["v"] = np.where(z > 0, f("v_reset"), v)
    return z


def reference(graph, xs, dt):
    """Steps a chain Input -> ... -> Output with NIR's equations (neurons by
    ``np_neuron``). Returns {node key: (T, ...) outputs}."""
    order, k = [], "input"
    while k != "output":
        k = next(b for a, b in graph.edges if a == k)
        order.append(k)
    state = {k: {} for k in order}
    outs = {k: [] for k in order}
    for x in xs:
        for k in order:
            n = graph.nodes[k]
            if isinstance(n, nir.Conv2d):
                x = np_conv(x, n)
            elif isinstance(n, (nir.SumPool2d, nir.AvgPool2d)):
                x = np_pool(x, n, isinstance(n, nir.AvgPool2d))
            elif isinstance(n, nir.Flatten):
                x = x.reshape(-1)
            elif isinstance(n, nir.Affine):
                x = n.weight @ x + n.bias
            elif isinstance(n, NEURONS):
                x = np_neuron(n, state[k], x, dt)
            outs[k].append(x)
    return {k: np.stack(o) for k, o in outs.items()}


def if_node(shape, thr=1.0, r=1.0, v_reset=0.0):
    return nir.IF(r=np.full(shape, r), v_threshold=np.full(shape, thr),
                  v_reset=np.full(shape, v_reset))


def sinabs_cnn(variant):
    """Input (2, 10, 10) -> Conv2d -> IF -> SumPool2d (or AvgPool2d) ->
    Conv2d -> IF -> Flatten -> Affine -> IF -> Output, as sinabs writes it
    (float32 kernels, a zero bias on the first conv, no dt); ``variant``
    picks the stride / padding / dilation / groups. Shapes by NIR's rule."""
    rs = np.random.default_rng(variant["seed"])
    c1, c2 = dict(variant["conv1"]), dict(variant["conv2"])
    k1, k2 = c1.pop("k"), c2.pop("k")
    w1 = rs.normal(0.25, 0.6, (4, 2) + k1).astype(np.float32)
    w2 = rs.normal(0.05, 0.6, (6, 4 // c2.get("groups", 1)) + k2).astype(np.float32)
    conv1 = nir.Conv2d(input_shape=(10, 10), weight=w1, bias=np.zeros(4, np.float32),
                       **{"stride": 1, "dilation": 1, "groups": 1, **c1})
    conv2 = nir.Conv2d(input_shape=None, weight=w2, bias=rs.normal(0, 0.2, 6),
                       **{"stride": 1, "dilation": 1, "groups": 1, **c2})
    pool = getattr(nir, variant["pool"])(kernel_size=np.array([2, 2]),
                                         stride=np.array(variant.get("pool_stride", [2, 2])),
                                         padding=np.array(variant.get("pool_pad", [0, 0])))
    conv_out = nir.ir.utils.calculate_conv_output
    s1 = tuple(conv1.output_type["output"])
    s2 = conv_out(s1[1:], pool.padding, 1, pool.kernel_size, pool.stride)
    s3 = (6, *conv_out(tuple(s2), conv2.padding, conv2.dilation, k2, conv2.stride))
    nodes = {"input": nir.Input(np.array([2, 10, 10])), "conv1": conv1,
             "if1": if_node(s1, r=variant.get("r", 1.0), v_reset=variant.get("v_reset", 0.0)),
             "pool": pool, "conv2": conv2, "if2": if_node(s3, thr=2.0),
             "flat": nir.Flatten(input_type=None, start_dim=0, end_dim=-1),
             "fc": nir.Affine(weight=rs.normal(0.0, 0.5, (5, int(np.prod(s3)))),
                              bias=np.full(5, 0.1)),
             "if3": if_node((5,), thr=1.0), "output": nir.Output(np.array([5]))}
    keys = list(nodes)
    # NIR 1.0.8's type inference sizes a Conv2d with weight.shape[2] along both
    # axes, so a graph with a kh != kw kernel is built unchecked, as a tool must
    return nir.NIRGraph(nodes=nodes, edges=list(zip(keys[:-1], keys[1:])),
                        type_check=k1[0] == k1[1] and k2[0] == k2[1])


VARIANTS = {
    "pad1_pool_stride2": dict(seed=0, pool="SumPool2d", conv1=dict(k=(3, 3), padding=1),
                              conv2=dict(k=(3, 3), stride=2, padding=0)),
    "same_asymmetric_dilated": dict(seed=1, pool="SumPool2d",
                                     conv1=dict(k=(2, 3), padding="same", dilation=(1, 2)),
                                     conv2=dict(k=(3, 2), stride=(2, 1), padding=(1, 0)),
                                     pool_stride=[1, 1], pool_pad=[1, 1], r=0.5),
    "valid_avgpool_groups": dict(seed=2, pool="AvgPool2d", conv1=dict(k=(3, 3), padding="valid"),
                                 conv2=dict(k=(2, 2), groups=2, padding=1), v_reset=-0.2),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_a_sinabs_style_cnn_runs_nirs_equations(name):
    g = sinabs_cnn(VARIANTS[name])
    with pytest.raises(NIRImportError, match=r"node 'if1' \(IF\) needs a time step"):
        from_nir(g)
    dt, T = 0.5 if name.startswith("same") else 1.0, 30
    xs = (np.random.default_rng(5).random((T, 1, 2, 10, 10)) < 0.4).astype(np.float64)
    with float64():
        net = from_nir(g, dt=dt)
        got = run(net, xs, lambda m, x: m.step(x))
    ref = reference(g, xs[:, 0], dt)
    for k, r in ref.items():
        assert dict(net.shapes)[k] == r.shape[1:], k
        if isinstance(g.nodes[k], nir.IF):
            assert 0.02 < r.mean() < 0.9, (k, r.mean())      # every layer spikes, not all
            assert np.array_equal(got[k][:, 0], r), k
        else:
            np.testing.assert_allclose(got[k][:, 0], r, rtol=1e-9, atol=1e-9, err_msg=k)


# -- BrainScale -> .nir file -> BrainScale ---------------------------------------
def bs_cnn():
    """Conv ('same', bias) -> IF -> AvgPool (padded) -> Conv (stride 2) + IF in
    an AlignPost -> SumPool (stride 1) -> Flatten -> Linear (bias) -> IF."""
    r = nnx.Rngs(3)
    first = bs.nn.Conv2d(2, 4, 3, padding="same", rngs=r, scale=2.0, use_bias=True)
    first.b[...] = jnp.linspace(0.0, 0.3, 4)
    return nnx.Sequential(
        first,
        bs.nn.IF((4, 9, 9), reset="hard", dt=0.5, R=2.0),
        bs.nn.AvgPool2d(3, stride=2, padding=1),
        bs.nn.AlignPost(bs.nn.Conv2d(4, 6, 3, stride=2, padding=1, rngs=r, scale=6.0), None,
                        bs.nn.IF((6, 3, 3), reset="hard", dt=0.5, v_th=0.8, v_reset=-0.5)),
        bs.nn.SumPool2d(2, stride=1),
        bs.nn.Flatten(),
        bs.nn.Linear(24, 5, rngs=r, use_bias=True, scale=2.0),
        bs.nn.IF(5, reset="hard", dt=0.5, spike_fn=bs.nn.Arctan()))


def test_brainscale_cnn_round_trip_through_a_file(tmp_path):
    net = bs_cnn()
    with pytest.raises(NIRExportError, match=r"layers\[0\]: Conv2d does not fix its input's "
                                             r"shape; pass to_nir\(\.\.\., input_shape="):
        to_nir(net)
    g = to_nir(net, input_shape=(2, 9, 9))
    assert [type(n).__name__ for n in g.nodes.values()] == [
        "Input", "Conv2d", "IF", "AvgPool2d", "Conv2d", "IF", "SumPool2d", "Flatten", "Affine",
        "IF", "Output"]
    assert g.metadata["dt"] == 0.5
    np.testing.assert_array_equal(g.nodes["layers[0]"].weight, np.asarray(net.layers[0].W[...]))
    np.testing.assert_array_equal(g.nodes["layers[3].comm"].bias, np.zeros(6))
    assert g.nodes["layers[0]"].padding == "same"
    np.testing.assert_array_equal(g.nodes["layers[3].comm"].stride, [2, 2])
    path = tmp_path / "cnn.nir"
    nir.write(path, g)
    back = from_nir(path)
    xs = (np.random.default_rng(7).random((80, 3, 2, 9, 9)) < 0.3).astype(np.float32)

    (y0, s0), (y1, s1) = run_both(net, back, xs, {1: "layers[1]", 3: "layers[3].post",
                                                   7: "layers[7]"})
    for a, b in zip(s0, s1):
        assert 0.02 < a.mean() < 0.9, a.mean()
        assert np.array_equal(a, b)
    assert np.array_equal(y0, y1)
    g2 = assert_exports_the_same_graph(    # and out again: the same graph, exactly
        back, g, ("weight", "bias", "stride", "dilation", "kernel_size", "r", "v_threshold",
                  "v_reset", "start_dim", "end_dim"), rtol=0)
    for k, n in g.nodes.items():
        assert getattr(g2.nodes[k], "padding", None) is None or \
            np.array_equal(g2.nodes[k].padding, n.padding)


# -- online learning on the conv weights -----------------------------------------
class ConvLayer(nnx.Module):
    """Conv2d (stride 2, padding 1, bias) -> IF on the (3, 4, 4) map ->
    Flatten -> a stateless readout: one feed-forward layer, where D-RTRL's
    per-neuron traces are exact."""

    def __init__(self, rngs, reset="soft"):
        self.conv = bs.nn.Conv2d(2, 3, 3, stride=2, padding=1, use_bias=True, rngs=rngs,
                                 scale=3.0)
        self.neuron = bs.nn.IF((3, 4, 4), reset=reset, spike_fn=bs.nn.SuperSpike())
        self.flat = bs.nn.Flatten()
        self.out = bs.nn.LinearReadout(48, 3, rngs=rngs)

    def __call__(self, x):
        s = self.neuron(self.conv(x))
        self.rate = s
        return self.out(self.flat(s))


def conv_data(T=8, B=2):
    xs = jax.random.bernoulli(jax.random.PRNGKey(1), 0.5, (T, B, 2, 8, 8)).astype(jnp.float64)
    return xs, jax.random.randint(jax.random.PRNGKey(2), (T, B), 0, 3)


@pytest.mark.parametrize("reset", ["soft", "hard"])
def test_conv_layer_d_rtrl_equals_bptt(reset):
    with float64():
        xs, ys = conv_data()
        rate = run(ConvLayer(nnx.Rngs(0), reset), xs, lambda m, x: (m(x), m.rate)[1]).mean()
        assert 0.05 < rate < 0.9, rate
        g, _ = sequence_grads(ConvLayer(nnx.Rngs(0), reset), xs, ys, ("bptt", "d_rtrl"))
        assert float(jnp.abs(g["bptt"]["conv"]["W"]).max()) > 1e-3
        assert rel_err(g["d_rtrl"], g["bptt"]) < 1e-10
        learner = bs.online(ConvLayer(nnx.Rngs(0), reset), bs.d_rtrl())
        assert {"conv", "bias", "dense"} <= {op.kind for op in learner.graph_for(xs[0]).ops}


def test_conv_layer_trains_online_with_sgd():
    """One ``train_sequence`` with ``optax.sgd(lr)`` moves the kernel by
    ``-lr`` times ES-D-RTRL's sequence gradient."""
    with float64():
        xs, ys = conv_data()
        learner = bs.online(ConvLayer(nnx.Rngs(0)), bs.es_d_rtrl(decay=0.5), optax.sgd(0.5))
        state = learner.init(jax.random.PRNGKey(0), xs[0])
        grads, _ = learner.sequence_grad(state, xs, ys)
        new, metrics = learner.train_sequence(state, xs, ys)
        assert np.isfinite(float(metrics["loss"]))
        step = new.params["conv"]["W"] - state.params["conv"]["W"]
        assert float(jnp.abs(step).max()) > 0
        np.testing.assert_allclose(step, -0.5 * grads["conv"]["W"], rtol=1e-12, atol=1e-15)


def imported_cnn_trains_exactly(key, neuron):
    """Input (2,6,6) -> Conv2d -> ``neuron`` (3,4,4) at node ``key`` ->
    Flatten -> Affine -> Output, rebuilt by from_nir: it spikes, and D-RTRL's
    gradient on the NIR kernel is BPTT's (float64)."""
    rs = np.random.default_rng(4)
    g = nir.NIRGraph(nodes={
        "input": nir.Input(np.array([2, 6, 6])),
        "conv": nir.Conv2d(input_shape=(6, 6), weight=rs.normal(0.2, 1.0, (3, 2, 3, 3)),
                           stride=1, padding=0, dilation=1, groups=1, bias=np.full(3, 0.1)),
        key: neuron,
        "flat": nir.Flatten(input_type=None, start_dim=0),
        "fc": nir.Affine(weight=rs.normal(0, 0.3, (3, 48)), bias=np.zeros(3)),
        "output": nir.Output(np.array([3]))},
        edges=[("input", "conv"), ("conv", key), (key, "flat"), ("flat", "fc"),
               ("fc", "output")])
    with float64():
        T, B = 8, 2
        xs = jax.random.bernoulli(jax.random.PRNGKey(3), 0.5, (T, B, 2, 6, 6)).astype(
            jnp.float64)
        ys = jax.random.randint(jax.random.PRNGKey(4), (T, B), 0, 3)
        rate = run(from_nir(g, dt=1.0), xs, lambda m, x: m.step(x)[key]).mean()
        assert 0.05 < rate < 0.9, rate
        grads, _ = sequence_grads(from_nir(g, dt=1.0), xs, ys, ("bptt", "d_rtrl"))
        ref, got = grads["bptt"]["nodes"]["conv"]["W"], grads["d_rtrl"]["nodes"]["conv"]["W"]
        assert float(jnp.abs(ref).max()) > 1e-3
        assert rel_err(grads["d_rtrl"], grads["bptt"]) < 1e-10
        assert rel_err(got, ref) < 1e-10


def test_an_imported_cnn_trains_online():
    imported_cnn_trains_exactly("if", if_node((3, 4, 4), thr=1.5))


def test_two_conv_layers_with_pooling_train_online():
    """Conv -> IF -> SumPool -> Conv -> IF -> Flatten -> readout. The window
    sum between the layers mixes neurons like a weight op. D-RTRL is exact
    on the last conv layer (its input does not depend on its weights) and
    an approximation on the first (it drops the path through the second
    layer's membrane, as on dense layers); ES-D-RTRL compiles and trains."""
    def make():
        r = nnx.Rngs(0)
        return nnx.Sequential(
            bs.nn.Conv2d(2, 3, 3, padding=1, rngs=r, scale=3.0), bs.nn.IF((3, 8, 8)),
            bs.nn.SumPool2d(2), bs.nn.Conv2d(3, 4, 3, rngs=r, scale=3.0), bs.nn.IF((4, 2, 2)),
            bs.nn.Flatten(), bs.nn.LinearReadout(16, 3, rngs=r))
    with float64():
        xs, ys = conv_data()
        g, _ = sequence_grads(make(), xs, ys, ("bptt", "d_rtrl"))
        first, last = ({a: g[a]["layers"][i]["W"] for a in g} for i in (0, 3))
        assert min(float(jnp.abs(w["bptt"]).max()) for w in (first, last)) > 1e-3
        assert rel_err(last["d_rtrl"], last["bptt"]) < 1e-10
        assert cosine(first["d_rtrl"], first["bptt"]) > 0.9
        learner = bs.online(make(), bs.es_d_rtrl(), optax.sgd(0.1))
        state = learner.init(jax.random.PRNGKey(0), xs[0])
        new, metrics = learner.train_sequence(state, xs, ys)
        assert np.isfinite(float(metrics["loss"]))
        for i in (0, 3):
            assert float(jnp.abs(new.params["layers"][i]["W"]
                                 - state.params["layers"][i]["W"]).max()) > 0, i


# -- errors ----------------------------------------------------------------------
def chain(*pairs, shape=(2, 6, 6), out=None, type_check=False):
    nodes = {"input": nir.Input(np.array(shape)), **dict(pairs), "output": nir.Output(out)}
    keys = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(keys[:-1], keys[1:])),
                        type_check=type_check)


def damaged(node, **fields):
    """``node`` with fields NIR's constructor would refuse, as a file may hold."""
    for k, v in fields.items():
        setattr(node, k, v)
    return node


def conv(out=3, cin=2, k=3, **kw):
    opts = dict(stride=1, padding=0, dilation=1, groups=1)
    opts.update(kw)
    return nir.Conv2d(input_shape=None, weight=np.ones((out, cin, k, k)), bias=np.zeros(out),
                      **opts)


@pytest.mark.parametrize("graph, match", [
    (lambda: chain(("c", conv(out=3, cin=1, groups=2))),
     r"node 'c' \(Conv2d\): field 'groups' = 2 does not divide the 3 output channels"),
    (lambda: chain(("c", conv(cin=1, groups=1))),
     r"node 'c' \(Conv2d\): Conv2d takes \(C_in=1, H, W\) per sample, got \(2, 6, 6\)"),
    (lambda: chain(("c", conv(stride=2, padding="same"))),
     r"node 'c' \(Conv2d\): field 'padding' 'same' with stride \(2, 2\)"),
    (lambda: chain(("c", damaged(conv(), padding="full"))),
     r"node 'c' \(Conv2d\): field 'padding' 'full' is not 'same', 'valid', an int or a pair"),
    (lambda: chain(("c", damaged(conv(), groups=1.5))),
     r"node 'c' \(Conv2d\): field 'groups' must be one integer >= 1, got 1.5"),
    (lambda: chain(("c", damaged(conv(), weight=np.ones((3, 2, 3))))),
     r"node 'c' \(Conv2d\): field 'weight' of shape \(3, 2, 3\) is not \(out, in / groups"),
    (lambda: chain(("c", conv(stride=0))),
     r"node 'c' \(Conv2d\): field 'stride' must be an int or a pair of ints >= 1"),
    (lambda: chain(("c", conv(k=7))), r"node 'c' \(Conv2d\): Conv2d: input \(2, 6, 6\) is "
                                      r"smaller than the dilated kernel"),
    (lambda: chain(("p", nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([0, 2]),
                                       padding=np.array([0, 0])))),
     r"node 'p' \(SumPool2d\): field 'stride' must be"),
    (lambda: chain(("f", nir.Flatten(input_type=None, start_dim=1)),
                   ("fc", nir.Linear(weight=np.ones((2, 72))))),
     r"edge 'f' -> 'fc': 'f' gives shape \(2, 36\), but node 'fc' \(Linear\) takes \(72,\)"),
    (lambda: chain(("f", nir.Flatten(input_type=None, start_dim=3))),
     r"node 'f' \(Flatten\): Flatten\(start_dim=3, end_dim=-1\) does not fit an input of 3 "),
    (lambda: chain(("if", nir.IF(r=np.ones((2, 6, 6)), v_threshold=np.linspace(1, 2, 72)
                                 .reshape(2, 6, 6)))),
     r"node 'if' \(IF\): v_threshold differs across neurons"),
    (lambda: chain(("if", if_node((2, 6, 6), thr=0.0, v_reset=0.5))),
     r"node 'if' \(IF\): needs v_threshold > v_reset"),
    (lambda: chain(("if", if_node((2, 5, 5)))),
     r"node 'if' \(IF\): field 'r' has shape \(2, 5, 5\), which does not broadcast to the "
     r"population's shape \(2, 6, 6\)"),
    (lambda: chain(("c", nir.Conv1d(input_shape=None, weight=np.ones((2, 2, 3)), stride=1,
                                    padding=0, dilation=1, groups=1, bias=np.zeros(2)))),
     r"node 'c': NIR type Conv1d is not supported by from_nir"),
])
def test_import_errors_name_the_node_and_field(graph, match):
    with pytest.raises(NIRImportError, match=match):
        from_nir(graph(), dt=1.0)


@pytest.mark.parametrize("make, match", [
    (lambda: [bs.nn.Conv2d(2, 4, 3, groups=2, rngs=nnx.Rngs(0)), bs.nn.IF((4, 4, 4))],
     r"^\[0\]: Conv2d with groups=2: NIR [0-9.]* types a Conv2d's input"),
    (lambda: [bs.nn.Conv2d(2, 4, (3, 2), rngs=nnx.Rngs(0)), bs.nn.IF((4, 4, 5), reset="hard")],
     r"^\[0\]: Conv2d with a 3 x 2 kernel"),
    (lambda: [bs.nn.Conv2d(2, 4, 3, rngs=nnx.Rngs(0)), bs.nn.IF((4, 4, 4))],
     r"^\[1\]: IF with reset='soft' \(reset by subtraction\)"),
    (lambda: [bs.nn.Conv2d(2, 4, 3, rngs=nnx.Rngs(0)), bs.nn.IF((4, 5, 5), reset="hard")],
     r"^the parts' shapes do not fit together: .*\[0\]\.output: \[\[4 4 4\]\] -> "
     r"\[1\]\.input: \[\[4 5 5\]\]"),
    (lambda: [bs.nn.Conv2d(2, 4, 3, rngs=nnx.Rngs(0)), bs.nn.Expon(64),
              bs.nn.IF((4, 4, 4), reset="hard")],
     r"^\[1\]: Expon must be followed directly by a LIF"),
    (lambda: bs.nn.AlignPost(bs.nn.Conv2d(2, 4, 3, rngs=nnx.Rngs(0)), bs.nn.Expon(64),
                             bs.nn.IF((4, 4, 4), reset="hard")),
     r"^post: Expon then IF: NIR has no current-based node for it"),
])
def test_export_errors_name_the_module_and_option(make, match):
    with pytest.raises(NIRExportError, match=match):
        to_nir(make(), input_shape=(2, 6, 6))


def test_module_options_are_checked():
    r = nnx.Rngs(0)
    with pytest.raises(ValueError, match="groups=2 must divide in_channels=3"):
        bs.nn.Conv2d(3, 4, 3, groups=2, rngs=r)
    with pytest.raises(ValueError, match="padding='same' needs stride 1"):
        bs.nn.Conv2d(2, 4, 3, stride=2, padding="same", rngs=r)
    with pytest.raises(ValueError, match="'kernel_size' must be an int or a pair of ints >= 1"):
        bs.nn.Conv2d(2, 4, 1.5, rngs=r)
    with pytest.raises(ValueError, match=r"Conv2d takes one sample \(C_in, H, W\)"):
        bs.nn.Conv2d(2, 4, 3, rngs=r)(jnp.ones((1, 2, 6, 6)))
    assert bs.nn.Conv2d(2, 4, (2, 3), padding="same", dilation=(1, 2), rngs=r).pads == \
        ((0, 1), (2, 2))
    assert bs.nn.Flatten(1).output_shape((2, 3, 4)) == (2, 12)
    n = bs.nn.IF((2, 3), v_reset=-0.5)
    assert n.v[...].shape == (2, 3) and float(n.v[...][0, 0]) == -0.5
