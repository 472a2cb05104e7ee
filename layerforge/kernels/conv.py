"""Convolution kernels: im2col / col2im (gather form) and direct depthwise kernels, plus the
BLAS-backed drivers the convolution layers call.

Everything works on channels_last arrays with THREE spatial axes ``(B, D, H, W, C)``: a 2D
convolution is a 3D one with a unit depth axis and a 1D one has unit depth and height, so one
set of kernels serves Conv1D/2D/3D, their transposes and the depthwise/separable layers.

Geometry (per spatial axis, always as 3-tuples ``(d, h, w)``): kernel size ``k``, stride ``s``,
dilation ``d`` and ``pad`` = zero padding before the first input element. Output position ``o``
and tap ``t`` read input position ``o*s + t*d - pad``; positions outside the input read zero.

Column layout: ``cols[g, row, (kd, kh, kw, c)]`` with ``row = ((b*od + z)*oh + y)*ow + x`` and
``c`` the channel inside group ``g`` -- i.e. the Keras kernel ``(kd, kh, kw, C/groups, f)``
reshaped to 2D is exactly the right-hand side of the GEMM.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, uint64

# ----------------------------------------------------------------------------- numba kernels
# Hot copy loops index flat arrays with unsigned offsets: a signed index makes Numba emit the
# negative-index wraparound, which stops LLVM from vectorising the loop (4x slower copies).


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



@njit(cache=True, parallel=True)
def im2col(x, cols, out_shape, ksize, strides, dilation, pad):
    """cols[g, row, tap*Cg + c] = x[b, in(z), in(y), in(x), g*Cg + c] (zero outside); x C-contiguous.

    When a window row lies inside the input and there is one group with unit dilation along W, its
    ``kw * C`` values are contiguous in both arrays and copied as one run."""
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
    for r in prange(B * od * oh):
        b = r // (od * oh)
        rem = r - b * od * oh
        z = rem // oh
        yy = rem - z * oh
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


@njit(cache=True, parallel=True)
def col2im(cols, dx, out_shape, ksize, strides, dilation, pad):
    """Adjoint of ``im2col``: dx[b, p, c] = sum of every column entry that read input p.

    Scatter form, one sample per parallel iteration (samples never share input pixels), with the same
    contiguous ``kw * C`` runs as ``im2col``."""
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
    per_sample = D * H * W * C
    for b in prange(B):
        _zero(df, b * per_sample, per_sample)
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


@njit(cache=True, parallel=True, fastmath={"contract"})
def direct_forward(x, w, bias, y, out_shape, ksize, strides, dilation, pad, relu):
    """Direct convolution for few input values per window (taps * C small), bias and relu fused.

    y[b, z, yy, xx, :] = act(bias + sum_{tap, c} x[b, in(z), in(yy), in(xx), c] * w[tap, c, :]), w (taps, C, F).
    One output row (b, z, yy) per parallel iteration, accumulated tap by tap into a small (ow, F) buffer so the
    innermost loop runs over F without a loop-carried dependency."""
    B, D, H, W, C = x.shape
    od, oh, ow = out_shape
    kd, kh, kw = ksize
    sd, sh, sw = strides
    dd, dh, dw = dilation
    pd, ph, pw = pad
    F = w.shape[2]
    zero = x.dtype.type(0)
    for r in prange(B * od * oh):
        b = r // (od * oh)
        rem = r - b * od * oh
        z = rem // oh
        yy = rem - z * oh
        acc = np.empty((ow, F), dtype=y.dtype)
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


@njit(cache=True, parallel=True, fastmath={"contract"})
def direct_backward_kernel(x, g, y, dz, dw_part, db_part, out_shape, ksize, strides, dilation, pad, relu):
    """Kernel and bias gradients of ``direct_forward`` as partial sums per chunk of output rows (summed by
    the caller); g and dz are (B*od*oh*ow, F). With ``relu``, dz = g * (y > 0) is formed on the fly and
    written out; otherwise g already is dz."""
    B, D, H, W, C = x.shape
    od, oh, ow = out_shape
    kd, kh, kw = ksize
    sd, sh, sw = strides
    dd, dh, dw = dilation
    pd, ph, pw = pad
    F = g.shape[1]
    P = dw_part.shape[0]
    taps = kd * kh * kw
    nrows = B * od * oh
    chunk = (nrows + P - 1) // P
    zero = x.dtype.type(0)
    for p in prange(P):
        acc = np.zeros((taps, C, F), dtype=dw_part.dtype)
        bacc = np.zeros(F, dtype=db_part.dtype)
        gr = np.empty((ow, F), dtype=g.dtype)
        for r in range(p * chunk, min(nrows, (p + 1) * chunk)):
            b = r // (od * oh)
            rem = r - b * od * oh
            z = rem // oh
            yy = rem - z * oh
            base = r * ow
            for xx in range(ow):
                for q in range(F):
                    v = g[base + xx, q]
                    if relu:
                        if y[base + xx, q] <= zero:
                            v = zero
                        dz[base + xx, q] = v
                    gr[xx, q] = v
                    bacc[q] += v
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
                                    acc[t, c, q] += v * gr[xx, q]
        dw_part[p, :] = acc.reshape(-1)
        db_part[p, :] = bacc


@njit(cache=True, parallel=True)
def depthwise_forward(x, w, y, out_shape, ksize, strides, dilation, pad):
    """y[b, o, c*dm + m] = sum_taps x[b, in(o, tap), c] * w[tap, c, m]; w is (kd, kh, kw, C, dm)."""
    B, D, H, W, C = x.shape
    od, oh, ow = out_shape
    kd, kh, kw = ksize
    sd, sh, sw = strides
    dd, dh, dw = dilation
    pd, ph, pw = pad
    dm = w.shape[4]
    for r in prange(B * od * oh):
        b = r // (od * oh)
        rem = r - b * od * oh
        z = rem // oh
        yy = rem - z * oh
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


@njit(cache=True, parallel=True)
def depthwise_backward_input(dy, w, dx, out_shape, ksize, strides, dilation, pad):
    """dx of ``depthwise_forward`` (gather over the taps that read each input pixel)."""
    B, D, H, W, C = dx.shape
    od, oh, ow = out_shape
    kd, kh, kw = ksize
    sd, sh, sw = strides
    dd, dh, dw = dilation
    pd, ph, pw = pad
    dm = w.shape[4]
    for r in prange(B * D * H):
        b = r // (D * H)
        rem = r - b * D * H
        iz = rem // H
        iy = rem - iz * H
        for ix in range(W):
            for c in range(C):
                dx[b, iz, iy, ix, c] = 0
            for i in range(kd):
                tz = iz + pd - i * dd
                if tz < 0 or tz % sd != 0:
                    continue
                z = tz // sd
                if z >= od:
                    continue
                for j in range(kh):
                    ty = iy + ph - j * dh
                    if ty < 0 or ty % sh != 0:
                        continue
                    yy = ty // sh
                    if yy >= oh:
                        continue
                    for l in range(kw):
                        tx = ix + pw - l * dw
                        if tx < 0 or tx % sw != 0:
                            continue
                        xx = tx // sw
                        if xx >= ow:
                            continue
                        for c in range(C):
                            acc = dx[b, iz, iy, ix, c]
                            for m in range(dm):
                                acc += dy[b, z, yy, xx, c * dm + m] * w[i, j, l, c, m]
                            dx[b, iz, iy, ix, c] = acc


@njit(cache=True, parallel=True)
def depthwise_backward_kernel(x, dy, dw_part, out_shape, ksize, strides, dilation, pad):
    """Per-sample partial kernel gradients dw_part[b, i, j, l, c, m] (summed by the caller)."""
    B, D, H, W, C = x.shape
    od, oh, ow = out_shape
    kd, kh, kw = ksize
    sd, sh, sw = strides
    dd, dh, dw = dilation
    pd, ph, pw = pad
    dm = dw_part.shape[5]
    for b in prange(B):
        dw_part[b] = 0
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
                                    for m in range(dm):
                                        dw_part[b, i, j, l, c, m] += v * dy[b, z, yy, xx, c * dm + m]


@njit(cache=True, parallel=True)
def bias_relu(z, bias, relu):
    """In place on a 2D (N, f) array: z += bias, then max(z, 0) when ``relu``."""
    n, f = z.shape
    zero = z.dtype.type(0)
    for r in prange(n):
        for q in range(f):
            v = z[r, q] + bias[q]
            if relu and v < zero:
                v = zero
            z[r, q] = v


@njit(cache=True, parallel=True)
def relu_backward_bias(dy, y, dz, db_part):
    """dz = dy * (y > 0) on (N, f) arrays, and per-chunk partial bias gradients db_part (P, f)."""
    n, f = dy.shape
    parts = db_part.shape[0]
    chunk = (n + parts - 1) // parts
    zero = dy.dtype.type(0)
    for p in prange(parts):
        acc = np.zeros(f, dtype=db_part.dtype)
        for r in range(p * chunk, min(n, (p + 1) * chunk)):
            for q in range(f):
                v = dy[r, q] if y[r, q] > zero else zero
                dz[r, q] = v
                acc[q] += v
        db_part[p, :] = acc


# ----------------------------------------------------------------------------- drivers (Python + BLAS)


class BufferPool:
    """Reusable scratch arrays keyed by (shape, dtype): a layer takes one, gives it back when done."""

    def __init__(self):
        self._free: dict = {}

    def take(self, shape, dtype) -> np.ndarray:
        key = (tuple(shape), np.dtype(dtype).str)
        stack = self._free.get(key)
        if stack:
            return stack.pop()
        return np.empty(shape, dtype=dtype)

    def give(self, array) -> None:
        if array is None:
            return
        key = (array.shape, array.dtype.str)
        stack = self._free.setdefault(key, [])
        if len(stack) < 2 and all(a is not array for a in stack):
            stack.append(array)


# The GEMM path works through the batch in chunks of whole samples whose columns take about CHUNK_BYTES, so
# each chunk's columns are multiplied while still in cache. In training the columns of the whole batch are kept
# for the backward pass when they take at most KEEP_BYTES; larger ones are rebuilt chunk by chunk in backward
# (cheaper than streaming a big buffer through memory twice).
CHUNK_BYTES = 4 << 20
KEEP_BYTES = 16 << 20


def sample_chunks(batch: int, rows_per_sample: int, row_bytes: int) -> list[tuple[int, int]]:
    per = max(1, CHUNK_BYTES // max(1, rows_per_sample * row_bytes))
    return [(s, min(batch, s + per)) for s in range(0, batch, per)]


def gemm_forward(cols, w2d, groups: int, out=None) -> np.ndarray:
    """(G, N, Kc) x kernel (Kc, f) with groups along f -> (N, f), written into ``out`` when given."""
    n = cols.shape[1]
    f = w2d.shape[1]
    if out is None:
        out = np.empty((n, f), dtype=cols.dtype)
    if groups == 1:
        np.matmul(cols[0], w2d, out=out)
        return out
    fg = f // groups
    wg = w2d.reshape(w2d.shape[0], groups, fg).transpose(1, 0, 2)  # (G, Kc, fg)
    out.reshape(n, groups, fg)[...] = np.matmul(cols, wg).transpose(1, 0, 2)
    return out


def gemm_kernel_grad(cols, dz2d, groups: int, out=None) -> np.ndarray:
    """dW2d (Kc, f) = cols^T @ dz, group by group (into ``out`` when given)."""
    if groups == 1:
        return np.matmul(cols[0].T, dz2d, out=out)
    n, f = dz2d.shape
    fg = f // groups
    dzg = dz2d.reshape(n, groups, fg).transpose(1, 0, 2)  # (G, N, fg)
    dwg = np.matmul(cols.transpose(0, 2, 1), dzg)  # (G, Kc, fg)
    res = dwg.transpose(1, 0, 2).reshape(cols.shape[2], f)
    if out is None:
        return res
    out[...] = res
    return out


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


def gemm_conv_forward(x5, w2d, geo, groups: int, pool: BufferPool, keep: bool):
    """Convolution by im2col + GEMM, chunk by chunk: returns (z2d (B*rows, f), columns or None).

    With ``keep`` (training) the whole batch's columns are returned for the backward pass when they fit in
    KEEP_BYTES (chunks are then slices of one buffer)."""
    B = x5.shape[0]
    rows = geo.out[0] * geo.out[1] * geo.out[2]
    kc = w2d.shape[0]  # taps * C/groups: the kernel holds one group's input channels
    z2d = np.empty((B * rows, w2d.shape[1]), dtype=x5.dtype)
    chunks = sample_chunks(B, rows, groups * kc * x5.itemsize)
    full = None
    if keep and B * rows * groups * kc * x5.itemsize <= KEEP_BYTES:
        full = pool.take((groups, B * rows, kc), x5.dtype)
        if groups > 1:
            chunks = [(0, B)]  # a slice across groups would not be contiguous
    for s0, s1 in chunks:
        r0, r1 = s0 * rows, s1 * rows
        cols = full[:, r0:r1] if full is not None else pool.take((groups, r1 - r0, kc), x5.dtype)
        im2col(x5[s0:s1], cols, geo.out, geo.k, geo.s, geo.d, geo.pad)
        gemm_forward(cols, w2d, groups, out=z2d[r0:r1])
        if full is None:
            pool.give(cols)
    return z2d, full


def gemm_conv_backward(x5, dz2d, w2d, geo, groups: int, pool: BufferPool, cols, need_dx: bool, dw_out=None):
    """Kernel gradient (Kc, f) and input gradient (or None) of ``gemm_conv_forward``, chunk by chunk;
    ``cols`` are the forward's columns when it kept them, else they are rebuilt per chunk."""
    B = x5.shape[0]
    rows = geo.out[0] * geo.out[1] * geo.out[2]
    kc = w2d.shape[0]
    dx5 = np.empty(x5.shape, dtype=dz2d.dtype) if need_dx else None
    if cols is not None:
        chunks = [(0, B)] if groups > 1 else sample_chunks(B, rows, groups * kc * x5.itemsize)
    else:
        chunks = sample_chunks(B, rows, groups * kc * x5.itemsize)
    dw = None
    for s0, s1 in chunks:
        r0, r1 = s0 * rows, s1 * rows
        if cols is not None:
            c = cols[:, r0:r1]
        else:
            c = pool.take((groups, r1 - r0, kc), x5.dtype)
            im2col(x5[s0:s1], c, geo.out, geo.k, geo.s, geo.d, geo.pad)
        dz = dz2d[r0:r1]
        if dw is None:
            dw = gemm_kernel_grad(c, dz, groups, out=dw_out)
        else:
            dw += gemm_kernel_grad(c, dz, groups)
        if need_dx:
            gemm_columns_grad(dz, w2d, groups, out=c)
            col2im(c, dx5[s0:s1], geo.out, geo.k, geo.s, geo.d, geo.pad)
        if cols is None:
            pool.give(c)
    pool.give(cols)
    return dw, dx5


