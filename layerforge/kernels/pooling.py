"""Pooling kernels (max and average) on a 5-D channels-last view ``(B, D, H, W, C)``.

1-D and 2-D pooling use the same kernels with unit leading spatial axes. Windows start at
``o * stride - pad_before`` and are clipped to the real cells: max pooling ignores padded
cells and average pooling divides by the number of real cells in the window (TF / Keras
``same`` semantics). Max pooling records the flat spatial index ``(d * H + h) * W + w`` of
the winner (the first maximum in scan order) for the backward pass.
"""

from numba import njit, prange


@njit(cache=True, parallel=True)
def max_pool_forward(x, y, idx, kd, kh, kw, sd, sh, sw, pd, ph, pw):
    B, D, H, W, C = x.shape
    OD, OH, OW = y.shape[1], y.shape[2], y.shape[3]
    for b in prange(B):
        for od in range(OD):
            d0 = od * sd - pd
            d_lo = max(d0, 0)
            d_hi = min(d0 + kd, D)
            for oh in range(OH):
                h0 = oh * sh - ph
                h_lo = max(h0, 0)
                h_hi = min(h0 + kh, H)
                for ow in range(OW):
                    w0 = ow * sw - pw
                    w_lo = max(w0, 0)
                    w_hi = min(w0 + kw, W)
                    first = (d_lo * H + h_lo) * W + w_lo
                    for c in range(C):
                        y[b, od, oh, ow, c] = x[b, d_lo, h_lo, w_lo, c]
                        idx[b, od, oh, ow, c] = first
                    for d in range(d_lo, d_hi):
                        for h in range(h_lo, h_hi):
                            for w in range(w_lo, w_hi):
                                flat = (d * H + h) * W + w
                                for c in range(C):
                                    v = x[b, d, h, w, c]
                                    if v > y[b, od, oh, ow, c]:
                                        y[b, od, oh, ow, c] = v
                                        idx[b, od, oh, ow, c] = flat


@njit(cache=True, parallel=True)
def max_pool_backward(dy, idx, dx):
    """dy, idx: (B, P, C) flattened outputs; dx: (B, D*H*W, C), zero on entry."""
    B, P, C = dy.shape
    for b in prange(B):
        for p in range(P):
            for c in range(C):
                dx[b, idx[b, p, c], c] += dy[b, p, c]


@njit(cache=True, parallel=True)
def avg_pool_forward(x, y, kd, kh, kw, sd, sh, sw, pd, ph, pw):
    B, D, H, W, C = x.shape
    OD, OH, OW = y.shape[1], y.shape[2], y.shape[3]
    for b in prange(B):
        for od in range(OD):
            d0 = od * sd - pd
            d_lo = max(d0, 0)
            d_hi = min(d0 + kd, D)
            for oh in range(OH):
                h0 = oh * sh - ph
                h_lo = max(h0, 0)
                h_hi = min(h0 + kh, H)
                for ow in range(OW):
                    w0 = ow * sw - pw
                    w_lo = max(w0, 0)
                    w_hi = min(w0 + kw, W)
                    inv = 1.0 / ((d_hi - d_lo) * (h_hi - h_lo) * (w_hi - w_lo))
                    for c in range(C):
                        y[b, od, oh, ow, c] = 0.0
                    for d in range(d_lo, d_hi):
                        for h in range(h_lo, h_hi):
                            for w in range(w_lo, w_hi):
                                for c in range(C):
                                    y[b, od, oh, ow, c] += x[b, d, h, w, c]
                    for c in range(C):
                        y[b, od, oh, ow, c] *= inv


@njit(cache=True, parallel=True)
def avg_pool_backward(dy, dx, kd, kh, kw, sd, sh, sw, pd, ph, pw):
    """dx: (B, D, H, W, C), zero on entry."""
    B, D, H, W, C = dx.shape
    OD, OH, OW = dy.shape[1], dy.shape[2], dy.shape[3]
    for b in prange(B):
        for od in range(OD):
            d0 = od * sd - pd
            d_lo = max(d0, 0)
            d_hi = min(d0 + kd, D)
            for oh in range(OH):
                h0 = oh * sh - ph
                h_lo = max(h0, 0)
                h_hi = min(h0 + kh, H)
                for ow in range(OW):
                    w0 = ow * sw - pw
                    w_lo = max(w0, 0)
                    w_hi = min(w0 + kw, W)
                    inv = 1.0 / ((d_hi - d_lo) * (h_hi - h_lo) * (w_hi - w_lo))
                    for d in range(d_lo, d_hi):
                        for h in range(h_lo, h_hi):
                            for w in range(w_lo, w_hi):
                                for c in range(C):
                                    dx[b, d, h, w, c] += dy[b, od, oh, ow, c] * inv
