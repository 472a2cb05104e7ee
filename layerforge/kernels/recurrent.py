"""Numba kernels for SimpleRNN, GRU and LSTM: the time loop of the forward pass and of BPTT.

Layout: every sequence buffer is time-major and in *processing order* (already reversed for
``go_backwards``), so ``buf[t]`` is a contiguous ``(B, k*u)`` block that BLAS reads directly.
SimpleRNN and GRU get the input projection ``[x, 1] @ [kernel; bias]`` of all steps from one GEMM
done by the caller; LSTM runs one GEMM per step over ``[h_{t-1}, x_t, 1]`` (the kernel writes
h_{t-1} into that buffer), so that all its weight gradients come from one GEMM after BPTT.
Per step: one ``np.dot`` (BLAS through scipy's cython-blas) and fused elementwise gate loops.
The backward kernels write the gate gradients of every step into one ``(T, B, k*u)`` buffer so the
caller gets ``dkernel``, ``drecurrent_kernel``, the bias and ``dx`` with one GEMM each afterwards.

Speed notes: ``error_model="numpy"`` (no ZeroDivisionError branch) and loops that index with loop
counters only (4D views instead of per-row slices or signed offsets, whose wraparound checks block
LLVM) are what makes the gate loops vectorise; loops that touch many arrays are split in small
ones to stay under LLVM's runtime alias-check limit. The batch loops are written with ``prange``
but compiled serially (``_PARALLEL``): parallel compilation roughly triples the JIT time of
these kernels, and the multi-core work is the BLAS calls.

Masks (Keras 3): at a masked step the states are carried unchanged and the output repeats the
previous output (zeros before the first valid step, or always zeros with ``zero_masked``).

Activations are passed as integer codes (see ``ACTIVATION_CODES`` in layers/recurrent.py); their
derivatives are taken from the activation's output. ``fast`` (float32 only) swaps tanh/sigmoid
for a rational approximation accurate to a few float32 ulps that LLVM vectorises.
"""

import math

import numpy as np
from numba import njit, prange

LINEAR, TANH, SIGMOID, HARD_SIGMOID, HARD_SIGMOID_K1, RELU, RELU6, ELU, SELU, SOFTPLUS, SOFTSIGN, \
    EXPONENTIAL, LEAKY_RELU = range(13)

_PARALLEL = False
_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805
_LEAKY = 0.2


_F = np.float32
# error_model="numpy": no ZeroDivisionError branch in the loops, so LLVM vectorises them.
_OPTS = {"cache": True, "error_model": "numpy", "fastmath": {"contract", "arcp"}}


@njit(inline="always", **_OPTS)
def _tanh_fast(x):
    # Rational approximation of tanh (float32 accuracy) clamped to +-7.905; pure arithmetic: vectorisable.
    x = min(max(x, _F(-7.90531110763549805)), _F(7.90531110763549805))
    x2 = x * x
    p = x2 * _F(-2.76076847742355e-16) + _F(2.00018790482477e-13)
    p = x2 * p + _F(-8.60467152213735e-11)
    p = x2 * p + _F(5.12229709037114e-08)
    p = x2 * p + _F(1.48572235717979e-05)
    p = x2 * p + _F(6.37261928875436e-04)
    p = x2 * p + _F(4.89352455891786e-03)
    p = x * p
    q = x2 * _F(1.19825839466702e-06) + _F(1.18534705686654e-04)
    q = x2 * q + _F(2.26843463243900e-03)
    q = x2 * q + _F(4.89352518554385e-03)
    return min(max(p / q, _F(-1.0)), _F(1.0))


