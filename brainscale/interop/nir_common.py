"""What NIR export and import share: their errors, and the checked readers
of a node's numeric fields (used by ``nir_import`` and the per-type rules
of ``nir_conv``)."""
from __future__ import annotations

import numpy as np

__all__ = ["NIRExportError", "NIRImportError", "values", "scalar"]


class NIRExportError(ValueError):
    """The module (or a part of it, named by its path) has no exact NIR form."""


class NIRImportError(ValueError):
    """A NIR graph (node named by its key) that ``from_nir`` cannot rebuild."""


def values(key, node, name, positive=False):
    """A node's numeric field as float64, finite (and > 0 with ``positive``)."""
    kind = type(node).__name__
    if getattr(node, name, None) is None:
        raise NIRImportError(f"node {key!r} ({kind}): field {name!r} is missing")
    try:
        arr = np.asarray(getattr(node, name), np.float64)
    except (TypeError, ValueError):
        raise NIRImportError(f"node {key!r} ({kind}): field {name!r} is not numeric (got "
                             f"{np.asarray(getattr(node, name)).dtype})") from None
    if not np.all(np.isfinite(arr)):
        raise NIRImportError(f"node {key!r} ({kind}): field {name!r} holds NaN or inf")
    if positive and not np.all(arr > 0):
        raise NIRImportError(f"node {key!r} ({kind}): field {name!r} must be > 0 (got "
                             f"{arr.min()})")
    return arr


def scalar(key, node, name, positive=False, shape=None):
    """A per-neuron field that must hold one value for the whole population;
    with ``shape`` (the population's), its array must broadcast to it (one
    value, an array of that shape, or e.g. ``(C, 1, 1)`` for ``(C, H, W)``)."""
    arr = values(key, node, name, positive)
    if shape is not None and not _broadcasts(arr.shape, tuple(shape)):
        raise NIRImportError(
            f"node {key!r} ({type(node).__name__}): field {name!r} has shape {arr.shape}, "
            f"which does not broadcast to the population's shape {tuple(shape)} (the shape "
            "of its input); give one value or an array of that shape")
    arr = arr.reshape(-1)
    if arr.size == 0:
        raise NIRImportError(f"node {key!r} ({type(node).__name__}): field {name!r} is empty")
    if not np.all(arr == arr[0]):
        raise NIRImportError(
            f"node {key!r} ({type(node).__name__}): {name} differs across neurons "
            f"({arr.min()} .. {arr.max()}); from_nir needs one value per population")
    return float(arr[0])


def _broadcasts(have, shape):
    try:
        return np.broadcast_shapes(have, shape) == shape
    except ValueError:
        return False
