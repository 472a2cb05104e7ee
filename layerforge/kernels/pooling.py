"""Pooling kernels (max and average) on a 5-D channels-last view ``(B, D, H, W, C)``, and the
bilinear resampling kernels of UpSampling2D.

1-D and 2-D pooling use the same kernels with unit leading spatial axes. Windows start at
``o * stride - pad_before`` and are clipped to the real cells: max pooling ignores padded
cells and average pooling divides by the number of real cells in the window (TF / Keras
``same`` semantics). Max pooling records the flat spatial index ``(d * H + h) * W + w`` of
the winner (the first maximum in scan order) for the backward pass.
"""

from numba import njit, prange

from .blocks import one_launch_at_a_time


# Small helpers: LLVM inlines them into the kernels (the machine code is the same as with the lines written
# out). _window is a plain njit function: inline="always" gave the same code but compiled the parallel kernels
# about 6% slower.
@njit
def _window(o, stride, pad, k, n):
    """[lo, hi) of the real cells in the window of output ``o`` (starts at o*stride - pad, k cells)."""
    start = o * stride - pad
    return max(start, 0), min(start + k, n)


@njit(inline="always")
def _bilinear_weights(fr, fc):
    """Weights of the four neighbours (lo row/lo col, lo/hi, hi/lo, hi/hi)."""
    return (1 - fr) * (1 - fc), (1 - fr) * fc, fr * (1 - fc), fr * fc


@one_launch_at_a_time
@njit(cache=True, parallel=True)
def max_pool_forward(x, y, idx, kd, kh, kw, sd, sh, sw, pd, ph, pw):
    """idx: int32 array shaped like y."""
    B, D, H, W, C = x.shape
    OD, OH, OW = y.shape[1], y.shape[2], y.shape[3]
    for b in prange(B):
        for od in range(OD):
            d_lo, d_hi = _window(od, sd, pd, kd, D)
            for oh in range(OH):
                h_lo, h_hi = _window(oh, sh, ph, kh, H)
                for ow in range(OW):
                    w_lo, w_hi = _window(ow, sw, pw, kw, W)
                    yv = y[b, od, oh, ow]
                    iv = idx[b, od, oh, ow]
                    xv = x[b, d_lo, h_lo, w_lo]
                    first = (d_lo * H + h_lo) * W + w_lo
                    for c in range(C):
                        yv[c] = xv[c]
                        iv[c] = first
                    for d in range(d_lo, d_hi):
                        for h in range(h_lo, h_hi):
                            for w in range(w_lo, w_hi):
                                flat = (d * H + h) * W + w
                                xv = x[b, d, h, w]
                                for c in range(C):  # branch-free so that LLVM vectorises it
                                    v = xv[c]
                                    cur = yv[c]
                                    gt = v > cur
                                    yv[c] = v if gt else cur
                                    iv[c] = flat if gt else iv[c]


@one_launch_at_a_time
@njit(cache=True, parallel=True)
def max_pool_backward(dy, idx, dx):
    """dy, idx: (B, P, C) flattened outputs; dx: (B, D*H*W, C), any content on entry (each sample's slice is
    zeroed by its thread just before the scatter, while it is in cache: cheaper than a zeroed allocation, whose
    fresh pages fault in one by one)."""
    B, P, C = dy.shape
    N = dx.shape[1]
    for b in prange(B):
        db = dx[b]
        for n in range(N):
            for c in range(C):
                db[n, c] = 0
        for p in range(P):
            gv = dy[b, p]
            iv = idx[b, p]
            for c in range(C):
                dx[b, iv[c], c] += gv[c]


