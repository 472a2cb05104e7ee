"""layerforge: neural networks described in YAML, trained by a numpy + Numba engine.

The Python API (``Model``, ``load``) is imported lazily so the command-line tool starts fast.
"""

import os as _os

__version__ = "0.1.0"

# OpenBLAS's worker threads busy-wait for about 2**28 cycles (~0.1 s) after each multi-threaded GEMM before they
# sleep. The engine alternates such GEMMs (Dense layers) with its own threads (conv and recurrent kernels run one
# block of samples per thread), which then share the cores with two spinning BLAS threads: measured on 2 cores,
# the mnist_cnn training step took 80 ms instead of 49-55 ms. 2**4 cycles makes them sleep at once; the MLP, which
# runs GEMM after GEMM, measured no slower. OpenBLAS reads the variable when it loads, so this only takes effect
# when layerforge is imported before numpy (always so for the command-line tool); a value set by the user wins.
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

__all__ = ["Model", "load", "__version__"]


def __getattr__(name):
    if name in ("Model", "load"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'layerforge' has no attribute {name!r}")