def gemm_input_grad(dz2d, w2d, geo, groups: int, in_shape5, pool: BufferPool) -> np.ndarray:
    """dx (in_shape5) = col2im(dz @ W^T), chunk by chunk: the input gradient of a convolution and the forward
    pass of a transposed convolution."""
    B = in_shape5[0]
    rows = geo.out[0] * geo.out[1] * geo.out[2]
    kc = w2d.shape[0]  # taps * C/groups: the kernel holds one group's input channels
    dx5 = np.empty(in_shape5, dtype=dz2d.dtype)
    for s0, s1 in sample_chunks(B, rows, groups * kc * dz2d.itemsize):
        c = pool.take((groups, (s1 - s0) * rows, kc), dz2d.dtype)
        gemm_columns_grad(dz2d[s0 * rows:s1 * rows], w2d, groups, out=c)
        col2im(c, dx5[s0:s1], geo.out, geo.k, geo.s, geo.d, geo.pad)
        pool.give(c)
    return dx5


def transpose_backward(dz5, x2d, w2d, geo, pool: BufferPool, need_dx: bool, dw_out=None):
    """Gradients of a transposed convolution (forward = ``gemm_input_grad``): its input gradient is the
    convolution of dz, dx2d = im2col(dz) @ W, and the kernel gradient is im2col(dz)^T @ x2d (taps*f, C_in)."""
    B = dz5.shape[0]
    rows = geo.out[0] * geo.out[1] * geo.out[2]
    dx2d = np.empty(x2d.shape, dtype=dz5.dtype) if need_dx else None
    dw = None
    for s0, s1 in sample_chunks(B, rows, w2d.shape[0] * dz5.itemsize):
        c = pool.take((1, (s1 - s0) * rows, w2d.shape[0]), dz5.dtype)
        im2col(dz5[s0:s1], c, geo.out, geo.k, geo.s, geo.d, geo.pad)
        r0, r1 = s0 * rows, s1 * rows
        if need_dx:
            np.matmul(c[0], w2d, out=dx2d[r0:r1])
        if dw is None:
            dw = np.matmul(c[0].T, x2d[r0:r1], out=dw_out)
        else:
            dw += c[0].T @ x2d[r0:r1]
        pool.give(c)
    return dw, dx2d