@njit(inline="always", **_OPTS)
def _sigmoid(x):
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@njit(**_OPTS)
def _act_range(code, v, lo, hi, fast):
    """Apply activation ``code`` in place to ``v[lo:hi]`` (v: a contiguous 1D array)."""
    # loop over a slice from 0: a signed `range(lo, hi)` index defeats vectorisation (wraparound checks)
    w = v[lo:hi]
    n = w.shape[0]
    if code == LINEAR:
        return
    if code == TANH:
        if fast:
            for k in range(n):
                w[k] = _tanh_fast(w[k])
        else:
            for k in range(n):
                w[k] = math.tanh(w[k])
    elif code == SIGMOID:
        if fast:
            for k in range(n):
                w[k] = _F(0.5) * _tanh_fast(_F(0.5) * w[k]) + _F(0.5)
        else:
            for k in range(n):
                w[k] = _sigmoid(w[k])
    elif code == HARD_SIGMOID:
        for k in range(n):
            w[k] = min(max(w[k] / 6.0 + 0.5, 0.0), 1.0)
    elif code == HARD_SIGMOID_K1:
        for k in range(n):
            w[k] = min(max(0.2 * w[k] + 0.5, 0.0), 1.0)
    elif code == RELU:
        for k in range(n):
            w[k] = max(w[k], 0.0)
    elif code == RELU6:
        for k in range(n):
            w[k] = min(max(w[k], 0.0), 6.0)
    elif code == ELU:
        for k in range(n):
            z = w[k]
            w[k] = z if z > 0 else math.expm1(z)
    elif code == SELU:
        for k in range(n):
            z = w[k]
            w[k] = _SELU_SCALE * z if z > 0 else _SELU_SCALE * _SELU_ALPHA * math.expm1(z)
    elif code == SOFTPLUS:
        for k in range(n):
            z = w[k]
            w[k] = math.log1p(math.exp(-abs(z))) + max(z, 0.0)
    elif code == SOFTSIGN:
        for k in range(n):
            z = w[k]
            w[k] = z / (1.0 + abs(z))
    elif code == EXPONENTIAL:
        for k in range(n):
            w[k] = math.exp(w[k])
    elif code == LEAKY_RELU:
        for k in range(n):
            z = w[k]
            w[k] = z if z >= 0 else _LEAKY * z


@njit(**_OPTS)
def _act1(code, x, fast):
    """One activation value (for loops that index several arrays; the branch on ``code`` is loop-invariant)."""
    if code == TANH:
        return _tanh_fast(x) if fast else math.tanh(x)
    if code == SIGMOID:
        return _F(0.5) * _tanh_fast(_F(0.5) * x) + _F(0.5) if fast else _sigmoid(x)
    if code == LINEAR:
        return x
    if code == HARD_SIGMOID:
        return min(max(x / 6.0 + 0.5, 0.0), 1.0)
    if code == HARD_SIGMOID_K1:
        return min(max(0.2 * x + 0.5, 0.0), 1.0)
    if code == RELU:
        return max(x, 0.0)
    if code == RELU6:
        return min(max(x, 0.0), 6.0)
    if code == ELU:
        return x if x > 0 else math.expm1(x)
    if code == SELU:
        return _SELU_SCALE * x if x > 0 else _SELU_SCALE * _SELU_ALPHA * math.expm1(x)
    if code == SOFTPLUS:
        return math.log1p(math.exp(-abs(x))) + max(x, 0.0)
    if code == SOFTSIGN:
        return x / (1.0 + abs(x))
    if code == EXPONENTIAL:
        return math.exp(x)
    return x if x >= 0 else _LEAKY * x


@njit(**_OPTS)
def _gate_act(code, src, dst, t, b, k, fast):
    """dst[t, b, k, :] = activation(src[b, k, :]) (4D/3D views: no per-row slices, vectorisable)."""
    n = src.shape[2]
    if code == TANH and fast:
        for j in range(n):
            dst[t, b, k, j] = _tanh_fast(src[b, k, j])
    elif code == SIGMOID and fast:
        for j in range(n):
            dst[t, b, k, j] = _F(0.5) * _tanh_fast(_F(0.5) * src[b, k, j]) + _F(0.5)
    else:
        for j in range(n):
            dst[t, b, k, j] = _act1(code, src[b, k, j], fast)


@njit(**_OPTS)
def _dact(code, y):
    """Derivative of activation ``code`` expressed through its output ``y``."""
    if code == TANH:
        return 1.0 - y * y
    if code == SIGMOID:
        return y * (1.0 - y)
    if code == LINEAR:
        return 1.0
    if code == HARD_SIGMOID:
        return 1.0 / 6.0 if 0.0 < y < 1.0 else 0.0
    if code == HARD_SIGMOID_K1:
        return 0.2 if 0.0 < y < 1.0 else 0.0
    if code == RELU:
        return 1.0 if y > 0 else 0.0
    if code == RELU6:
        return 1.0 if 0.0 < y < 6.0 else 0.0
    if code == ELU:
        return 1.0 if y > 0 else y + 1.0
    if code == SELU:
        return _SELU_SCALE if y > 0 else y + _SELU_SCALE * _SELU_ALPHA
    if code == SOFTPLUS:
        return -math.expm1(-y)
    if code == SOFTSIGN:
        a = 1.0 - abs(y)
        return a * a
    if code == EXPONENTIAL:
        return y
    if code == LEAKY_RELU:
        return 1.0 if y >= 0 else _LEAKY
    return 1.0


