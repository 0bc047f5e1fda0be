"""The compiled learners equal the hand-written lif-delta learners of
benchmarks/lif_delta.py (float64), with and without readout paths."""
import importlib.util
import pathlib

import jax
import pytest

import brainscale as bs
from gradcheck import algorithm, float64, rel_err

spec = importlib.util.spec_from_file_location(
    "lif_delta", pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "lif_delta.py")
ld = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ld)


@pytest.mark.parametrize("readout_paths", [True, False])
def test_compiled_equals_hand_written(readout_paths):
    with float64():
        params = ld.init_params(0, n_in=12, n_rec=16, n_out=4, ff_scale=6.0)
        xs, ys = ld.make_data(15, 3, n_in=12, n_out=4, rate=0.3)
        for algo in ("bptt", "d_rtrl", "es_d_rtrl"):
            learner = bs.online(ld.model(params), algorithm(algo, 0.8),
                                readout_paths=readout_paths)
            state = learner.init(jax.random.PRNGKey(0), xs[0])
            got, _ = learner.sequence_grad(state, xs, ys)
            want, _ = ld.hand_grads(params, xs, ys, algo, 0.8, readout_paths)
            assert rel_err(got, want) < 1e-9, algo
