"""Map a trained network onto a neuromorphic chip: the Python face of
``brainscale map``.

``map_model`` lowers any step model with its weights, measuring spike rates
by running it on inputs; ``map_run`` does the same for a run folder written
by ``brainscale train`` / ``brainscale.train.fit`` (its checkpoint and
config), and adds the task accuracy before and after quantising the weights
to the profile's bit width. ``check_map_dependencies`` checks the optional
packages a request needs before any of this work starts.
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from transforms.lowering.hardware import Profile, load_profile
from transforms.lowering.report import format_report, lower
from transforms.lowering.netlist import build_netlist, measure_x_activity
from transforms.lowering.optional import MissingDependencyError, require
from transforms.lowering.quantize import quantize_params

__all__ = ["map_model", "map_run", "write_run_nir", "format_report", "check_map_dependencies",
           "MissingDependencyError"]

NIR_FILE_DEPENDENCIES = ("nir", "h5py")


def check_map_dependencies(nir_path=None) -> None:
    """Before any work: with ``nir_path`` (an export was asked for) raise
    ``MissingDependencyError`` unless ``nir`` and ``h5py`` import. Lowering
    itself needs no optional package (without pymetis the report says METIS
    was skipped)."""
    if nir_path:
        require(*NIR_FILE_DEPENDENCIES, what=f"NIR export to {nir_path}")


def _profile(profile) -> Profile:
    return profile if isinstance(profile, Profile) else load_profile(profile)


def map_model(graph, params, hidden0, xs, profile="loihi1", bits=None, refine=True,
              seed=0) -> dict:
    """Lower ``graph`` (a learner's ``compile`` result) with weights ``params``
    and per-sample ``hidden0``; rates measured on inputs ``xs`` (T, B, ...)."""
    profile = _profile(profile)
    p, h = jax.tree.leaves(params), jax.tree.leaves(hidden0)
    x = [jnp.asarray(a) for a in jax.tree.leaves(xs)]
    activity = measure_x_activity(graph, p, h, x)
    net = build_netlist(graph, p, activity)
    net.rates_basis = (f"measured over {x[0].shape[0]} steps x {x[0].shape[1]} samples "
                       "(fraction of steps with a non-zero event)")
    return lower(net, profile, bits, T=int(x[0].shape[0]), refine=refine, seed=seed)


def _load_run(run_dir: str):
    from brainscale.train.checkpoint import load_checkpoint, read_checkpoint_meta
    from brainscale.train.config import config_from_dict
    from brainscale.train.runner import CHECKPOINT, build

    ckpt = os.path.join(run_dir, CHECKPOINT)
    if not os.path.exists(ckpt):
        raise FileNotFoundError(f"{ckpt} not found: map a folder written by brainscale train "
                                "(or brainscale.train.fit, e.g. examples/digits.py's --out)")
    cfg = config_from_dict(read_checkpoint_meta(ckpt)["config"])
    task, learner, state = build(cfg)
    state, meta = load_checkpoint(ckpt, state)
    return cfg, task, learner, state, meta


def write_run_nir(run_dir: str, path: str):
    """Export the trained network of a run folder to NIR (``brainscale.interop.nir``);
    the optional packages are checked before the run is loaded."""
    check_map_dependencies(path)
    from brainscale.model import to_nnx
    from brainscale.interop.nir import write_nir

    cfg, task, _, state, _ = _load_run(run_dir)
    module = task.make_model(task.resolve_model(cfg.model), cfg.seed)
    return write_nir(to_nnx(module, state.params), path)


def map_run(run_dir: str, profile="loihi1", bits=None, batch_size: int = 64,
            quantize: bool = True, refine: bool = True) -> dict:
    """Report for the trained network of a run folder; with ``quantize`` the
    task accuracy with float weights and with weights at the profile's bits."""
    from brainscale.train.runner import evaluate

    profile = _profile(profile)
    bits = profile.check_weight_bits(profile.default_weight_bits if bits is None else bits)
    cfg, task, learner, state, meta = _load_run(run_dir)
    xs, _ = task.eval_batches(batch_size)[0]
    xs = jnp.asarray(np.asarray(xs))
    graph = learner.compile(state.params, state.hidden0, xs[0, 0])
    report = map_model(graph, state.params, state.hidden0, xs, profile, bits, refine)
    report["run"] = {"dir": run_dir, "task": cfg.task, "algorithm": cfg.algorithm,
                     "step": int(meta.get("step", 0))}
    if quantize:
        leaves, treedef = jax.tree.flatten(state.params)
        q, info = quantize_params(graph, leaves, bits)
        q_state = state._replace(params=jax.tree.unflatten(treedef, q))
        before = evaluate(task, learner, state, batch_size)["accuracy"]
        after = evaluate(task, learner, q_state, batch_size)["accuracy"]
        report["quantisation"] = {"bits": bits, "task": cfg.task, "accuracy_float": before,
                                  "accuracy_quantised": after, "ops": info}
    return report