def add_bias_activation(z2d, bias, activation: str):
    """Bias then activation on a fresh (N, f) GEMM result; returns (y2d, z2d or None).

    relu and linear run in place in one parallel pass; other activations keep z when their
    derivative needs it."""
    from ..engine.activations import NEEDS_ONLY_OUTPUT, activate

    if activation in ("relu", "linear"):
        if bias is not None or activation == "relu":
            b = bias if bias is not None else np.zeros(z2d.shape[1], dtype=z2d.dtype)
            bias_relu(z2d, b.astype(z2d.dtype, copy=False), activation == "relu")
        return z2d, None
    if bias is not None:
        z2d += bias
    y2d = activate(activation, z2d)
    return y2d, (None if activation in NEEDS_ONLY_OUTPUT else z2d)


def _parts(rows: int) -> int:
    """How many partial sums a parallel reduction over ``rows`` uses (a few per thread)."""
    import numba

    return max(1, min(rows // 64, 4 * numba.get_num_threads()))


def activation_bias_backward(dy2d, z2d, y2d, activation: str, use_bias: bool):
    """dL/dz and the bias gradient (or None)."""
    if activation == "relu":
        dz = np.empty_like(dy2d)
        db = np.empty((_parts(dy2d.shape[0]), dy2d.shape[1]), dtype=dy2d.dtype)
        relu_backward_bias(dy2d, y2d, dz, db)
        return dz, (db.sum(axis=0) if use_bias else None)
    from ..engine.activations import activate_backward

    dz = activate_backward(activation, z2d, y2d, dy2d)
    return dz, (dz.sum(axis=0) if use_bias else None)


# Direct kernels beat im2col + GEMM when a window holds few values (first layers on 1-3 channels):
# the GEMM's inner dimension would be tiny and building the columns costs more than the arithmetic.
DIRECT_MAX_WINDOW = 25


def use_direct(taps: int, channels: int, groups: int) -> bool:
    return groups == 1 and taps * channels <= DIRECT_MAX_WINDOW


def direct_conv(x5, w3, bias, geo, activation: str):
    """Fused direct convolution + bias (+ relu); returns (y2d, z2d kept for the backward or None)."""
    from ..engine.activations import NEEDS_ONLY_OUTPUT, activate

    B, F = x5.shape[0], w3.shape[2]
    y = np.empty((B, *geo.out, F), dtype=x5.dtype)
    b = bias if bias is not None else np.zeros(F, dtype=x5.dtype)
    direct_forward(x5, w3, b, y, geo.out, geo.k, geo.s, geo.d, geo.pad, activation == "relu")
    z2d = y.reshape(-1, F)
    if activation in ("relu", "linear"):
        return z2d, None
    y2d = activate(activation, z2d)
    return y2d, (None if activation in NEEDS_ONLY_OUTPUT else z2d)


def direct_conv_grads(x5, dy2d, y2d, z2d, geo, activation: str, w_shape):
    """(dz2d, dW in w_shape, db) for ``direct_conv``."""
    relu = activation == "relu"
    if relu:
        g, dz = dy2d, np.empty_like(dy2d)
    else:
        from ..engine.activations import activate_backward

        g = np.ascontiguousarray(activate_backward(activation, z2d, y2d, dy2d))
        dz = g
    F = g.shape[1]
    parts = _parts(x5.shape[0] * geo.out[0] * geo.out[1])
    dw_part = np.empty((parts, w_shape[0] * w_shape[1] * F), dtype=g.dtype)
    db_part = np.empty((parts, F), dtype=g.dtype)
    direct_backward_kernel(x5, g, y2d if relu else g, dz, dw_part, db_part, geo.out, geo.k, geo.s, geo.d,
                           geo.pad, relu)
    return dz, dw_part.sum(axis=0).reshape(*w_shape, F), db_part.sum(axis=0)
