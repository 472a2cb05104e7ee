"""The engine's process-wide start-up steps, in one place.

Three settings tune the whole process for the engine's mix of BLAS GEMMs and Numba kernels. None of them changes a
result; each only changes speed, and each leaves alone what the user set in the environment:

``openblas_timeout``
    ``OPENBLAS_THREAD_TIMEOUT=4``: OpenBLAS's worker threads otherwise busy-wait for about 2**28 cycles (~0.1 s)
    after each multi-threaded GEMM before they sleep, and the engine alternates such GEMMs (Dense layers) with its
    own threads (conv and recurrent kernels run one block of samples per thread), which then share the cores with
    spinning BLAS threads: measured on 2 cores, the mnist_cnn training step took 80 ms instead of 49-55 ms. 2**4
    cycles makes them sleep at once; the MLP, which runs GEMM after GEMM, measured no slower. OpenBLAS reads the
    variable when it loads, so setting it only takes effect before numpy is imported. When the user imported numpy
    first, ``start`` makes the loaded library take it all the same (``shorten_loaded_openblas_timeout``: OpenBLAS
    re-reads its environment and its idle workers are stopped, to be started afresh, with the short timeout, at its
    next multi-threaded call): measured on 2 cores, MLP predict right after training went from 212k samples/s
    (numpy first) to 365-425k, the same as with layerforge imported first (``benchmarks/import_order.py``).
    Besides, a training step, predict or evaluate whose work runs the engine's threads holds BLAS to one thread
    throughout (``kernels.blocks.one_blas_thread_beside_engine_threads``), which also covers a timeout the user
    set long.
``numba_threading_layer``
    ``NUMBA_THREADING_LAYER=workqueue`` (the measurements are in ``layerforge/kernels/__init__.py``): OpenMP's
    workers keep spinning after a parallel loop and take the cores the next GEMM needs. Taken without importing
    ``layerforge.kernels``, so `validate` and `summary` stay off the kernel modules.
``keep_freed_memory``
    glibc's malloc keeps freed blocks for reuse (``engine/memory.py``): per-batch buffers are then not faulted in
    afresh every batch.

Who takes them: the command-line tool, first thing (``layerforge.cli.main``); the Python API when it builds its
first ``layerforge.Model``; and ``import layerforge`` takes ``openblas_timeout`` alone, since later would be too
late. A Python user opts out of all of them with the environment variable ``LAYERFORGE_NO_STARTUP=1`` (set before
importing layerforge), or of some with ``configure(...)`` before building a model. ``CompiledModel``, the kernels
and the layers take none of them: importing them changes nothing in the process.
"""

from __future__ import annotations

import os
import sys

STEPS = ("openblas_timeout", "numba_threading_layer", "keep_freed_memory")
OPT_OUT_VARIABLE = "LAYERFORGE_NO_STARTUP"

_wanted = dict.fromkeys(STEPS, True)
_taken: dict[str, object] = {}
_timeout_set = None  # the OPENBLAS_THREAD_TIMEOUT value tune_openblas set (None: it set none)


def opted_out() -> bool:
    """Whether the environment turns every start-up step off (``LAYERFORGE_NO_STARTUP`` set, not 0/empty)."""
    return os.environ.get(OPT_OUT_VARIABLE, "").strip() not in ("", "0")


def configure(**steps: bool) -> None:
    """Choose which steps ``start`` takes, e.g. ``configure(keep_freed_memory=False)``; steps already taken
    stay taken (a process setting cannot be taken back)."""
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        raise ValueError(f"unknown start-up step {unknown[0]!r}; the steps are {', '.join(STEPS)}")
    _wanted.update({k: bool(v) for k, v in steps.items()})


def tune_openblas() -> str | None:
    """Default OPENBLAS_THREAD_TIMEOUT to 4 (effective only before numpy loads OpenBLAS); returns the value set."""
    global _timeout_set
    if opted_out() or not _wanted["openblas_timeout"] or "OPENBLAS_THREAD_TIMEOUT" in os.environ:
        return None
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = _timeout_set = "4"
    return "4"


def shorten_loaded_openblas_timeout() -> int:
    """Make every OpenBLAS library that loaded before ``tune_openblas`` set the timeout (numpy imported before
    layerforge) take it now; returns how many did. Only when this module set the variable (a value the user set is
    left alone) and only libraries that export OpenBLAS's own ``openblas_read_env`` and ``blas_thread_shutdown_``:
    the library re-reads its environment (the timeout and nothing the engine changed), then its idle workers are
    stopped; OpenBLAS starts them again at its next multi-threaded call, and they read the timeout only then.
    Called from ``start``, i.e. when the first model is built, before the engine has issued any GEMM; a thread of
    the user's running a BLAS call at that very moment would race the stop."""
    if _timeout_set is None or os.environ.get("OPENBLAS_THREAD_TIMEOUT") != _timeout_set or "numpy" not in sys.modules:
        return 0  # not ours to change, or nothing loaded OpenBLAS yet (then it reads the variable when it loads)
    try:
        import ctypes

        from threadpoolctl import ThreadpoolController

        paths = [lib.filepath for lib in ThreadpoolController().select(internal_api="openblas").lib_controllers]
    except Exception:  # noqa: BLE001 - threadpoolctl missing or unusable: leave OpenBLAS as it is
        return 0
    changed = 0
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
            current, read_env, stop = lib.openblas_thread_timeout, lib.openblas_read_env, lib.blas_thread_shutdown_
        except (OSError, AttributeError):  # another build of OpenBLAS: leave it alone
            continue
        if current() == int(_timeout_set):
            continue  # loaded after the variable was set
        read_env()
        if current() == int(_timeout_set):
            stop()
            changed += 1
    return changed


def configure_threading_layer() -> str | None:
    """Default the Numba threading layer to workqueue; returns the layer set (None: the user chose one)."""
    if os.environ.get("NUMBA_THREADING_LAYER"):
        return None
    os.environ["NUMBA_THREADING_LAYER"] = "workqueue"
    numba = sys.modules.get("numba")
    if numba is not None:  # read at the first parallel launch; no effect once the threads run
        numba.config.THREADING_LAYER = "workqueue"
    return "workqueue"


def start() -> dict:
    """Take every wanted step not taken yet (once per process); returns what each step did so far."""
    if opted_out():
        return dict(_taken)
    for step in STEPS:
        if step in _taken or not _wanted[step]:
            continue
        if step == "openblas_timeout":
            _taken[step] = tune_openblas() or _timeout_set
            shorten_loaded_openblas_timeout()
        elif step == "numba_threading_layer":
            _taken[step] = configure_threading_layer()
        else:
            from .memory import keep_freed_memory

            _taken[step] = keep_freed_memory()
    return dict(_taken)