@one_launch_at_a_time
@njit(cache=True, parallel=True)
def avg_pool_forward(x, y, kd, kh, kw, sd, sh, sw, pd, ph, pw):
    B, D, H, W, C = x.shape
    OD, OH, OW = y.shape[1], y.shape[2], y.shape[3]
    for b in prange(B):
        for od in range(OD):
            d_lo, d_hi = _window(od, sd, pd, kd, D)
            for oh in range(OH):
                h_lo, h_hi = _window(oh, sh, ph, kh, H)
                for ow in range(OW):
                    w_lo, w_hi = _window(ow, sw, pw, kw, W)
                    inv = 1.0 / ((d_hi - d_lo) * (h_hi - h_lo) * (w_hi - w_lo))
                    yv = y[b, od, oh, ow]
                    for c in range(C):
                        yv[c] = 0.0
                    for d in range(d_lo, d_hi):
                        for h in range(h_lo, h_hi):
                            for w in range(w_lo, w_hi):
                                xv = x[b, d, h, w]
                                for c in range(C):
                                    yv[c] += xv[c]
                    for c in range(C):
                        yv[c] *= inv


@one_launch_at_a_time
@njit(cache=True, parallel=True)
def avg_pool_backward(dy, dx, kd, kh, kw, sd, sh, sw, pd, ph, pw):
    """dx: (B, D, H, W, C), any content on entry (zeroed per sample, as in max_pool_backward)."""
    B, D, H, W, C = dx.shape
    OD, OH, OW = dy.shape[1], dy.shape[2], dy.shape[3]
    for b in prange(B):
        db = dx[b]
        for d in range(D):
            for h in range(H):
                for w in range(W):
                    for c in range(C):
                        db[d, h, w, c] = 0
        for od in range(OD):
            d_lo, d_hi = _window(od, sd, pd, kd, D)
            for oh in range(OH):
                h_lo, h_hi = _window(oh, sh, ph, kh, H)
                for ow in range(OW):
                    w_lo, w_hi = _window(ow, sw, pw, kw, W)
                    inv = 1.0 / ((d_hi - d_lo) * (h_hi - h_lo) * (w_hi - w_lo))
                    gv = dy[b, od, oh, ow]
                    for d in range(d_lo, d_hi):
                        for h in range(h_lo, h_hi):
                            for w in range(w_lo, w_hi):
                                dv = dx[b, d, h, w]
                                for c in range(C):
                                    dv[c] += gv[c] * inv


# ---------------------------------------------------------------------- bilinear upsampling (UpSampling2D)


@one_launch_at_a_time
@njit(cache=True, parallel=True)
def bilinear_forward(x, y, r_lo, r_hi, r_f, c_lo, c_hi, c_f):
    """y[b, i, j] = bilinear mix of x rows r_lo[i]/r_hi[i] (weight r_f[i] on r_hi) and cols alike;
    x (B, H, W, C), y (B, OH, OW, C) channels-last."""
    B, OH, OW, C = y.shape
    for b in prange(B):
        for i in range(OH):
            fr = r_f[i]
            x0 = x[b, r_lo[i]]
            x1 = x[b, r_hi[i]]
            for j in range(OW):
                fc = c_f[j]
                w00, w01, w10, w11 = _bilinear_weights(fr, fc)
                a = x0[c_lo[j]]
                bb = x0[c_hi[j]]
                cc = x1[c_lo[j]]
                d = x1[c_hi[j]]
                yv = y[b, i, j]
                for c in range(C):
                    yv[c] = w00 * a[c] + w01 * bb[c] + w10 * cc[c] + w11 * d[c]


@one_launch_at_a_time
@njit(cache=True, parallel=True)
def bilinear_backward(dy, dx, r_lo, r_hi, r_f, c_lo, c_hi, c_f):
    """Adjoint of bilinear_forward; dx (B, H, W, C) zero on entry."""
    B, OH, OW, C = dy.shape
    for b in prange(B):
        for i in range(OH):
            fr = r_f[i]
            d0 = dx[b, r_lo[i]]
            d1 = dx[b, r_hi[i]]
            for j in range(OW):
                fc = c_f[j]
                w00, w01, w10, w11 = _bilinear_weights(fr, fc)
                a = d0[c_lo[j]]
                bb = d0[c_hi[j]]
                cc = d1[c_lo[j]]
                d = d1[c_hi[j]]
                g = dy[b, i, j]
                for c in range(C):
                    v = g[c]
                    a[c] += w00 * v
                    bb[c] += w01 * v
                    cc[c] += w10 * v
                    d[c] += w11 * v
