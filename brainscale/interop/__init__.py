"""Bridges to other tools: brainpy / brainstate modules in, NIR graphs in and
out. Each imports its optional dependency only when called.

    model = bs.interop.from_brainstate(brainpy_net, x_example)
    graph = bs.interop.to_nir(net); net2 = bs.interop.from_nir(graph)
"""
from brainscale.interop.brainstate_adapter import from_brainstate, to_brainstate
from brainscale.interop.nir import (NIRExportError, NIRImportError, NIRNetwork, from_nir,
                                    read_nir, to_nir, write_nir)

__all__ = ["from_brainstate", "to_brainstate", "to_nir", "from_nir", "write_nir", "read_nir",
           "NIRExportError", "NIRImportError", "NIRNetwork"]
