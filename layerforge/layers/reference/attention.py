"""References of MultiHeadAttention (on (batch, time, features) inputs), Attention and AdditiveAttention (the fast
path: batched GEMMs over every head and position and a fused Numba masked softmax, ``kernels/layer_norm.py``).

Keras 3 layout: ``query/kernel (d_q, H, K)``, ``key/kernel (d_k, H, K)``, ``value/kernel (d_v, H, V)``, each with a
``(H, dim)`` bias, ``attention_output/kernel (H, V, d_out)`` and bias ``(d_out,)``. Per head h:

    Q = query W_q + b_q,  K = key W_k + b_k,  V = value W_v + b_v
    P = softmax over the keys of (Q K^T / sqrt(K)), masked pairs excluded (probability 0)
    y = sum_h (P V)_h W_o[h] + b_o

The inputs are [query], [query, value] or [query, value, key] (key defaults to value, value to query). The pairs
that may attend: query mask x value mask (x the key's mask when the key is a separate input), x the lower
triangle with use_causal_mask. return_attention_scores adds P (batch, H, Tq, Tk) as a second output.

Attention (Luong) and AdditiveAttention (Bahdanau) have no projections: scores ``q k^T`` (times a learned scalar
``scale``), or ``concat_score_weight * sum_d tanh(scale * (q + k))`` (score_mode concat), or additive
``sum_d scale_d * tanh(q + k)``; the softmax over the key steps excludes masked value steps (and later steps with
use_causal_mask); ``y = P value``, zero at masked query steps.
"""

from __future__ import annotations

import numpy as np


def _inputs(x, mask):
    xs = x if isinstance(x, list) else [x]
    source = [[0, 0, 0], [0, 1, 1], [0, 1, 2]][len(xs) - 1]  # the input feeding query, value, key
    masks = mask if isinstance(mask, list) else [mask] * len(xs)
    return xs, source, masks


def _keep(config, masks, source, B, Tq, Tk):
    keep = np.ones((B, Tq, Tk), bool)
    if masks[source[0]] is not None:
        keep &= masks[source[0]][:, :, None]
    if masks[source[1]] is not None:
        keep &= masks[source[1]][:, None, :]
    if source[2] != source[1] and masks[source[2]] is not None:
        keep &= masks[source[2]][:, None, :]
    if config.use_causal_mask:
        keep &= np.tril(np.ones((Tq, Tk), bool))
    return keep[:, None]  # (B, 1, Tq, Tk): the same for every head


def masked_softmax(scores, keep):
    """Softmax over the last axis among the pairs ``keep`` marks; excluded pairs (and rows with none) get 0."""
    s = np.where(keep, scores, -np.inf)  # exp(-inf) = 0
    top = s.max(axis=-1, keepdims=True)
    e = np.exp(s - np.where(np.isfinite(top), top, 0.0))
    return e / np.maximum(e.sum(axis=-1, keepdims=True), np.finfo(float).tiny)


def softmax_backward(P, dP):
    return P * (dP - (dP * P).sum(axis=-1, keepdims=True))


def _project(params, config, x, name):
    p = np.einsum("btd,dhk->bthk", x, params[f"{name}/kernel"])
    return p + params[f"{name}/bias"] if config.use_bias else p


def _attend(params, x, config, mask):
    xs, source, masks = _inputs(x, mask)
    query, value, key = (xs[i] for i in source)
    Q, K, V = (_project(params, config, a, n) for a, n in ((query, "query"), (key, "key"), (value, "value")))
    scores = np.einsum("bqhk,bthk->bhqt", Q, K) / np.sqrt(config.key_dim)
    keep = _keep(config, masks, source, query.shape[0], query.shape[1], key.shape[1])
    P = masked_softmax(scores, keep)
    O = np.einsum("bhqt,bthv->bqhv", P, V)
    return xs, source, (query, value, key), (Q, K, V), P, O


def mha_forward(params, x, config, *, mask=None):
    _, _, _, _, P, O = _attend(params, x, config, mask)
    y = np.einsum("bqhv,hvo->bqo", O, params["attention_output/kernel"])
    if config.use_bias:
        y = y + params["attention_output/bias"]
    return [y, P] if config.return_attention_scores else y


