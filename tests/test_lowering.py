"""The lowering pass: partitions checked by an independent checker, the
Loihi 2 fit against Lava's published core count, Loihi 1 limits, placement
and routing, energy and quantisation against hand computations."""
from __future__ import annotations

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transforms.lowering.hardware import ProfileError, load_profile, profile_from_dict
from transforms.lowering.report import lower
from transforms.lowering.netlist import (Connection, LoweringError, Netlist, Population, build_netlist,
                                dense_chain, measure_x_activity)
from transforms.lowering.partition import NeuronIndex, metis_refine, partition
from transforms.lowering.placement import dimension_order_path, place
from transforms.lowering.profile_fit import LAVA_DENSE, fit_max_neurons
from transforms.lowering.quantize import quantize_array


def check_partition(net, cores, profile, bits):
    """Independent of transforms.lowering.partition: plain sets, one synapse at a time."""
    where = {}
    for c, core in enumerate(cores):
        for b in core:
            for i in b.neurons:
                key = (b.population, int(i))
                assert key not in where, f"{key} placed twice"
                where[key] = c
    for p in net.populations.values():
        for i in range(p.size):
            assert ((p.name, i) in where) == (p.kind == "neurons"), (p.name, i)
    syn = [0] * len(cores)
    axons = [set() for _ in cores]
    dests: dict = {}
    for conn in net.connections:
        for pre, post in zip(conn.pre_idx, conn.post_idx):
            c = where[(conn.post, int(post))]
            syn[c] += 1                       # each synapse lives on its post neuron's core
            axons[c].add((conn.pre, int(pre)))
            dests.setdefault((conn.pre, int(pre)), set()).add(c)
    assert sum(syn) == net.n_synapses
    for c, core in enumerate(cores):
        n = sum(b.neurons.size for b in core)
        out = sum(len(dests.get((b.population, int(i)), ())) for b in core for i in b.neurons)
        assert n <= profile.max_neurons, (c, n)
        assert len(axons[c]) * profile.axons_per_input <= profile.max_axons_in, c
        if profile.max_axons_out is not None:
            assert out <= profile.max_axons_out, c
        if profile.synapse_memory_bytes is not None:
            assert syn[c] * bits / 8 <= profile.synapse_memory_bytes, c


def model_netlist(hidden=(16, 8), n_in=12, T=10, B=4):
    from brainscale.model import from_nnx
    from brainscale.models.recurrent_snn import recurrent_snn
    from transforms.ir.analysis import analyse
    from transforms.ir.trace import trace_step

    model = from_nnx(recurrent_snn(n_in, 4, list(hidden), w_in_scale=4.0, seed=1))
    p, h = model.init(None, None)
    graph = analyse(trace_step(model.apply, p, h, jnp.zeros(n_in)))
    xs = (jax.random.uniform(jax.random.PRNGKey(0), (T, B, n_in)) < 0.5).astype(jnp.float32)
    act = measure_x_activity(graph, jax.tree.leaves(p), jax.tree.leaves(h), [xs])
    return graph, p, build_netlist(graph, jax.tree.leaves(p), act)


def test_loihi2_profile_reproduces_lava_core_count():
    profile = load_profile("loihi2")
    sizes, cores = LAVA_DENSE
    part = partition(dense_chain(sizes), profile)
    assert len(part.cores) == cores == 5
    check_partition(dense_chain(sizes), part.cores, profile, 8)
    assert fit_max_neurons(profile) == profile.max_neurons


def test_loihi1_rejects_an_over_full_block():
    profile = load_profile("loihi1")
    net = dense_chain((5000, 3))
    with pytest.raises(LoweringError) as e:
        partition(net, profile)
    msg = str(e.value)
    assert "layer1" in msg and "5000 input axons" in msg and "4096" in msg
    assert "max_axons_in" in msg
    # memory: 4000 synapses at 9 bits fit, so does a block of many; the split honours 128 KB
    net = dense_chain((4000, 64))
    part = partition(net, profile, bits=9)
    assert len(part.cores) == int(np.ceil(4000 * 64 * 9 / 8 / 131072))
    check_partition(net, part.cores, profile, 9)


def test_neurons_limit_split_and_packing():
    profile = load_profile("loihi1")
    net = dense_chain((100, 3000, 5))
    part = partition(net, profile)
    check_partition(net, part.cores, profile, 8)
    assert len(part.cores) == 3              # 1024 + 1024 + (952 + 5 packed: 110 KB)
    net = dense_chain((100, 3000, 20))       # 20 x 3000 synapses no longer fit beside 952
    assert len(partition(net, profile).cores) == 4


