"""layerforge: neural networks described in YAML, trained by a numpy + Numba engine.

The Python API (``Model``, ``load``) is imported lazily so the command-line tool starts fast.
"""

__version__ = "0.1.0"

__all__ = ["Model", "load", "__version__"]


def __getattr__(name):
    if name in ("Model", "load"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'layerforge' has no attribute {name!r}")
