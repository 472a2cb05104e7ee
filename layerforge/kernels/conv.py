"""Convolution kernels and their drivers: im2col / col2im + BLAS GEMMs, direct kernels for small windows,
depthwise kernels.

Everything works on channels_last arrays with THREE spatial axes ``(B, D, H, W, C)``: a 2D convolution is a 3D
one with a unit depth axis and a 1D one has unit depth and height, so one set of kernels serves Conv1D/2D/3D,
their transposes and the depthwise/separable layers.

Geometry (per spatial axis, always 3-tuples ``(d, h, w)``): kernel size ``k``, stride ``s``, dilation ``d`` and
``pad`` = zero padding before the first input element. Output position ``o`` and tap ``t`` read input position
``o*s + t*d - pad``; positions outside the input read zero. Column layout: ``cols[g, row, (kd, kh, kw, c)]`` with
``row = ((b*od + z)*oh + y)*ow + x`` and ``c`` the channel inside group ``g``, so the Keras kernel
``(kd, kh, kw, C/groups, f)`` reshaped to 2D is exactly the right-hand side of the GEMM.

Parallelism: the batch is split into contiguous blocks of samples sized by the work (``split_batch``) and each
thread runs the whole pipeline of its block -- im2col, GEMM, bias + activation, col2im -- with Numba kernels
compiled ``nogil`` and BLAS held to one thread meanwhile, so a layer's pass synchronises its threads once.
(Measured on the 2-core target: OpenBLAS's own threads gave no speed-up on these GEMM shapes, and handing work
back and forth between the Numba and OpenBLAS thread pools cost more than the work whenever the machine was
shared.) Inside a block, samples go through in chunks whose columns stay in cache (``CHUNK_BYTES``).
"""

from __future__ import annotations

import numpy as np
from numba import njit, uint64

from . import schedule
from .blocks import run_blocks
from .workspace import BufferPool  # noqa: F401  (the pools the kernels take buffers from)

# ============================================================================ Numba kernels (serial, nogil)
# Hot copy loops index flat arrays with unsigned offsets: a signed index makes Numba emit the negative-index
# wraparound, which stops LLVM from vectorising the loop (4x slower copies).


@njit(inline="always")
def _copy(dst, d0, src, s0, n):
    d = uint64(d0)
    s = uint64(s0)
    for t in range(uint64(n)):
        dst[d + t] = src[s + t]


@njit(inline="always")
def _add(dst, d0, src, s0, n):
    d = uint64(d0)
    s = uint64(s0)
    for t in range(uint64(n)):
        dst[d + t] += src[s + t]


@njit(inline="always")
def _zero(dst, d0, n):
    d = uint64(d0)
    z = dst.dtype.type(0)
    for t in range(uint64(n)):
        dst[d + t] = z


@njit(inline="always")
def _valid_range(n_out, stride, offset, n_in):
    """[lo, hi) of the outputs o with 0 <= o*stride + offset < n_in."""
    lo = 0
    while lo < n_out and lo * stride + offset < 0:
        lo += 1
    hi = n_out
    while hi > lo and (hi - 1) * stride + offset >= n_in:
        hi -= 1
    return lo, hi


@njit(inline="always")
def _unravel_row(r, od, oh):
    """(sample, depth, row) of output line ``r = (b*od + z)*oh + yy``."""
    b = r // (od * oh)
    rem = r - b * od * oh
    z = rem // oh
    return b, z, rem - z * oh


