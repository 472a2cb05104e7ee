"""ConvLSTM2D recurrence: the whole time loop in one Numba kernel per direction.

The input convolution of every time step is one im2col + GEMM done before the loop (by the layer). Inside the
loop each step's recurrent convolution ('same' padding, stride 1) is an im2col of the previous output into
``HC[t]`` and a BLAS GEMM (``np.dot`` in Numba calls BLAS), followed by the fused gate arithmetic. The columns
``HC`` of every step are kept, so the backward pass gets the recurrent-kernel gradient from one GEMM after its
loop. Rows are ``n = (b*oh + y)*ow + x``; a (T, B) mask keeps a sample's state (and output) unchanged at its
masked steps, as Keras does.

Activation codes (derivatives are taken from the activation's output): 0 linear, 1 tanh, 2 sigmoid,
3 hard_sigmoid (Keras 3: x/6 + 0.5 clipped), 4 hard_sigmoid_keras1 (0.2x + 0.5 clipped), 5 relu.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..activations import RECURRENT_CODES
from .conv import col2im, im2col

# the activations these kernels implement, with the registry's recurrent codes (layerforge/activations.py); _act
# and _dact below branch on those numbers
ACTIVATION_CODES = {name: RECURRENT_CODES[name]
                    for name in ("linear", "tanh", "sigmoid", "hard_sigmoid", "hard_sigmoid_keras1", "relu")}


@njit(inline="always")
def _act(code, v):
    if code == 1:
        return np.tanh(v)
    if code == 2:
        return 1.0 / (1.0 + np.exp(-v))
    if code == 3:
        return min(max(v / 6.0 + 0.5, 0.0), 1.0)
    if code == 4:
        return min(max(0.2 * v + 0.5, 0.0), 1.0)
    if code == 5:
        return max(v, 0.0)
    return v


@njit(inline="always")
def _dact(code, y):
    """Derivative of activation ``code`` at the point where its output is ``y``."""
    if code == 1:
        return 1.0 - y * y
    if code == 2:
        return y * (1.0 - y)
    if code == 3:
        return 1.0 / 6.0 if 0.0 < y < 1.0 else 0.0
    if code == 4:
        return 0.2 if 0.0 < y < 1.0 else 0.0
    if code == 5:
        return 1.0 if y > 0.0 else 0.0
    return 1.0


@njit(cache=True, nogil=True)
def forward(Xp, Wr2, m, use_m, rmask, use_r, ksize, pad, act, ract, Hs, Cs, G, HC):
    """Run the recurrence. Xp (T, N, 4f): input projections (bias included); Wr2 (kh*kw*f, 4f); m (T, B) bool;
    rmask (B, oh, ow, f); Hs (T+1, B, oh, ow, f) and Cs (T+1, N, f) hold the initial states at index 0 and
    receive every step's; G (T, N, 4f) receives the activated gates i|f|c|o; HC (T, N, kh*kw*f) the columns."""
    T, N, f4 = Xp.shape
    f = f4 // 4
    B, oh, ow = Hs.shape[1], Hs.shape[2], Hs.shape[3]
    per = oh * ow
    hin = np.empty((B, 1, oh, ow, f), Hs.dtype)
    one = (1, 1, 1)
    for t in range(T):
        for b in range(B):
            for y in range(oh):
                for x in range(ow):
                    for j in range(f):
                        v = Hs[t, b, y, x, j]
                        hin[b, 0, y, x, j] = v * rmask[b, y, x, j] if use_r else v
        cols = HC[t]
        im2col(hin, cols.reshape((1, N, cols.shape[1])), (1, oh, ow), ksize, one, one, pad)
        z = np.dot(cols, Wr2)
        hflat = Hs[t].reshape((N, f))
        hnext = Hs[t + 1].reshape((N, f))
        for n in range(N):
            b = n // per
            if use_m and not m[t, b]:
                for j in range(f):
                    hnext[n, j] = hflat[n, j]
                    Cs[t + 1, n, j] = Cs[t, n, j]
                    G[t, n, j] = 0.0
                    G[t, n, f + j] = 0.0
                    G[t, n, 2 * f + j] = 0.0
                    G[t, n, 3 * f + j] = 0.0
                continue
            for j in range(f):
                gi = _act(ract, Xp[t, n, j] + z[n, j])
                gf = _act(ract, Xp[t, n, f + j] + z[n, f + j])
                gc = _act(act, Xp[t, n, 2 * f + j] + z[n, 2 * f + j])
                go = _act(ract, Xp[t, n, 3 * f + j] + z[n, 3 * f + j])
                c = gf * Cs[t, n, j] + gi * gc
                Cs[t + 1, n, j] = c
                hnext[n, j] = go * _act(act, c)
                G[t, n, j] = gi
                G[t, n, f + j] = gf
                G[t, n, 2 * f + j] = gc
                G[t, n, 3 * f + j] = go


@njit(cache=True, nogil=True)
def backward(dY, seq, dh0, dc0, WrT, m, use_m, rmask, use_r, ksize, pad, act, ract, Cs, G, B, oh, ow, dZ):
    """BPTT. dY (T or 1, N, f): output gradients in processing order (seq: one per step); dh0/dc0 (N, f): the
    gradients of the final states (overwritten: they carry the running state gradients). WrT (4f, kh*kw*f).
    Writes dZ (T, N, 4f), the gradients of the gate pre-activations."""
    T, N, f4 = dZ.shape
    f = f4 // 4
    per = oh * ow
    dh = dh0
    dc = dc0
    dcols_img = np.empty((B, 1, oh, ow, f), dZ.dtype)
    one = (1, 1, 1)
    for t in range(T - 1, -1, -1):
        if seq:
            for n in range(N):
                for j in range(f):
                    dh[n, j] += dY[t, n, j]
        for n in range(N):
            b = n // per
            if use_m and not m[t, b]:
                for j in range(4 * f):
                    dZ[t, n, j] = 0.0
                continue
            for j in range(f):
                gi = G[t, n, j]
                gf = G[t, n, f + j]
                gc = G[t, n, 2 * f + j]
                go = G[t, n, 3 * f + j]
                tc = _act(act, Cs[t + 1, n, j])
                dhv = dh[n, j]
                dZ[t, n, 3 * f + j] = dhv * tc * _dact(ract, go)
                dcv = dc[n, j] + dhv * go * _dact(act, tc)
                dZ[t, n, j] = dcv * gc * _dact(ract, gi)
                dZ[t, n, 2 * f + j] = dcv * gi * _dact(act, gc)
                dZ[t, n, f + j] = dcv * Cs[t, n, j] * _dact(ract, gf)
                dc[n, j] = dcv * gf
        dcols = np.dot(dZ[t], WrT)
        col2im(dcols.reshape((1, N, dcols.shape[1])), dcols_img, (1, oh, ow), ksize, one, one, pad)
        for n in range(N):
            b = n // per
            if use_m and not m[t, b]:
                continue  # state passed through unchanged: dh, dc stay
            rem = n - b * per
            y = rem // ow
            x = rem - y * ow
            for j in range(f):
                v = dcols_img[b, 0, y, x, j]
                dh[n, j] = v * rmask[b, y, x, j] if use_r else v
