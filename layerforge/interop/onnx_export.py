"""Export a layerforge model to ONNX with standard operators only.

The graph is written with the ``onnx`` package's helpers. Every layer type has one converter in ``CONVERTERS``
(keyed by the canonical layer type); a type without one, or a configuration a converter cannot express, raises
``cannot_export`` naming the layer, so nothing is ever dropped silently. A converter receives the ONNX names of its
inputs (batch axis first, the layerforge layout) and their masks, and returns its outputs and their masks.

Layout: layerforge is channels_last by default and ONNX's convolution and pooling operators are channels_first, so
those layers transpose around the operator. Recurrent layers use the ONNX LSTM / GRU / RNN operators (gate order
and ``linear_before_reset`` converted from Keras 3's layout) when no mask reaches them and their activations are
ones the operator has; otherwise they run as a ``Scan`` over time steps with the step written out in operators
(masked steps keep the state, as in Keras 3).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import cannot_export, ensure_package

DEFAULT_OPSET = 17
MIN_OPSET = 13
FMT = "ONNX"


# ====================================================================== graph builder

@dataclass
class Builder:
    """Collects nodes and initializers; hands out unique tensor names."""

    opset: int
    onnx: object
    nodes: list = field(default_factory=list)
    initializers: list = field(default_factory=list)
    used: set = field(default_factory=set)
    layer: object = None  # the layer being converted (for error messages)

    def fresh(self, hint: str) -> str:
        base = "".join(ch if ch.isalnum() or ch in "_/.-" else "_" for ch in hint) or "t"
        name, k = base, 0
        while name in self.used:
            k += 1
            name = f"{base}_{k}"
        self.used.add(name)
        return name

    def op(self, op_type: str, inputs: list, n_out: int = 1, hint: str | None = None, **attrs):
        outs = [self.fresh(f"{hint or op_type}") for _ in range(n_out)]
        self.nodes.append(self.onnx.helper.make_node(op_type, [i if i is not None else "" for i in inputs], outs,
                                                     name=self.fresh("n_" + (hint or op_type)), **attrs))
        return outs[0] if n_out == 1 else outs

    def const(self, value, dtype=np.float32, hint: str = "const") -> str:
        arr = np.asarray(value, dtype=dtype)
        name = self.fresh(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(arr.copy(order="C"), name))
        return name

    def ints(self, values, hint: str = "shape") -> str:
        return self.const(np.asarray(values, dtype=np.int64).reshape(-1), np.int64, hint)

    # -- operators whose signature changed between opsets
    def reduce(self, kind: str, x: str, axes, keepdims: bool) -> str:
        axes = [int(a) for a in axes]
        if kind == "ReduceSum" or self.opset >= 18:
            return self.op(kind, [x, self.ints(axes, "axes")], keepdims=int(keepdims))
        return self.op(kind, [x], axes=axes, keepdims=int(keepdims))

    def unsqueeze(self, x: str, axes) -> str:
        return self.op("Unsqueeze", [x, self.ints(list(axes), "axes")])

    def squeeze(self, x: str, axes) -> str:
        return self.op("Squeeze", [x, self.ints(list(axes), "axes")])

    def slice(self, x: str, starts, ends, axes, steps=None) -> str:
        ins = [x, self.ints(starts, "starts"), self.ints(ends, "ends"), self.ints(axes, "axes")]
        if steps is not None:
            ins.append(self.ints(steps, "steps"))
        return self.op("Slice", ins)

    def transpose(self, x: str, perm) -> str:
        perm = [int(p) for p in perm]
        if perm == sorted(perm):
            return x
        return self.op("Transpose", [x], perm=perm)

    def reshape(self, x: str, shape) -> str:
        return self.op("Reshape", [x, self.ints(shape)])

    def split(self, x: str, sizes, axis: int) -> list:
        outs = self.op("Split", [x, self.ints(sizes, "split")], n_out=len(sizes), axis=axis)
        return outs if isinstance(outs, list) else [outs]

    def concat(self, xs: list, axis: int) -> str:
        return xs[0] if len(xs) == 1 else self.op("Concat", xs, axis=axis)

    def scalar(self, v: float) -> str:
        return self.const(np.float32(v), hint="scalar")

    def fail(self, reason: str, hint: str | None = None):
        layer = self.layer
        return cannot_export(FMT, layer.type, layer.name, reason, hint)


# ====================================================================== activations

def activation(b: Builder, name: str | None, x: str) -> str:
    """The Keras activation ``name`` applied to ``x``."""
    if name in (None, "linear"):
        return x
    simple = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softplus": "Softplus", "softsign": "Softsign",
              "exponential": "Exp"}
    if name in simple:
        return b.op(simple[name], [x])
    if name == "relu6":
        return b.op("Clip", [x, b.scalar(0.0), b.scalar(6.0)])
    if name == "elu":
        return b.op("Elu", [x], alpha=1.0)
    if name == "selu":
        return b.op("Selu", [x], alpha=1.6732632423543772, gamma=1.0507009873554805)
    if name == "gelu":  # exact form: 0.5 x (1 + erf(x / sqrt 2))
        e = b.op("Erf", [b.op("Mul", [x, b.scalar(1 / math.sqrt(2))])])
        return b.op("Mul", [b.op("Mul", [x, b.scalar(0.5)]), b.op("Add", [e, b.scalar(1.0)])])
    if name == "hard_sigmoid":
        return b.op("HardSigmoid", [x], alpha=1 / 6, beta=0.5)
    if name == "hard_sigmoid_keras1":
        return b.op("HardSigmoid", [x], alpha=0.2, beta=0.5)
    if name == "softmax":
        return b.op("Softmax", [x], axis=-1)
    if name == "log_softmax":
        return b.op("LogSoftmax", [x], axis=-1)
    if name in ("swish", "silu"):
        return b.op("Mul", [x, b.op("Sigmoid", [x])])
    if name == "leaky_relu":
        return b.op("LeakyRelu", [x], alpha=0.2)
    if name == "mish":
        return b.op("Mul", [x, b.op("Tanh", [b.op("Softplus", [x])])])
    if name == "hard_silu":
        return b.op("Mul", [x, b.op("HardSigmoid", [x], alpha=1 / 6, beta=0.5)])
    raise b.fail(f"activation '{name}' has no ONNX form here")


# ====================================================================== per-layer conversion

@dataclass
class Ctx:
    """What a converter gets: the builder, the layer, its weights, input names, shapes and masks."""

    b: Builder
    layer: object
    weights: dict  # name -> array (trainable and non-trainable)
    xs: list  # ONNX names
    shapes: list  # per-sample shapes (batch axis excluded)
    masks: list  # ONNX names of (B, T) bool masks, or None

    @property
    def x(self) -> str:
        return self.xs[0]

    @property
    def shape(self):
        return self.shapes[0]

    @property
    def mask(self):
        return self.masks[0]

    @property
    def config(self):
        return self.layer.config

    def w(self, name: str) -> str:
        return self.b.const(np.asarray(self.weights[name], dtype=np.float32), hint=f"{self.layer.name}/{name}")


Converter = Callable[[Ctx], tuple]
CONVERTERS: dict[str, Converter] = {}


def converts(*types: str):
    def deco(fn):
        for t in types:
            CONVERTERS[t] = fn
        return fn
    return deco


def convert_layer(b: Builder, layer, weights: dict, xs: list, shapes: list, masks: list) -> tuple[list, list]:
    """Convert one layer; returns (output names, output masks)."""
    conv = CONVERTERS.get(layer.type)
    outer = b.layer
    b.layer = layer
    try:
        if conv is None:
            raise b.fail("no ONNX mapping exists for this layer type",
                         "remove the layer, or replace it with layers that can be exported")
        ys, ms = conv(Ctx(b, layer, weights, xs, shapes, masks))
    finally:
        b.layer = outer
    ys = ys if isinstance(ys, list) else [ys]
    ms = ms if isinstance(ms, list) else [ms] * len(ys)
    return ys, ms


def _pass_mask(c: Ctx):
    return c.mask if c.layer.supports_masking else None


def _nd(shape) -> int:
    return len(shape) + 1  # with the batch axis


# ---------------------------------------------------------------------- core

@converts("Dense")
def _dense(c: Ctx):
    b, cfg = c.b, c.config
    y = b.op("MatMul", [c.x, c.w("kernel")])
    if cfg.use_bias:
        y = b.op("Add", [y, c.w("bias")])
    return activation(b, cfg.activation, y), _pass_mask(c)


@converts("Activation")
def _activation(c: Ctx):
    return activation(c.b, c.config.activation, c.x), c.mask


@converts("Dropout", "GaussianNoise", "GaussianDropout", "ActivityRegularization")
def _identity(c: Ctx):
    # inference form: these layers change nothing outside training (the penalty is a training term)
    return c.b.op("Identity", [c.x]), c.mask


@converts("Flatten")
def _flatten(c: Ctx):
    x = c.x
    if c.config.data_format == "channels_first" and len(c.shape) > 1:
        n = _nd(c.shape)
        x = c.b.transpose(x, [0] + list(range(2, n)) + [1])
    return c.b.reshape(x, [0, -1]), None


@converts("Reshape")
def _reshape(c: Ctx):
    target = list(c.config.target_shape)
    return c.b.reshape(c.x, [0] + target), None


@converts("Permute")
def _permute(c: Ctx):
    return c.b.transpose(c.x, [0] + list(c.config.dims)), None


@converts("RepeatVector")
def _repeat(c: Ctx):
    b = c.b
    x = b.unsqueeze(c.x, [1])
    return b.op("Tile", [x, b.ints([1, c.config.n, 1])]), None


@converts("Masking")
def _masking(c: Ctx):
    b = c.b
    ne = b.op("Not", [b.op("Equal", [c.x, b.scalar(c.config.mask_value)])])
    keep = b.reduce("ReduceMax", b.op("Cast", [ne], to=1), [-1], keepdims=True)  # any(x != value) over features
    y = b.op("Mul", [c.x, keep])
    mask = b.op("Cast", [b.squeeze(keep, [-1])], to=9)
    return y, mask


@converts("Highway")
def _highway(c: Ctx):
    b, cfg = c.b, c.config
    zt = b.op("MatMul", [c.x, c.w("carry_kernel")])
    zh = b.op("MatMul", [c.x, c.w("kernel")])
    if cfg.use_bias:
        zt = b.op("Add", [zt, c.w("carry_bias")])
        zh = b.op("Add", [zh, c.w("bias")])
    t = b.op("Sigmoid", [zt])
    h = activation(b, cfg.activation, zh)
    return b.op("Add", [c.x, b.op("Mul", [t, b.op("Sub", [h, c.x])])]), None


@converts("MaxoutDense")
def _maxout(c: Ctx):
    b, cfg = c.b, c.config
    kernel = np.asarray(c.weights["kernel"], np.float32)  # (k, in, u)
    k, n_in, u = kernel.shape
    flat = b.const(kernel.transpose(1, 0, 2).reshape(n_in, k * u), hint=f"{c.layer.name}/kernel")
    z = b.reshape(b.op("MatMul", [c.x, flat]), [0, k, u])
    if cfg.use_bias:
        z = b.op("Add", [z, c.w("bias")])
    return b.reduce("ReduceMax", z, [1], keepdims=False), None


# ---------------------------------------------------------------------- advanced activations

@converts("LeakyReLU")
def _leaky(c: Ctx):
    return c.b.op("LeakyRelu", [c.x], alpha=float(c.config.negative_slope)), c.mask


@converts("ELU")
def _elu(c: Ctx):
    return c.b.op("Elu", [c.x], alpha=float(c.config.alpha)), c.mask


@converts("ThresholdedReLU")
def _thresholded(c: Ctx):
    return c.b.op("ThresholdedRelu", [c.x], alpha=float(c.config.theta)), c.mask


@converts("PReLU")
def _prelu(c: Ctx):
    b = c.b
    # max(x, 0) + alpha * min(x, 0) (ONNX PRelu is the same function)
    return b.op("PRelu", [c.x, c.w("alpha")]), c.mask


@converts("ParametricSoftplus")
def _psoftplus(c: Ctx):
    b = c.b
    return b.op("Mul", [c.w("alphas"), b.op("Softplus", [b.op("Mul", [c.w("betas"), c.x])])]), c.mask


@converts("SReLU")
def _srelu(c: Ctx):
    b = c.b
    tl, al, ar = c.w("t_left"), c.w("a_left"), c.w("a_right")
    tr = b.op("Add", [tl, b.op("Abs", [c.w("t_right")])])
    left = b.op("LessOrEqual", [c.x, tl])
    right = b.op("GreaterOrEqual", [c.x, tr])
    yl = b.op("Add", [tl, b.op("Mul", [al, b.op("Sub", [c.x, tl])])])
    yr = b.op("Add", [tr, b.op("Mul", [ar, b.op("Sub", [c.x, tr])])])
    return b.op("Where", [left, yl, b.op("Where", [right, yr, c.x])]), c.mask


# ---------------------------------------------------------------------- normalization

@converts("BatchNormalization")
def _batchnorm(c: Ctx):
    b, cfg = c.b, c.config
    n = _nd(c.shape)
    axes = cfg.axis if isinstance(cfg.axis, list) else [cfg.axis]
    axes = sorted(a % n for a in axes)
    bshape = [c.shape[a - 1] if a in axes else 1 for a in range(1, n)]
    mean = np.asarray(c.weights["moving_mean"], np.float64).reshape(bshape)
    var = np.asarray(c.weights["moving_variance"], np.float64).reshape(bshape)
    gamma = np.asarray(c.weights["gamma"], np.float64).reshape(bshape) if cfg.scale else 1.0
    beta = np.asarray(c.weights["beta"], np.float64).reshape(bshape) if cfg.center else 0.0
    # inference form folded into one scale and shift per feature (what BatchNormalization computes at test time)
    scale = gamma / np.sqrt(var + cfg.epsilon)
    shift = beta - mean * scale
    y = b.op("Add", [b.op("Mul", [c.x, b.const(np.broadcast_to(scale, bshape), hint=f"{c.layer.name}/scale")]),
                     b.const(np.broadcast_to(shift, bshape), hint=f"{c.layer.name}/shift")])
    return y, c.mask


# ---------------------------------------------------------------------- merge

@converts("Merge")
def _merge(c: Ctx):
    b, mode = c.b, c.config.mode
    xs = c.xs
    if mode in ("sum", "ave"):
        y = xs[0]
        for v in xs[1:]:
            y = b.op("Add", [y, v])
        if mode == "ave":
            y = b.op("Mul", [y, b.scalar(1.0 / len(xs))])
    elif mode == "subtract":
        y = b.op("Sub", xs[:2])
    elif mode == "mul":
        y = xs[0]
        for v in xs[1:]:
            y = b.op("Mul", [y, v])
    elif mode in ("max", "min"):
        y = b.op("Max" if mode == "max" else "Min", xs)
    elif mode == "concat":
        ax = c.layer._concat_axis([tuple(s) for s in c.shapes]) + 1
        y = b.op("Concat", xs, axis=ax)
    else:
        y = _merge_dot(c, mode)
    return y, _merge_mask(c, mode)


def _merge_dot(c: Ctx, mode: str) -> str:
    b = c.b
    s1, s2 = (tuple(s) for s in c.shapes)
    a1, a2 = c.layer._dot_axes([s1, s2])
    xr = [d for i, d in enumerate(s1) if i != a1]
    yr = [d for i, d in enumerate(s2) if i != a2]
    if any(d is None for d in xr + yr) or s1[a1] is None:
        raise b.fail("dot/cos merge of inputs with a variable length")
    k = s1[a1]
    xm = b.transpose(c.xs[0], [0] + [i + 1 for i in range(len(s1)) if i != a1] + [a1 + 1])
    xm = b.reshape(xm, [0, math.prod(xr), k])
    ym = b.transpose(c.xs[1], [0, a2 + 1] + [i + 1 for i in range(len(s2)) if i != a2])
    ym = b.reshape(ym, [0, k, math.prod(yr)])
    d = b.op("MatMul", [xm, ym])
    if mode == "cos":
        from ..layers.merge import EPSILON

        nx = b.op("Sqrt", [b.reduce("ReduceSum", b.op("Mul", [xm, xm]), [2], keepdims=True)])  # (B, P, 1)
        ny = b.op("Sqrt", [b.reduce("ReduceSum", b.op("Mul", [ym, ym]), [1], keepdims=True)])  # (B, 1, Q)
        norm = b.op("Mul", [nx, ny])
        norm = b.op("Where", [b.op("Greater", [norm, b.scalar(EPSILON)]), norm, b.scalar(EPSILON)])
        d = b.op("Div", [d, norm])
    out = xr + yr
    return b.reshape(d, [0] + (out if out else [1]))


def _merge_mask(c: Ctx, mode: str):
    b = c.b
    masks = c.masks
    if mode in ("dot", "cos") or all(m is None for m in masks):
        return None
    if mode != "concat":
        out = None
        for m in masks:
            if m is not None:
                out = m if out is None else b.op("And", [out, m])
        return out
    # concat (Keras 3): masks expanded to their input's shape (missing = all true), joined, any over trailing axes
    mask_ndim = 1 + 1  # (B, T) masks only in layerforge
    full = []
    for x, s, m in zip(c.xs, c.shapes, masks):
        ones = b.op("Cast", [b.op("Equal", [x, x])], to=1)  # shaped like x (1.0 for finite values)
        ones = b.op("Cast", [b.op("Greater", [b.op("Add", [b.op("Mul", [ones, b.scalar(0.0)]), b.scalar(1.0)]),
                                             b.scalar(0.0)])], to=1)
        if m is None:
            full.append(ones)
        else:
            mf = b.op("Cast", [m], to=1)
            mf = b.unsqueeze(mf, list(range(mask_ndim, _nd(s)))) if _nd(s) > mask_ndim else mf
            full.append(b.op("Mul", [ones, mf]))
    ax = c.layer._concat_axis([tuple(s) for s in c.shapes]) + 1
    joined = b.op("Concat", full, axis=ax)
    n = _nd(c.shapes[0])
    if n > mask_ndim:
        joined = b.reduce("ReduceMax", joined, list(range(mask_ndim, n)), keepdims=False)
    return b.op("Cast", [joined], to=9)


# ---------------------------------------------------------------------- embedding

@converts("Embedding")
def _embedding(c: Ctx):
    b = c.b
    idx = b.op("Cast", [c.x], to=7)
    y = b.op("Gather", [c.w("embeddings"), idx], axis=0)
    mask = b.op("Not", [b.op("Equal", [idx, b.const(np.int64(0), np.int64)])]) if c.config.mask_zero else None
    return y, mask


# ---------------------------------------------------------------------- reshaping

def _spatial_axes(c: Ctx, rank: int) -> tuple[list, bool]:
    """Axes (with batch) of the spatial dims, and whether channels come first."""
    first = getattr(c.config, "data_format", "channels_last") == "channels_first"
    return (list(range(2, 2 + rank)) if first else list(range(1, 1 + rank))), first


def _pairs(value, rank):
    """Normalized (before, after) per spatial axis from a layer's padding/cropping field."""
    if rank == 1 and len(value) == 2 and all(isinstance(v, int) for v in value):
        return [(int(value[0]), int(value[1]))]
    out = []
    for v in value:
        out.append((int(v[0]), int(v[1])) if isinstance(v, (list, tuple)) else (int(v), int(v)))
    assert len(out) == rank
    return out


