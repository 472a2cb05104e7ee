"""References of SimpleRNN, GRU (reset_after true and false) and LSTM (the fast path: one input-projection GEMM,
the time loop in a Numba kernel per direction, BPTT in another, in ``kernels/recurrent.py``).

Weights in the Keras 3 layout: ``kernel (F, k*u)``, ``recurrent_kernel (u, k*u)`` with gate blocks
LSTM i|f|c|o, GRU z|r|h. With ``h_in = h * recurrent_dropout_mask`` (the mask is ones without recurrent dropout)
and ``x_t`` already multiplied by the input dropout mask:

    SimpleRNN   h' = act(x_t W + h_in U + b)
    LSTM        i, f, o = ract(.), c~ = act(.) of the blocks of  x_t W + h_in U + b
                c' = f * c + i * c~,  h' = o * act(c')
    GRU after   (Keras 3; bias (2, 3u): row 0 input, row 1 recurrent)  a = x_t W + b[0],  q = h_in U + b[1]
                z = ract(a_z + q_z), r = ract(a_r + q_r), h~ = act(a_h + r * q_h)
    GRU before  (Keras 1)  z = ract(a_z + h_in U_z), r = ract(a_r + h_in U_r), h~ = act(a_h + (r * h_in) U_h)
                h' = z * h + (1 - z) * h~  (both GRUs)

go_backwards processes the sequence from its end (the output sequence stays in processing order). A (batch, time)
mask keeps the state at a masked step and repeats the previous output there (zeros before the first output;
zeros at every masked step with ``zero_output_for_mask``, as Bidirectional sets it).
The output is the last output (every output with return_sequences), followed by the final states with
return_state. The backward pass is backpropagation through time, step by step in reverse.
"""

from __future__ import annotations

import numpy as np

from ._maths import activation as act
from ._maths import activation_backward as dact


def _kind(config):
    if hasattr(config, "reset_after"):
        return "gru"
    return "lstm" if hasattr(config, "unit_forget_bias") else "simple"


def _bias(params, config, u, k):
    if config.use_bias:
        return params["bias"]
    return np.zeros((2, k * u)) if _kind(config) == "gru" and config.reset_after else np.zeros(k * u)


def _cell_forward(params, config, x_t, h, c, rm):
    """One step: (h', c', what the backward step needs)."""
    kind, u = _kind(config), config.units
    W, U = params["kernel"], params["recurrent_kernel"]
    ract = getattr(config, "recurrent_activation", "sigmoid")
    h_in = h * rm
    if kind == "simple":
        a = x_t @ W + h_in @ U + _bias(params, config, u, 1)
        return act(config.activation, a), c, (x_t, h, h_in, a)
    if kind == "lstm":
        a = x_t @ W + h_in @ U + _bias(params, config, u, 4)
        ai, af, ac, ao = np.split(a, 4, axis=-1)
        i, f, cbar, o = act(ract, ai), act(ract, af), act(config.activation, ac), act(ract, ao)
        c_new = f * c + i * cbar
        return o * act(config.activation, c_new), c_new, (x_t, h, h_in, c, a, c_new)
    b = _bias(params, config, u, 3)
    if config.reset_after:
        a = x_t @ W + b[0]
        q = h_in @ U + b[1]
        z = act(ract, a[:, :u] + q[:, :u])
        r = act(ract, a[:, u:2 * u] + q[:, u:2 * u])
        ah = a[:, 2 * u:] + r * q[:, 2 * u:]
        extra = q
    else:
        a = x_t @ W + b
        zr = h_in @ U[:, :2 * u]
        z = act(ract, a[:, :u] + zr[:, :u])
        r = act(ract, a[:, u:2 * u] + zr[:, u:])
        ah = a[:, 2 * u:] + (r * h_in) @ U[:, 2 * u:]
        extra = zr
    hh = act(config.activation, ah)
    return z * h + (1 - z) * hh, c, (x_t, h, h_in, a, extra, z, r, ah, hh)


def _cell_backward(params, config, saved, dh, dc, rm, grads):
    """One step back: (dh, dc of the step's input states, dx_t); weight gradients added to ``grads``."""
    kind, u = _kind(config), config.units
    W, U = params["kernel"], params["recurrent_kernel"]
    ract = getattr(config, "recurrent_activation", "sigmoid")
    if kind in ("simple", "lstm"):
        if kind == "simple":
            x_t, h, h_in, a = saved
            da = dact(config.activation, a, dh)
            dc_prev = dc
        else:
            x_t, h, h_in, c, a, c_new = saved
            ai, af, ac, ao = np.split(a, 4, axis=-1)
            i, f, cbar, o = act(ract, ai), act(ract, af), act(config.activation, ac), act(ract, ao)
            dc_total = dc + dact(config.activation, c_new, dh * o)
            da = np.concatenate([dact(ract, ai, dc_total * cbar), dact(ract, af, dc_total * c),
                                 dact(config.activation, ac, dc_total * i),
                                 dact(ract, ao, dh * act(config.activation, c_new))], axis=-1)
            dc_prev = dc_total * f
        grads["kernel"] += x_t.T @ da
        grads["recurrent_kernel"] += h_in.T @ da
        if config.use_bias:
            grads["bias"] += da.sum(axis=0)
        return (da @ U.T) * rm, dc_prev, da @ W.T
    x_t, h, h_in, a, extra, z, r, ah, hh = saved
    dz = dact(ract, a[:, :u] + extra[:, :u], dh * (h - hh))
    dah = dact(config.activation, ah, dh * (1 - z))
    direct = dh * z
    if config.reset_after:
        q = extra
        dr = dact(ract, a[:, u:2 * u] + q[:, u:2 * u], dah * q[:, 2 * u:])
        d_in = np.concatenate([dz, dr, dah], axis=-1)  # d(x_t W + b[0])
        d_rec = np.concatenate([dz, dr, dah * r], axis=-1)  # d(h_in U + b[1])
        grads["kernel"] += x_t.T @ d_in
        grads["recurrent_kernel"] += h_in.T @ d_rec
        if config.use_bias:
            grads["bias"][0] += d_in.sum(axis=0)
            grads["bias"][1] += d_rec.sum(axis=0)
        dh_in = d_rec @ U.T
    else:
        drh = dah @ U[:, 2 * u:].T  # d(r * h_in)
        dr = dact(ract, a[:, u:2 * u] + extra[:, u:], drh * h_in)
        d_in = np.concatenate([dz, dr, dah], axis=-1)
        grads["kernel"] += x_t.T @ d_in
        grads["recurrent_kernel"][:, :2 * u] += h_in.T @ d_in[:, :2 * u]
        grads["recurrent_kernel"][:, 2 * u:] += (r * h_in).T @ dah
        if config.use_bias:
            grads["bias"] += d_in.sum(axis=0)
        dh_in = d_in[:, :2 * u] @ U[:, :2 * u].T + drh * r
    return direct + dh_in * rm, dc, d_in @ W.T


