"""Numba kernels. Import these modules lazily (inside forward/backward), never at package import:
`summary`, `validate` and `--help` must not load Numba.

Every kernel is compiled with ``cache=True``: the machine code is kept on disk, so only the first run on a
machine pays the JIT compile. Numba writes its cache next to the sources (``kernels/__pycache__``); when that
folder cannot be written (a read-only or system-wide install) and the user has not chosen a folder with
``NUMBA_CACHE_DIR``, the cache goes to ``$XDG_CACHE_HOME/layerforge/numba`` (default
``~/.cache/layerforge/numba``). This runs before any kernel module imports Numba.

Threading layer: unless ``NUMBA_THREADING_LAYER`` is set, the engine's start-up (``engine/startup.py``, taken by
the CLI and the first ``layerforge.Model``, not by importing this package) makes the Numba parallel kernels use
Numba's own ``workqueue`` layer rather than OpenMP. The engine alternates Numba parallel loops with multi-threaded BLAS
calls; OpenMP worker threads keep spinning after a parallel loop and take the cores the next GEMM's BLAS
threads need (measured on 2 cores: a GEMM right after a parallel loop was 5-30x slower with OpenMP, no slower
with workqueue; the mnist_cnn training step was faster with workqueue in every paired run). The workqueue layer
aborts the process when two Python threads launch parallel kernels at once; predict may run batches on several
threads, so every parallel kernel is called through ``blocks.one_launch_at_a_time`` (one lock). Set
``NUMBA_THREADING_LAYER=omp`` (or ``tbb``) to choose another layer.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def _writable(folder: Path) -> bool:
    probe = folder / "__pycache__"
    target = probe if probe.exists() else folder
    return os.access(target, os.W_OK | os.X_OK)


def user_cache_dir() -> Path:
    """The per-user folder for the Numba cache when the package folder is read-only."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "layerforge" / "numba"


def configure_cache() -> str | None:
    """Point Numba at a user cache folder when the package folder is not writable; returns the folder set."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    if _writable(Path(__file__).resolve().parent):
        return None
    folder = user_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # Numba falls back to its own user-wide cache locator
    os.environ["NUMBA_CACHE_DIR"] = str(folder)
    numba = sys.modules.get("numba")
    if numba is not None:  # imported by someone else first: the cache locator reads config.CACHE_DIR lazily
        numba.config.CACHE_DIR = str(folder)
    return str(folder)


configure_cache()  # a fallback for read-only installs, needed before any kernel compiles (not a tuning)
