"""BatchNormalization kernels.

The input is viewed as ``(outer, C, inner)`` (C = the normalised axis or axes, flattened), which covers any
``axis`` without a transpose: channels-last is ``(B*H*W, C, 1)``, channels-first ``(B, C, H*W)``.
Statistics are reduced over ``outer`` and ``inner`` per channel, in parallel over chunks of ``outer`` with
per-chunk partial sums (float64 accumulators; the variance in a second pass around the mean), so both layouts
scale with the batch. ``inner == 1`` (channels-last) goes through 2D "rows" loops whose innermost loop runs
over contiguous channels; ``inner > 1`` through "blocks" loops that reduce along the contiguous inner axis.

The ``@njit(parallel=True)`` functions contain only loops over preallocated arrays (allocations and array
expressions inside a parallel function multiply its compile time); the small per-channel arithmetic and the
choice of loop shape happen in the plain-Python entry points ``forward_train``, ``forward_inference`` and
``backward``, so a model compiles only the loop shapes it uses.

An optional 0/1 weight array ``w`` (same ``(outer, C, inner)`` shape, from a Keras mask) restricts the
statistics to the unmasked positions.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .blocks import one_launch_at_a_time
from .schedule import max_blocks

# Reductions along a contiguous inner axis may be reordered so they vectorise (no other fast-math licence).
REASSOC = {"reassoc"}


def n_chunks(outer: int) -> int:
    """How many partial sums the reductions use (a few per core, never more than rows): the machine's cores, not
    the configured threads, so the sums are the same at any thread count (kernels/schedule.py)."""
    return max(1, min(outer, 4 * max_blocks()))


# ---------------------------------------------------------------------------------------------- reductions

@one_launch_at_a_time
@njit(cache=True, parallel=True)
def _rows_sums(x, w, use_w, center, squares, part, part_sq, part_w):
    """x (R, C): per chunk and channel, sum of w*(x-center), of w*(x-center)^2 (if ``squares``) and of w."""
    n_rows, n_c = x.shape
    nchunks = part.shape[0]
    for p in prange(nchunks):
        lo = (p * n_rows) // nchunks
        hi = ((p + 1) * n_rows) // nchunks
        if use_w:
            for o in range(lo, hi):
                for c in range(n_c):
                    wv = w[o, c]
                    d = x[o, c] - center[c]
                    part[p, c] += wv * d
                    part_sq[p, c] += wv * d * d
                    part_w[p, c] += wv
        elif squares:
            for o in range(lo, hi):
                for c in range(n_c):
                    d = x[o, c] - center[c]
                    part[p, c] += d
                    part_sq[p, c] += d * d
        else:
            for o in range(lo, hi):
                for c in range(n_c):
                    part[p, c] += x[o, c]
        if not use_w:
            for c in range(n_c):
                part_w[p, c] = hi - lo


@one_launch_at_a_time
@njit(cache=True, parallel=True, fastmath=REASSOC)
def _blocks_sums(x, w, use_w, center, squares, part, part_sq, part_w):
    """x (O, C, I): as ``_rows_sums`` with the reduction over O and I."""
    n_outer, n_c, n_in = x.shape
    nchunks = part.shape[0]
    for p in prange(nchunks):
        lo = (p * n_outer) // nchunks
        hi = ((p + 1) * n_outer) // nchunks
        for o in range(lo, hi):
            for c in range(n_c):
                m = center[c]
                a = 0.0
                b = 0.0
                aw = 0.0
                if use_w:
                    for i in range(n_in):
                        wv = w[o, c, i]
                        d = x[o, c, i] - m
                        a += wv * d
                        b += wv * d * d
                        aw += wv
                else:
                    for i in range(n_in):
                        d = x[o, c, i] - m
                        a += d
                        b += d * d
                    aw = n_in
                part[p, c] += a
                part_sq[p, c] += b
                part_w[p, c] += aw


@one_launch_at_a_time
@njit(cache=True, parallel=True)
def _rows_grad_sums(dy, x, mean, part_dy, part_dyx):
    """Per chunk and channel: sum(dy) and sum(dy * (x - mean))."""
    n_rows, n_c = x.shape
    nchunks = part_dy.shape[0]
    for p in prange(nchunks):
        lo = (p * n_rows) // nchunks
        hi = ((p + 1) * n_rows) // nchunks
        for o in range(lo, hi):
            for c in range(n_c):
                g = dy[o, c]
                part_dy[p, c] += g
                part_dyx[p, c] += g * (x[o, c] - mean[c])


@one_launch_at_a_time
@njit(cache=True, parallel=True, fastmath=REASSOC)
def _blocks_grad_sums(dy, x, mean, part_dy, part_dyx):
    n_outer, n_c, n_in = x.shape
    nchunks = part_dy.shape[0]
    for p in prange(nchunks):
        lo = (p * n_outer) // nchunks
        hi = ((p + 1) * n_outer) // nchunks
        for o in range(lo, hi):
            for c in range(n_c):
                m = mean[c]
                a = 0.0
                b = 0.0
                for i in range(n_in):
                    g = dy[o, c, i]
                    a += g
                    b += g * (x[o, c, i] - m)
                part_dy[p, c] += a
                part_dyx[p, c] += b


# ---------------------------------------------------------------------------------------------- elementwise

@one_launch_at_a_time
@njit(cache=True, parallel=True)
def _rows_scale_shift(x, scale, shift, out):
    n_rows, n_c = x.shape
    for o in prange(n_rows):
        for c in range(n_c):
            out[o, c] = x[o, c] * scale[c] + shift[c]


@one_launch_at_a_time
@njit(cache=True, parallel=True)
def _blocks_scale_shift(x, scale, shift, out):
    n_outer, n_c, n_in = x.shape
    for o in prange(n_outer):
        for c in range(n_c):
            a = scale[c]
            b = shift[c]
            for i in range(n_in):
                out[o, c, i] = x[o, c, i] * a + b


@one_launch_at_a_time
@njit(cache=True, parallel=True)
def _rows_grad_input(dy, x, m, gr, k0, k1, w, use_w, dx):
    """dx = gr * (dy - w * (k0 + (x - m) * k1)) with w = 1 unless ``use_w``."""
    n_rows, n_c = x.shape
    if use_w:
        for o in prange(n_rows):
            for c in range(n_c):
                dx[o, c] = gr[c] * (dy[o, c] - w[o, c] * (k0[c] + (x[o, c] - m[c]) * k1[c]))
    else:
        for o in prange(n_rows):
            for c in range(n_c):
                dx[o, c] = gr[c] * (dy[o, c] - k0[c] - (x[o, c] - m[c]) * k1[c])


@one_launch_at_a_time
@njit(cache=True, parallel=True)
def _blocks_grad_input(dy, x, m, gr, k0, k1, w, use_w, dx):
    n_outer, n_c, n_in = x.shape
    for o in prange(n_outer):
        for c in range(n_c):
            g = gr[c]
            a = k0[c]
            b = k1[c]
            mc = m[c]
            if use_w:
                for i in range(n_in):
                    dx[o, c, i] = g * (dy[o, c, i] - w[o, c, i] * (a + (x[o, c, i] - mc) * b))
            else:
                for i in range(n_in):
                    dx[o, c, i] = g * (dy[o, c, i] - a - (x[o, c, i] - mc) * b)


# ---------------------------------------------------------------------------------------------- entry points

def _rows(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0], a.shape[1] * a.shape[2])


def _dummy(x: np.ndarray, rows: bool) -> np.ndarray:
    return np.ones((1, 1) if rows else (1, 1, 1), dtype=x.dtype)


def _sums(x, w, center, squares):
    n_outer, n_c, n_in = x.shape
    nc = n_chunks(n_outer)
    parts = [np.zeros((nc, n_c)) for _ in range(3)]
    rows = n_in == 1
    wv = (_rows(w) if rows else w) if w is not None else _dummy(x, rows)
    if rows:
        _rows_sums(_rows(x), wv, w is not None, center, squares, *parts)
    else:
        _blocks_sums(x, wv, w is not None, center, squares, *parts)
    return tuple(p.sum(axis=0) for p in parts)


def scale_shift(x, scale, shift, out):
    """out = x * scale[c] + shift[c]; ``x``/``out`` C-contiguous (outer, C, inner), scale/shift of x.dtype."""
    if x.shape[2] == 1:
        _rows_scale_shift(_rows(x), scale, shift, _rows(out))
    else:
        _blocks_scale_shift(x, scale, shift, out)


def forward_train(x, w, gamma, beta, eps: float):
    """Batch statistics and normalisation of a C-contiguous (outer, C, inner) ``x``; ``w`` None or 0/1 weights.

    Returns ``(y, mean, var, inv_std, count)``: y of x.dtype, the rest float64 of size C; var is biased."""
    n_c = x.shape[1]
    total, _, count = _sums(x, w, np.zeros(n_c), False)
    safe = np.maximum(count, 1e-300)
    mean = np.where(count > 0, total / safe, 0.0)
    dev, dev_sq, _ = _sums(x, w, mean, True)
    d = dev / safe  # ~0: the rounding left in the mean
    var = np.where(count > 0, np.maximum(dev_sq / safe - d * d, 0.0), 0.0)
    inv = 1.0 / np.sqrt(var + eps)
    scale = gamma * inv
    out = np.empty_like(x)
    scale_shift(x, scale.astype(x.dtype), (beta - mean * scale).astype(x.dtype), out)
    return out, mean, var, inv, count


def forward_inference(x, mean, var, gamma, beta, eps: float):
    """Normalisation with given (moving) statistics; returns (y, mean, inv_std) (stats as float64)."""
    mean = np.asarray(mean, dtype=np.float64).reshape(-1)
    inv = 1.0 / np.sqrt(np.asarray(var, dtype=np.float64).reshape(-1) + eps)
    scale = np.asarray(gamma, dtype=np.float64) * inv
    out = np.empty_like(x)
    scale_shift(x, scale.astype(x.dtype), (beta - mean * scale).astype(x.dtype), out)
    return out, mean, inv


def backward(dy, x, mean, inv, gamma, w, count, batch_stats: bool):
    """Returns ``(dx, d_gamma, d_beta)`` (the last two float64 of size C).

    With ``batch_stats`` the mean/variance are functions of x (training):
    ``dx_i = gamma*inv*(dy_i - w_i/S * (sum(dy) + xhat_i * sum(dy*xhat)))`` (w_i = 1 and S = N without a mask;
    the sums run over every position, masked ones included, since all are normalised); otherwise they are
    constants (inference) and ``dx = gamma*inv*dy``."""
    n_outer, n_c, n_in = x.shape
    rows = n_in == 1
    nc = n_chunks(n_outer)
    part_dy, part_dyx = np.zeros((nc, n_c)), np.zeros((nc, n_c))
    if rows:
        _rows_grad_sums(_rows(dy), _rows(x), mean, part_dy, part_dyx)
    else:
        _blocks_grad_sums(dy, x, mean, part_dy, part_dyx)
    d_beta = part_dy.sum(axis=0)
    d_gamma = part_dyx.sum(axis=0) * inv
    if batch_stats:
        safe = np.maximum(count, 1e-300)
        k0 = np.where(count > 0, d_beta / safe, 0.0)
        k1 = np.where(count > 0, d_gamma * inv / safe, 0.0)
    else:
        k0 = k1 = np.zeros(n_c)
    dt = x.dtype
    gr, m = (np.asarray(gamma, dtype=np.float64) * inv).astype(dt), mean.astype(dt)
    k0, k1 = k0.astype(dt), k1.astype(dt)
    use_w = w is not None and batch_stats
    dx = np.empty_like(x)
    if rows:
        wv = _rows(w) if use_w else _dummy(x, True)
        _rows_grad_input(_rows(dy), _rows(x), m, gr, k0, k1, wv, use_w, _rows(dx))
    else:
        wv = w if use_w else _dummy(x, False)
        _blocks_grad_input(dy, x, m, gr, k0, k1, wv, use_w, dx)
    return dx, d_gamma, d_beta


__all__ = ["forward_train", "forward_inference", "backward", "scale_shift", "n_chunks"]