@pytest.mark.parametrize("name", ["loihi1", "loihi2", "tianjic"])
def test_model_partitions_are_valid(name):
    _, _, net = model_netlist()
    profile = load_profile(name)
    part = partition(net, profile)
    check_partition(net, part.cores, profile, profile.default_weight_bits)
    index = NeuronIndex(net)
    metis, why = metis_refine(index, net, profile.replace(max_neurons=7), 8, 4)
    assert metis is not None and why == ""
    check_partition(net, metis, profile.replace(max_neurons=7), 8)


def two_cliques():
    """8 neurons, evens and odds each all-to-all: greedy's contiguous halves
    cut every clique, METIS's two parts cut none."""
    pre, post = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    keep = (pre % 2 == post % 2) & (pre != post)
    pops = {"x": Population("x", 1, "input"), "a": Population("a", 8, "neurons", 1)}
    conns = [Connection(0, "W_in", "x", "a", np.zeros(8, int), np.arange(8), np.ones(8)),
             Connection(1, "W_rec", "a", "a", pre[keep], post[keep], np.ones(keep.sum()))]
    return Netlist(pops, conns, {"x": np.full(1, 0.5), "a": np.full(8, 0.5)})


def test_the_report_says_what_became_of_metis(monkeypatch):
    """Kept, tried and not kept, not needed (one core), skipped (no pymetis)."""
    from transforms.lowering.optional import INSTALL
    from transforms.lowering.report import format_report

    def line(rep):
        return format_report(rep).splitlines()[2]

    four = load_profile("loihi1").replace(max_neurons=4)
    rep = lower(two_cliques(), four)
    assert rep["partition"]["method"] == "metis"
    assert rep["partition"]["metis"] == ("METIS kept: 1.0 messages/step against greedy's 5.0 "
                                         "on 2 cores")
    assert f"(partition: metis; {rep['partition']['metis']})" in line(rep)
    _, _, net = model_netlist()
    rep = lower(net, load_profile("loihi1").replace(max_neurons=7))
    assert rep["partition"]["method"] == "greedy"
    assert rep["partition"]["metis"] == ("METIS tried, not kept: 5 cores, 28.7 messages/step "
                                         "against greedy's 17.3")
    rep = lower(net, load_profile("loihi1"))
    assert line(rep) == ("cores used: 1 of 128 (partition: greedy; METIS not run: the greedy "
                         "partition uses one core, nothing to cut)")
    assert lower(net, four, refine=False)["partition"]["metis"] == "METIS not run: refine=False"

    monkeypatch.setitem(sys.modules, "pymetis", None)
    rep = lower(two_cliques(), four)
    assert rep["partition"]["method"] == "greedy" and rep["cores_used"] == 2
    note = rep["partition"]["metis"]
    assert note.startswith("METIS skipped: pymetis not installed (") and note.endswith(INSTALL)
    assert f"(partition: greedy; {note})" in line(rep)
    note = lower(net, load_profile("loihi1"))["partition"]["metis"]
    assert "one core, nothing to cut; pymetis not installed (" in note and note.endswith(INSTALL)


def test_netlist_follows_the_concatenated_input_of_a_recurrent_layer():
    graph, p, net = model_netlist()
    w = np.asarray(p["layers"][0]["linear"]["W"])         # (12 + 16, 16): [input; recurrent]
    conns = {(c.pre, c.post): c for c in net.connections}
    c_in = conns[("x", "hidden['layers'][0]")]
    c_rec = conns[("hidden['layers'][0]", "hidden['layers'][0]")]
    np.testing.assert_allclose(c_in.weight, w[c_in.pre_idx, c_in.post_idx], rtol=1e-6)
    np.testing.assert_allclose(c_rec.weight, w[12 + c_rec.pre_idx, c_rec.post_idx], rtol=1e-6)
    assert c_in.n + c_rec.n == np.count_nonzero(w)
    assert net.rates["x"].mean() == pytest.approx(0.5, abs=0.1)
    assert net.rates["hidden['layers'][0]"].max() > 0          # the layer spikes


def test_placement_cost_and_dimension_order_routes():
    assert dimension_order_path((0, 0), (2, 1)) == [((0, 0), (0, 1)), ((0, 1), (1, 1)), ((1, 1), (2, 1))]
    profile = profile_from_dict({"name": "grid", "mesh": [3, 3], "max_neurons": 8,
                                 "max_axons_in": 64, "weight_bits": [8, 8]})
    flows = np.zeros((4, 4))
    flows[0, 1], flows[1, 2], flows[2, 3], flows[3, 0] = 5.0, 1.0, 4.0, 2.0
    inflow = np.array([3.0, 0, 0, 0])
    pl = place(flows, inflow, profile, seed=0)
    r = pl.routers
    hand = sum(flows[a, b] * np.abs(r[a] - r[b]).sum() for a in range(4) for b in range(4))
    hand += sum(inflow[b] * np.abs(r[b]).sum() for b in range(4))
    assert pl.cost == pytest.approx(hand)
    assert pl.cost <= pl.greedy_cost
    assert pl.cost == pytest.approx(flows.sum())  # optimum: the ring on a 2 x 2 square, core 0 at (0, 0)
    load = sum(pl.links.values())
    assert load == pytest.approx(hand)          # every message-hop crosses one link