@njit(inline="always", **_OPTS)
def _masked_output(Y, t, b, u, zero_masked):
    for j in range(u):
        Y[t, b, j] = 0.0 if (zero_masked or t == 0) else Y[t - 1, b, j]


@njit(inline="always", **_OPTS)
def _recurrent_input(Hs, t, rmask, use_rmask, hd):
    """h_{t-1} as the recurrent GEMM sees it (times the recurrent dropout mask)."""
    if not use_rmask:
        return Hs[t]
    B, u = hd.shape
    for b in prange(B):
        for j in range(u):
            hd[b, j] = Hs[t, b, j] * rmask[b, j]
    return hd



@njit(inline="always", **_OPTS)
def _pass_masked(dYr, car, zero_masked):
    """Backward through a masked step: its output was the previous output (or zeros)."""
    for j in range(dYr.shape[0]):
        car[j] = 0.0 if zero_masked else dYr[j] + car[j]


@njit(inline="always", **_OPTS)
def _new_dh(dh, drec, mask, use_mask, t, rmask, use_rmask, direct, use_direct):
    """dh_{t-1} = (dgates @ U^T) * recurrent-dropout mask (+ the direct path); masked samples keep dh."""
    B, u = dh.shape
    for b in prange(B):
        if (not use_mask) or mask[t, b]:
            dhr = dh[b]
            drr = drec[b]
            if use_rmask:
                rmr = rmask[b]
                for j in range(u):
                    dhr[j] = drr[j] * rmr[j]
            else:
                for j in range(u):
                    dhr[j] = drr[j]
            if use_direct:
                dir_ = direct[b]
                for j in range(u):
                    dhr[j] += dir_[j]


@njit(inline="always", **_OPTS)
def _emit(Y, Hs, t, b, mask, use_mask, zero_masked, extra, use_extra):
    """Mask bookkeeping after a step: masked samples keep their states and repeat the previous output."""
    if not use_mask:
        return
    hn = Hs[t + 1, b]
    u = hn.shape[0]
    if mask[t, b]:
        yr = Y[t, b]
        for j in range(u):
            yr[j] = hn[j]
    else:
        hp = Hs[t, b]
        for j in range(u):
            hn[j] = hp[j]
        if use_extra:
            en = extra[t + 1, b]
            ep = extra[t, b]
            for j in range(u):
                en[j] = ep[j]
        _masked_output(Y, t, b, u, zero_masked)


# ---------------------------------------------------------------------------------------- SimpleRNN

@njit(parallel=_PARALLEL, **_OPTS)
def simple_forward(U, h0, mask, use_mask, rmask, use_rmask, act, zero_masked, fast, Hs, Y):
    """Hs (T+1,B,u): on entry Hs[1:] holds the input projection (with bias); on exit the states.
    Y (T,B,u) outputs (masks only)."""
    T1, B, u = Hs.shape
    T = T1 - 1
    Hs[0] = h0
    rec = np.empty((B, u), Hs.dtype)
    hd = np.empty((B, u), Hs.dtype)
    for t in range(T):
        np.dot(_recurrent_input(Hs, t, rmask, use_rmask, hd), U, rec)
        for b in prange(B):
            hn = Hs[t + 1, b]
            rr = rec[b]
            for j in range(u):
                hn[j] += rr[j]
            _act_range(act, hn, 0, u, fast)
            _emit(Y, Hs, t, b, mask, use_mask, zero_masked, Hs, False)


