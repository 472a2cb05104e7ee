"""Embedding kernels: the scatter-add of the gradient (the forward row gather is numpy's take)."""

from numba import njit


@njit(cache=True, error_model="numpy")
def scatter_add_rows(idx, rows, out):
    """out[idx[n]] += rows[n] for every n (rows (N, D), out (V, D)); serial so repeated indices add up."""
    N, D = rows.shape
    for n in range(N):
        o = out[idx[n]]
        r = rows[n]
        for d in range(D):
            o[d] += r[d]


@njit(cache=True, error_model="numpy")
def scatter_add_rows_scaled(idx, rows, scale, out):
    """out[idx[n]] += rows[n] * scale[idx[n]] (Keras 1 whole-row embedding dropout)."""
    N, D = rows.shape
    for n in range(N):
        k = idx[n]
        s = scale[k]
        if s == 0:
            continue
        o = out[k]
        r = rows[n]
        for d in range(D):
            o[d] += r[d] * s

