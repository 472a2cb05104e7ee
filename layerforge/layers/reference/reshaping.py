"""Reference of UpSampling2D with bilinear interpolation (the fast path: Numba kernels in ``kernels/pooling.py``).

Keras 3 / TF2 ``resize`` with half-pixel centres: output cell ``i`` of an axis of length ``n`` scaled by ``s``
reads the input at ``src = (i + 0.5) / s - 0.5``, clamped to [0, n - 1], blending the two neighbouring cells
linearly. Per axis that is a (n*s, n) matrix of weights, so ``y = A_rows x A_cols^T`` per sample and channel, and
the gradient is the transposed product.
"""

from __future__ import annotations

import numpy as np

from ._maths import from_last, to_last


def interpolation_matrix(n: int, s: int) -> np.ndarray:
    """(n*s, n): row i holds the weights of the input cells that output cell i blends."""
    src = np.clip((np.arange(n * s) + 0.5) / s - 0.5, 0, n - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    a = np.zeros((n * s, n))
    np.add.at(a, (np.arange(n * s), lo), 1 - (src - lo))
    np.add.at(a, (np.arange(n * s), hi), src - lo)
    return a


def bilinear_upsampling_forward(params, x, config):
    xl = to_last(x, config.data_format)
    rows, cols = interpolation_matrix(xl.shape[1], config.size[0]), interpolation_matrix(xl.shape[2], config.size[1])
    return from_last(np.einsum("ih,bhwc,jw->bijc", rows, xl, cols), config.data_format)


def bilinear_upsampling_backward(params, x, dy, config):
    xl, dyl = to_last(x, config.data_format), to_last(dy, config.data_format)
    rows, cols = interpolation_matrix(xl.shape[1], config.size[0]), interpolation_matrix(xl.shape[2], config.size[1])
    return from_last(np.einsum("ih,bijc,jw->bhwc", rows, dyl, cols), config.data_format), {}