@njit(parallel=_PARALLEL, **_OPTS)
def simple_backward(dY, dh_last, carry0, Hs, UT, mask, use_mask, rmask, use_rmask, act, zero_masked, dG):
    """dG (T,B,u) receives d(pre-activation) of every step; returns dh0."""
    T, B, u = Hs.shape[0] - 1, Hs.shape[1], Hs.shape[2]
    dh = dh_last.copy()
    carry = carry0.copy()
    drec = np.empty((B, u), dY.dtype)
    for t in range(T - 1, -1, -1):
        td = t if dY.shape[0] == T else 0  # dY (1,B,u) of zeros when only the last output has a gradient
        for b in prange(B):
            d = dG[t, b]
            dYr = dY[td, b]
            car = carry[b]
            if (not use_mask) or mask[t, b]:
                dhr = dh[b]
                hr = Hs[t + 1, b]
                if act == TANH:
                    for j in range(u):
                        y = hr[j]
                        d[j] = (dhr[j] + dYr[j] + car[j]) * (_F(1.0) - y * y)
                        car[j] = 0.0
                else:
                    for j in range(u):
                        d[j] = (dhr[j] + dYr[j] + car[j]) * _dact(act, hr[j])
                        car[j] = 0.0
            else:
                _pass_masked(dYr, car, zero_masked)
                for j in range(u):
                    d[j] = 0.0
        np.dot(dG[t], UT, drec)
        _new_dh(dh, drec, mask, use_mask, t, rmask, use_rmask, drec, False)
    return dh


# ---------------------------------------------------------------------------------------- LSTM

@njit(parallel=_PARALLEL, **_OPTS)
def lstm_forward(XH, WU, h0, c0, mask, use_mask, rmask, use_rmask, ract, act, zero_masked, fast,
                 G, Hs, Cs, TC, Y):
    """Gate blocks i|f|c|o. XH (T,B,u+F(+1)): columns [u:] hold the inputs (and a ones column for the bias);
    this kernel fills [:u] with h_{t-1} (times the recurrent dropout mask), so one GEMM per step
    ``XH[t] @ [recurrent_kernel; kernel; bias]`` gives every pre-activation, and the weight gradients are
    one GEMM over all steps afterwards. G (T,B,4u) gate activations; Hs/Cs (T+1,B,u); TC (T,B,u) act(c_t);
    Y (T,B,u) outputs (masks only). Loops index 3D/4D views with loop counters only (no per-row slices,
    no signed offsets) so LLVM vectorises them."""
    T, B, G4 = G.shape
    u = G4 // 4
    Gq = G.reshape(T, B, 4, u)
    Hs[0] = h0
    Cs[0] = c0
    rec = np.empty((B, G4), G.dtype)
    recq = rec.reshape(B, 4, u)
    if T > 0:
        for b in prange(B):
            for j in range(u):
                XH[0, b, j] = h0[b, j] * rmask[b, j] if use_rmask else h0[b, j]
    for t in range(T):
        np.dot(XH[t], WU, rec)
        for b in prange(B):
            _gate_act(ract, recq, Gq, t, b, 0, fast)
            _gate_act(ract, recq, Gq, t, b, 1, fast)
            _gate_act(act, recq, Gq, t, b, 2, fast)
            _gate_act(ract, recq, Gq, t, b, 3, fast)
            for j in range(u):
                Cs[t + 1, b, j] = Gq[t, b, 1, j] * Cs[t, b, j] + Gq[t, b, 0, j] * Gq[t, b, 2, j]
            if act == TANH and fast:
                for j in range(u):
                    TC[t, b, j] = _tanh_fast(Cs[t + 1, b, j])
            else:
                for j in range(u):
                    TC[t, b, j] = _act1(act, Cs[t + 1, b, j], fast)
            for j in range(u):
                Hs[t + 1, b, j] = Gq[t, b, 3, j] * TC[t, b, j]
            _emit(Y, Hs, t, b, mask, use_mask, zero_masked, Cs, True)
            if t + 1 < T:
                if use_rmask:
                    for j in range(u):
                        XH[t + 1, b, j] = Hs[t + 1, b, j] * rmask[b, j]
                else:
                    for j in range(u):
                        XH[t + 1, b, j] = Hs[t + 1, b, j]


