"""One thread count for BLAS (the GEMMs numpy and scipy run) and the Numba parallel kernels.

``set_threads(n)`` sets both together: the environment variables the BLAS libraries and Numba read when they
load (for the ones not loaded yet), ``numba.set_num_threads`` and, for the BLAS libraries already loaded,
``threadpoolctl.threadpool_limits`` (when threadpoolctl is installed). ``None`` leaves the defaults: every
core for both. Setting more threads than cores only adds contention; on a machine shared with other jobs
fewer threads than cores can be faster.
"""

from __future__ import annotations

import os
import sys

_BLAS_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")
# The count set_threads configured, for the whole process: Numba's own count is per thread (a pool thread would
# read the default, every core), so the engine's regions read this one (kernels/schedule.py).
_configured: int | None = None


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def set_threads(n: int | None) -> int:
    """Use ``n`` threads for BLAS and Numba (None: leave the defaults); returns the count in force."""
    if n is None:
        return current_threads()
    global _configured
    n = max(1, int(n))
    _configured = n
    for var in _BLAS_VARS:
        os.environ[var] = str(n)
    if "numba" in sys.modules:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    else:
        os.environ["NUMBA_NUM_THREADS"] = str(n)
    if "numpy" in sys.modules or "scipy" in sys.modules:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # the variables above still cover libraries loaded from now on
            pass
        else:
            threadpool_limits(n, user_api="blas")
    return n


def current_threads() -> int:
    """The configured thread count: set_threads's, else Numba's (or its variable when Numba is not loaded)."""
    if _configured is not None:
        return _configured
    if "numba" in sys.modules:
        import numba

        return int(numba.get_num_threads())
    env = os.environ.get("NUMBA_NUM_THREADS")
    return int(env) if env and env.isdigit() else cpu_count()


def blas_info() -> list[dict]:
    """The loaded BLAS libraries with their thread counts and kernels (needs threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keep = ("internal_api", "version", "num_threads", "architecture", "threading_layer")
    return [{k: d.get(k) for k in keep if d.get(k) is not None} for d in threadpool_info()
            if d.get("user_api") == "blas"]
