"""NIR export and import: BrainScale -> .nir file -> BrainScale gives the same
spikes; the graph has the expected nodes and edges; what NIR cannot express
raises NIRExportError naming the module path; a graph written by hand (as
another tool would) runs with NIR's equations."""
import math
import re
import subprocess
import sys

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

nir = pytest.importorskip("nir")

from brainscale.models.recurrent_snn import recurrent_snn  # noqa: E402
from brainscale.nn.neurons import GIF, LIF  # noqa: E402
from brainscale.interop.nir import (NIRExportError, NIRImportError, from_nir, read_nir,  # noqa: E402
                               to_nir, write_nir)
from brainscale.nn.projections import AlignPost, Linear, Recurrent, SparseLinear  # noqa: E402
from brainscale.nn.readout import LeakyReadout  # noqa: E402
from brainscale.nn.state import HiddenState  # noqa: E402
from brainscale.nn.synapses import Expon  # noqa: E402



def run(model, xs, fn):
    """jit(scan(vmap(step))) over xs (T, B, n) from the module's hidden state;
    ``fn(module, x)`` is one step and returns any pytree of arrays."""
    graphdef, h, rest = nnx.split(model, HiddenState, ...)
    B = xs.shape[1]
    hb = jax.tree.map(lambda a: jnp.broadcast_to(a, (B,) + a.shape), h)

    def one(h, x):
        m = nnx.merge(graphdef, h, rest)
        out = fn(m, x)
        return nnx.state(m, HiddenState), out

    _, outs = jax.jit(lambda hb, xs: jax.lax.scan(jax.vmap(one), hb, xs))(hb, jnp.asarray(xs))
    return jax.tree.map(np.asarray, outs)


NEURON_FIELDS = ("weight", "bias", "tau", "tau_syn", "tau_mem", "r", "v_leak", "v_threshold",
                 "v_reset", "w_in")


def assert_exports_the_same_graph(back, g, fields=NEURON_FIELDS, rtol=1e-12):
    """``to_nir(back)`` has g's nodes, edges and, per node, the listed fields
    (exactly where ``rtol`` is 0); returns that graph."""
    g2 = to_nir(back)
    assert list(g2.nodes) == list(g.nodes) and g2.edges == g.edges
    for k, n in g.nodes.items():
        for f in fields:
            if hasattr(n, f):
                np.testing.assert_allclose(getattr(g2.nodes[k], f), getattr(n, f), rtol=rtol,
                                           atol=0)
    return g2


def run_both(net, back, xs, picks: dict):
    """``net`` (a module with ``layers``) and ``back`` (its NIR rebuild) on
    ``xs``: each one's output and the outputs of the layers ``picks``
    {layer index: NIR node key}, as ``(y0, s0), (y1, s1)``."""
    def original(m, x):
        outs = []
        for layer in m.layers:
            x = layer(x)
            outs.append(x)
        return x, [outs[i] for i in picks]

    def rebuilt(m, x):
        v = m.step(x)
        return v["output"], [v[k] for k in picks.values()]

    return run(net, xs, original), run(back, xs, rebuilt)


def spikes_in(T=50, B=3, n=12, p=0.5, seed=0):
    return (np.random.default_rng(seed).random((T, B, n)) < p).astype(np.float32)


def snn(**kw):
    opts = dict(n_in=12, n_out=4, hidden=[16, 8], neuron="lif",
                neuron_options={"reset": "hard"}, w_in_scale=16.0, seed=0)
    opts.update(kw)
    return recurrent_snn(**opts)


def test_neuron_options_reach_the_neurons():
    net = snn(neuron_options={"reset": "hard", "tau": 7.0})
    assert all(layer.neuron.reset == "hard" and layer.neuron.tau == 7.0 for layer in net.layers)


def test_recurrent_snn_round_trip_through_a_file(tmp_path):
    net = snn()
    path = tmp_path / "snn.nir"
    write_nir(net, path)
    back = from_nir(read_nir(path))
    xs = spikes_in()
    y0, s0 = run(net, xs, lambda m, x: (m(x), [layer.spk[...] for layer in m.layers]))

    def rebuilt(m, x):
        v = m.step(x)
        return v["output"], [v["layers[0].neuron"], v["layers[1].neuron"]]

    y1, s1 = run(back, xs, rebuilt)
    for a, b in zip(s0, s1):
        assert a.mean() > 0.01              # the layers do spike
        assert np.array_equal(a, b)
    np.testing.assert_allclose(y1, y0, rtol=1e-6, atol=1e-6)
    assert np.abs(y0).max() > 0.1
    # the recurrent state is the previous step's spikes, as in Recurrent.spk
    assert set(back.delay) == {"layers[0].neuron", "layers[1].neuron"}