@njit(parallel=_PARALLEL, **_OPTS)
def lstm_backward(dY, dh_last, dc_last, carry0, G, Cs, TC, UT, mask, use_mask, rmask, use_rmask, ract, act,
                  zero_masked, dG):
    """dG (T,B,4u) receives d(gate pre-activations)."""
    T, B, G4 = G.shape
    u = G4 // 4
    Gq = G.reshape(T, B, 4, u)
    dGq = dG.reshape(T, B, 4, u)
    dh = dh_last.copy()
    dc = dc_last.copy()
    carry = carry0.copy()
    drec = np.empty((B, u), G.dtype)
    dht = np.empty((B, u), G.dtype)
    std = ract == SIGMOID and act == TANH
    for t in range(T - 1, -1, -1):
        td = t if dY.shape[0] == T else 0  # dY (1,B,u) of zeros when only the last output has a gradient
        for b in prange(B):
            if (not use_mask) or mask[t, b]:
                for j in range(u):
                    dht[b, j] = dh[b, j] + dY[td, b, j] + carry[b, j]
                if use_mask:
                    for j in range(u):
                        carry[b, j] = 0.0
                if std:
                    for j in range(u):
                        o = Gq[t, b, 3, j]
                        dGq[t, b, 3, j] = dht[b, j] * TC[t, b, j] * (o - o * o)
                    for j in range(u):
                        tc = TC[t, b, j]
                        dc[b, j] += dht[b, j] * Gq[t, b, 3, j] * (_F(1.0) - tc * tc)
                    for j in range(u):
                        i = Gq[t, b, 0, j]
                        dGq[t, b, 0, j] = dc[b, j] * Gq[t, b, 2, j] * (i - i * i)
                    for j in range(u):
                        f = Gq[t, b, 1, j]
                        dGq[t, b, 1, j] = dc[b, j] * Cs[t, b, j] * (f - f * f)
                    for j in range(u):
                        c = Gq[t, b, 2, j]
                        dGq[t, b, 2, j] = dc[b, j] * Gq[t, b, 0, j] * (_F(1.0) - c * c)
                    for j in range(u):
                        dc[b, j] *= Gq[t, b, 1, j]
                else:
                    for j in range(u):
                        o = Gq[t, b, 3, j]
                        tc = TC[t, b, j]
                        i = Gq[t, b, 0, j]
                        f = Gq[t, b, 1, j]
                        c = Gq[t, b, 2, j]
                        d = dht[b, j]
                        dGq[t, b, 3, j] = d * tc * _dact(ract, o)
                        dct = dc[b, j] + d * o * _dact(act, tc)
                        dGq[t, b, 0, j] = dct * c * _dact(ract, i)
                        dGq[t, b, 1, j] = dct * Cs[t, b, j] * _dact(ract, f)
                        dGq[t, b, 2, j] = dct * i * _dact(act, c)
                        dc[b, j] = dct * f
            else:
                for j in range(u):
                    carry[b, j] = 0.0 if zero_masked else dY[td, b, j] + carry[b, j]
                for k in range(4):
                    for j in range(u):
                        dGq[t, b, k, j] = 0.0
        if t > 0:  # the gradient of the initial state is not needed: skip the last GEMM
            np.dot(dG[t], UT, drec)
            _new_dh(dh, drec, mask, use_mask, t, rmask, use_rmask, drec, False)
    return dh, dc


# ---------------------------------------------------------------------------------------- GRU

@njit(parallel=_PARALLEL, **_OPTS)
def gru_forward_after(U, brec, h0, mask, use_mask, rmask, use_rmask, ract, act, zero_masked, fast, G, RH, Hs, Y):
    """reset_after=True (Keras 3). Blocks z|r|h. G (T,B,3u): on entry the input projection (with the input
    bias), on exit z, r, hh; RH (T,B,u) = h_{t-1} @ U_h + b_h."""
    T, B, G3 = G.shape
    u = G3 // 3
    Hs[0] = h0
    rec = np.empty((B, G3), G.dtype)
    hd = np.empty((B, u), G.dtype)
    b_h = brec[2 * u:]
    for t in range(T):
        np.dot(_recurrent_input(Hs, t, rmask, use_rmask, hd), U, rec)
        for b in prange(B):
            g = G[t, b]
            rr = rec[b]
            for k in range(2 * u):
                g[k] += rr[k] + brec[k]
            _act_range(ract, g, 0, 2 * u, fast)
            gr = g[u:2 * u]
            gh = g[2 * u:]
            rrh = rr[2 * u:]
            rh = RH[t, b]
            for j in range(u):
                rh[j] = rrh[j] + b_h[j]
            for j in range(u):
                gh[j] += gr[j] * rh[j]
            _act_range(act, g, 2 * u, 3 * u, fast)
            hp = Hs[t, b]
            hn = Hs[t + 1, b]
            for j in range(u):
                z = g[j]
                hn[j] = z * hp[j] + (_F(1.0) - z) * gh[j]
            _emit(Y, Hs, t, b, mask, use_mask, zero_masked, Hs, False)


