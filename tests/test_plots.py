"""What a run's figures say: titles, population names, time units, the
trial's label. Pure functions (no pixels); the PNGs themselves are written
in test_train.py's run."""
import jax
import numpy as np

from brainscale.models.recurrent_snn import recurrent_snn
from brainscale.train.plot_labels import (algorithm_label, neuron_kind, path_keys, path_name,
                                          population_name, run_title, step_ms, time_label,
                                          trial_summary)
from brainscale.train.plots import _labelled_spans, plot_learning_curve, plot_raster


def test_titles_name_task_and_algorithm():
    assert run_title("digits", "es_d_rtrl") == "digits / ES-D-RTRL"
    assert run_title("shd", "e_prop") == "shd / e-prop"
    assert algorithm_label("bptt") == "BPTT" and algorithm_label("my_rule") == "my_rule"
    assert run_title("toy", None) == "toy"


def test_population_names_from_pytree_paths():
    hidden = {"layers": [{"spk": np.zeros(3)}], "pop": {"z": np.zeros(2)}}
    paths = [path_keys(p) for p, _ in jax.tree_util.tree_flatten_with_path(hidden)[0]]
    assert paths == [("layers", 0, "spk"), ("pop", "z")]
    assert path_name(("layers", 0, "spk")) == "layers[0].spk"
    assert population_name(("layers", 0, "spk"), 128, "LIF") == "layer 1 (LIF, 128)"
    assert population_name(("layers", 2, "spk"), 64) == "layer 3 (64)"
    assert population_name(("pop", "z"), 2) == "pop.z (2)"
    assert "[" not in population_name(("layers", 1, "spk"), 8) and "'" not in path_name(
        ("a", "b", 0))


def test_neuron_kind_read_from_the_model():
    net = recurrent_snn(4, 2, hidden=[5, 3], neuron="alif")
    assert neuron_kind(net, ("layers", 0, "spk")) == "ALIF"
    assert neuron_kind(net, ("layers", 1, "neuron", "v")) == "ALIF"
    assert neuron_kind(net, ("nothing", 0, "spk")) is None
    assert neuron_kind(None, ("layers", 0, "spk")) is None


def test_time_axis_units():
    assert step_ms({"dt": 2.0}) == 2.0                        # dmts, evidence: ms
    assert step_ms({"time_window": 10_000}) == 10.0           # event frames: us per bin
    assert step_ms({"time_window": None}) is None             # equal bins per sample
    assert step_ms({}, {"dt": 0.5}) == 0.5                    # set in the model options
    assert step_ms({"T": 20}) is None
    assert time_label(None) == "time step"
    assert time_label(1.0) == "time step (1 ms each)"


def test_trial_summary_gives_label_and_prediction():
    ys = np.array([-1, -1, 1, 1])
    out = np.array([[9.0, 0.0], [9.0, 0.0], [0.0, 1.0], [0.2, 0.0]])
    assert trial_summary(ys, out, "trial") == "label 1, predicted 1"   # steps 0-1 not counted
    assert trial_summary(np.array([0, 1, 1, -1]), out, "step") == "2/3 labelled steps right"
    assert trial_summary(np.full(4, -1), out) == "no labelled step"
    assert _labelled_spans(np.array([-1, 0, 0, -1, 1])) == [(1, 3), (4, 5)]


def test_figures_written_from_records_and_arrays(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"kind": "eval", "step": 0, "accuracy": 0.5, "loss": 0.7, "n_scored": 4}\n'
                   '{"kind": "train", "step": 1, "loss": 0.3, "loss_per_label": 0.6}\n'
                   '{"kind": "eval", "step": 1, "accuracy": 0.75, "loss": null, "n_scored": 4}\n')
    png = plot_learning_curve(str(log), str(tmp_path / "lc.png"), "toy / BPTT", chance=0.5)
    assert (tmp_path / "lc.png").stat().st_size > 0 and png.endswith("lc.png")
    rng = np.random.default_rng(0)
    spikes = {"layer 1 (LIF, 6)": (rng.random((10, 2, 6)) < 0.3).astype(np.float32)}
    rates = rng.random((10, 2, 3)).astype(np.float32)         # non-binary input: an image
    ys = np.full((10, 2), -1)
    ys[5:] = 1
    plot_raster(spikes, str(tmp_path / "r.png"), inputs=rates, ys=ys, dt_ms=1.0, title="t")
    assert (tmp_path / "r.png").stat().st_size > 0

