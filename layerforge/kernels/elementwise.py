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