@njit(cache=True, nogil=True)
def im2col(x, cols, out_shape, ksize, strides, dilation, pad):
    """cols[g, row, tap*Cg + c] = x[b, in(z), in(y), in(x), g*Cg + c] (zero outside); x and cols C-contiguous.

    When a window row lies inside the input and there is one group with unit dilation along W, its ``kw * C``
    values are contiguous in both arrays and copied as one run."""
    B, D, H, W, C = x.shape
    od, oh, ow = out_shape
    kd, kh, kw = ksize
    sd, sh, sw = strides
    dd, dh, dw = dilation
    pd, ph, pw = pad
    G, N, KC = cols.shape
    cg = C // G
    xf = x.reshape(-1)
    cf = cols.reshape(-1)
    run = kw * C if (G == 1 and dw == 1) else 0
    for r in range(B * od * oh):
        b, z, yy = _unravel_row(r, od, oh)
        for xx in range(ow):
            row = r * ow + xx
            ix0 = xx * sw - pw
            x_inside = ix0 >= 0 and ix0 + (kw - 1) * dw < W
            for i in range(kd):
                iz = z * sd + i * dd - pd
                okz = iz >= 0 and iz < D
                for j in range(kh):
                    iy = yy * sh + j * dh - ph
                    ok = okz and iy >= 0 and iy < H
                    tap0 = (i * kh + j) * kw
                    line = ((b * D + iz) * H + iy) * W
                    if ok and x_inside and run > 0:
                        _copy(cf, row * KC + tap0 * C, xf, (line + ix0) * C, run)
                        continue
                    for l in range(kw):
                        ix = ix0 + l * dw
                        valid = ok and ix >= 0 and ix < W
                        for g in range(G):
                            dst = (g * N + row) * KC + (tap0 + l) * cg
                            if valid:
                                _copy(cf, dst, xf, (line + ix) * C + g * cg, cg)
                            else:
                                _zero(cf, dst, cg)


@njit(cache=True, nogil=True)
def col2im(cols, dx, out_shape, ksize, strides, dilation, pad):
    """Adjoint of ``im2col``: dx[b, p, c] = sum of every column entry that read input p (scatter form, with
    the same contiguous ``kw * C`` runs as ``im2col``); dx is overwritten."""
    B, D, H, W, C = dx.shape
    od, oh, ow = out_shape
    kd, kh, kw = ksize
    sd, sh, sw = strides
    dd, dh, dw = dilation
    pd, ph, pw = pad
    G, N, KC = cols.shape
    cg = C // G
    df = dx.reshape(-1)
    cf = cols.reshape(-1)
    run = kw * C if (G == 1 and dw == 1) else 0
    _zero(df, 0, df.size)
    for b in range(B):
        for z in range(od):
            for yy in range(oh):
                for xx in range(ow):
                    row = ((b * od + z) * oh + yy) * ow + xx
                    ix0 = xx * sw - pw
                    x_inside = ix0 >= 0 and ix0 + (kw - 1) * dw < W
                    for i in range(kd):
                        iz = z * sd + i * dd - pd
                        if iz < 0 or iz >= D:
                            continue
                        for j in range(kh):
                            iy = yy * sh + j * dh - ph
                            if iy < 0 or iy >= H:
                                continue
                            tap0 = (i * kh + j) * kw
                            line = ((b * D + iz) * H + iy) * W
                            if x_inside and run > 0:
                                _add(df, (line + ix0) * C, cf, row * KC + tap0 * C, run)
                                continue
                            for l in range(kw):
                                ix = ix0 + l * dw
                                if ix < 0 or ix >= W:
                                    continue
                                for g in range(G):
                                    _add(df, (line + ix) * C + g * cg, cf, (g * N + row) * KC + (tap0 + l) * cg, cg)


@njit(cache=True, nogil=True, fastmath={"contract"})
def direct_forward(x, w, bias, y, out_shape, ksize, strides, dilation, pad, relu):
    """Direct convolution for few input values per window (taps * C small), bias and relu fused:
    y[b, z, yy, xx, :] = act(bias + sum_{tap, c} x[b, in(z), in(yy), in(xx), c] * w[tap, c, :]), w (taps, C, F).
    Each output row is accumulated tap by tap in a small (ow, F) buffer so the innermost loop runs over F
    without a loop-carried dependency."""
    B, D, H, W, C = x.shape
    od, oh, ow = out_shape
    kd, kh, kw = ksize
    sd, sh, sw = strides
    dd, dh, dw = dilation
    pd, ph, pw = pad
    F = w.shape[2]
    zero = x.dtype.type(0)
    acc = np.empty((ow, F), dtype=y.dtype)
    for r in range(B * od * oh):
        b, z, yy = _unravel_row(r, od, oh)
        for xx in range(ow):
            for q in range(F):
                acc[xx, q] = bias[q]
        for i in range(kd):
            iz = z * sd + i * dd - pd
            if iz < 0 or iz >= D:
                continue
            for j in range(kh):
                iy = yy * sh + j * dh - ph
                if iy < 0 or iy >= H:
                    continue
                for l in range(kw):
                    t = (i * kh + j) * kw + l
                    off = l * dw - pw
                    lo, hi = _valid_range(ow, sw, off, W)
                    for c in range(C):
                        for xx in range(lo, hi):
                            v = x[b, iz, iy, xx * sw + off, c]
                            for q in range(F):
                                acc[xx, q] += v * w[t, c, q]
        for xx in range(ow):
            for q in range(F):
                v = acc[xx, q]
                if relu and v < zero:
                    v = zero
                y[b, z, yy, xx, q] = v


