"""NIR (Neuromorphic Intermediate Representation) export and import.

    graph = to_nir(net)                  # nir.NIRGraph, metadata {'dt', 'integrator', 'producer'}
    graph = to_nir(cnn, input_shape=(2, 16, 16))   # a net that starts with a Conv2d
    write_nir(net, "net.nir")            # HDF5 via nir.write
    net2 = from_nir("net.nir")           # NIRNetwork: net2(x) is one step for one sample

What maps to what, what cannot be exported and why: ``docs/nir.md``,
``brainscale.interop.nir_export`` and ``brainscale.interop.nir_import``. The ``nir`` package
is imported only inside these functions; each first checks that ``nir`` (and, for files,
``h5py``) imports, else raises ``MissingDependencyError`` naming the extra to install.
"""
from __future__ import annotations

from brainscale.interop.nir_export import NIRExportError, to_nir
from brainscale.interop.nir_import import (LeakyIntegrator, NIRImportError, NIRNetwork, from_nir,
                                   read_graph)
from transforms.lowering.optional import MissingDependencyError, require

__all__ = ["NIRExportError", "NIRImportError", "NIRNetwork", "LeakyIntegrator",
           "MissingDependencyError", "to_nir", "from_nir", "write_nir", "read_nir"]


def write_nir(module, path, *, dt=None, input_shape=None):
    """Export ``module`` with ``to_nir`` and write it to ``path`` (HDF5);
    returns the graph. The file is opened only once ``to_nir`` succeeded."""
    require("nir", "h5py", what="writing a NIR file")
    import nir
    graph = to_nir(module, dt=dt, input_shape=input_shape)
    nir.write(path, graph)
    return graph


def read_nir(path):
    """Read a ``nir.NIRGraph`` from a ``.nir`` (HDF5) file; a damaged file is
    a ``NIRImportError`` naming it (and the node)."""
    return read_graph(path)
