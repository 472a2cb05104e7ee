"""layerforge: neural networks described in YAML, trained by a numpy + Numba engine.

The Python API (``Model``, ``load``) is imported lazily so the command-line tool starts fast.
"""

from .engine import startup as _startup

__version__ = "0.1.0"

# The one start-up step that must happen before numpy loads OpenBLAS (engine/startup.py explains it and the other
# steps; LAYERFORGE_NO_STARTUP=1 turns them all off, and a value the user set wins).
_startup.tune_openblas()

__all__ = ["Model", "load", "__version__"]


def __getattr__(name):
    if name in ("Model", "load"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'layerforge' has no attribute {name!r}")