def _prepare(x, config, mask, initial_states, dropout_mask, recurrent_dropout_mask):
    B, T, F = x.shape
    u = config.units
    xs = x * dropout_mask[:, None, :] if dropout_mask is not None else x
    m = np.ones((B, T), bool) if mask is None else np.asarray(mask, bool)
    if config.go_backwards:
        xs, m = xs[:, ::-1], m[:, ::-1]
    rm = recurrent_dropout_mask if recurrent_dropout_mask is not None else np.ones((B, u))
    states = initial_states or [np.zeros((B, u)), np.zeros((B, u))]
    h, c = states[0], (states[1] if len(states) > 1 else np.zeros((B, u)))
    return xs, m, rm, h, c


def _run(params, x, config, mask, initial_states, dropout_mask, recurrent_dropout_mask, zero_output_for_mask):
    xs, m, rm, h, c = _prepare(x, config, mask, initial_states, dropout_mask, recurrent_dropout_mask)
    y_prev = np.zeros_like(h)
    outputs, steps = [], []
    for t in range(xs.shape[1]):
        h_new, c_new, saved = _cell_forward(params, config, xs[:, t], h, c, rm)
        keep = m[:, t:t + 1]
        h, c = np.where(keep, h_new, h), np.where(keep, c_new, c)
        y_prev = np.where(keep, h_new, 0.0 if zero_output_for_mask else y_prev)  # masked: the previous output
        outputs.append(y_prev)
        steps.append(saved)
    return outputs, steps, h, c, m, rm


def rnn_forward(params, x, config, *, mask=None, initial_states=None, dropout_mask=None,
                recurrent_dropout_mask=None, zero_output_for_mask=False):
    """SimpleRNN, GRU or LSTM (told apart by the config). ``initial_states``: [h0] ([h0, c0] for LSTM), zeros by
    default (a stateful layer's carried state); dropout masks as drawn in training (shape (B, F) and (B, units),
    already scaled by 1/(1-rate)), or None."""
    outputs, _, h, c, _, _ = _run(params, x, config, mask, initial_states, dropout_mask, recurrent_dropout_mask,
                                  zero_output_for_mask)
    y = np.stack(outputs, axis=1) if config.return_sequences else outputs[-1]
    if not config.return_state:
        return y
    return [y, h, c] if _kind(config) == "lstm" else [y, h]


def rnn_backward(params, x, dy, config, *, mask=None, initial_states=None, dropout_mask=None,
                 recurrent_dropout_mask=None, zero_output_for_mask=False):
    """(dx, grads) for the output gradient(s) ``dy`` (a list [dy, dh, (dc)] with return_state)."""
    _, steps, _, _, m, rm = _run(params, x, config, mask, initial_states, dropout_mask, recurrent_dropout_mask,
                                 zero_output_for_mask)
    dys = dy if isinstance(dy, list) else [dy]
    B, T, u = x.shape[0], x.shape[1], config.units
    dh = np.array(dys[1]) if len(dys) > 1 else np.zeros((B, u))
    dc = np.array(dys[2]) if len(dys) > 2 else np.zeros((B, u))
    d_out = np.zeros((B, u))  # gradient reaching the output of the current step through later repeats
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    dxs = np.zeros(x.shape)
    for t in reversed(range(T)):
        g = d_out + (dys[0][:, t] if config.return_sequences else (dys[0] if t == T - 1 else 0))
        keep = m[:, t:t + 1]
        d_out = np.where(keep | zero_output_for_mask, 0.0, g)  # a masked step's output was the previous one
        # masked rows enter the step with zero gradients, so they add nothing to the weights or to dx
        dh_step, dc_step, dx_t = _cell_backward(params, config, steps[t], np.where(keep, dh + g, 0.0),
                                                np.where(keep, dc, 0.0), rm, grads)
        # a masked step kept the states: its input states receive the gradient of its output states unchanged
        dh = np.where(keep, dh_step, dh)
        dc = np.where(keep, dc_step, dc)
        dxs[:, t] = dx_t
    if config.go_backwards:
        dxs = dxs[:, ::-1]
    if dropout_mask is not None:
        dxs = dxs * dropout_mask[:, None, :]
    return dxs, grads
