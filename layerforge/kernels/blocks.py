"""Splitting a batch across threads: one block of samples per thread, BLAS held to one thread meanwhile.

The convolution and recurrent kernels are ``nogil`` Numba functions, so plain Python threads run their
blocks in parallel. Each block does its own GEMMs; a multi-threaded BLAS inside a block would only fight the
other blocks for the cores (measured on 2 cores: 5-30x slower), hence ``one_blas_thread``.
"""

from __future__ import annotations

import functools
import os
import threading
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


_in_blocks = threading.local()  # .active: this thread runs one block of a run_blocks call


def _as_block(work, k: int):
    _in_blocks.active = True
    try:
        return work(k)
    finally:
        _in_blocks.active = False


def run_blocks(work, n: int) -> list:
    """``[work(0), ..., work(n-1)]``, block 0 in the calling thread and the others in worker threads, with
    BLAS held to one thread meanwhile. Called from inside a block (a layer splitting its batch while predict
    already runs whole batches on several threads), the blocks run one after another in the calling thread: the
    same blocks, so the same results, and no worker waits for a pool that its own thread occupies."""
    if getattr(_in_blocks, "active", False):
        return [work(k) for k in range(n)]
    with one_blas_thread():
        if n <= 1:
            return [_as_block(work, 0)]
        pool = workers(n - 1)
        futures = [pool.submit(_as_block, work, k) for k in range(1, n)]
        try:
            first = _as_block(work, 0)
        finally:
            rest = [f.result() for f in futures]
    return [first, *rest]


_launch_lock = threading.Lock()


def one_launch_at_a_time(kernel):
    """Wrap a Numba ``parallel=True`` kernel (called from Python) so that two Python threads never run parallel
    kernels at the same moment: Numba's workqueue threading layer (the engine's default, see kernels/__init__.py)
    aborts the whole process when two threads launch parallel work at once, and predict may run batches on
    several threads (engine/training.py). Uncontended, the lock costs well under a microsecond."""

    @functools.wraps(kernel)
    def launch(*args):
        with _launch_lock:
            return kernel(*args)

    launch.kernel = kernel  # the Numba dispatcher itself
    return launch