@njit(cache=True, nogil=True, fastmath={"contract"})
def direct_backward(x, g, y, dz, dw, db, out_shape, ksize, strides, dilation, pad, relu):
    """Kernel and bias gradients of ``direct_forward``, ADDED to dw (taps, C, F) and db (F); g and dz are
    (B*od*oh*ow, F). With ``relu``, dz = g * (y > 0) is formed on the fly and written out; otherwise g is dz."""
    B, D, H, W, C = x.shape
    od, oh, ow = out_shape
    kd, kh, kw = ksize
    sd, sh, sw = strides
    dd, dh, dw_ = dilation
    pd, ph, pw = pad
    F = g.shape[1]
    zero = x.dtype.type(0)
    gr = np.empty((ow, F), dtype=g.dtype)
    for r in range(B * od * oh):
        b, z, yy = _unravel_row(r, od, oh)
        base = r * ow
        for xx in range(ow):
            for q in range(F):
                v = g[base + xx, q]
                if relu:
                    if y[base + xx, q] <= zero:
                        v = zero
                    dz[base + xx, q] = v
                gr[xx, q] = v
                db[q] += v
        for i in range(kd):
            iz = z * sd + i * dd - pd
            if iz < 0 or iz >= D:
                continue
            for j in range(kh):
                iy = yy * sh + j * dh - ph
                if iy < 0 or iy >= H:
                    continue
                for l in range(kw):
                    t = (i * kh + j) * kw + l
                    off = l * dw_ - pw
                    lo, hi = _valid_range(ow, sw, off, W)
                    for c in range(C):
                        for xx in range(lo, hi):
                            v = x[b, iz, iy, xx * sw + off, c]
                            for q in range(F):
                                dw[t, c, q] += v * gr[xx, q]


@njit(cache=True, nogil=True)
def depthwise_forward(x, w, y, out_shape, ksize, strides, dilation, pad):
    """y[b, o, c*dm + m] = sum_taps x[b, in(o, tap), c] * w[tap, c, m]; w is (kd, kh, kw, C, dm)."""
    B, D, H, W, C = x.shape
    od, oh, ow = out_shape
    kd, kh, kw = ksize
    sd, sh, sw = strides
    dd, dh, dw = dilation
    pd, ph, pw = pad
    dm = w.shape[4]
    for b in range(B):
        for z in range(od):
            for yy in range(oh):
                for xx in range(ow):
                    for q in range(C * dm):
                        y[b, z, yy, xx, q] = 0
                    for i in range(kd):
                        iz = z * sd + i * dd - pd
                        if iz < 0 or iz >= D:
                            continue
                        for j in range(kh):
                            iy = yy * sh + j * dh - ph
                            if iy < 0 or iy >= H:
                                continue
                            for l in range(kw):
                                ix = xx * sw + l * dw - pw
                                if ix < 0 or ix >= W:
                                    continue
                                for c in range(C):
                                    v = x[b, iz, iy, ix, c]
                                    for m in range(dm):
                                        y[b, z, yy, xx, c * dm + m] += v * w[i, j, l, c, m]


