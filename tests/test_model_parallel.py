"""Neurons split over a (batch, neurons) mesh of forced host devices give the
single-device result, and the weights, hidden states and traces really are
split along their neuron (or synapse) axis. One subprocess per device count,
since the count is fixed at start-up: 4 devices (a 2x2 mesh, and
``brainscale train --mesh 2x2`` with a resume) and 8 (2x4 and 1x8)."""
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))

_SCRIPT = r"""
import json, os, shutil, sys
sys.path.insert(0, {here!r})
import jax, jax.numpy as jnp, numpy as np, optax
jax.config.update("jax_enable_x64", True)
from jax.experimental import sparse
import brainscale as bs
from brainscale.model_parallel import model_mesh, shard_batch, shard_model
from brainscale.models.recurrent_snn import recurrent_snn
from gradcheck import spike

N, FAN, N_IN, N_OUT, B, T = 16, 4, 8, 4, 6, 6
rng = np.random.default_rng(0)
POST = jnp.asarray(np.repeat(np.arange(N), FAN), jnp.int32)          # 64 synapses
PRE = jnp.asarray(rng.integers(0, N, N * FAN), jnp.int32)
IN_IDX = jnp.asarray(np.stack([rng.integers(0, N_IN, 2 * N), np.repeat(np.arange(N), 2)], 1))


def sparse_net():
    # input: BCOO (32 synapses); recurrence: segment_sum over 64 synapses; dense readout
    def init(key, x):
        k = jax.random.split(key, 3)
        return ({{"w_in": jax.random.normal(k[0], (2 * N,)) * 2.0,
                  "w_rec": jax.random.normal(k[1], (N * FAN,)) * 0.5,
                  "w_out": jax.random.normal(k[2], (N, N_OUT)) / 4.0}},
                {{"v": jnp.zeros(N), "s": jnp.zeros(N), "r": jnp.zeros(N_OUT)}})

    def apply(p, h, x):
        i_in = sparse.BCOO((p["w_in"], IN_IDX), shape=(N_IN, N)).T @ x
        i_rec = jax.ops.segment_sum(p["w_rec"] * h["s"][PRE], POST, num_segments=N)
        v = 0.9 * h["v"] + i_in + i_rec
        s = spike(v - 1.0)
        r = 0.8 * h["r"] + s @ p["w_out"]
        return {{"v": v - s, "s": s, "r": r}}, r
    return bs.StepModel(init, apply)


NETS = {{"dense": lambda: recurrent_snn(N_IN, N_OUT, [N], w_in_scale=8.0, seed=0),
         "sparse": sparse_net}}
xs = (jax.random.uniform(jax.random.PRNGKey(1), (T, B, N_IN)) < 0.4).astype(jnp.float64)
ys = jnp.tile(jnp.arange(B) % N_OUT, (T, 1)).astype(jnp.int32)


def layout(tree):
    # path -> [shape, shard shape, number of devices holding it]
    return {{jax.tree_util.keystr(p): [list(a.shape), list(a.sharding.shard_shape(a.shape)),
                                       len(a.sharding.device_set)]
             for p, a in jax.tree_util.tree_flatten_with_path(tree)[0] if a.ndim}}


report = {{"devices": len(jax.devices())}}
for net_name, algo in {runs!r}:
    learner = bs.online(NETS[net_name](), algo, optax.adam(5e-2))
    s0 = learner.init(jax.random.PRNGKey(0), xs[0])
    ref = s0
    for _ in range(3):
        ref, _ = learner.train_sequence(ref, xs, ys)
    for b, n in {meshes!r}:
        mesh = model_mesh(b, n)
        sh = shard_model(learner, s0, mesh)
        placed = layout(sh._replace(opt_state=()))
        xb, yb = shard_batch((xs, ys), mesh)
        for _ in range(3):
            sh, _ = learner.train_sequence(sh, xb, yb)
        rel = max(float(jnp.max(jnp.abs(a - r)) / jnp.max(jnp.abs(r)))
                  for a, r in zip(jax.tree.leaves(sh.params), jax.tree.leaves(ref.params)))
        moved = min(float(jnp.max(jnp.abs(a - r))) for a, r in
                    zip(jax.tree.leaves(ref.params), jax.tree.leaves(s0.params)))
        report[f"{{net_name}}/{{algo}}/{{b}}x{{n}}"] = dict(
            rel=rel, moved=moved, placed=placed,
            trained=layout(sh._replace(traces=(), opt_state=sh.opt_state[0].mu)))

# a closed-over array passed to the compiled program as an argument (transforms/const_args.py)
# is split like the input of its shape (the synapse weights), the others replicated
from jax.sharding import NamedSharding, PartitionSpec as P
from transforms.const_args import jit_const_args
b, n = {meshes!r}[-1]
mesh = model_mesh(b, n)
w = jax.device_put(jnp.arange(N * FAN, dtype=jnp.float64), NamedSharding(mesh, P("neurons")))
f = jit_const_args(lambda w: jnp.sum(w * PRE) + jnp.sum(IN_IDX), min_bytes=0)
report["hoisted_value"] = [float(f(w)), float(jnp.sum(np.arange(N * FAN) * np.asarray(PRE))
                                               + np.sum(np.asarray(IN_IDX)))]
report["hoisted"] = {{str(tuple(c.shape)): [list(c.sharding.shard_shape(c.shape)),
                                             len(c.sharding.device_set)]
                      for c in next(iter(f._placed.values()))}}

if {cli!r}:
    from brainscale.cli.main import main
    a, b = os.path.join({out!r}, "a"), os.path.join({out!r}, "b")
    argv = ["train", "--task", "toy_task:toy_task", "--mesh", "2x2", "--steps", "3",
            "--checkpoint-every", "2", "--eval-every", "3", "--batch-size", "8", "--lr", "1e-2",
            "--no-plots", "--out", a]
    report["cli_code"] = main(argv)
    shutil.copytree(a, b)               # b: back at the step-2 checkpoint, then resumed
    os.replace(os.path.join(b, "checkpoint.msgpack.prev"), os.path.join(b, "checkpoint.msgpack"))
    report["resume_code"] = main(["train", "--out", b, "--resume", "--no-plots"])
    from flax import serialization
    payload = lambda d: serialization.msgpack_restore(
        open(os.path.join(d, "checkpoint.msgpack"), "rb").read())["payload"]
    report["resumed_equal"] = payload(a) == payload(b)
    report["config_mesh"] = json.load(open(os.path.join(b, "config.json")))["mesh"]
print("REPORT" + json.dumps(report))
"""


