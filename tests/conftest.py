"""Shared pytest configuration.

The tests compile many small XLA programs and run each briefly, so they run
with XLA's backend optimisation off (``--xla_backend_optimization_level=0``,
about 40% less wall time; results agree to rounding, and every comparison
in the suite is between programs compiled the same way or within a
tolerance). Subprocesses inherit it. ``BRAINSCALE_TEST_XLA_OPT=1`` keeps
XLA's default optimisation.
"""
import os

if os.environ.get("BRAINSCALE_TEST_XLA_OPT") != "1":
    _flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in _flags:
        os.environ["XLA_FLAGS"] = (_flags + " --xla_backend_optimization_level=0").strip()


def pytest_sessionstart(session):
    # Print the versions that matter at the top of every run (also under -q,
    # where pytest hides its own header), so CI logs say what was tested.
    import sys

    parts = [f"python {sys.version.split()[0]}"]
    for name in ("jax", "jaxlib", "flax", "optax", "numpy"):
        try:
            mod = __import__(name)
            parts.append(f"{name} {getattr(mod, '__version__', '?')}")
        except Exception:  # pragma: no cover - reporting only
            parts.append(f"{name} missing")
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_line(" | ".join(parts))
