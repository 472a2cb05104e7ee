"""Elementwise kernels numpy lacks (erf for the exact GELU)."""

import math

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def _gelu(x, out):
    flat_x = x.ravel()
    flat_o = out.ravel()
    for i in prange(flat_x.size):
        v = flat_x[i]
        flat_o[i] = 0.5 * v * (1.0 + math.erf(v * 0.7071067811865476))


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
# Activation codes of the fused Dense epilogue (bias add + activation in one pass over the GEMM output).
# Only activations whose derivative needs nothing but the output are fused, so the layer keeps one array.
LINEAR, RELU, TANH, SIGMOID, SOFTMAX = 0, 1, 2, 3, 4
FUSED = {"linear": LINEAR, "relu": RELU, "tanh": TANH, "sigmoid": SIGMOID, "softmax": SOFTMAX}

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