@njit(cache=True, nogil=True)
def depthwise_backward(x, dy, w, dx, dwk, need_dx, out_shape, ksize, strides, dilation, pad):
    """Gradients of ``depthwise_forward``: dx overwritten (when ``need_dx``), kernel gradient ADDED to dwk."""
    B, D, H, W, C = x.shape
    od, oh, ow = out_shape
    kd, kh, kw = ksize
    sd, sh, sw = strides
    dd, dh, dw = dilation
    pd, ph, pw = pad
    dm = w.shape[4]
    if need_dx:
        dx[:] = 0
    for b in range(B):
        for z in range(od):
            for yy in range(oh):
                for xx in range(ow):
                    for i in range(kd):
                        iz = z * sd + i * dd - pd
                        if iz < 0 or iz >= D:
                            continue
                        for j in range(kh):
                            iy = yy * sh + j * dh - ph
                            if iy < 0 or iy >= H:
                                continue
                            for l in range(kw):
                                ix = xx * sw + l * dw - pw
                                if ix < 0 or ix >= W:
                                    continue
                                for c in range(C):
                                    v = x[b, iz, iy, ix, c]
                                    acc = x.dtype.type(0)
                                    for m in range(dm):
                                        gm = dy[b, z, yy, xx, c * dm + m]
                                        dwk[i, j, l, c, m] += v * gm
                                        acc += gm * w[i, j, l, c, m]
                                    if need_dx:
                                        dx[b, iz, iy, ix, c] += acc


@njit(cache=True, nogil=True)
def bias_relu(z, bias, relu):
    """In place on a 2D (N, f) array: z += bias, then max(z, 0) when ``relu``."""
    n, f = z.shape
    zero = z.dtype.type(0)
    for r in range(n):
        for q in range(f):
            v = z[r, q] + bias[q]
            if relu and v < zero:
                v = zero
            z[r, q] = v


@njit(cache=True, nogil=True)
def relu_backward_bias(dy, y, dz, db):
    """dz = dy * (y > 0) on (N, f) arrays; the column sums of dz are ADDED to db."""
    n, f = dy.shape
    zero = dy.dtype.type(0)
    for r in range(n):
        for q in range(f):
            v = dy[r, q] if y[r, q] > zero else zero
            dz[r, q] = v
            db[q] += v


# ============================================================================ threads, buffers, chunks

def split_batch(batch: int, work, macs: float | None = None) -> list:
    """Run ``work(s0, s1)`` on contiguous blocks of samples, the blocks sized by the work (``macs``: the whole
    batch's multiply-adds; None: every sample worth a block) and never by the thread count, so results are the
    same at any thread count (kernels/schedule.py); returns the results in block order."""
    n = schedule.n_blocks(batch * schedule.GRAIN_MACS if macs is None else macs, batch)
    if n <= 1:
        return [work(0, batch)]
    bounds = schedule.bounds(batch, n)
    return run_blocks(lambda k: work(*bounds[k]), n)


# Inside a block, samples go through in chunks whose columns take about CHUNK_BYTES, so they are multiplied
# while still in cache. In training the columns of the whole batch are kept for the backward pass when they
# take at most KEEP_BYTES; larger ones are rebuilt chunk by chunk in backward (cheaper than streaming a big
# buffer through memory twice).
CHUNK_BYTES = 1 << 20
KEEP_BYTES = 16 << 20
# Direct kernels beat im2col + GEMM when a window holds few values (first layers on 1-3 channels): the GEMM's
# inner dimension would be tiny and building the columns costs more than the arithmetic.
DIRECT_MAX_WINDOW = 25


def use_direct(taps: int, channels: int, groups: int) -> bool:
    return groups == 1 and taps * channels <= DIRECT_MAX_WINDOW


