"""Shared pytest configuration."""


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