def _run(tmp_path, devices, meshes, runs, cli=False):
    flags = os.environ.get("XLA_FLAGS", "")
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count={devices}".strip()}
    code = _SCRIPT.format(here=HERE, out=str(tmp_path), meshes=meshes, runs=runs, cli=cli)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=600, cwd=HERE)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT")]
    assert line, proc.stdout[-3000:] + proc.stderr[-5000:]
    rep = json.loads(line[0][len("REPORT"):])
    assert rep["devices"] == devices
    return rep


B = 6                                   # the script's batch size
# leaves whose neuron (or synapse) axis must be split: path -> that axis
SPLIT = {
    "dense": {".params['layers'][0]['linear']['W']": 1, ".params['out']['W']": 1,
              ".hidden['layers'][0]['neuron']['v']": 1, ".hidden['layers'][0]['spk']": 1,
              ".hidden['out']['r']": 1, ".hidden0['layers'][0]['neuron']['v']": 0},
    "sparse": {".params['w_in']": 0, ".params['w_rec']": 0, ".params['w_out']": 1,
               ".hidden['v']": 1, ".hidden['s']": 1, ".hidden['r']": 1, ".hidden0['v']": 0},
}


def _split(lay, path, axis, b, n):
    """The leaf at ``path`` is on all b * n devices, its ``axis`` split n ways
    (whole where n does not divide it), a batch axis 0 (B) split b ways."""
    shape, shard, ndev = lay[path]
    assert ndev == b * n, (path, lay[path])
    assert shard[axis] == (shape[axis] // n if shape[axis] % n == 0 else shape[axis]), \
        (path, lay[path])
    if shape[0] == B and axis != 0:
        assert shard[0] == B // b, (path, lay[path])


def _check(rep, runs, meshes):
    b, n = meshes[-1]
    value, want = rep["hoisted_value"]
    assert value == want
    # the index array shaped like the synapse weights is split with them; the other replicated
    assert rep["hoisted"][str((64,))] == [[64 // n], b * n], rep["hoisted"]
    assert rep["hoisted"][str((32, 2))] == [[32, 2], b * n], rep["hoisted"]
    for net, algo in runs:
        for b, n in meshes:
            r = rep[f"{net}/{algo}/{b}x{n}"]
            assert r["moved"] > 1e-4, r             # every weight was trained
            assert r["rel"] < 1e-9, r               # float64: only summation order differs
            for path, axis in SPLIT[net].items():
                _split(r["placed"], path, axis, b, n)
                if not path.startswith(".hidden0"):  # still split after training
                    _split(r["trained"], path, axis, b, n)
                if path.startswith(".params"):      # Adam's moments follow their weight
                    _split(r["trained"], ".opt_state" + path[len(".params"):], axis, b, n)
            traces = {p: v for p, v in r["placed"].items() if p.startswith(".traces")}
            assert bool(traces) == (algo != "bptt")
            for path, (shape, _, _) in traces.items():
                # ES-D-RTRL (B, *x) and (B, *neurons), D-RTRL (*y, B, *x) and (B, synapses)
                _split(r["placed"], path, 1 if shape[0] == B else 0, b, n)


RUNS = [(net, algo) for net in ("dense", "sparse") for algo in ("bptt", "es_d_rtrl")]


def test_two_by_two_mesh_matches_one_device_and_trains_from_the_cli(tmp_path):
    runs = RUNS + [("sparse", "d_rtrl")]     # D-RTRL's (B, synapses) and (*y, B, *x) traces
    rep = _run(tmp_path, 4, [(2, 2)], runs, cli=True)
    _check(rep, runs, [(2, 2)])
    assert rep["cli_code"] == 0 and rep["resume_code"] == 0
    assert rep["resumed_equal"] and rep["config_mesh"] == "2x2"


def test_eight_devices_two_by_four_and_one_by_eight(tmp_path):
    rep = _run(tmp_path, 8, [(2, 4), (1, 8)], RUNS)
    _check(rep, RUNS, [(2, 4), (1, 8)])
    # 4 output neurons do not split 8 ways: the readout stays whole, not an error
    lay = rep["dense/es_d_rtrl/1x8"]["placed"]
    assert lay[".params['out']['W']"][1] == [16, 4] and lay[".hidden['out']['r']"][1] == [B, 4]


@pytest.mark.parametrize("args, words", [
    (["--mesh", "2by2"], ["config key 'mesh'", "--mesh BxN", "'2by2'"]),
    (["--mesh", "0x2"], ["config key 'mesh'", "'0x2'"]),
    (["--mesh", "2x2", "--devices", "8"], ["--devices 8", "'2x2' = 4 devices"]),
    (["--mesh", "3x1"], ["'batch_size' must be a multiple of the mesh's batch size (3, "
                         "--mesh 3x1)"]),
    (["--mesh", "1x64"], ["--mesh 1x64", "needs 64 devices, only"]),
])
def test_bad_mesh_is_a_one_line_error_naming_the_flag(tmp_path, capsys, args, words):
    from brainscale.cli.main import main

    code = main(["train", "--task", "digits", "--steps", "1", "--batch-size", "8",
                 "--out", str(tmp_path / "run"), *args])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    for w in words:
        assert w in err, err
    assert not (tmp_path / "run").exists()


def _layer(apply_w, w_shape, n=16, n_in=8):
    import jax
    import jax.numpy as jnp

    import brainscale as bs
    from gradcheck import spike

    def init(key, x):
        k1, k2 = jax.random.split(key)
        return ({"w": jax.random.normal(k1, w_shape), "b": jnp.zeros(n),
                 "wo": jax.random.normal(k2, (n, 3))}, {"v": jnp.zeros(n)})

    def apply(p, h, x):
        v = 0.9 * h["v"] + apply_w(p["w"], x) + p["b"]
        s = spike(v - 1.0)
        return {"v": v - s}, s @ p["wo"]
    return bs.StepModel(init, apply)


@pytest.mark.parametrize("how, w_shape, algo, axis", [
    ("x @ W", (8, 16), "es_d_rtrl", 1),
    ("W @ x", (16, 8), "es_d_rtrl", 0),
    ("x @ W.T", (16, 8), "d_rtrl", 0),
    ("x @ (|W| * sign)", (8, 16), "es_d_rtrl", 1),
    ("W @ x", (16, 8), "bptt", 0),          # no graph: the axis of a population's size
])
def test_the_output_neuron_axis_of_a_weight(how, w_shape, algo, axis):
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    import brainscale as bs
    from brainscale.model_parallel import neuron_axes

    sign = jnp.asarray(np.where(np.arange(8) % 2, 1.0, -1.0))[:, None]
    apply_w = {"x @ W": lambda w, x: x @ w, "W @ x": lambda w, x: w @ x,
               "x @ W.T": lambda w, x: x @ w.T,
               "x @ (|W| * sign)": lambda w, x: x @ (jnp.abs(w) * sign)}[how]
    learner = bs.online(_layer(apply_w, w_shape), algo, optax.adam(1e-2))
    state = learner.init(jax.random.PRNGKey(0), jnp.zeros((2, 8)))
    axes = neuron_axes(learner, state)
    assert axes.params["w"] == axis and axes.params["b"] == 0
    # the readout's 3 outputs are no population: by shape alone its 16 inputs are
    assert axes.params["wo"] == (0 if algo == "bptt" else 1)
    assert axes.opt_state[0].mu["w"] == axis and axes.opt_state[0].count is None
    assert axes.hidden["v"] == 1 and axes.hidden0["v"] == 0


def test_overrides_place_a_leaf_and_its_optimizer_state():
    import jax
    import jax.numpy as jnp
    import optax
    from jax.sharding import PartitionSpec as P

    import brainscale as bs
    from brainscale.model_parallel import model_mesh, shard_model, state_specs

    learner = bs.online(_layer(lambda w, x: x @ w, (8, 16)), "es_d_rtrl", optax.adam(1e-2))
    state = learner.init(jax.random.PRNGKey(0), jnp.zeros((2, 8)))
    mesh = model_mesh(1, 1)
    specs = state_specs(learner, state, mesh, overrides={"params['w']": P("neurons", None)})
    assert specs.params["w"] == P("neurons", None) == specs.opt_state[0].nu["w"]
    assert specs.params["wo"] == P(None, "neurons") and specs.hidden["v"] == P("batch", "neurons")
    placed = shard_model(learner, state, mesh, overrides={".hidden['v']": P("batch", None)})
    assert placed.hidden["v"].sharding.spec == P("batch", None)
    for bad, words in [({"params['nope']": P()}, "override path \"params['nope']\" is no leaf"),
                       ({"params['w']": P("model")}, "names mesh axis 'model'"),
                       ({"params['w']": P(None, None, None)}, "has 3 entries, the leaf has "
                                                              "shape (8, 16)"),
                       ({"params['w']": (None, "neurons")}, "must be a jax.sharding.Partition")]:
        with pytest.raises(ValueError) as e:
            shard_model(learner, state, mesh, overrides=bad)
        assert words in str(e.value), str(e.value)