@converts("ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D")
def _zeropad(c: Ctx):
    b = c.b
    rank = int(c.layer.type[-2])
    axes, _ = _spatial_axes(c, rank)
    pads = _pairs(c.config.padding, rank)
    n = _nd(c.shape)
    begin, end = [0] * n, [0] * n
    for a, (lo, hi) in zip(axes, pads):
        begin[a], end[a] = lo, hi
    return b.op("Pad", [c.x, b.ints(begin + end)], mode="constant"), None


@converts("Cropping1D", "Cropping2D", "Cropping3D")
def _crop(c: Ctx):
    b = c.b
    rank = int(c.layer.type[-2])
    axes, _ = _spatial_axes(c, rank)
    crops = _pairs(c.config.cropping, rank)
    starts, ends = [], []
    for a, (lo, hi) in zip(axes, crops):
        n = c.shape[a - 1]
        if n is None and hi:
            ends.append(-hi)
        else:
            ends.append((n - hi) if n is not None else np.iinfo(np.int64).max)
        starts.append(lo)
    return b.slice(c.x, starts, ends, axes), None


@converts("UpSampling1D", "UpSampling2D", "UpSampling3D")
def _upsample(c: Ctx):
    b = c.b
    rank = int(c.layer.type[-2])
    axes, _ = _spatial_axes(c, rank)
    size = c.config.size if isinstance(c.config.size, (list, tuple)) else [c.config.size] * rank
    scales = [1.0] * _nd(c.shape)
    for a, s in zip(axes, size):
        scales[a] = float(s)
    if getattr(c.config, "interpolation", "nearest") == "bilinear":
        y = b.op("Resize", [c.x, "", b.const(scales, hint="scales")], mode="linear",
                 coordinate_transformation_mode="half_pixel")
    else:
        y = b.op("Resize", [c.x, "", b.const(scales, hint="scales")], mode="nearest",
                 coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    return y, None


# ---------------------------------------------------------------------- convolution

def _to_first(b: Builder, x: str, n: int, first: bool) -> str:
    return x if first else b.transpose(x, [0, n - 1] + list(range(1, n - 1)))


def _from_first(b: Builder, x: str, n: int, first: bool) -> str:
    return x if first else b.transpose(x, [0] + list(range(2, n)) + [1])


def _conv_pads(c: Ctx, spatial, k, s, d, padding) -> list:
    from ..layers.convolution import conv_length

    lo, hi = [], []
    for n, kk, ss, dd in zip(spatial, k, s, d):
        k_eff = (kk - 1) * dd + 1
        if padding == "valid":
            lo.append(0)
            hi.append(0)
            continue
        if padding == "causal":
            lo.append(k_eff - 1)
            hi.append(0)
            continue
        if n is None:
            raise c.b.fail("padding 'same' with a variable spatial length", "give the input a fixed length")
        out, before = conv_length(n, kk, ss, dd, padding)
        total = max((out - 1) * ss + k_eff - n, 0)
        lo.append(before)
        hi.append(total - before)
    return lo + hi


def _spatial_shape(c: Ctx, rank: int):
    axes, first = _spatial_axes(c, rank)
    return [c.shape[a - 1] for a in axes], first


@converts("Conv1D", "Conv2D", "Conv3D")
def _conv(c: Ctx):
    b, cfg = c.b, c.config
    rank = int(c.layer.type[-2])
    spatial, first = _spatial_shape(c, rank)
    n = rank + 2
    kernel = np.asarray(c.weights["kernel"], np.float32)  # (*k, in/groups, out)
    w = np.transpose(kernel, [rank + 1, rank] + list(range(rank)))  # (out, in/groups, *k)
    pads = _conv_pads(c, spatial, cfg.kernel_size, cfg.strides, cfg.dilation_rate, cfg.padding)
    x = _to_first(b, c.x, n, first)
    ins = [x, b.const(w, hint=f"{c.layer.name}/kernel")]
    if cfg.use_bias:
        ins.append(c.w("bias"))
    y = b.op("Conv", ins, kernel_shape=list(cfg.kernel_size), strides=list(cfg.strides),
             dilations=list(cfg.dilation_rate), pads=pads, group=int(getattr(cfg, "groups", 1) or 1))
    y = _from_first(b, y, n, first)
    return activation(b, cfg.activation, y), None


def _depthwise_kernel(kernel: np.ndarray, rank: int) -> np.ndarray:
    """Keras' depthwise kernel (*k, C, mult) as an ONNX grouped-Conv weight (C*mult, 1, *k): output channel
    c*mult + m uses input channel c."""
    chans, mult = kernel.shape[-2], kernel.shape[-1]
    w = kernel.reshape(kernel.shape[:rank] + (chans * mult,))
    return np.transpose(w, [rank] + list(range(rank)))[:, None]


@converts("DepthwiseConv1D", "DepthwiseConv2D")
def _depthwise(c: Ctx):
    b, cfg = c.b, c.config
    rank = int(c.layer.type[-2])
    spatial, first = _spatial_shape(c, rank)
    n = rank + 2
    kernel = np.asarray(c.weights["kernel"], np.float32)  # (*k, C, mult)
    chans = kernel.shape[-2]
    w = _depthwise_kernel(kernel, rank)
    pads = _conv_pads(c, spatial, cfg.kernel_size, cfg.strides, cfg.dilation_rate, cfg.padding)
    x = _to_first(b, c.x, n, first)
    ins = [x, b.const(w, hint=f"{c.layer.name}/kernel")]
    if cfg.use_bias:
        ins.append(c.w("bias"))
    y = b.op("Conv", ins, kernel_shape=list(cfg.kernel_size), strides=list(cfg.strides),
             dilations=list(cfg.dilation_rate), pads=pads, group=int(chans))
    return activation(b, cfg.activation, _from_first(b, y, n, first)), None


@converts("SeparableConv1D", "SeparableConv2D")
def _separable(c: Ctx):
    b, cfg = c.b, c.config
    rank = int(c.layer.type[-2])
    spatial, first = _spatial_shape(c, rank)
    n = rank + 2
    dk = np.asarray(c.weights["depthwise_kernel"], np.float32)  # (*k, C, mult)
    pk = np.asarray(c.weights["pointwise_kernel"], np.float32)  # (*1, C*mult, out)
    chans = dk.shape[-2]
    wd = _depthwise_kernel(dk, rank)
    wp = np.transpose(pk, [rank + 1, rank] + list(range(rank)))  # (out, C*mult, *1)
    pads = _conv_pads(c, spatial, cfg.kernel_size, cfg.strides, cfg.dilation_rate, cfg.padding)
    x = _to_first(b, c.x, n, first)
    y = b.op("Conv", [x, b.const(wd, hint=f"{c.layer.name}/depthwise")], kernel_shape=list(cfg.kernel_size),
             strides=list(cfg.strides), dilations=list(cfg.dilation_rate), pads=pads, group=int(chans))
    ins = [y, b.const(wp, hint=f"{c.layer.name}/pointwise")]
    if cfg.use_bias:
        ins.append(c.w("bias"))
    y = b.op("Conv", ins, kernel_shape=[1] * rank)
    return activation(b, cfg.activation, _from_first(b, y, n, first)), None


@converts("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")
def _conv_transpose(c: Ctx):
    b, cfg, layer = c.b, c.config, c.layer
    rank = int(layer.type[-11])
    spatial, first = _spatial_shape(c, rank)
    if any(d is None for d in spatial):
        raise b.fail("a transposed convolution of an input with a variable spatial length",
                     "give the input a fixed length")
    n = rank + 2
    kernel = np.asarray(c.weights["kernel"], np.float32)  # (*k, filters, in)
    w = np.transpose(kernel, [rank + 1, rank] + list(range(rank)))  # (in, filters, *k)
    lo, hi, extra = [], [], []
    for axis, size in enumerate(spatial):
        out, pad = layer._axis_padding(axis, size, tuple(c.shape))
        kk, ss, dd = cfg.kernel_size[axis], cfg.strides[axis], cfg.dilation_rate[axis]
        full = ss * (size - 1) + (kk - 1) * dd + 1
        end = full - pad - out
        lo.append(pad)
        hi.append(max(end, 0))
        extra.append(max(-end, 0))
    x = _to_first(b, c.x, n, first)
    y = b.op("ConvTranspose", [x, b.const(w, hint=f"{layer.name}/kernel")], kernel_shape=list(cfg.kernel_size),
             strides=list(cfg.strides), dilations=list(cfg.dilation_rate), pads=lo + hi)
    if any(extra):  # outputs past the last input's reach: zeros (then the bias)
        y = b.op("Pad", [y, b.ints([0, 0] + [0] * rank + [0, 0] + extra)], mode="constant")
    if cfg.use_bias:
        y = b.op("Add", [y, b.const(np.asarray(c.weights["bias"], np.float32).reshape((-1,) + (1,) * rank),
                                    hint=f"{layer.name}/bias")])
    return activation(b, cfg.activation, _from_first(b, y, n, first)), None


# ---------------------------------------------------------------------- pooling

@converts("MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
          "AveragePooling3D")
def _pool(c: Ctx):
    b, cfg = c.b, c.config
    rank = int(c.layer.type[-2])
    spatial, first = _spatial_shape(c, rank)
    n = rank + 2
    size = list(cfg.pool_size)
    strides = list(cfg.strides) if cfg.strides is not None else size
    pads = _conv_pads(c, spatial, size, strides, [1] * rank, cfg.padding)
    x = _to_first(b, c.x, n, first)
    if c.layer.type.startswith("Max"):
        y = b.op("MaxPool", [x], kernel_shape=size, strides=strides, pads=pads)
    else:  # Keras averages over the valid (unpadded) cells only
        y = b.op("AveragePool", [x], kernel_shape=size, strides=strides, pads=pads, count_include_pad=0)
    return _from_first(b, y, n, first), None


@converts("GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D", "GlobalAveragePooling1D",
          "GlobalAveragePooling2D", "GlobalAveragePooling3D")
def _global_pool(c: Ctx):
    b, cfg = c.b, c.config
    rank = int(c.layer.type[-2])
    axes, _ = _spatial_axes(c, rank)
    keep = bool(getattr(cfg, "keepdims", False))
    is_max = "Max" in c.layer.type
    if c.mask is not None and rank == 1 and not is_max:
        m = b.op("Cast", [c.mask], to=1)
        first = axes[0] == 2
        mx = b.unsqueeze(m, [1] if first else [2])
        s = b.reduce("ReduceSum", b.op("Mul", [c.x, mx]), axes, keepdims=keep)
        cnt = b.op("Max", [b.reduce("ReduceSum", mx, axes, keepdims=keep), b.scalar(1.0)])
        return b.op("Div", [s, cnt]), None
    # the maximum ignores a mask, as in Keras 3
    return b.reduce("ReduceMax" if is_max else "ReduceMean", c.x, axes, keepdims=keep), None


# ---------------------------------------------------------------------- locally connected

@converts("LocallyConnected1D", "LocallyConnected2D")
def _local(c: Ctx):
    b, cfg, layer = c.b, c.config, c.layer
    rank = int(layer.type[-2])
    first = rank == 2 and cfg.data_format == "channels_first"
    shape = list(c.shape)
    x = c.x
    kernel = np.asarray(c.weights["kernel"], np.float32)  # (P, patch, f)
    positions, patch, f = kernel.shape
    # im2col as one Gather: index [p, j] is the flat position (in the input's layout) of element j of patch p
    ids = np.arange(math.prod(shape)).reshape(shape)
    win = layer._windows(ids[None])  # the layer's own patch order
    idx = np.asarray(win).reshape(positions, patch).astype(np.int64)
    flat = b.reshape(x, [0, -1])
    cols = b.op("Gather", [flat, b.const(idx, np.int64, hint=f"{layer.name}/patches")], axis=1)  # (B, P, patch)
    cols = b.transpose(cols, [1, 0, 2])
    z = b.transpose(b.op("MatMul", [cols, c.w("kernel")]), [1, 0, 2])  # (B, P, f)
    out = list(np.asarray(win).shape[1:1 + rank])  # output positions; z is channels_last
    z = b.reshape(z, [0] + out + [f])
    if first:
        z = b.transpose(z, [0, 3, 1, 2])
        if cfg.use_bias:
            z = b.op("Add", [z, b.const(np.asarray(c.weights["bias"], np.float32).reshape([f] + out),
                                        hint=f"{layer.name}/bias")])
    elif cfg.use_bias:
        z = b.op("Add", [z, c.w("bias")])
    return activation(b, cfg.activation, z), None


# ---------------------------------------------------------------------- lambda (safe expressions)

@converts("Lambda")
def _lambda(c: Ctx):
    from .onnx_expressions import expression_to_onnx

    layer = c.layer
    if layer.config.expression is None:
        raise c.b.fail("it runs Python code (`function:`), which ONNX cannot carry",
                       "write the computation as an `expression:`")
    index = layer._name_index(c.shapes if len(c.xs) > 1 else c.shape)
    y = expression_to_onnx(c.b, layer.expression, {name: c.xs[k] for name, k in index.items()},
                           {name: tuple(c.shapes[k]) for name, k in index.items()})
    out_shape = layer.output_shape(c.shapes if len(c.xs) > 1 else c.shape)
    mask = None
    if any(m is not None for m in c.masks):
        ms = [m for m in c.masks if m is not None]
        mask = ms[0] if all(tuple(s) == tuple(out_shape) for s in c.shapes) else None
    return y, mask


# ---------------------------------------------------------------------- wrappers and containers

@converts("TimeDistributed")
def _time_distributed(c: Ctx):
    b, layer = c.b, c.layer
    inner = layer.inner
    T = c.shape[0]
    inner_shape = tuple(c.shape[1:])
    x = b.reshape(c.x, [-1] + [d if d is not None else 0 for d in inner_shape]) if all(
        d is not None for d in inner_shape) else None
    if x is None:
        raise b.fail("TimeDistributed over inputs with variable inner sizes")
    ys, _ = convert_layer(b, inner, c.weights, [x], [inner_shape], [None])
    out_inner = inner.output_shape(inner_shape)
    if any(d is None for d in out_inner):
        raise b.fail("TimeDistributed whose inner layer has a variable output size")
    # (B*T, ...) back to (B, T, ...): B from the input's shape
    shape_in = b.op("Shape", [c.x])
    bt = b.slice(shape_in, [0], [2], [0])
    if T is not None:
        bt = b.op("Concat", [b.slice(shape_in, [0], [1], [0]), b.ints([T])], axis=0)
    target = b.op("Concat", [bt, b.ints(list(out_inner))], axis=0)
    return b.op("Reshape", [ys[0], target]), c.mask


@converts("Sequential")
def _sequential(c: Ctx):
    x, shape, mask = c.x, tuple(c.shape), c.mask
    for inner in c.layer.inner:
        head = inner.name + "/"
        w = {k[len(head):]: v for k, v in c.weights.items() if k.startswith(head)}
        ys, ms = convert_layer(c.b, inner, w, [x], [shape], [mask])
        x, mask = ys[0], ms[0]
        shape = tuple(inner.output_shape(shape))
    return x, mask


@converts("Bidirectional")
def _bidirectional(c: Ctx):
    b, layer = c.b, c.layer
    seq = layer.config.layer.return_sequences
    results = []
    for key, sub in layer._layers:
        head = key + "/"
        w = {k[len(head):]: v for k, v in c.weights.items() if k.startswith(head)}
        ys, _ = convert_layer(b, sub, w, [c.x], [tuple(c.shape)], [c.mask])
        results.append(ys)
    (yf, *sf), (yb, *sb) = results
    if seq:
        yb = b.slice(yb, [-1], [np.iinfo(np.int64).min], [1], [-1])
    mode = layer.config.merge_mode
    if mode is None:
        merged = [yf, yb]
    elif mode == "concat":
        merged = [b.op("Concat", [yf, yb], axis=-1)]
    elif mode == "sum":
        merged = [b.op("Add", [yf, yb])]
    elif mode == "mul":
        merged = [b.op("Mul", [yf, yb])]
    else:
        merged = [b.op("Mul", [b.op("Add", [yf, yb]), b.scalar(0.5)])]
    outs = merged + sf + sb
    out_mask = c.mask if seq else None
    masks = [out_mask] * len(merged) + [None] * (len(outs) - len(merged))
    return outs, masks


# ---------------------------------------------------------------------- recurrent

from .onnx_recurrent import recurrent_converter  # noqa: E402  (needs the helpers above)

for _t in ("SimpleRNN", "LSTM", "GRU"):
    CONVERTERS[_t] = recurrent_converter


# ====================================================================== the model

def _dtype_code(onnx, dtype: str) -> int:
    return {"float32": onnx.TensorProto.FLOAT, "float64": onnx.TensorProto.DOUBLE, "int32": onnx.TensorProto.INT32,
            "int64": onnx.TensorProto.INT64}[dtype]


def export_onnx(model, path=None, *, opset: int = DEFAULT_OPSET, batch_size: int | None = None,
                check: bool = True):
    """Build the ONNX model of a layerforge ``api.Model``; write it to ``path`` (atomically) when given.

    Returns the ``onnx.ModelProto``. Raises ``ExportError`` for a layer ONNX cannot express."""
    onnx = ensure_package("onnx", FMT)
    from onnx import helper

    from .. import __version__

    max_opset = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= max_opset:
        from . import ExportError

        raise ExportError(f"--opset {opset} is not supported: choose {MIN_OPSET} to {max_opset}")
    graph = model.graph
    fixed = graph.batch_size
    for node in graph.nodes:
        for layer in _with_sublayers(node.layer):
            if getattr(layer.config, "stateful", False):
                raise cannot_export(FMT, layer.type, node.name if layer is node.layer else f"{node.name}/{layer.name}",
                                    "it is stateful (it carries its state from one call to the next), and an ONNX "
                                    "graph keeps no state between runs",
                                    "set stateful: false for the export; the weights are the same")
    b = Builder(opset=opset, onnx=onnx)
    batch_dim = batch_size or fixed or "batch"
    values: dict = {}
    masks: dict = {}
    inputs = []
    for inp in graph.inputs:
        name = b.fresh(inp.name)
        dims = [batch_dim] + [d if d is not None else f"{inp.name}_dim{i + 1}" for i, d in enumerate(inp.shape)]
        inputs.append(helper.make_tensor_value_info(name, _dtype_code(onnx, inp.dtype), dims))
        x = name
        if inp.dtype == "float64":
            x = b.op("Cast", [name], to=onnx.TensorProto.FLOAT)
        values[(inp.name, 0)] = x
        masks[(inp.name, 0)] = None
    weights = {}
    for node_name, spec, arr in model.compiled.weight_items():
        weights.setdefault(node_name, {})[spec.name] = arr
    for node in graph.nodes:
        xs = [values[r] for r in node.inputs]
        shapes = [tuple(model.graph.shape_of(r)) for r in node.inputs]
        ms = [masks[r] for r in node.inputs]
        ys, out_masks = convert_layer(b, node.layer, weights.get(node.name, {}), xs, shapes, ms)
        for k, (y, m) in enumerate(zip(ys, out_masks)):
            values[(node.name, k)] = y
            masks[(node.name, k)] = m
    outputs = []
    from ..engine.inference import output_keys

    for key, ref in zip(output_keys(graph), graph.outputs):
        src = values[ref]
        name = b.fresh(key)
        b.nodes.append(helper.make_node("Identity", [src], [name], name=b.fresh("n_out")))
        shape = graph.shape_of(ref)
        dims = [batch_dim] + [d if d is not None else f"{key}_dim{i + 1}" for i, d in enumerate(shape)]
        outputs.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, dims))
    g = helper.make_graph(b.nodes, model.spec.config.name or "layerforge", inputs, outputs, b.initializers)
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="layerforge",
                              producer_version=__version__)
    # the oldest IR version that carries this opset, so older runtimes open the file too
    proto.ir_version = helper.find_min_ir_version_for(list(proto.opset_import))
    _metadata(onnx, proto, model)
    if check:
        onnx.checker.check_model(proto, full_check=True)
    if path is not None:
        from ..io.atomic import atomic_write_bytes

        atomic_write_bytes(path, proto.SerializeToString())
    return proto


