"""ONNX converters of the layer types beyond the Keras 1 list (InputLayer, Identity, TimeDistributedDense,
SpatialDropout, ReLU, Softmax, Layer/Group/UnitNormalization, Attention, AdditiveAttention, MultiHeadAttention,
ConvLSTM2D), registered into ``onnx_export.CONVERTERS`` when that module loads.

Normalizations are written as ReduceMean / Sqrt decompositions (exact for any axis list, and they run on every
opset from 13, where the LayerNormalization operator needs 17); attention as Einsum / MatMul, a masked softmax
(-1e9 before, 0 after, as layerforge and Keras compute it) and the output projection; ConvLSTM2D as its time steps
unrolled (the length is fixed by the config), each step two Conv operators and the LSTM gate arithmetic.
"""

from __future__ import annotations

import numpy as np

from .onnx_export import Ctx, _conv_pads, _from_first, _nd, activation, converts

_BIG_NEGATIVE = -1e9  # what a masked score becomes before the softmax (layerforge and Keras)


def _axes(c: Ctx, axis) -> list:
    n = _nd(c.shape)
    return sorted(a % n for a in (axis if isinstance(axis, list) else [axis]))


@converts("InputLayer", "Identity", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D")
def _identity(c: Ctx):
    # an InputLayer inside a graph only checks its input's shape; spatial dropout is the identity at inference
    return c.b.op("Identity", [c.x]), c.mask


@converts("TimeDistributedDense")
def _time_distributed_dense(c: Ctx):
    b, cfg = c.b, c.config
    y = b.op("MatMul", [c.x, c.w("W")])
    if cfg.use_bias:
        y = b.op("Add", [y, c.w("b")])
    return activation(b, cfg.activation, y), c.mask


@converts("ReLU")
def _relu(c: Ctx):
    b, cfg = c.b, c.config
    below = b.op("Less", [c.x, b.scalar(cfg.threshold)])
    low = b.op("Mul", [b.op("Sub", [c.x, b.scalar(cfg.threshold)]), b.scalar(cfg.negative_slope)])
    y = b.op("Where", [below, low, c.x])
    if cfg.max_value is not None:
        top = b.op("GreaterOrEqual", [c.x, b.scalar(cfg.max_value)])
        y = b.op("Where", [top, b.op("Expand", [b.scalar(cfg.max_value), b.op("Shape", [c.x])]), y])
    return y, c.mask


def _keep_shaped(b, mask: str, rank: int) -> str:
    """A (B, T) bool mask as (B, T, 1, ...) for a rank-``rank`` tensor."""
    return b.unsqueeze(mask, list(range(2, rank))) if rank > 2 else mask


def _softmax_over(b, x: str, axes: list, keep: str | None = None) -> str:
    """Softmax over ``axes`` jointly, numerically stable; ``keep`` (bool, broadcastable) marks what counts: the
    other entries take -1e9 before and 0 after."""
    if keep is not None:
        x = b.op("Where", [keep, x, b.scalar(_BIG_NEGATIVE)])
    z = b.op("Sub", [x, b.reduce("ReduceMax", x, axes, keepdims=True)])
    e = b.op("Exp", [z])
    y = b.op("Div", [e, b.reduce("ReduceSum", e, axes, keepdims=True)])
    if keep is not None:
        y = b.op("Mul", [y, b.op("Cast", [keep], to=1)])
    return y


@converts("Softmax")
def _softmax(c: Ctx):
    n = _nd(c.shape)
    keep = _keep_shaped(c.b, c.mask, n) if c.mask is not None else None  # layerforge: a (B, T) mask masks steps
    return _softmax_over(c.b, c.x, _axes(c, c.config.axis), keep), c.mask


def _param_shape(c: Ctx, axes: list) -> list:
    return [c.shape[a - 1] if a in axes else 1 for a in range(1, _nd(c.shape))]


@converts("LayerNormalization")
def _layer_norm(c: Ctx):
    b, cfg = c.b, c.config
    axes = _axes(c, cfg.axis)
    shape = _param_shape(c, axes)
    mean = b.reduce("ReduceMean", c.x, axes, keepdims=True)
    d = b.op("Sub", [c.x, mean])
    var = b.reduce("ReduceMean", b.op("Mul", [d, d]), axes, keepdims=True)
    inv = b.op("Reciprocal", [b.op("Sqrt", [b.op("Add", [var, b.scalar(cfg.epsilon)])])])
    y = b.op("Mul", [c.x if cfg.rms_scaling else d, inv])  # rms_scaling: x / sqrt(var + eps) (Keras 3)
    if "gamma" in c.weights:
        y = b.op("Mul", [y, b.const(np.asarray(c.weights["gamma"], np.float32).reshape(shape),
                                    hint=f"{c.layer.name}/gamma")])
    if "beta" in c.weights:
        y = b.op("Add", [y, b.const(np.asarray(c.weights["beta"], np.float32).reshape(shape),
                                    hint=f"{c.layer.name}/beta")])
    return y, c.mask


@converts("GroupNormalization")
def _group_norm(c: Ctx):
    b, cfg = c.b, c.config
    n = _nd(c.shape)
    a = _axes(c, cfg.axis)[0]
    if any(d is None for d in c.shape):
        raise b.fail("a variable-length axis (the groups are reshaped with fixed sizes)", "give every axis a size")
    perm = [0] + [i for i in range(1, n) if i != a] + [a]  # channels last
    xl = b.transpose(c.x, perm)
    spatial = [c.shape[i - 1] for i in perm[1:-1]]
    C, G = c.shape[a - 1], cfg.groups
    g = b.reshape(xl, [0] + spatial + [G, C // G])
    red = list(range(1, len(spatial) + 1)) + [len(spatial) + 2]  # spatial axes and the channels of a group
    mean = b.reduce("ReduceMean", g, red, keepdims=True)
    d = b.op("Sub", [g, mean])
    var = b.reduce("ReduceMean", b.op("Mul", [d, d]), red, keepdims=True)
    y = b.op("Div", [d, b.op("Sqrt", [b.op("Add", [var, b.scalar(cfg.epsilon)])])])
    y = b.reshape(y, [0] + spatial + [C])
    if cfg.scale:
        y = b.op("Mul", [y, c.w("gamma")])
    if cfg.center:
        y = b.op("Add", [y, c.w("beta")])
    return b.transpose(y, [perm.index(i) for i in range(n)]), c.mask


@converts("UnitNormalization")
def _unit_norm(c: Ctx):
    b = c.b
    ss = b.reduce("ReduceSum", b.op("Mul", [c.x, c.x]), _axes(c, c.config.axis), keepdims=True)
    r = b.op("Min", [b.op("Reciprocal", [b.op("Sqrt", [ss])]), b.scalar(1e12)])  # x * min(1/||x||, 1e12)
    return b.op("Mul", [c.x, r]), c.mask


# ---------------------------------------------------------------------- attention

def _keep_matrix(b, q_mask, v_mask, causal: bool, q: str, k: str, tq, tk) -> str | None:
    """(B, Tq, Tk) bool of the pairs that may attend (or broadcastable to it), None when all may."""
    keep = None
    if q_mask is not None:
        keep = b.unsqueeze(q_mask, [2])
    if v_mask is not None:
        vm = b.unsqueeze(v_mask, [1])
        keep = vm if keep is None else b.op("And", [keep, vm])
    if causal:
        if tq is None or tk is None:
            raise b.fail("use_causal_mask with a variable number of steps", "give the inputs a fixed length")
        tri = b.const(np.tril(np.ones((tq, tk), dtype=bool))[None], np.bool_, hint="causal")
        keep = tri if keep is None else b.op("And", [keep, tri])
    return keep


def _score_outputs(c: Ctx, y: str, p: str):
    q_mask = c.masks[0]
    if c.config.return_attention_scores:
        return [y, p], [q_mask, None]
    return y, q_mask


def _score_attention(c: Ctx, scores: str, q: str, v: str, k_steps):
    """softmax over the key steps (value and causal masks) -> @ value -> masked query steps 0."""
    b = c.b
    v_mask = c.masks[1]
    keep = _keep_matrix(b, None, v_mask, c.config.use_causal_mask, q, None, c.shapes[0][0], k_steps)
    p = _softmax_over(b, scores, [2], keep)
    y = b.op("MatMul", [p, v])
    if c.masks[0] is not None:
        y = b.op("Mul", [y, b.op("Cast", [b.unsqueeze(c.masks[0], [2])], to=1)])
    return _score_outputs(c, y, p)


def _qvk(c: Ctx):
    q, v = c.xs[0], c.xs[1]
    k = c.xs[2] if len(c.xs) > 2 else v
    k_steps = (c.shapes[2] if len(c.xs) > 2 else c.shapes[1])[0]
    return q, v, k, k_steps


@converts("Attention")
def _attention(c: Ctx):
    b, cfg = c.b, c.config
    q, v, k, k_steps = _qvk(c)
    if cfg.score_mode == "dot":
        s = b.op("MatMul", [q, b.transpose(k, [0, 2, 1])])
        if cfg.use_scale:
            s = b.op("Mul", [s, c.w("scale")])
    else:  # concat: w * sum(tanh(scale * (q_i + k_j)))
        u = b.op("Add", [b.unsqueeze(q, [2]), b.unsqueeze(k, [1])])
        if cfg.use_scale:
            u = b.op("Mul", [u, c.w("scale")])
        s = b.op("Mul", [b.reduce("ReduceSum", b.op("Tanh", [u]), [3], keepdims=False), c.w("concat_score_weight")])
    return _score_attention(c, s, q, v, k_steps)


@converts("AdditiveAttention")
def _additive_attention(c: Ctx):
    b = c.b
    q, v, k, k_steps = _qvk(c)
    t = b.op("Tanh", [b.op("Add", [b.unsqueeze(q, [2]), b.unsqueeze(k, [1])])])  # (B, Tq, Tk, D)
    if c.config.use_scale:
        t = b.op("Mul", [t, c.w("scale")])
    s = b.reduce("ReduceSum", t, [3], keepdims=False)
    return _score_attention(c, s, q, v, k_steps)


_LETTERS = "abcfgijlmnpqrstuvwxyz"  # free einsum letters (h: heads, d / e: key / value features, o...: output)


@converts("MultiHeadAttention")
def _mha(c: Ctx):
    b, cfg, layer = c.b, c.config, c.layer
    n_in = len(c.xs)
    src = [0, 0, 0] if n_in == 1 else ([0, 1, 1] if n_in == 2 else [0, 1, 2])
    q_in, v_in, k_in = (c.xs[i] for i in src)
    q_shape, k_shape = c.shapes[src[0]], c.shapes[src[2]]
    rank = len(q_shape) + 1  # with the batch axis
    attn = layer._attention_axes(rank)  # axes of the input (batch counted) attention runs over
    batch_like = [a for a in range(rank - 1) if a not in attn]
    letters = iter(_LETTERS)
    names = {a: next(letters) for a in batch_like}
    qa = {a: next(letters) for a in attn}
    ka = {a: next(letters) for a in attn}
    q_sub = "".join(qa.get(a, names.get(a)) for a in range(rank - 1))
    k_sub = "".join(ka.get(a, names.get(a)) for a in range(rank - 1))
    head = "".join(names[a] for a in batch_like)
    q_att, k_att = "".join(qa[a] for a in attn), "".join(ka[a] for a in attn)

    def project(x, part):
        kernel = np.asarray(c.weights[f"{part}/kernel"], np.float32)  # (features, heads, dim)
        y = b.op("Einsum", [x, b.const(kernel, hint=f"{layer.name}/{part}/kernel")], equation="...f,fhd->...hd")
        if cfg.use_bias:
            y = b.op("Add", [y, c.w(f"{part}/bias")])
        return y

    Kd = cfg.key_dim
    Q = b.op("Mul", [project(q_in, "query"), b.scalar(1.0 / np.sqrt(Kd))])
    K = project(k_in, "key")
    V = project(v_in, "value")
    scores = b.op("Einsum", [Q, K], equation=f"{q_sub}hd,{k_sub}hd->{head}h{q_att}{k_att}")
    masks = c.masks if c.masks else [None] * n_in
    q_mask, v_mask = masks[src[0]], masks[src[1]]
    if src[2] != src[1] and masks[src[2]] is not None:  # Keras: the key's mask counts when key is not value
        v_mask = masks[src[2]] if v_mask is None else b.op("And", [v_mask, masks[src[2]]])
    keep = None
    if q_mask is not None or v_mask is not None or cfg.use_causal_mask:
        if rank != 3:
            raise b.fail("masks or use_causal_mask on inputs that are not (batch, steps, features)")
        keep = _keep_matrix(b, q_mask, v_mask, cfg.use_causal_mask, None, None, q_shape[0], k_shape[0])
        keep = b.unsqueeze(keep, [1])  # heads
    n_scores = 1 + len(batch_like) - 1 + 1 + 2 * len(attn)  # batch, others, heads, query axes, key axes
    k_axes = list(range(n_scores - len(attn), n_scores))
    P = _softmax_over(b, scores, k_axes, keep)
    O = b.op("Einsum", [P, V], equation=f"{head}h{q_att}{k_att},{k_sub}he->{q_sub}he")
    Wo = np.asarray(c.weights["attention_output/kernel"], np.float32)  # (heads, value dim, *output dims)
    out_letters = "".join(next(letters) for _ in range(Wo.ndim - 2))
    y = b.op("Einsum", [O, b.const(Wo, hint=f"{layer.name}/attention_output/kernel")],
             equation=f"...he,he{out_letters}->...{out_letters}")
    if cfg.use_bias:
        y = b.op("Add", [y, c.w("attention_output/bias")])
    if cfg.return_attention_scores:
        return [y, P], [q_mask, None]
    return y, q_mask


# ---------------------------------------------------------------------- ConvLSTM2D

@converts("ConvLSTM2D")
def _conv_lstm(c: Ctx):
    b, cfg, layer = c.b, c.config, c.layer
    if c.mask is not None:
        raise b.fail("a mask on its time steps (the unrolled steps have no mask input)")
    first = cfg.data_format == "channels_first"
    T = c.shape[0]
    if T is None:
        raise b.fail("a variable number of time steps (the steps are unrolled)", "give the input a fixed length")
    spatial = list(c.shape[2:4]) if first else list(c.shape[1:3])
    f = cfg.filters
    kh, kw = cfg.kernel_size
    kernel = np.asarray(c.weights["kernel"], np.float32)  # (kh, kw, in, 4f)
    rec = np.asarray(c.weights["recurrent_kernel"], np.float32)  # (kh, kw, f, 4f)
    w_in = b.const(np.transpose(kernel, (3, 2, 0, 1)), hint=f"{layer.name}/kernel")
    w_rec = b.const(np.transpose(rec, (3, 2, 0, 1)), hint=f"{layer.name}/recurrent_kernel")
    pads = _conv_pads(c, spatial, cfg.kernel_size, cfg.strides, cfg.dilation_rate, cfg.padding)
    rlo = [(kh - 1) // 2, (kw - 1) // 2]
    rpads = rlo + [kh - 1 - rlo[0], kw - 1 - rlo[1]]
    out = layer.output_shape(c.shape)
    ys = out[0] if cfg.return_state else out
    out_hw = list(ys[-2:] if first else ys[-3:-1])
    # (B, T, ...) -> (T, B, C, H, W): one slice per step
    xt = b.transpose(c.x, [1, 0, 2, 3, 4] if first else [1, 0, 4, 2, 3])
    steps = b.split(xt, [1] * T, axis=0)
    if cfg.go_backwards:
        steps = steps[::-1]
    zeros = b.const(np.zeros((1, f, *out_hw), np.float32), hint=f"{layer.name}/zeros")
    # h0 = c0 = 0 with the batch size of the input
    batch_zero = b.op("Mul", [b.reduce("ReduceSum", b.op("Mul", [b.squeeze(steps[0], [0]), b.scalar(0.0)]),
                                       [1, 2, 3], keepdims=True), zeros])
    h, cs = batch_zero, batch_zero
    hs = []
    bias = [c.w("bias")] if cfg.use_bias else []
    for xs in steps:
        ins = [b.squeeze(xs, [0]), w_in] + bias
        zx = b.op("Conv", ins, kernel_shape=[kh, kw], strides=list(cfg.strides), dilations=list(cfg.dilation_rate),
                  pads=pads)
        zh = b.op("Conv", [h, w_rec], kernel_shape=[kh, kw], strides=[1, 1], pads=rpads)
        z = b.op("Add", [zx, zh])
        zi, zf, zc, zo = b.split(z, [f] * 4, axis=1)
        i = activation(b, cfg.recurrent_activation, zi)
        fg = activation(b, cfg.recurrent_activation, zf)
        o = activation(b, cfg.recurrent_activation, zo)
        cs = b.op("Add", [b.op("Mul", [fg, cs]), b.op("Mul", [i, activation(b, cfg.activation, zc)])])
        h = b.op("Mul", [o, activation(b, cfg.activation, cs)])
        hs.append(h)

    def layout(t: str, seq: bool) -> str:  # (B, C, H, W) or (T, B, C, H, W) back to the layer's layout
        if seq:
            return b.transpose(t, [1, 0, 2, 3, 4] if first else [1, 0, 3, 4, 2])
        return _from_first(b, t, 4, first)

    if cfg.return_sequences:
        y = layout(b.concat([b.unsqueeze(t, [0]) for t in hs], axis=0), True)
    else:
        y = layout(h, False)
    if cfg.return_state:
        return [y, layout(h, False), layout(cs, False)], [None, None, None]
    return y, None
