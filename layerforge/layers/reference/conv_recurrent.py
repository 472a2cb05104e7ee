"""Reference of ConvLSTM2D (the fast path: one im2col + GEMM for the input convolution of every step, the
recurrence and its BPTT in Numba kernels, ``kernels/conv_lstm.py``).

An LSTM whose matrix products are 2D convolutions (channels_last frames, gate blocks i|f|c|o on the last axis of
``kernel (kh, kw, channels, 4f)`` and ``recurrent_kernel (kh, kw, f, 4f)``):

    a  = conv(x_t * dropout_mask, kernel; strides, dilation, padding) + bias
         + conv(h * recurrent_dropout_mask, recurrent_kernel; stride 1, padding same)
    i, f, o = ract(a_i), ract(a_f), ract(a_o);   c' = f * c + i * act(a_c);   h' = o * act(c')

A (batch, time) mask keeps h and c at a masked step, and that step's output is the kept h. go_backwards processes
the frames from the end (the output sequence stays in processing order). Output: the last h (every h with
return_sequences), then [h, c] with return_state. Backward: backpropagation through time, step by step.
"""

from __future__ import annotations

import numpy as np

from ._maths import activation as act
from ._maths import activation_backward as dact
from .convolution import conv_axis, correlate, correlate_backward


def _setup(params, x, config, mask, initial_states, dropout_mask, recurrent_dropout_mask):
    if config.data_format == "channels_first":  # (B, T, C, H, W) -> (B, T, H, W, C)
        x = np.moveaxis(x, 2, -1)
    B, T = x.shape[:2]
    k, s, d = config.kernel_size, config.strides, config.dilation_rate
    plans = [conv_axis(x.shape[2 + a], k[a], s[a], d[a], config.padding) for a in range(2)]
    out, before = tuple(p[0] for p in plans), tuple(p[1] for p in plans)
    rec_before = tuple((kk - 1) // 2 for kk in k)  # 'same' at stride 1: the odd cell of padding at the end
    xs = x * dropout_mask[:, None] if dropout_mask is not None else x
    m = np.ones((B, T), bool) if mask is None else np.asarray(mask, bool)
    if config.go_backwards:
        xs, m = xs[:, ::-1], m[:, ::-1]
    f = config.filters
    zeros = np.zeros((B, *out, f))
    h, c = (initial_states or [zeros, zeros])
    rm = recurrent_dropout_mask if recurrent_dropout_mask is not None else np.ones_like(zeros)
    return xs, m, rm, h, c, out, before, rec_before


def _gates(params, config, x_t, h_in, out, before, rec_before):
    a = correlate(x_t, params["kernel"], config.strides, config.dilation_rate, before, out)
    a = a + correlate(h_in, params["recurrent_kernel"], (1, 1), (1, 1), rec_before, out)
    return a + params["bias"] if config.use_bias else a


def _run(params, x, config, mask, initial_states, dropout_mask, recurrent_dropout_mask):
    xs, m, rm, h, c, out, before, rec_before = _setup(params, x, config, mask, initial_states, dropout_mask,
                                                      recurrent_dropout_mask)
    ract, fa = config.recurrent_activation, config.activation
    hs, steps = [], []
    for t in range(xs.shape[1]):
        a = _gates(params, config, xs[:, t], h * rm, out, before, rec_before)
        ai, af, ac, ao = np.split(a, 4, axis=-1)
        c_new = act(ract, af) * c + act(ract, ai) * act(fa, ac)
        h_new = act(ract, ao) * act(fa, c_new)
        steps.append((xs[:, t], h, c, a, c_new))
        keep = m[:, t, None, None, None]
        h, c = np.where(keep, h_new, h), np.where(keep, c_new, c)
        hs.append(h)
    return hs, steps, h, c, m, rm, out, before, rec_before


def _outputs(config, ys):
    if config.data_format == "channels_first":
        ys = [np.moveaxis(v, -1, -3) for v in ys]
    return ys


def conv_lstm_forward(params, x, config, *, mask=None, initial_states=None, dropout_mask=None,
                      recurrent_dropout_mask=None):
    """Dropout masks as the layer draws them in training ((B, rows, cols, channels) and (B, rows', cols',
    filters), scaled by 1/(1-rate)), or None; ``initial_states`` [h0, c0] channels_last (zeros by default)."""
    hs, _, h, c, *_ = _run(params, x, config, mask, initial_states, dropout_mask, recurrent_dropout_mask)
    y = np.stack(hs, axis=1) if config.return_sequences else hs[-1]
    ys = _outputs(config, [y, h, c])
    return ys if config.return_state else ys[0]


def conv_lstm_backward(params, x, dy, config, *, mask=None, initial_states=None, dropout_mask=None,
                       recurrent_dropout_mask=None):
    hs, steps, _, _, m, rm, out, before, rec_before = _run(params, x, config, mask, initial_states, dropout_mask,
                                                           recurrent_dropout_mask)
    dys = dy if isinstance(dy, list) else [dy]
    if config.data_format == "channels_first":
        dys = [np.moveaxis(v, -3, -1) for v in dys]
    T, ract, fa = len(steps), config.recurrent_activation, config.activation
    dh = dys[1].copy() if len(dys) > 1 else np.zeros_like(hs[-1])
    dc = dys[2].copy() if len(dys) > 2 else np.zeros_like(hs[-1])
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    dxs = []
    for t in reversed(range(T)):
        dh = dh + (dys[0][:, t] if config.return_sequences else (dys[0] if t == T - 1 else 0))
        x_t, h, c, a, c_new = steps[t]
        keep = m[:, t, None, None, None]
        ai, af, ac, ao = np.split(a, 4, axis=-1)
        dc_total = np.where(keep, dc + dact(fa, c_new, dh * act(ract, ao)), 0.0)
        dho = np.where(keep, dh, 0.0)
        da = np.concatenate([dact(ract, ai, dc_total * act(fa, ac)), dact(ract, af, dc_total * c),
                             dact(fa, ac, dc_total * act(ract, ai)), dact(ract, ao, dho * act(fa, c_new))], axis=-1)
        dx_t, dW = correlate_backward(x_t, params["kernel"], da, config.strides, config.dilation_rate, before)
        dh_in, dU = correlate_backward(h * rm, params["recurrent_kernel"], da, (1, 1), (1, 1), rec_before)
        grads["kernel"] += dW
        grads["recurrent_kernel"] += dU
        if config.use_bias:
            grads["bias"] += da.reshape(-1, da.shape[-1]).sum(axis=0)
        # a masked step kept h and c: their gradients pass through it unchanged
        dh = np.where(keep, dh_in * rm, dh)
        dc = np.where(keep, dc_total * act(ract, af), dc)
        dxs.append(dx_t)
    dx = np.stack(dxs[::-1], axis=1)
    if config.go_backwards:
        dx = dx[:, ::-1]
    if dropout_mask is not None:
        dx = dx * dropout_mask[:, None]
    if config.data_format == "channels_first":
        dx = np.moveaxis(dx, -1, 2)
    return dx, grads