def test_energy_and_counts_against_hand_computation():
    profile = load_profile("loihi1")
    net = dense_chain((30, 20, 10), rate=0.2)
    rep = lower(net, profile, T=7)
    e, pj = rep["energy_per_step"], profile.energy_pj
    syn_ops = 0.2 * (30 * 20 + 20 * 10)
    assert e["counts_per_step"]["synaptic_ops"] == pytest.approx(syn_ops)
    p_active = np.r_[np.full(20, 1 - 0.8 ** 30), np.full(10, 1 - 0.8 ** 20)]
    neuron = (30 - p_active.sum()) * pj["neuron_update_inactive"] \
        + p_active.sum() * pj["neuron_update_active"]
    assert e["neuron_updates_pj"] == pytest.approx(neuron)
    assert rep["cores_used"] == 1                  # everything on one core at (0, 0)
    network = 30 * 0.2 * pj["spike_within_tile"]   # the inputs, zero hops from the port
    assert e["network_pj"] == pytest.approx(network)
    total = syn_ops * pj["synaptic_op"] + neuron + network
    assert rep["energy_per_inference_pj"]["total"] == pytest.approx(7 * total)
    ls = rep["learning_state"]
    assert ls["d_rtrl"]["max_bytes_per_core"] == 800           # K=1, 8-bit, 800 synapses
    assert ls["es_d_rtrl"]["max_bytes_per_core"] == 30 + 20 + 30  # axons + neurons
    json.dumps(rep)


def test_quantisation_levels_and_error():
    w = jnp.asarray(np.random.default_rng(0).normal(size=(50, 40)), jnp.float32)
    for bits in (2, 4, 8):
        q, s = quantize_array(w, bits)
        levels = np.unique(np.round(np.asarray(q) / float(s)))
        assert len(levels) <= 2 ** bits - 1
        assert np.max(np.abs(np.asarray(q - w))) <= float(s) / 2 + 1e-6
    q, s = quantize_array(w, 1)
    assert set(np.unique(np.round(np.asarray(q) / float(s)))) <= {-1.0, 0.0, 1.0}


def test_profile_errors_name_the_field(tmp_path):
    with pytest.raises(ProfileError, match="missing field 'max_axons_in'"):
        profile_from_dict({"name": "x", "mesh": [2, 2], "max_neurons": 4, "weight_bits": [8, 8]})
    with pytest.raises(ProfileError, match="'mesh'"):
        profile_from_dict({"name": "x", "mesh": [2], "max_neurons": 4, "max_axons_in": 4,
                           "weight_bits": [8, 8]})
    with pytest.raises(ProfileError, match="unknown fields"):
        profile_from_dict({"name": "x", "mesh": [2, 2], "max_neurons": 4, "max_axons_in": 4,
                           "weight_bits": [8, 8], "neurons": 3})
    with pytest.raises(ProfileError, match="1 to 9 bits"):
        partition(dense_chain((4, 4)), load_profile("loihi1"), bits=12)
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"name": "mine", "mesh": [1, 2], "max_neurons": 16,
                                "max_axons_in": 32, "weight_bits": [4, 4]}))
    mine = load_profile(str(path))
    part = partition(dense_chain((10, 20)), mine)
    assert len(part.cores) == 2
    with pytest.raises(LoweringError, match="needs 3 cores and one mine chip has 2"):
        partition(dense_chain((10, 40)), mine)


def test_netlist_error_names_the_op():
    net = Netlist({"a": Population("a", 3, "neurons")}, [Connection(
        0, "W", "a", "a", np.array([0]), np.array([1]), np.array([1.0]))], {"a": np.ones(3)})
    assert net.n_synapses == 1
    from transforms.ir.analysis import analyse
    from transforms.ir.trace import trace_step

    def step(p, h, x):          # x enters through a sum of two sources: not attributable
        y = (x + h["v"]) @ p["W"]
        return {"v": h["v"] * 0.9 + y}, y

    p, h = {"W": jnp.ones((3, 3))}, {"v": jnp.zeros(3)}
    graph = analyse(trace_step(step, p, h, jnp.zeros(3)))
    with pytest.raises(LoweringError, match=r"params\['W'\]"):
        build_netlist(graph, [p["W"]])