def sample_chunks(s0: int, s1: int, rows_per_sample: int, row_bytes: int) -> list[tuple[int, int]]:
    per = max(1, CHUNK_BYTES // max(1, rows_per_sample * row_bytes))
    return [(s, min(s1, s + per)) for s in range(s0, s1, per)]


def _rows(geo_shape) -> int:
    return geo_shape[0] * geo_shape[1] * geo_shape[2]


def _sum(parts):
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    return total


# ============================================================================ GEMM helpers

def gemm_forward(cols, w2d, groups: int, out) -> np.ndarray:
    """(G, N, Kc) x kernel (Kc, f) with groups along f -> out (N, f)."""
    if groups == 1:
        return np.matmul(cols[0], w2d, out=out)
    n, f = out.shape
    fg = f // groups
    wg = w2d.reshape(w2d.shape[0], groups, fg).transpose(1, 0, 2)  # (G, Kc, fg)
    out.reshape(n, groups, fg)[...] = np.matmul(cols, wg).transpose(1, 0, 2)
    return out


def gemm_kernel_grad(cols, dz2d, groups: int) -> np.ndarray:
    """dW2d (Kc, f) = cols^T @ dz, group by group."""
    if groups == 1:
        return cols[0].T @ dz2d
    n, f = dz2d.shape
    fg = f // groups
    dzg = dz2d.reshape(n, groups, fg).transpose(1, 0, 2)  # (G, N, fg)
    return np.matmul(cols.transpose(0, 2, 1), dzg).transpose(1, 0, 2).reshape(cols.shape[2], f)


def gemm_columns_grad(dz2d, w2d, groups: int, out) -> np.ndarray:
    """dcols (G, N, Kc) = dz @ W^T written into ``out`` (a columns buffer that is no longer needed)."""
    if groups == 1:
        np.matmul(dz2d, w2d.T, out=out[0])
        return out
    n, f = dz2d.shape
    fg = f // groups
    dzg = dz2d.reshape(n, groups, fg).transpose(1, 0, 2)
    wg = w2d.reshape(w2d.shape[0], groups, fg).transpose(1, 2, 0)  # (G, fg, Kc)
    np.matmul(dzg, wg, out=out)
    return out


def _col2im_chunks(dz2d, w2d, geo, groups, dx5, s0, s1, pool):
    """dx5[s0:s1] = col2im(dz @ W^T) for samples s0..s1, chunk by chunk (dz2d holds those samples' rows from
    row 0)."""
    rows = _rows(geo.out)
    kc = w2d.shape[0]
    for c0, c1 in sample_chunks(s0, s1, rows, groups * kc * dz2d.itemsize):
        cols = pool.take((groups, (c1 - c0) * rows, kc), dz2d.dtype)
        gemm_columns_grad(dz2d[(c0 - s0) * rows:(c1 - s0) * rows], w2d, groups, out=cols)
        col2im(cols, dx5[c0:c1], geo.out, geo.k, geo.s, geo.d, geo.pad)
        pool.give(cols)


# ============================================================================ bias + activation

def _fused(activation: str) -> bool:
    from ..activations import CONV_FUSED

    return activation in CONV_FUSED


def _bias_act_block(z2d, bias, activation):
    """In place on a block of rows when the activation is fused (relu / linear)."""
    if bias is not None or activation == "relu":
        b = bias if bias is not None else np.zeros(z2d.shape[1], dtype=z2d.dtype)
        bias_relu(z2d, b, activation == "relu")


def _finish_activation(z2d, bias, activation):
    """(y2d, z2d kept for backward or None) once the pre-activation is complete (unfused activations)."""
    from ..activations import NEEDS_ONLY_OUTPUT, activate

    if _fused(activation):
        return z2d, None
    if bias is not None:
        z2d += bias
    y2d = activate(activation, z2d)
    return y2d, (None if activation in NEEDS_ONLY_OUTPUT else z2d)


def activation_backward(dy2d, y2d, z2d, activation: str, use_bias: bool, batch: int):
    """dL/dz (B*rows, f) and the bias gradient (or None); relu runs per block of samples in parallel."""
    if activation == "relu":
        rows = dy2d.shape[0] // batch
        dz = np.empty_like(dy2d)

        def work(s0, s1):
            db = np.zeros(dy2d.shape[1], dtype=dy2d.dtype)
            r0, r1 = s0 * rows, s1 * rows
            relu_backward_bias(dy2d[r0:r1], y2d[r0:r1], dz[r0:r1], db)
            return db

        db = _sum(split_batch(batch, work, dy2d.size * (schedule.GRAIN_MACS / schedule.GRAIN_ELEMENTS)))
        return dz, (db if use_bias else None)
    if activation == "linear":
        dz = dy2d
    else:
        from ..activations import activate_backward

        dz = np.ascontiguousarray(activate_backward(activation, z2d, y2d, dy2d))
    return dz, (dz.sum(axis=0) if use_bias else None)


# ============================================================================ drivers

def gemm_conv_forward(x5, w2d, bias, geo, groups: int, activation: str, pool: BufferPool, keep: bool):
    """Convolution by im2col + GEMM: returns (y2d (B*rows, f), z2d kept or None, columns kept or None).
    With ``keep`` (training) the whole batch's columns are kept for the backward pass when they fit KEEP_BYTES."""
    B = x5.shape[0]
    rows = _rows(geo.out)
    kc, f = w2d.shape  # kc = taps * C/groups: the kernel holds one group's input channels
    z2d = np.empty((B * rows, f), dtype=x5.dtype)
    full = None
    if keep and groups == 1 and B * rows * kc * x5.itemsize <= KEEP_BYTES:
        full = pool.take((1, B * rows, kc), x5.dtype)
    fused = _fused(activation)

    def work(s0, s1):
        for c0, c1 in sample_chunks(s0, s1, rows, groups * kc * x5.itemsize):
            r0, r1 = c0 * rows, c1 * rows
            cols = full[:, r0:r1] if full is not None else pool.take((groups, r1 - r0, kc), x5.dtype)
            im2col(x5[c0:c1], cols, geo.out, geo.k, geo.s, geo.d, geo.pad)
            gemm_forward(cols, w2d, groups, out=z2d[r0:r1])
            if fused:
                _bias_act_block(z2d[r0:r1], bias, activation)
            if full is None:
                pool.give(cols)

    split_batch(B, work, B * rows * kc * f * groups)
    y2d, z_keep = _finish_activation(z2d, bias, activation)
    return y2d, z_keep, full


def gemm_conv_backward(x5, dz2d, w2d, geo, groups: int, pool: BufferPool, full, need_dx: bool, relu_y2d=None):
    """Kernel gradient (Kc, f), input gradient (or None) and bias gradient of ``gemm_conv_forward`` given dL/dz;
    ``full`` are the forward's columns when it kept them, else each chunk's columns are rebuilt.

    With ``relu_y2d`` (the output of a relu layer) ``dz2d`` is dL/dy: the relu derivative and the bias gradient
    are taken chunk by chunk while the chunk is in cache (one pass less over the layer's output) and the bias
    gradient is returned; otherwise it is None (the caller has it from ``activation_backward``)."""
    B = x5.shape[0]
    rows = _rows(geo.out)
    kc, f = w2d.shape
    dx5 = np.empty(x5.shape, dtype=dz2d.dtype) if need_dx else None
    relu = relu_y2d is not None

    def work(s0, s1):
        dw = None
        db = np.zeros(f, dtype=dz2d.dtype) if relu else None
        for c0, c1 in sample_chunks(s0, s1, rows, groups * kc * x5.itemsize):
            r0, r1 = c0 * rows, c1 * rows
            if full is not None:
                cols = full[:, r0:r1]
            else:
                cols = pool.take((groups, r1 - r0, kc), x5.dtype)
                im2col(x5[c0:c1], cols, geo.out, geo.k, geo.s, geo.d, geo.pad)
            dz = dz2d[r0:r1]
            if relu:
                g = pool.take((r1 - r0, f), dz2d.dtype)
                relu_backward_bias(dz, relu_y2d[r0:r1], g, db)
                dz = g
            part = gemm_kernel_grad(cols, dz, groups)
            dw = part if dw is None else dw + part
            if need_dx:
                gemm_columns_grad(dz, w2d, groups, out=cols)
                col2im(cols, dx5[c0:c1], geo.out, geo.k, geo.s, geo.d, geo.pad)
            if full is None:
                pool.give(cols)
            if relu:
                pool.give(dz)
        return dw, db

    parts = split_batch(B, work, B * rows * kc * f * groups * (3 if need_dx else 2))
    pool.give(full)
    dw = _sum([p[0] for p in parts])
    return dw, dx5, (_sum([p[1] for p in parts]) if relu else None)


def direct_conv(x5, w3, bias, geo, activation: str):
    """Fused direct convolution + bias (+ relu); returns (y2d, z2d kept for the backward pass or None)."""
    B, F = x5.shape[0], w3.shape[2]
    y = np.empty((B, *geo.out, F), dtype=x5.dtype)
    b = bias if bias is not None else np.zeros(F, dtype=x5.dtype)
    relu = activation == "relu"
    split_batch(B, lambda s0, s1: direct_forward(x5[s0:s1], w3, b, y[s0:s1], geo.out, geo.k, geo.s, geo.d,
                                                 geo.pad, relu), y.size * w3.shape[0] * w3.shape[1])
    return _finish_activation(y.reshape(-1, F), None, activation)


def direct_conv_backward(x5, dy2d, y2d, z2d, w2d, geo, activation: str, need_dx: bool, pool: BufferPool):
    """(dW (taps, C, F), db (F), dx5 or None) for ``direct_conv``; dx goes through col2im of dz @ W^T."""
    B, C = x5.shape[0], x5.shape[-1]
    F = dy2d.shape[1]
    rows = _rows(geo.out)
    taps = geo.k[0] * geo.k[1] * geo.k[2]
    relu = activation == "relu"
    g_all = dy2d
    if not _fused(activation):
        from ..activations import activate_backward

        g_all = np.ascontiguousarray(activate_backward(activation, z2d, y2d, dy2d))
    dx5 = np.empty(x5.shape, dtype=dy2d.dtype) if need_dx else None

    def work(s0, s1):
        r0, r1 = s0 * rows, s1 * rows
        dw = np.zeros((taps, C, F), dtype=dy2d.dtype)
        db = np.zeros(F, dtype=dy2d.dtype)
        g = g_all[r0:r1]
        dz = pool.take((r1 - r0, F), dy2d.dtype) if relu else g
        direct_backward(x5[s0:s1], g, y2d[r0:r1] if relu else g, dz, dw, db, geo.out, geo.k, geo.s, geo.d,
                        geo.pad, relu)
        if need_dx:
            _col2im_chunks(dz, w2d, geo, 1, dx5, s0, s1, pool)
        if relu:
            pool.give(dz)
        return dw, db

    parts = split_batch(B, work, B * rows * taps * C * F * (3 if need_dx else 2))
    return _sum([p[0] for p in parts]), _sum([p[1] for p in parts]), dx5


def transpose_forward(x2d, w2d, bias, geo, out_shape5, activation: str, pool: BufferPool):
    """Transposed convolution (= the input gradient of a convolution): y = col2im(x @ W^T) with W (taps*f, C_in);
    returns (y2d, z2d kept or None)."""
    B, F = out_shape5[0], out_shape5[-1]
    rows_in = _rows(geo.out)  # the layer's input is the output side of the convolution it transposes
    rows_out = _rows(geo.inp)
    y5 = np.empty(out_shape5, dtype=x2d.dtype)
    y2d = y5.reshape(-1, F)
    fused = _fused(activation)

    def work(s0, s1):
        _col2im_chunks(x2d[s0 * rows_in:s1 * rows_in], w2d, geo, 1, y5, s0, s1, pool)
        if fused:
            _bias_act_block(y2d[s0 * rows_out:s1 * rows_out], bias, activation)

    split_batch(B, work, x2d.size * w2d.shape[0])  # x @ W^T: (B*rows_in, C_in) x (C_in, taps*f)
    return _finish_activation(y2d, bias, activation)


def transpose_backward(dz2d, x2d, w2d, geo, pool: BufferPool, need_dx: bool, batch: int):
    """Gradients of ``transpose_forward`` given dL/dz: dx2d = im2col(dz) @ W (the convolution of dz) and the kernel
    gradient im2col(dz)^T @ x2d (taps*f, C_in)."""
    rows_in = _rows(geo.out)
    kc = w2d.shape[0]
    dz5 = dz2d.reshape((batch, *geo.inp, dz2d.shape[1]))
    dx2d = np.empty(x2d.shape, dtype=dz2d.dtype) if need_dx else None

    def work(s0, s1):
        dw = None
        for c0, c1 in sample_chunks(s0, s1, rows_in, kc * dz2d.itemsize):
            r0, r1 = c0 * rows_in, c1 * rows_in
            cols = pool.take((1, r1 - r0, kc), dz2d.dtype)
            im2col(dz5[c0:c1], cols, geo.out, geo.k, geo.s, geo.d, geo.pad)
            if need_dx:
                np.matmul(cols[0], w2d, out=dx2d[r0:r1])
            part = cols[0].T @ x2d[r0:r1]
            dw = part if dw is None else dw + part
            pool.give(cols)
        return dw

    return _sum(split_batch(batch, work, x2d.size * kc * (2 if need_dx else 1))), dx2d


def depthwise_conv(x5, w5, pw2d, bias, geo, activation: str):
    """Depthwise convolution, then (separable) the pointwise GEMM, bias and activation.
    Returns (y2d, z2d kept or None, mid (B, *out, C*dm) kept for the pointwise gradient or None)."""
    B, C = x5.shape[0], x5.shape[-1]
    dm = w5.shape[4]
    rows = _rows(geo.out)
    mid = np.empty((B, *geo.out, C * dm), dtype=x5.dtype)
    mid2d = mid.reshape(-1, C * dm)
    z2d = mid2d if pw2d is None else np.empty((B * rows, pw2d.shape[1]), dtype=x5.dtype)
    fused = _fused(activation)

    def work(s0, s1):
        depthwise_forward(x5[s0:s1], w5, mid[s0:s1], geo.out, geo.k, geo.s, geo.d, geo.pad)
        r0, r1 = s0 * rows, s1 * rows
        if pw2d is not None:
            np.matmul(mid2d[r0:r1], pw2d, out=z2d[r0:r1])
        if fused:
            _bias_act_block(z2d[r0:r1], bias, activation)

    taps = geo.k[0] * geo.k[1] * geo.k[2]
    split_batch(B, work, mid.size * (taps + (pw2d.shape[1] if pw2d is not None else 0)))
    y2d, z_keep = _finish_activation(z2d, bias, activation)
    return y2d, z_keep, (mid if pw2d is not None else None)


def depthwise_conv_backward(dz2d, x5, w5, pw2d, mid, geo, need_dx: bool):
    """(dW depthwise (kd, kh, kw, C, dm), dW pointwise (C*dm, f) or None, dx5 or None) given dL/dz."""
    B, C = x5.shape[0], x5.shape[-1]
    dm = w5.shape[4]
    rows = _rows(geo.out)
    dx5 = np.empty(x5.shape, dtype=dz2d.dtype) if need_dx else np.empty((0, 0, 0, 0, 0), dtype=dz2d.dtype)

    def work(s0, s1):
        r0, r1 = s0 * rows, s1 * rows
        dz = dz2d[r0:r1]
        dpw = None
        if pw2d is not None:
            dpw = mid.reshape(-1, C * dm)[r0:r1].T @ dz
            dmid = dz @ pw2d.T
        else:
            dmid = np.ascontiguousarray(dz)
        dwk = np.zeros(w5.shape, dtype=dz2d.dtype)
        depthwise_backward(x5[s0:s1], dmid.reshape((s1 - s0, *geo.out, C * dm)), w5,
                           dx5[s0:s1] if need_dx else dx5, dwk, need_dx, geo.out, geo.k, geo.s, geo.d, geo.pad)
        return dwk, dpw

    taps = geo.k[0] * geo.k[1] * geo.k[2]
    mids = dz2d.shape[0] * C * dm  # the depthwise output's size
    pointwise = 2 * pw2d.shape[1] if pw2d is not None else 0  # dW pointwise and dmid, per depthwise output
    parts = split_batch(B, work, mids * (taps * (2 if need_dx else 1) + pointwise))
    dpw = _sum([p[1] for p in parts]) if pw2d is not None else None
    return _sum([p[0] for p in parts]), dpw, (dx5 if need_dx else None)