def test_graph_nodes_and_edges():
    g = to_nir(snn())
    kinds = {k: type(n).__name__ for k, n in g.nodes.items()}
    assert kinds == {
        "input": "Input",
        "layers[0].w_in": "Linear", "layers[0].w_rec": "Linear", "layers[0].neuron": "LIF",
        "layers[1].w_in": "Linear", "layers[1].w_rec": "Linear", "layers[1].neuron": "LIF",
        "out.W": "Linear", "out": "LI", "output": "Output"}
    edges = set(g.edges)
    assert len(edges) == len(g.edges) == 11
    for i, src in ((0, "input"), (1, "layers[0].neuron")):
        p = f"layers[{i}]"
        assert {(src, f"{p}.w_in"), (f"{p}.w_in", f"{p}.neuron"), (f"{p}.w_rec", f"{p}.neuron"),
                (f"{p}.neuron", f"{p}.w_rec")} <= edges      # last: the recurrent back edge
    assert {("layers[1].neuron", "out.W"), ("out.W", "out"), ("out", "output")} <= edges
    assert tuple(g.nodes["input"].input_type["input"]) == (12,)
    assert tuple(g.nodes["output"].output_type["output"]) == (4,)


def test_weights_are_split_and_transposed():
    net = snn()
    g = to_nir(net)
    w = np.asarray(net.layers[0].linear.weight())              # (12 + 16, 16), x @ W
    np.testing.assert_array_equal(g.nodes["layers[0].w_in"].weight, w[:12].T)
    np.testing.assert_array_equal(g.nodes["layers[0].w_rec"].weight, w[12:].T)
    np.testing.assert_array_equal(g.nodes["out.W"].weight, np.asarray(net.out.W[...]).T)


def test_the_file_holds_the_parameters(tmp_path):
    net = snn(neuron_options={"reset": "hard", "tau": 15.0, "v_th": 0.8, "v_reset": -0.1},
              dt=0.5, tau_out=12.0)
    path = tmp_path / "snn.nir"
    write_nir(net, path)
    with h5py.File(path, "r") as f:
        lif = f["node/nodes/layers[1].neuron"]
        assert lif["type"][()] == b"LIF"
        np.testing.assert_array_equal(lif["tau"][()], np.full(8, 15.0))
        np.testing.assert_array_equal(lif["v_threshold"][()], np.full(8, 0.8))
        np.testing.assert_array_equal(lif["v_reset"][()], np.full(8, -0.1))
        np.testing.assert_array_equal(lif["r"][()], np.ones(8))
        assert f["node/metadata/dt"][()] == 0.5
        assert f["node/metadata/integrator"][()] == b"exp"
    g = read_nir(path)
    assert float(g.metadata["dt"]) == 0.5
    li = g.nodes["out"]       # r' = r exp(-dt/tau) + y is NIR's LI with r = 1/(1 - exp(-dt/tau))
    np.testing.assert_allclose(li.r, 1.0 / (1.0 - math.exp(-0.5 / 12.0)), rtol=1e-14)
    np.testing.assert_array_equal(li.tau, np.full(4, 12.0))


@pytest.mark.parametrize("make, where, reason", [
    (lambda: snn(neuron_options={}), "layers[0].neuron", "reset='soft'"),
    (lambda: snn(neuron_options={"reset": "hard", "tau_ref": 2.0}), "layers[0].neuron",
     "refractory period"),
    (lambda: snn(neuron="alif", neuron_options={}), "layers[0].neuron", "ALIF has spike-frequency adaptation"),
    (lambda: nnx.Sequential(Linear(3, 4, rngs=nnx.Rngs(0)), GIF(4)), "layers[1]",
     "neuron type GIF"),
    (lambda: nnx.Sequential(Linear(3, 4, rngs=nnx.Rngs(0)), nnx.relu), "layers[1]",
     "function relu"),
    (lambda: nnx.Sequential(AlignPost(Linear(3, 4, rngs=nnx.Rngs(0)), Expon(4),
                                      LIF(4, reset="hard"), out="coba", E=2.0)),
     "layers[0]", "out='coba'"),
    (lambda: nnx.Sequential(Linear(3, 4, rngs=nnx.Rngs(0)), Expon(4)), "layers[1]",
     "Expon must be followed directly by a LIF"),
    (lambda: nnx.Sequential(LIF(3, reset="hard", dt=1.0), LIF(3, reset="hard", dt=0.5)),
     "layers[1]", "dt=0.5"),
])
def test_what_nir_cannot_express_raises(make, where, reason):
    with pytest.raises(NIRExportError) as err:
        to_nir(make())
    msg = str(err.value)
    assert msg.startswith(f"{where}: ") and reason in msg, msg