@njit(parallel=_PARALLEL, **_OPTS)
def gru_backward_after(dY, dh_last, carry0, G, RH, Hs, UT, mask, use_mask, rmask, use_rmask, ract, act, zero_masked,
                       dX, dR):
    """dX (T,B,3u) = d(input pre-activations); dR (T,B,3u) = d(recurrent pre-activations); returns dh0."""
    T, B, G3 = G.shape
    u = G3 // 3
    dh = dh_last.copy()
    carry = carry0.copy()
    drec = np.empty((B, u), G.dtype)
    direct = np.empty((B, u), G.dtype)  # dh_{t-1} through z * h_{t-1}
    dhts = np.empty((B, u), G.dtype)
    std = ract == SIGMOID and act == TANH
    for t in range(T - 1, -1, -1):
        td = t if dY.shape[0] == T else 0  # dY (1,B,u) of zeros when only the last output has a gradient
        for b in prange(B):
            g = G[t, b]
            dx = dX[t, b]
            dr = dR[t, b]
            dYr = dY[td, b]
            car = carry[b]
            if (not use_mask) or mask[t, b]:
                gz = g[:u]
                gr = g[u:2 * u]
                gh = g[2 * u:]
                dxz = dx[:u]
                dxr = dx[u:2 * u]
                dxh = dx[2 * u:]
                drz = dr[:u]
                drr_ = dr[u:2 * u]
                drh = dr[2 * u:]
                hp = Hs[t, b]
                rh = RH[t, b]
                dhr = dh[b]
                dir_ = direct[b]
                dt_ = dhts[b]
                for j in range(u):
                    dt_[j] = dhr[j] + dYr[j] + car[j]
                if use_mask:
                    for j in range(u):
                        car[j] = 0.0
                if std:
                    for j in range(u):
                        z = gz[j]
                        dxz[j] = dt_[j] * (hp[j] - gh[j]) * (z - z * z)
                    for j in range(u):
                        hh = gh[j]
                        dxh[j] = dt_[j] * (_F(1.0) - gz[j]) * (_F(1.0) - hh * hh)
                    for j in range(u):
                        r = gr[j]
                        dxr[j] = dxh[j] * rh[j] * (r - r * r)
                else:
                    for j in range(u):
                        z = gz[j]
                        hh = gh[j]
                        dxz[j] = dt_[j] * (hp[j] - hh) * _dact(ract, z)
                        dah = dt_[j] * (_F(1.0) - z) * _dact(act, hh)
                        dxh[j] = dah
                        dxr[j] = dah * rh[j] * _dact(ract, gr[j])
                for j in range(u):
                    drz[j] = dxz[j]
                for j in range(u):
                    drr_[j] = dxr[j]
                for j in range(u):
                    drh[j] = dxh[j] * gr[j]
                for j in range(u):
                    dir_[j] = dt_[j] * gz[j]
            else:
                _pass_masked(dYr, car, zero_masked)
                for k in range(G3):
                    dx[k] = 0.0
                    dr[k] = 0.0
        np.dot(dR[t], UT, drec)
        _new_dh(dh, drec, mask, use_mask, t, rmask, use_rmask, direct, True)
    return dh


