"""Optional dependencies of lowering and NIR (``nir``, ``h5py``, ``pymetis``).

They come with the ``lowering`` extra; ``INSTALL`` is the one place that
says how to install it. ``require`` is called before any work, so a missing
package stops a command at once, naming the extra, rather than after the
mapping ran.
"""
from __future__ import annotations

import importlib

__all__ = ["INSTALL", "MissingDependencyError", "missing", "require"]

INSTALL = 'pip install -e ".[lowering]"'


class MissingDependencyError(ImportError):
    """An optional package is not importable; the message says which and how
    to install it."""


def missing(*modules: str) -> dict[str, str]:
    """``{module: reason}`` for each of ``modules`` that cannot be imported."""
    out = {}
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as e:        # also a module set to None in sys.modules
            out[name] = str(e)
    return out


def require(*modules: str, what: str) -> None:
    """Raise ``MissingDependencyError`` unless every one of ``modules`` imports;
    ``what`` names the task that needs them (``"NIR export"``)."""
    gone = missing(*modules)
    if gone:
        names = ", ".join(gone)
        why = "; ".join(f"{k}: {v}" for k, v in gone.items())
        raise MissingDependencyError(f"{what} needs {names}, not importable here ({why}); "
                                     f"install the lowering extra: {INSTALL}")