def test_the_soft_reset_message_says_what_to_do():
    with pytest.raises(NIRExportError, match=re.escape(
            "layers[0].neuron: LIF with reset='soft' (reset by subtraction): NIR's LIF resets "
            "to v_reset; use reset='hard' to export")):
        to_nir(snn(neuron_options={"reset": "soft"}))


def feedforward():
    """Affine, an Euler LIF off zero rest, Linear + Expon + LIF, Expon + LIF,
    and a biased leaky readout."""
    r = nnx.Rngs(1)
    first = Linear(12, 16, rngs=r, use_bias=True, scale=3.0)
    first.b[...] = jnp.linspace(-0.5, 1.0, 16)
    return nnx.Sequential(
        first,
        LIF(16, reset="hard", tau=10.0, integrator="euler", v_rest=0.1, v_init=0.1, R=1.5),
        AlignPost(Linear(16, 10, rngs=r, scale=10.0), Expon(10, tau=5.0),
                  LIF(10, reset="hard", v_reset=-0.2, v_th=0.8)),
        Expon(10, tau=3.0), LIF(10, reset="hard", R=8.0),
        LeakyReadout(10, 3, rngs=r, tau=8.0, use_bias=True))


def test_feedforward_round_trip_with_synapses_and_euler(tmp_path):
    net = feedforward()
    g = to_nir(net)
    kinds = [type(n).__name__ for n in g.nodes.values()]
    assert kinds == ["Input", "Affine", "LIF", "Linear", "CubaLIF", "CubaLIF", "Affine", "LI",
                     "Output"]
    lif = g.nodes["layers[1]"]      # Euler: exp(-dt/tau') = 1 - dt/tau
    np.testing.assert_allclose(np.exp(-1.0 / lif.tau), 0.9, rtol=1e-14)
    assert lif.metadata == {"integrator": "euler", "tau_euler": 10.0}
    path = tmp_path / "ff.nir"
    write_nir(net, path)
    back = from_nir(path)
    xs = spikes_in(T=60, seed=1)

    (y0, s0), (y1, s1) = run_both(net, back, xs, {1: "layers[1]", 2: "layers[2].post",
                                                   4: "layers[4]"})
    for a, b in zip(s0, s1):
        assert a.mean() > 0.01
        assert np.array_equal(a, b)
    np.testing.assert_allclose(y1, y0, rtol=1e-6, atol=1e-6)
    assert_exports_the_same_graph(back, g)      # and back out again: the same graph


def test_dale_sparse_and_a_recurrent_layer_with_a_synapse():
    """Dale's signs and SparseLinear go out as dense effective weights; a
    Recurrent with Expon and a bias becomes Affine + Linear into a CubaLIF."""
    r = nnx.Rngs(2)
    dale = np.where(np.arange(12) < 9, 1.0, -1.0)
    rec = Recurrent(10, 8, LIF(8, reset="hard", tau=10.0), rngs=r, syn=Expon(8, tau=4.0),
                    use_bias=True, w_in_scale=8.0)
    rec.linear.b[...] = jnp.full(8, 0.05)
    net = nnx.Sequential(
        AlignPost(Linear(12, 10, rngs=r, dale=dale, scale=5.0), None, LIF(10, reset="hard")),
        rec,
        AlignPost(SparseLinear(8, 6, rngs=r, prob=0.5, w_init_std=3.0), None,
                  LIF(6, reset="hard", tau=2.0, v_th=0.3)),
        LeakyReadout(6, 3, rngs=r))
    g = to_nir(net)
    assert [type(n).__name__ for n in g.nodes.values()] == [
        "Input", "Linear", "LIF", "Affine", "Linear", "CubaLIF", "Linear", "LIF", "Linear", "LI",
        "Output"]
    w = np.asarray(net.layers[0].comm.weight())
    assert np.all(w[9:] <= 0) and np.array_equal(g.nodes["layers[0].comm"].weight, w.T)
    np.testing.assert_array_equal(g.nodes["layers[2].comm"].weight,
                                  np.asarray(net.layers[2].comm.to_dense()).T)
    back = from_nir(g)
    assert set(back.delay) == {"layers[1].neuron"}

    def original(m, x):
        outs = []
        for layer in m.layers:
            x = layer(x)
            outs.append(x)
        return x, outs[:3]

    def rebuilt(m, x):
        v = m.step(x)
        return v["output"], [v["layers[0].post"], v["layers[1].neuron"], v["layers[2].post"]]

    xs = spikes_in(T=60, seed=4)
    (y0, s0), (y1, s1) = run(net, xs, original), run(back, xs, rebuilt)
    for a, b in zip(s0, s1):
        assert a.mean() > 0.01
        assert np.array_equal(a, b)
    np.testing.assert_allclose(y1, y0, rtol=1e-6, atol=1e-6)