@njit(parallel=_PARALLEL, **_OPTS)
def gru_forward_before(Uzr, Uh, h0, mask, use_mask, rmask, use_rmask, ract, act, zero_masked, fast, G, RHD, Hs, Y):
    """reset_after=False (Keras 1). G (T,B,3u): on entry the input projection (with bias), on exit z, r, hh;
    RHD (T,B,u) = r * h_{t-1} (after dropout)."""
    T, B, G3 = G.shape
    u = G3 // 3
    Hs[0] = h0
    rec = np.empty((B, 2 * u), G.dtype)
    rech = np.empty((B, u), G.dtype)
    hd = np.empty((B, u), G.dtype)
    for t in range(T):
        hin = _recurrent_input(Hs, t, rmask, use_rmask, hd)
        np.dot(hin, Uzr, rec)
        for b in prange(B):
            g = G[t, b]
            rr = rec[b]
            for k in range(2 * u):
                g[k] += rr[k]
            _act_range(ract, g, 0, 2 * u, fast)
            gr = g[u:2 * u]
            rhd = RHD[t, b]
            hr = hin[b]
            for j in range(u):
                rhd[j] = gr[j] * hr[j]
        np.dot(RHD[t], Uh, rech)
        for b in prange(B):
            g = G[t, b]
            gh = g[2 * u:]
            rch = rech[b]
            for j in range(u):
                gh[j] += rch[j]
            _act_range(act, g, 2 * u, 3 * u, fast)
            hp = Hs[t, b]
            hn = Hs[t + 1, b]
            for j in range(u):
                z = g[j]
                hn[j] = z * hp[j] + (_F(1.0) - z) * gh[j]
            _emit(Y, Hs, t, b, mask, use_mask, zero_masked, Hs, False)


@njit(parallel=_PARALLEL, **_OPTS)
def gru_backward_before(dY, dh_last, carry0, G, Hs, UzrT, UhT, mask, use_mask, rmask, use_rmask, ract, act,
                        zero_masked, dX):
    """dX (T,B,3u) = d(pre-activations) [dz, dr, dh~]; returns dh0."""
    T, B, G3 = G.shape
    u = G3 // 3
    dh = dh_last.copy()
    carry = carry0.copy()
    drh = np.empty((B, u), G.dtype)
    drec = np.empty((B, u), G.dtype)
    direct = np.empty((B, u), G.dtype)
    dxh = np.empty((B, u), G.dtype)
    dzr = np.empty((B, 2 * u), G.dtype)
    for t in range(T - 1, -1, -1):
        td = t if dY.shape[0] == T else 0  # dY (1,B,u) of zeros when only the last output has a gradient
        for b in prange(B):
            g = G[t, b]
            dx = dX[t, b]
            dYr = dY[td, b]
            car = carry[b]
            if (not use_mask) or mask[t, b]:
                hp = Hs[t, b]
                dhr = dh[b]
                for j in range(u):
                    dht = dhr[j] + dYr[j] + car[j]
                    car[j] = 0.0
                    z = g[j]
                    hh = g[2 * u + j]
                    dx[j] = dht * (hp[j] - hh) * _dact(ract, z)
                    dah = dht * (_F(1.0) - z) * _dact(act, hh)
                    dx[2 * u + j] = dah
                    dxh[b, j] = dah
                    direct[b, j] = dht * z
            else:
                _pass_masked(dYr, car, zero_masked)
                for j in range(u):
                    dxh[b, j] = 0.0
                for k in range(G3):
                    dx[k] = 0.0
        np.dot(dxh, UhT, drh)  # d(r * h_{t-1})
        for b in prange(B):
            dx = dX[t, b]
            if (not use_mask) or mask[t, b]:
                g = G[t, b]
                for j in range(u):
                    hin = Hs[t, b, j] * rmask[b, j] if use_rmask else Hs[t, b, j]
                    dx[u + j] = drh[b, j] * hin * _dact(ract, g[u + j])
            for k in range(2 * u):
                dzr[b, k] = dx[k]
        np.dot(dzr, UzrT, drec)
        for b in prange(B):
            g = G[t, b]
            for j in range(u):
                drec[b, j] += drh[b, j] * g[u + j]
        _new_dh(dh, drec, mask, use_mask, t, rmask, use_rmask, direct, True)
    return dh


# ---------------------------------------------------------------------------------------- helpers

@njit(parallel=_PARALLEL, **_OPTS)
def to_batch_major(x, reverse, out):
    """(T,B,F) -> (B,T,F), optionally reversing time."""
    T, B, F = x.shape
    for b in prange(B):
        for t in range(T):
            src = T - 1 - t if reverse else t
            o = out[b, t]
            xr = x[src, b]
            for f in range(F):
                o[f] = xr[f]
