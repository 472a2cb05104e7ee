"""Elementwise kernels numpy lacks (erf for the exact GELU)."""

import math

import numpy as np
from numba import njit, prange

from ..activations import DENSE_FUSED, DENSE_LINEAR, DENSE_RELU, DENSE_SIGMOID, DENSE_SOFTMAX, DENSE_TANH
from .blocks import one_launch_at_a_time


@one_launch_at_a_time
@njit(cache=True, parallel=True)
def _gelu(x, out):
    flat_x = x.ravel()
    flat_o = out.ravel()
    for i in prange(flat_x.size):
        v = flat_x[i]
        flat_o[i] = 0.5 * v * (1.0 + math.erf(v * 0.7071067811865476))


@one_launch_at_a_time
@njit(cache=True, parallel=True)
def _gelu_grad(x, out):
    flat_x = x.ravel()
    flat_o = out.ravel()
    for i in prange(flat_x.size):
        v = flat_x[i]
        cdf = 0.5 * (1.0 + math.erf(v * 0.7071067811865476))
        pdf = math.exp(-0.5 * v * v) * 0.3989422804014327
        flat_o[i] = cdf + v * pdf


def gelu(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    _gelu(x, out)
    return out


def gelu_grad(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    _gelu_grad(x, out)
    return out


# ----------------------------------------------------------------------------- Dense epilogues
# Activation codes of the fused Dense epilogue (bias add + activation in one pass over the GEMM output), from the
# activation registry (layerforge/activations.py: dense_code). Only activations whose derivative needs nothing but the
# output are fused, so the layer keeps one array.
LINEAR, RELU, TANH, SIGMOID, SOFTMAX = DENSE_LINEAR, DENSE_RELU, DENSE_TANH, DENSE_SIGMOID, DENSE_SOFTMAX
FUSED = DENSE_FUSED  # activation name -> code

# error_model="numpy": no ZeroDivisionError branch, so LLVM vectorises the loops. `one` is 1 in the array's
# dtype (passed from Python) so float32 arithmetic stays float32, as numpy computes it.
_EPI = {"cache": True, "error_model": "numpy"}


@njit(**_EPI)
def bias_act(z, b, use_bias, code, one):
    """In place on the GEMM output z (R, C): z = activation(z + b)."""
    rows, cols = z.shape
    if use_bias:
        for r in range(rows):
            for c in range(cols):
                z[r, c] += b[c]
    if code == RELU:
        for r in range(rows):
            for c in range(cols):
                if z[r, c] < 0:
                    z[r, c] = 0
    elif code == TANH:
        for r in range(rows):
            for c in range(cols):
                z[r, c] = math.tanh(z[r, c])
    elif code == SIGMOID:
        for r in range(rows):
            for c in range(cols):
                v = z[r, c]
                if v >= 0:
                    z[r, c] = one / (one + math.exp(-v))
                else:
                    e = math.exp(v)
                    z[r, c] = e / (one + e)
    elif code == SOFTMAX:
        for r in range(rows):
            m = z[r, 0]
            for c in range(1, cols):
                if z[r, c] > m:
                    m = z[r, c]
            s = z[r, 0] - z[r, 0]
            for c in range(cols):
                e = math.exp(z[r, c] - m)
                z[r, c] = e
                s += e
            for c in range(cols):
                z[r, c] = z[r, c] / s


@njit(**_EPI)
def act_backward_bias(dy, y, code, dz, db, use_bias, one):
    """dz = dL/dz from dy and the activation output y (R, C); db = column sums of dz (float64 accumulator)."""
    rows, cols = dy.shape
    if code == RELU:
        for r in range(rows):
            for c in range(cols):
                dz[r, c] = dy[r, c] if y[r, c] > 0 else 0
    elif code == TANH:
        for r in range(rows):
            for c in range(cols):
                v = y[r, c]
                dz[r, c] = dy[r, c] * (one - v * v)
    elif code == SIGMOID:
        for r in range(rows):
            for c in range(cols):
                v = y[r, c]
                dz[r, c] = dy[r, c] * v * (one - v)
    elif code == SOFTMAX:
        for r in range(rows):
            s = dy[r, 0] - dy[r, 0]
            for c in range(cols):
                s += dy[r, c] * y[r, c]
            for c in range(cols):
                dz[r, c] = y[r, c] * (dy[r, c] - s)
    else:
        for r in range(rows):
            for c in range(cols):
                dz[r, c] = dy[r, c]
    if use_bias:
        acc = np.zeros(cols, dtype=np.float64)
        for r in range(rows):
            for c in range(cols):
                acc[c] += dz[r, c]
        for c in range(cols):
            db[c] = acc[c]


# ----------------------------------------------------------------------------- Dropout
# Counter-based random bits: element i of a draw gets splitmix64(key + i * golden ratio), so the elements are
# independent of each other and of the thread that computes them (the result does not depend on the thread
# count), the loop vectorises, and one 64-bit key drawn from the layer's numpy Generator fixes the whole mask
# (runs stay reproducible and resumable from the Generator's saved state). numpy's Generator.random fills
# float64s one at a time: 2.2 ms for mnist_cnn's 590k-element dropout (draw, compare, scale), 0.4 ms here.
# One thread: the loop is memory-bound, and a Numba parallel version measured twice as slow at that size.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@njit(inline="always")
def _splitmix64(z):
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit(cache=True, nogil=True, error_model="numpy")
def _dropout(x, y, scale, key, threshold, keep_value):
    zero = y.dtype.type(0)
    for i in range(x.size):
        bits = _splitmix64(key + np.uint64(i) * _GOLDEN) >> np.uint64(32)  # uniform in [0, 2**32)
        s = keep_value if bits >= threshold else zero
        scale[i] = s
        y[i] = x[i] * s


def dropout(x: np.ndarray, rate: float, key: int) -> tuple[np.ndarray, np.ndarray]:
    """(x * scale, scale) with scale = 1/(1 - rate) where a uniform draw in [0, 1) is at least ``rate``, else 0;
    the draws come from the 64-bit ``key``. x is any float array; both results are new C-contiguous arrays."""
    xf = np.ascontiguousarray(x).reshape(-1)
    y = np.empty_like(xf)
    scale = np.empty_like(xf)
    threshold = np.uint64(min(int(math.ceil(rate * 4294967296.0)), 4294967296))
    keep_value = xf.dtype.type(1.0 / (1.0 - rate))
    _dropout(xf, y, scale, np.uint64(key), threshold, keep_value)
    return y.reshape(x.shape), scale.reshape(x.shape)