def _with_sublayers(layer):
    """The layer and every layer a wrapper or container holds."""
    yield layer
    subs = []
    inner = getattr(layer, "inner", None)
    if inner is not None:
        subs += inner if isinstance(inner, list) else [inner]
    subs += [sub for _, sub in getattr(layer, "_layers", ())]
    for sub in subs:
        yield from _with_sublayers(sub)


def _metadata(onnx, proto, model) -> None:
    """Class labels (a classifier's training labels) and the input/output description, as metadata_props."""
    import json

    meta = {"layerforge_config_name": model.spec.config.name or ""}
    labels = {}
    for key, enc in (model.encoders or {}).items():
        classes = (enc or {}).get("classes") if isinstance(enc, dict) else None
        if classes is not None:
            labels[key] = [c if isinstance(c, (str, int, float)) else str(c) for c in classes]
    if labels:
        meta["class_labels"] = json.dumps(labels)
        if len(labels) == 1:
            meta["classes"] = ",".join(str(v) for v in next(iter(labels.values())))
    if model.feature_names:
        meta["feature_names"] = json.dumps(list(model.feature_names))
    onnx.helper.set_model_props(proto, meta)


# the converters of the layer types beyond the Keras 1 list register themselves into CONVERTERS
from . import onnx_extra_layers as _extra_layers  # noqa: E402,F401