def mha_backward(params, x, dy, config, *, mask=None):
    xs, source, inputs, (Q, K, V), P, O = _attend(params, x, config, mask)
    dP = 0.0
    if config.return_attention_scores:
        dy, dP = dy
    Wo = params["attention_output/kernel"]
    grads = {"attention_output/kernel": np.einsum("bqhv,bqo->hvo", O, dy)}
    if config.use_bias:
        grads["attention_output/bias"] = dy.sum(axis=(0, 1))
    dO = np.einsum("bqo,hvo->bqhv", dy, Wo)
    dP = dP + np.einsum("bqhv,bthv->bhqt", dO, V)
    dV = np.einsum("bhqt,bqhv->bthv", P, dO)
    dS = softmax_backward(P, dP) / np.sqrt(config.key_dim)
    dQ = np.einsum("bhqt,bthk->bqhk", dS, K)
    dK = np.einsum("bhqt,bqhk->bthk", dS, Q)
    dxs = [np.zeros_like(a) for a in xs]
    for i, (name, inp, d) in zip(source, (("query", inputs[0], dQ), ("value", inputs[1], dV),
                                          ("key", inputs[2], dK)), strict=True):
        grads[f"{name}/kernel"] = np.einsum("btd,bthk->dhk", inp, d)
        if config.use_bias:
            grads[f"{name}/bias"] = d.sum(axis=(0, 1))
        dxs[i] += np.einsum("bthk,dhk->btd", d, params[f"{name}/kernel"])  # an input used twice gets the sum
    return dxs, grads


# ---------------------------------------------------------------------------------- Attention, AdditiveAttention

def _scores(params, config, q, k):
    """Scores (B, Tq, Tk) of Attention (dot or concat) or AdditiveAttention (told apart by the config)."""
    if config.type == "AdditiveAttention":
        t = np.tanh(q[:, :, None] + k[:, None])
        return (t * params["scale"] if config.use_scale else t).sum(axis=-1)
    scale = params["scale"] if config.use_scale else 1.0
    if config.score_mode == "dot":
        return scale * q @ k.transpose(0, 2, 1)
    return params["concat_score_weight"] * np.tanh(scale * (q[:, :, None] + k[:, None])).sum(axis=-1)


def _scores_backward(params, config, q, k, dS):
    """(dq, dk, grads) of the scores."""
    grads = {}
    u = q[:, :, None] + k[:, None]  # (B, Tq, Tk, D)
    if config.type == "AdditiveAttention":
        t = np.tanh(u)
        w = params["scale"] if config.use_scale else 1.0
        if config.use_scale:
            grads["scale"] = np.einsum("bij,bijd->d", dS, t)
        du = dS[..., None] * w * (1 - t ** 2)
        return du.sum(axis=2), du.sum(axis=1), grads
    scale = params["scale"] if config.use_scale else 1.0
    if config.score_mode == "dot":
        if config.use_scale:
            grads["scale"] = np.sum(dS * (q @ k.transpose(0, 2, 1))).reshape(params["scale"].shape)
        return scale * dS @ k, scale * dS.transpose(0, 2, 1) @ q, grads
    t = np.tanh(scale * u)
    grads["concat_score_weight"] = np.sum(dS * t.sum(axis=-1)).reshape(params["concat_score_weight"].shape)
    du = (dS * params["concat_score_weight"])[..., None] * (1 - t ** 2) * scale
    if config.use_scale:
        grads["scale"] = np.sum(du / scale * u).reshape(params["scale"].shape)
    return du.sum(axis=2), du.sum(axis=1), grads


def _score_attention(params, x, config, mask):
    q, v = x[0], x[1]
    k = x[2] if len(x) > 2 else v
    masks = mask if mask is not None else [None] * len(x)
    keep = np.ones((q.shape[0], q.shape[1], k.shape[1]), bool)
    if masks[1] is not None:  # as Keras: the value's mask (a key mask is not used)
        keep &= masks[1][:, None, :]
    if config.use_causal_mask:
        keep &= np.tril(np.ones(keep.shape[1:], bool))
    qkeep = masks[0][:, :, None] if masks[0] is not None else np.ones((1, 1, 1), bool)
    return q, v, k, masked_softmax(_scores(params, config, q, k), keep), qkeep


def score_attention_forward(params, x, config, *, mask=None):
    """Attention or AdditiveAttention; x = [query, value] or [query, value, key]."""
    _, v, _, P, qkeep = _score_attention(params, x, config, mask)
    y = np.where(qkeep, P @ v, 0.0)
    return [y, P] if config.return_attention_scores else y


def score_attention_backward(params, x, dy, config, *, mask=None):
    q, v, k, P, qkeep = _score_attention(params, x, config, mask)
    dP = 0.0
    if config.return_attention_scores:
        dy, dP = dy
    dy = np.where(qkeep, dy, 0.0)
    dv = P.transpose(0, 2, 1) @ dy
    dq, dk, grads = _scores_backward(params, config, q, k, softmax_backward(P, dP + dy @ v.transpose(0, 2, 1)))
    return ([dq, dv, dk] if len(x) > 2 else [dq, dv + dk]), grads
