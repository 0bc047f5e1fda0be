"""The batch sharded over 4 (forced host) devices gives the single-device
result (also for a model closing over large index arrays, which are placed
on the devices once): run in a subprocess because the device count is fixed
at start-up."""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

_SCRIPT = r"""
import json, os, sys
sys.path.insert(0, {here!r})
import jax, jax.numpy as jnp, numpy as np, optax
jax.config.update("jax_enable_x64", True)
import brainscale as bs
from brainscale.models.recurrent_snn import recurrent_snn
from brainscale.sharding import batch_mesh, shard_batch, shard_state, state_batch_axes

report = {{"devices": len(jax.devices())}}
B, T = 8, 12
xs = (jax.random.uniform(jax.random.PRNGKey(1), (T, B, 8)) < 0.4).astype(jnp.float64)
ys = jnp.tile(jnp.arange(B) % 3, (T, 1)).astype(jnp.int32)
mesh = batch_mesh(4)
for algo in ["es_d_rtrl", "d_rtrl", "bptt"]:
    net = recurrent_snn(8, 3, [16], w_in_scale=8.0, seed=0)
    learner = bs.online(net, algo, optax.adam(5e-2))
    s0 = learner.init(jax.random.PRNGKey(0), jnp.zeros((B, 8)))
    ref = s0
    for _ in range(3):
        ref, _ = learner.train_sequence(ref, xs, ys)
    sh = shard_state(learner, s0, mesh)
    xb, yb = shard_batch((xs, ys), mesh)
    for _ in range(3):
        sh, _ = learner.train_sequence(sh, xb, yb)
    diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in
               zip(jax.tree.leaves(ref.params), jax.tree.leaves(sh.params)))
    moved = min(float(jnp.max(jnp.abs(a - b))) for a, b in
                zip(jax.tree.leaves(ref.params), jax.tree.leaves(s0.params)))
    hid = jax.tree.leaves(sh.hidden)[0]
    report[algo] = dict(diff=diff, moved=moved,
                        hidden_shards=len({{d.id for d in hid.sharding.device_set}}),
                        hidden_spec=str(hid.sharding.spec),
                        trace_axes=[-1 if a is None else a for a in jax.tree.leaves(
                            state_batch_axes(learner, sh).traces, is_leaf=lambda v: v is None)],
                        trace_shapes=[list(np.shape(t)) for t in jax.tree.leaves(sh.traces)])

from test_const_args import batch as sparse_batch, sparse_net
sxs, sys_ = sparse_batch(T=3, B=8)
learner = bs.online(sparse_net()[0], "es_d_rtrl", optax.adam(5e-2))
s0 = learner.init(jax.random.PRNGKey(0), sxs[0])
ref, _ = learner.train_sequence(s0, sxs, sys_)
sh = shard_state(learner, s0, mesh)
sxb, syb = shard_batch((sxs, sys_), mesh)
for _ in range(2):                  # the index arrays are placed on the mesh once
    out, _ = learner.train_sequence(sh, sxb, syb)
placed = learner.train_sequence._jitted._placed
report["sparse"] = dict(
    diff=max(float(jnp.max(jnp.abs(a - b))) for a, b in
             zip(jax.tree.leaves(ref.params), jax.tree.leaves(out.params))),
    placements=len(placed),
    replicated=[len(c.sharding.device_set) for v in placed.values() for c in v])

from toy_task import toy_task
from brainscale.train import TrainConfig, fit
res = fit(TrainConfig(task="toy", steps=3, eval_every=3, checkpoint_every=3, batch_size=8,
                      lr=1e-2, devices=4, out_dir={out!r}),
          task=toy_task(), progress=False, plots=False, log=lambda *a: None)
h = jax.tree.leaves(res["state"].hidden)[0]
report["fit"] = dict(status=res["status"], shards=len(h.sharding.device_set),
                     accuracy=res["final"]["accuracy"])
print("REPORT" + json.dumps(report))
"""


def test_batch_sharded_over_four_devices_matches_one(tmp_path):
    flags = os.environ.get("XLA_FLAGS", "")
    env = {**os.environ, "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count=4".strip(),
           "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", _SCRIPT.format(here=HERE, out=str(tmp_path))],
                          env=env, capture_output=True, text=True, timeout=600)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT")]
    assert line, proc.stdout + proc.stderr
    rep = json.loads(line[0][len("REPORT"):])
    assert rep["devices"] == 4
    for algo in ("es_d_rtrl", "d_rtrl", "bptt"):
        r = rep[algo]
        assert r["moved"] > 1e-4, r             # every weight was trained
        assert r["diff"] < 1e-12, r             # float64: only summation order may differ
        assert r["hidden_shards"] == 4 and "batch" in r["hidden_spec"]
        for ax, shape in zip(r["trace_axes"], r["trace_shapes"]):
            assert (ax >= 0 and shape[ax] == 8) or shape == []   # a step counter
    assert rep["fit"]["status"] == "completed" and rep["fit"]["shards"] == 4
    sparse = rep["sparse"]            # closed-over index arrays: hoisted, replicated once
    assert sparse["diff"] < 1e-12 and sparse["placements"] == 1, sparse
    assert sparse["replicated"] == [4, 4], sparse