def reference(nodes, xs, dt):
    """NIR's equations, stepped exactly for input held over a step, in numpy:
    Input -> Affine -> LIF (recurrent through w_rec) -> Linear -> LI."""
    aff, lif, w_rec, lin, li = nodes
    v = np.zeros_like(lif.v_leak) + lif.v_leak
    r = np.zeros_like(li.v_leak) + li.v_leak
    z = np.zeros_like(v)
    dm, dl = np.exp(-dt / lif.tau), np.exp(-dt / li.tau)
    zs, ys = [], []
    for x in xs:
        i = aff.weight @ x + aff.bias + w_rec.weight @ z
        v = lif.v_leak + (v - lif.v_leak) * dm + lif.r * i * (1 - dm)
        z = (v > lif.v_threshold).astype(float)
        v = np.where(z > 0, lif.v_reset, v)
        r = li.v_leak + (r - li.v_leak) * dl + li.r * (lin.weight @ z) * (1 - dl)
        zs.append(z)
        ys.append(r)
    return np.stack(ys), np.stack(zs)


def test_a_graph_from_another_tool():
    """Per-neuron arrays, v_leak != 0, r != 1, no dt in the metadata, and the
    recurrent LIF as a nested subgraph (as snnTorch writes RLeaky)."""
    rs = np.random.default_rng(3)
    n_in, n, n_out, dt = 5, 7, 2, 0.5
    aff = nir.Affine(weight=rs.normal(0, 2.0, (n, n_in)).astype(np.float32),
                     bias=np.full(n, 0.3, np.float32))
    lif = nir.LIF(tau=np.full(n, 4.0), r=np.full(n, 2.0), v_leak=np.full(n, 0.2),
                  v_threshold=np.full(n, 1.0), v_reset=np.full(n, -0.3))
    w_rec = nir.Linear(weight=rs.normal(0, 0.5, (n, n)).astype(np.float32))
    lin = nir.Linear(weight=rs.normal(0, 1.0, (n_out, n)).astype(np.float32))
    li = nir.LI(tau=np.full(n_out, 3.0), r=np.full(n_out, 1.5), v_leak=np.full(n_out, 0.1))
    rec = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([n])), "lif": lif, "w_rec": w_rec,
               "output": nir.Output(np.array([n]))},
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")])
    g = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([n_in])), "aff": aff, "rec": rec, "lin": lin,
               "li": li, "output": nir.Output(np.array([n_out]))},
        edges=[("input", "aff"), ("aff", "rec"), ("rec", "lin"), ("lin", "li"),
               ("li", "output")])
    with pytest.raises(NIRImportError, match=r"node 'rec.lif' \(LIF\) needs a time step"):
        from_nir(g)
    net = from_nir(g, dt=dt)
    xs = spikes_in(T=40, B=1, n=n_in, seed=2)

    def rebuilt(m, x):
        v = m.step(x)
        return v["output"], v["rec.lif"]

    y, z = run(net, xs, rebuilt)
    y_ref, z_ref = reference((aff, lif, w_rec, lin, li), xs[:, 0].astype(np.float64), dt)
    assert 0.05 < z_ref.mean() < 0.9
    assert np.array_equal(z[:, 0], z_ref)
    np.testing.assert_allclose(y[:, 0], y_ref, rtol=1e-4, atol=1e-4)


def test_import_errors_name_the_node():
    n = 3
    base = {"input": nir.Input(np.array([n])), "output": nir.Output(np.array([n]))}
    g = nir.NIRGraph(nodes={**base, "d": nir.Delay(delay=np.ones(n))},
                     edges=[("input", "d"), ("d", "output")])
    with pytest.raises(NIRImportError, match="node 'd': NIR type Delay is not supported"):
        from_nir(g, dt=1.0)
    lif = nir.LIF(tau=np.array([5.0, 6.0, 5.0]), r=np.ones(n), v_leak=np.zeros(n),
                  v_threshold=np.ones(n))
    g = nir.NIRGraph(nodes={**base, "lif": lif}, edges=[("input", "lif"), ("lif", "output")])
    with pytest.raises(NIRImportError, match=r"node 'lif' \(LIF\): tau differs across neurons"):
        from_nir(g, dt=1.0)


def test_import_brainscale_does_not_import_nir():
    code = ("import sys, brainscale, brainscale.interop.nir, brainscale.models.recurrent_snn; "
            "assert 'nir' not in sys.modules, 'nir imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
