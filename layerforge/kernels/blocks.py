"""Running a region's blocks on threads (how many: ``schedule.py``), BLAS held to one thread meanwhile.

The convolution and recurrent kernels are ``nogil`` Numba functions, so plain Python threads run their
blocks in parallel. Each block does its own GEMMs; a multi-threaded BLAS inside a block would only fight the
other blocks for the cores (measured on 2 cores: 5-30x slower), hence ``one_blas_thread``.
"""

from __future__ import annotations

import functools
import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_blas_libs = None  # threadpoolctl controllers of the loaded BLAS libraries (False: not available)


def _forget_pool() -> None:  # a forked child has none of the parent's threads
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def workers(n: int) -> ThreadPoolExecutor:
    """A shared pool with at least ``n`` worker threads."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers < n:
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="layerforge")
        return _pool


def blas_controllers():
    """The threadpoolctl controllers of the BLAS libraries (found once, then cached; () when unavailable)."""
    global _blas_libs
    if _blas_libs is None:
        try:
            # np.dot inside kernels runs scipy's BLAS, which Numba loads lazily: load it first, or the controller
            # (which lists the libraries loaded when it is made) misses it and two blocks then call a
            # multi-threaded BLAS at once (measured: 1.7 s instead of 10 ms for an LSTM forward).
            import scipy.linalg.cython_blas  # noqa: F401
            from threadpoolctl import ThreadpoolController

            _blas_libs = ThreadpoolController().select(user_api="blas").lib_controllers or False
        except Exception:  # noqa: BLE001 - threadpoolctl missing or unusable: leave BLAS alone
            _blas_libs = False
    return _blas_libs or ()


class one_blas_thread:  # noqa: N801 - used like a function: `with one_blas_thread():`
    """Hold every BLAS library to one thread inside the block (restored on exit; a no-op at one thread).

    Direct calls of the libraries' get/set functions through controllers made once: 4 us to enter and leave
    with the two OpenBLAS libraries here, against 13 us for threadpoolctl's ``ThreadpoolController.limit``."""

    def __enter__(self):
        self.saved = []
        for lib in blas_controllers():
            n = lib.num_threads
            if n != 1:
                lib.set_num_threads(1)
                self.saved.append((lib, n))
        return self

    def __exit__(self, *exc):
        for lib, n in self.saved:
            lib.set_num_threads(n)
        return False


_beside_engine_threads: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def one_blas_thread_beside_engine_threads(phase: str):
    """Decorate an engine entry point ``fn(owner, ...)`` (a training step, predict, evaluate): while it runs, BLAS
    is held to one thread if that owner's ``phase`` runs the engine's own threads (batch blocks, Numba parallel
    kernels), learned from the calls so far (held from the call after the first that ran them).

    Why (issue 21): OpenBLAS's workers busy-wait after each multi-threaded call (~0.1 s unless
    OPENBLAS_THREAD_TIMEOUT was set before numpy loaded, i.e. before ``import numpy`` in the user's script), and
    beside the engine's threads they take the cores: numpy imported first made the CNN's training 0.79x and MLP
    inference 0.73x as fast (benchmarks/import_order.py). A model whose every GEMM runs alone (an MLP's training
    step) keeps BLAS's threads: GEMM after GEMM, spinning workers cost nothing."""

    def decorate(fn):
        @functools.wraps(fn)
        def run(owner, *args, **kwargs):
            from . import schedule

            known = _beside_engine_threads.get(owner, {})
            if known.get(phase):
                with one_blas_thread():
                    return fn(owner, *args, **kwargs)
            before = schedule.parallel_regions()
            out = fn(owner, *args, **kwargs)
            if schedule.parallel_regions() > before:  # from now on held (a small first call may have run serially)
                known[phase] = True
                _beside_engine_threads[owner] = known
            return out

        return run

    return decorate


def run_blocks(work, n: int, threads: int | None = None) -> list:
    """``[work(0), ..., work(n-1)]`` on ``threads`` threads (default: ``schedule.n_threads(n)``: never more than
    the blocks or the configured threads, one inside another parallel region), the calling thread taking its share,
    with BLAS held to one thread meanwhile. Thread j runs blocks j, j + threads, ...; each block's result is the
    same whichever thread runs it, and the results come back in block order."""
    from . import schedule

    t = schedule.n_threads(n) if threads is None else max(1, min(int(threads), n))
    with one_blas_thread():
        if t <= 1:
            return [work(k) for k in range(n)]
        results: list = [None] * n
        schedule.note_parallel_region()

        def share(j: int) -> None:
            with schedule.region():
                for k in range(j, n, t):
                    results[k] = work(k)

        pool = workers(t - 1)
        futures = [pool.submit(share, j) for j in range(1, t)]
        try:
            share(0)
        finally:
            for f in futures:
                f.result()
    return results


_launch_lock = threading.Lock()


def one_launch_at_a_time(kernel):
    """Wrap a Numba ``parallel=True`` kernel (called from Python) so that two Python threads never run parallel
    kernels at the same moment: Numba's workqueue threading layer (the engine's default, see kernels/__init__.py)
    aborts the whole process when two threads launch parallel work at once, and predict may run batches on
    several threads (engine/training.py). Uncontended, the lock costs well under a microsecond."""

    import numba

    from .schedule import note_parallel_region, numba_threads

    @functools.wraps(kernel)
    def launch(*args):
        # threads sized by the work (the largest array argument), one for small work or inside a parallel
        # region; Numba's count is per calling thread, so setting it here touches no other thread
        t = numba_threads(max((a.size for a in args if hasattr(a, "size") and hasattr(a, "dtype")), default=0))
        with _launch_lock:
            saved = numba.get_num_threads()
            t = min(t, numba.config.NUMBA_NUM_THREADS)
            if t != saved:
                numba.set_num_threads(t)
            if t > 1:
                note_parallel_region()
            try:
                return kernel(*args)
            finally:
                if t != saved:
                    numba.set_num_threads(saved)

    launch.kernel = kernel  # the Numba dispatcher itself
    return launch
