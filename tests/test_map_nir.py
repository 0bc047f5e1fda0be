"""``brainscale train`` with the default digits network, then ``brainscale map
RUN --nir F``: the file reads back with the same spikes and outputs; a
missing ``nir`` / ``h5py`` stops ``map`` and the NIR functions before any
work, naming the extra to install."""
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from brainscale.cli.main import main
from transforms.lowering.optional import INSTALL, MissingDependencyError

nir = pytest.importorskip("nir")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A short run with every default but the number of steps."""
    out = tmp_path_factory.mktemp("digits_default") / "run"
    assert main(["train", "--task", "digits", "--steps", "2", "--eval-every", "2",
                 "--checkpoint-every", "2", "--out", str(out), "--no-plots"]) == 0
    return out


def test_default_run_maps_to_nir_with_the_same_spikes(run_dir, tmp_path, capsys):
    from brainscale.interop.nir import from_nir
    from brainscale.mapping import _load_run
    from brainscale.model import to_nnx
    from tests.test_nir import run

    path = tmp_path / "digits.nir"
    assert main(["map", str(run_dir), "--no-quantize", "--nir", str(path)]) == 0
    assert f"NIR graph: {path}" in capsys.readouterr().out
    cfg, task, learner, state, _ = _load_run(str(run_dir))
    assert cfg.model == task.resolve_model({})   # the task's default network, every value
    net = to_nnx(task.make_model(cfg.model, cfg.seed), state.params)
    assert all(layer.neuron.reset == "hard" for layer in net.layers)
    back = from_nir(path)
    xs = np.asarray(task.eval_batches(16)[0][0])             # (24, 16, 64) test digits

    def trained(m, x):
        spikes = []
        for layer in m.layers:
            x = layer(x)
            spikes.append(x)
        return m.out(x), spikes

    def rebuilt(m, x):
        v = m.step(x)
        return v["output"], [v["layers[0].neuron"], v["layers[1].neuron"]]

    (y0, s0), (y1, s1) = run(net, xs, trained), run(back, xs, rebuilt)
    for a, b in zip(s0, s1):
        assert a.mean() > 0.01
        assert np.array_equal(a, b)
    np.testing.assert_allclose(y1, y0, rtol=1e-6, atol=1e-6)
    # and the learner's own forward pass (what training and evaluation run)
    hb = jax.tree.map(lambda h: jnp.broadcast_to(h, (16,) + h.shape), state.hidden0)
    y_learner = learner.predict(state._replace(hidden=hb, traces={}), jnp.asarray(xs))
    np.testing.assert_allclose(y1, np.asarray(y_learner), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("module", ["nir", "h5py"])
def test_map_without_the_extra_stops_before_any_work(run_dir, tmp_path, monkeypatch, capsys,
                                                    module):
    import brainscale.mapping

    def no_lowering(*a, **k):
        raise AssertionError("the mapping ran although the export could not be written")

    monkeypatch.setattr(brainscale.mapping, "map_run", no_lowering)
    monkeypatch.setitem(sys.modules, module, None)
    nir_file, js = tmp_path / "net.nir", tmp_path / "report.json"
    assert main(["map", str(run_dir), "--nir", str(nir_file), "--json", str(js)]) == 2
    err = capsys.readouterr().err
    assert f"NIR export to {nir_file} needs {module}" in err and INSTALL in err
    assert not nir_file.exists() and not js.exists()


def test_nir_functions_name_the_extra_before_any_work(tmp_path, monkeypatch):
    from brainscale.interop.nir import from_nir, to_nir, write_nir
    from brainscale.mapping import write_run_nir
    from brainscale.models.recurrent_snn import recurrent_snn

    net = recurrent_snn(4, 2, [3], neuron_options={"reset": "hard"})
    path = tmp_path / "net.nir"
    write_nir(net, path)
    graph = to_nir(net)
    monkeypatch.setitem(sys.modules, "h5py", None)
    for call in (lambda: write_nir(net, tmp_path / "new.nir"), lambda: from_nir(path),
                 lambda: write_run_nir(str(tmp_path / "no_such_run"), tmp_path / "r.nir")):
        with pytest.raises(MissingDependencyError, match="needs h5py.*" + re.escape(INSTALL)):
            call()
    assert from_nir(graph) is not None              # a graph in memory needs no h5py
    monkeypatch.setitem(sys.modules, "nir", None)
    for call in (lambda: to_nir(net), lambda: from_nir(graph)):
        with pytest.raises(MissingDependencyError, match="needs nir"):
            call()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.nir"]
