"""Export a layerforge model as a Keras 3 ``.keras`` archive: config.json + metadata.json + model.weights.h5.

The archive is what ``keras.Model.save`` writes for a Functional model: a zip whose config.json holds the model's
serialized layers (``{"module", "class_name", "config", "registered_name", "build_config", "name",
"inbound_nodes"}`` each) and whose model.weights.h5 holds each layer's variables under
``layers/<snake_case class name, numbered>/vars/<i>`` in the order Keras lists the layers (recomputed here the way
``keras.src.ops.function.map_graph`` does, so the numbering matches what Keras expects when it loads).

Every layer type has one converter in ``CONVERTERS``. Layers Keras 3 kept map to themselves; layers it dropped are
written as exact compositions of Keras 3 layers (Merge -> Add/Concatenate/..., MaxoutDense -> Dense + Reshape +
GlobalMaxPooling1D, Highway -> two Dense + Subtract/Multiply/Add, ...), and a layer with no exact form is named in
a clear error. No Python code is ever written into the archive (Keras' Lambda stores bytecode, so layerforge's
Lambda is one of the exceptions).
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import cannot_export, ensure_package

FMT = "Keras 3 (.keras)"
KERAS_VERSION = "3.5.0"  # the archive layout written here is the one Keras 3.x reads (3.0 onwards)
_POLICY = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": None}

# layerforge activation names Keras 3 has under the same name
KERAS_ACTIVATIONS = {"linear", "relu", "relu6", "elu", "selu", "gelu", "sigmoid", "hard_sigmoid", "tanh", "softmax",
                     "log_softmax", "softplus", "softsign", "swish", "silu", "exponential", "leaky_relu", "mish",
                     "hard_silu"}


def snake_case(name: str) -> str:
    """keras.src.utils.naming.to_snake_case."""
    import re

    intermediate = re.sub("(.)([A-Z][a-z0-9]+)", r"\1_\2", name)
    insecure = re.sub("([a-z])([A-Z])", r"\1_\2", intermediate).lower()
    if insecure[0] != "_":
        return insecure
    return "private" + insecure


# ====================================================================== keras layers being written

@dataclass
class KLayer:
    """One Keras layer: its serialized form and its variables (path inside the layer -> list of arrays)."""

    class_name: str
    config: dict
    weights: dict = field(default_factory=dict)  # e.g. {"vars": [k, b]} or {"cell/vars": [...]}
    module: str = "keras.layers"
    inputs: list = field(default_factory=list)  # [(layer name, node, tensor)] when in the functional graph
    input_shapes: list = field(default_factory=list)
    n_outputs: int = 1
    build_shape: object = None

    @property
    def name(self) -> str:
        return self.config["name"]

    def serialize(self, nested: bool = False) -> dict:
        cfg = {"name": self.config["name"], "trainable": self.config.get("trainable", True), "dtype": _POLICY}
        cfg.update({k: v for k, v in self.config.items() if k not in ("name", "trainable")})
        out = {"module": self.module, "class_name": self.class_name, "config": cfg, "registered_name": None}
        if self.build_shape is not None:
            out["build_config"] = {"input_shape": self.build_shape}
        if not nested:
            out["name"] = self.name
            args = [_tensor(ref, shape) for ref, shape in zip(self.inputs, self.input_shapes)]
            out["inbound_nodes"] = [] if self.class_name == "InputLayer" else \
                [{"args": [args if len(args) > 1 or self.class_name in _LIST_INPUT else args[0]], "kwargs": {}}]
        return out


# merge layers whose values Keras 3 computes differently when their inputs carry masks (keras.src.layers.merging)
_MASK_ALTERED = {"Multiply", "Maximum", "Minimum"}
_LIST_INPUT = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot"}


def _tensor(ref, shape) -> dict:
    return {"class_name": "__keras_tensor__",
            "config": {"shape": [None] + list(shape), "dtype": "float32", "keras_history": list(ref)}}


def masked_refs(model) -> set:
    """The (node, output) pairs that carry a mask, found by one forward pass of a zero batch (only whether a
    mask is there matters, not its values)."""
    graph = model.graph
    batch = graph.batch_size or 1
    xs = [np.zeros((batch,) + tuple(1 if d is None else d for d in inp.shape), dtype=inp.dtype)
          for inp in graph.inputs]
    _, _, tape = model.compiled.forward(xs, training=False, keep=True)
    return {ref for ref, m in tape.masks.items() if m is not None}


class KBuilder:
    """The Functional graph being written."""

    def __init__(self, batch: int | None = None):
        self.layers: list[KLayer] = []
        self.names: set = set()
        self.layer = None  # the layerforge layer being converted (errors)
        self.batch = batch  # fixed batch size (stateful models) or None
        self.masked = False  # whether a mask reaches the layer being converted

    def fresh(self, base: str) -> str:
        name, k = base, 0
        while name in self.names:
            k += 1
            name = f"{base}_{k}"
        self.names.add(name)
        return name

    def add(self, class_name: str, name: str, config: dict, inputs: list, shapes: list, weights=None,
            n_outputs: int = 1, module: str = "keras.layers") -> list:
        """Append a layer called on ``inputs`` (refs); returns its output refs."""
        if class_name in _MASK_ALTERED and self.masked:
            raise self.fail(f"it needs a Keras 3 {class_name} on an input that carries a mask, and Keras 3's "
                            f"{class_name} skips masked entries and ORs the masks, where layerforge combines every "
                            "entry and ANDs them: the outputs would differ at masked steps",
                            "put the merge before the Masking / Embedding(mask_zero), or export to ONNX")
        kl = KLayer(class_name, {"name": self.fresh(name), **config}, weights or {}, module, list(inputs),
                    [tuple(s) for s in shapes], n_outputs)
        bt = self.batch
        kl.build_shape = ([[bt] + list(s) for s in shapes] if class_name in _LIST_INPUT or len(shapes) > 1
                          else [bt] + list(shapes[0])) if shapes else None
        self.layers.append(kl)
        return [(kl.name, 0, k) for k in range(n_outputs)]

    def fail(self, reason: str, hint: str | None = None):
        return cannot_export(FMT, self.layer.type, self.layer.name, reason, hint)


# ====================================================================== per-layer conversion

@dataclass
class KCtx:
    b: KBuilder
    layer: object
    weights: dict
    xs: list  # refs
    shapes: list
    name: str

    @property
    def config(self):
        return self.layer.config

    @property
    def shape(self):
        return self.shapes[0]

    def w(self, name: str) -> np.ndarray:
        return np.asarray(self.weights[name], np.float32)

    def add(self, class_name, config, inputs=None, shapes=None, weights=None, n_outputs=1, suffix=""):
        return self.b.add(class_name, self.name + suffix, config, self.xs if inputs is None else inputs,
                          self.shapes if shapes is None else shapes, weights, n_outputs)


# A converter returns the output refs. A "single" converter instead returns one KLayer (config + weights, not yet
# placed in the graph) and can then also be used inside TimeDistributed, Bidirectional and Sequential.
Converter = Callable[[KCtx], list]
SINGLE: dict[str, Callable] = {}
CONVERTERS: dict[str, Converter] = {}


def single(*types: str):
    def deco(fn):
        for t in types:
            SINGLE[t] = fn
        return fn
    return deco


def composed(*types: str):
    def deco(fn):
        for t in types:
            CONVERTERS[t] = fn
        return fn
    return deco


def keras_activation(b: KBuilder, name: str | None, where: str = "activation") -> str:
    name = name or "linear"
    if name in KERAS_ACTIVATIONS:
        return name
    if name == "hard_sigmoid_keras1":  # outside recurrent layers it is written as a composition (convert_layer)
        raise b.fail(f"{where} hard_sigmoid_keras1 (Keras 1's 0.2x + 0.5) is not a Keras 3 activation, and a "
                     "recurrent layer's activations cannot be replaced by layers",
                     "Keras 3's hard_sigmoid is x/6 + 0.5; retrain with recurrent_activation: hard_sigmoid or sigmoid")
    raise b.fail(f"{where} '{name}' is not a Keras 3 activation")


def single_layer(b: KBuilder, layer, weights: dict, shape) -> KLayer:
    """The one Keras layer for a layerforge layer (used inside wrappers); error if it needs several."""
    fn = SINGLE.get(layer.type)
    outer = b.layer
    b.layer = layer
    try:
        if fn is None:
            if layer.type in CONVERTERS:
                raise b.fail("inside a wrapper it would need several Keras layers, which a wrapper cannot hold")
            raise b.fail("Keras 3 has no such layer and no exact composition of Keras 3 layers is known")
        kl = fn(KCtx(b, layer, weights, [], [shape], layer.name))
    finally:
        b.layer = outer
    return kl


_RECURRENT = ("SimpleRNN", "LSTM", "GRU")


def _keras1_hard_sigmoid(b: KBuilder, layer, weights: dict, xs: list, shapes: list, name: str) -> list:
    """A layer with Keras 1's hard sigmoid (0.2x + 0.5, clipped): the layer without activation, then the affine
    map 0.2x + 0.5 (BatchNormalization in inference form) and ReLU(max_value=1) for the clip."""
    import copy

    out_shape = tuple(layer.output_shape(shapes if len(shapes) > 1 else shapes[0]))
    refs = xs
    if layer.type != "Activation":
        linear = copy.copy(layer)
        linear.config = layer.config.model_copy(update={"activation": "linear"})
        refs = convert_layer(b, linear, weights, xs, shapes, f"{name}_preactivation")
    c = KCtx(b, layer, weights, refs, [out_shape], name)
    scale = np.full((1,) * (len(out_shape) - 1) + (out_shape[-1],), 0.2, np.float32)
    z = _affine(c, scale, np.full_like(scale, 0.5), refs, out_shape, "_slope")
    return c.add("ReLU", {"max_value": 1.0, "negative_slope": 0.0, "threshold": 0.0}, inputs=z, shapes=[out_shape])


def convert_layer(b: KBuilder, layer, weights: dict, xs: list, shapes: list, name: str) -> list:
    outer = b.layer
    b.layer = layer
    try:
        if getattr(layer.config, "activation", None) == "hard_sigmoid_keras1" and layer.type not in _RECURRENT:
            return _keras1_hard_sigmoid(b, layer, weights, xs, shapes, name)
        if layer.type in CONVERTERS:  # a composition (when a type has both, the composition covers more cases)
            return CONVERTERS[layer.type](KCtx(b, layer, weights, xs, shapes, name))
        if layer.type in SINGLE:
            kl = SINGLE[layer.type](KCtx(b, layer, weights, xs, shapes, name))
            refs = b.add(kl.class_name, name, {k: v for k, v in kl.config.items() if k != "name"}, xs, shapes,
                         kl.weights, n_outputs=layer.num_outputs(), module=kl.module)
            return refs
        raise b.fail("Keras 3 has no such layer and no exact composition of Keras 3 layers is known")
    finally:
        b.layer = outer


def _k(class_name: str, config: dict, weights: list | dict | None = None, module: str = "keras.layers") -> KLayer:
    tree = weights if isinstance(weights, dict) else {"vars": list(weights or [])}
    return KLayer(class_name, dict(config), tree, module)


def _trainable(c: KCtx) -> dict:
    return {"trainable": bool(c.config.trainable)}


# ---------------------------------------------------------------------- core

@single("Dense")
def _dense(c: KCtx):
    cfg = c.config
    ws = [c.w("kernel")] + ([c.w("bias")] if cfg.use_bias else [])
    return _k("Dense", {"name": c.name, **_trainable(c), "units": cfg.units,
                        "activation": keras_activation(c.b, cfg.activation), "use_bias": cfg.use_bias}, ws)


@single("Activation")
def _activation(c: KCtx):
    return _k("Activation", {"name": c.name, "activation": keras_activation(c.b, c.config.activation)})


@single("Dropout")
def _dropout(c: KCtx):
    cfg = c.config
    return _k("Dropout", {"name": c.name, "rate": cfg.rate, "noise_shape": cfg.noise_shape, "seed": cfg.seed})


@single("GaussianNoise")
def _gnoise(c: KCtx):
    return _k("GaussianNoise", {"name": c.name, "stddev": c.config.stddev, "seed": getattr(c.config, "seed", None)})


@single("GaussianDropout")
def _gdropout(c: KCtx):
    return _k("GaussianDropout", {"name": c.name, "rate": c.config.rate, "seed": getattr(c.config, "seed", None)})


@single("ActivityRegularization")
def _actreg(c: KCtx):
    return _k("ActivityRegularization", {"name": c.name, "l1": c.config.l1, "l2": c.config.l2})


@single("Flatten")
def _flatten(c: KCtx):
    return _k("Flatten", {"name": c.name, "data_format": c.config.data_format})


@single("Reshape")
def _reshape(c: KCtx):
    return _k("Reshape", {"name": c.name, "target_shape": list(c.config.target_shape)})


@single("Permute")
def _permute(c: KCtx):
    return _k("Permute", {"name": c.name, "dims": list(c.config.dims)})


@single("RepeatVector")
def _repeat(c: KCtx):
    return _k("RepeatVector", {"name": c.name, "n": c.config.n})


@single("Masking")
def _masking(c: KCtx):
    return _k("Masking", {"name": c.name, "mask_value": c.config.mask_value})


@composed("Highway")
def _highway(c: KCtx):
    """y = x + t * (h - x), t = sigmoid(x W_c + b_c), h = act(x W + b): two Dense, Subtract, Multiply, Add."""
    cfg = c.config
    s = c.shape
    bias = cfg.use_bias
    h = c.add("Dense", {"units": s[-1], "activation": keras_activation(c.b, cfg.activation), "use_bias": bias},
              weights={"vars": [c.w("kernel")] + ([c.w("bias")] if bias else [])}, suffix="_transform")
    t = c.add("Dense", {"units": s[-1], "activation": "sigmoid", "use_bias": bias},
              weights={"vars": [c.w("carry_kernel")] + ([c.w("carry_bias")] if bias else [])}, suffix="_gate")
    d = c.add("Subtract", {}, inputs=[h[0], c.xs[0]], shapes=[s, s], suffix="_delta")
    m = c.add("Multiply", {}, inputs=[t[0], d[0]], shapes=[s, s], suffix="_gated")
    return c.add("Add", {}, inputs=[c.xs[0], m[0]], shapes=[s, s])


@composed("MaxoutDense")
def _maxout(c: KCtx):
    """max over k pieces of x W_k + b_k: Dense(k * units) -> Reshape((k, units)) -> GlobalMaxPooling1D."""
    cfg = c.config
    kernel = c.w("kernel")  # (k, in, u)
    k, n_in, u = kernel.shape
    ws = [kernel.transpose(1, 0, 2).reshape(n_in, k * u)]
    if cfg.use_bias:
        ws.append(c.w("bias").reshape(k * u))
    z = c.add("Dense", {"units": k * u, "activation": "linear", "use_bias": cfg.use_bias}, weights={"vars": ws},
              suffix="_pieces")
    r = c.add("Reshape", {"target_shape": [k, u]}, inputs=z, shapes=[(k * u,)], suffix="_split")
    return c.add("GlobalMaxPooling1D", {"data_format": "channels_last", "keepdims": False}, inputs=r,
                 shapes=[(k, u)])


# ---------------------------------------------------------------------- advanced activations

@single("LeakyReLU")
def _leaky(c: KCtx):
    return _k("LeakyReLU", {"name": c.name, "negative_slope": c.config.negative_slope})


@single("ELU")
def _elu(c: KCtx):
    return _k("ELU", {"name": c.name, "alpha": c.config.alpha})


@single("ThresholdedReLU")
def _thresholded(c: KCtx):
    # Keras 3's ReLU with a threshold: x where x >= theta, else 0 (Keras 1: x > theta; they differ only at x == theta)
    return _k("ReLU", {"name": c.name, "max_value": None, "negative_slope": 0.0, "threshold": c.config.theta})


@single("PReLU")
def _prelu(c: KCtx):
    return _k("PReLU", {"name": c.name, **_trainable(c), "shared_axes": c.config.shared_axes}, [c.w("alpha")])


def _per_feature_bn(c: KCtx, inputs, shape, axes: list, config: dict, ws: list, suffix: str,
                    what: str = "it normalizes over the axes"):
    """A BatchNormalization over the kept ``axes`` (batch axis counted): Keras 3 keeps one axis only, so several
    are brought to the end (Permute), joined (Reshape), normalized and put back; exact, but Reshape drops a mask."""
    n = len(shape) + 1
    axes = sorted(a % n for a in axes)
    if len(axes) == 1:
        return c.add("BatchNormalization", {"axis": axes[0], **config}, inputs=inputs, shapes=[shape],
                     weights={"vars": ws}, suffix=suffix)
    if c.b.masked:
        raise c.b.fail(f"{what} {axes} of an input that carries a mask: Keras 3's BatchNormalization takes one "
                       "axis, and the Reshape that joins several would drop the mask",
                       "use shared_axes so the weights vary along the last axis only, or export to ONNX")
    others = [a for a in range(1, n) if a not in axes]
    perm = others + axes
    x, cur = inputs, tuple(shape)
    if perm != list(range(1, n)):
        x = c.add("Permute", {"dims": perm}, inputs=x, shapes=[cur], suffix=suffix + "_to_end")
        cur = tuple(shape[a - 1] for a in perm)
    kept = [shape[a - 1] for a in axes]
    joined = tuple(shape[a - 1] for a in others) + (math.prod(kept),)
    x = c.add("Reshape", {"target_shape": list(joined)}, inputs=x, shapes=[cur], suffix=suffix + "_join")
    x = c.add("BatchNormalization", {"axis": -1, **config}, inputs=x, shapes=[joined],
              weights={"vars": [np.asarray(w).reshape(-1) for w in ws]}, suffix=suffix)
    x = c.add("Reshape", {"target_shape": list(cur)}, inputs=x, shapes=[joined], suffix=suffix + "_split")
    if perm != list(range(1, n)):
        x = c.add("Permute", {"dims": [perm.index(a) + 1 for a in range(1, n)]}, inputs=x, shapes=[cur],
                  suffix=suffix + "_back")
    return x


def _affine(c: KCtx, scale: np.ndarray, shift: np.ndarray | None, inputs, shape, suffix: str):
    """y = scale * x + shift with per-element weights shaped like a PReLU weight (shared axes of size 1), as a
    BatchNormalization in inference form: moving_mean 0 and moving_variance 1 - epsilon, so the normaliser is
    exactly 1 (float32: 0.999 + 0.001 rounds to 1.0 exactly)."""
    full = tuple(scale.shape)
    axes = [i + 1 for i, d in enumerate(full) if d != 1]
    if not axes:
        axes = [len(full)]
    kept = [full[a - 1] for a in axes]
    eps = 1e-3
    ws = [np.asarray(scale, np.float32).reshape(kept),
          np.zeros(kept, np.float32) if shift is None else np.asarray(shift, np.float32).reshape(kept),
          np.zeros(kept, np.float32), np.full(kept, np.float32(1.0) - np.float32(eps), np.float32)]
    return _per_feature_bn(c, inputs, shape, axes, {"momentum": 0.99, "epsilon": eps, "center": True,
                                                    "scale": True, "trainable": False}, ws, suffix,
                           "its per-element weights span the axes")


@composed("ParametricSoftplus")
def _psoftplus(c: KCtx):
    """alpha * softplus(beta * x): affine (BatchNormalization, inference form) -> softplus -> affine."""
    s = tuple(c.shape)
    z = _affine(c, c.w("betas"), None, c.xs, s, "_scale_in")
    sp = c.add("Activation", {"activation": "softplus"}, inputs=z, shapes=[s], suffix="_softplus")
    return _affine(c, c.w("alphas"), None, sp, s, "")


@composed("SReLU")
def _srelu(c: KCtx):
    """x - (a_l - 1) relu(t_l - x) + (a_r - 1) relu(x - t_r), t_r = t_l + |t_right|: affine maps, ReLU, Add."""
    s = tuple(c.shape)
    tl, al, ar = c.w("t_left"), c.w("a_left"), c.w("a_right")
    tr = tl + np.abs(c.w("t_right"))
    left_in = _affine(c, -np.ones_like(tl), tl, c.xs, s, "_left_in")  # t_l - x
    left = c.add("ReLU", {"max_value": None, "negative_slope": 0.0, "threshold": 0.0}, inputs=left_in, shapes=[s],
                 suffix="_left_relu")
    left = _affine(c, -(al - 1.0), None, left, s, "_left_out")
    right_in = _affine(c, np.ones_like(tr), -tr, c.xs, s, "_right_in")  # x - t_r
    right = c.add("ReLU", {"max_value": None, "negative_slope": 0.0, "threshold": 0.0}, inputs=right_in,
                  shapes=[s], suffix="_right_relu")
    right = _affine(c, ar - 1.0, None, right, s, "_right_out")
    return c.add("Add", {}, inputs=[c.xs[0], left[0], right[0]], shapes=[s, s, s])


# ---------------------------------------------------------------------- normalization

def _bn_parts(c: KCtx):
    cfg = c.config
    ws = ([c.w("gamma")] if cfg.scale else []) + ([c.w("beta")] if cfg.center else []) + \
        [c.w("moving_mean"), c.w("moving_variance")]
    n = len(c.shape) + 1
    axes = sorted(a % n for a in (cfg.axis if isinstance(cfg.axis, list) else [cfg.axis]))
    config = {**_trainable(c), "momentum": cfg.momentum, "epsilon": cfg.epsilon, "center": cfg.center,
              "scale": cfg.scale}
    return ws, axes, config


@composed("BatchNormalization")
def _batchnorm(c: KCtx):
    ws, axes, config = _bn_parts(c)
    return _per_feature_bn(c, c.xs, tuple(c.shape), axes, config, ws, "")


@single("BatchNormalization")
def _batchnorm_single(c: KCtx):
    ws, axes, config = _bn_parts(c)
    if len(axes) > 1:
        raise c.b.fail(f"inside a wrapper it normalizes over the axes {axes}, and Keras 3's BatchNormalization "
                       "takes one axis")
    return _k("BatchNormalization", {"name": c.name, "axis": axes[0], **config}, ws)


# ---------------------------------------------------------------------- merge

@composed("Merge")
def _merge(c: KCtx):
    mode = c.config.mode
    simple = {"sum": "Add", "subtract": "Subtract", "mul": "Multiply", "ave": "Average", "max": "Maximum",
              "min": "Minimum"}
    if mode in simple:
        return c.add(simple[mode], {})
    if mode == "concat":
        ax = c.layer._concat_axis([tuple(s) for s in c.shapes]) + 1
        return c.add("Concatenate", {"axis": ax})
    a1, a2 = c.layer._dot_axes([tuple(s) for s in c.shapes])
    return c.add("Dot", {"axes": [a1 + 1, a2 + 1], "normalize": mode == "cos"})


# ---------------------------------------------------------------------- embedding

@single("Embedding")
def _embedding(c: KCtx):
    cfg = c.config
    # Keras 1's `dropout` drops whole words in training only: nothing to write for inference
    return _k("Embedding", {"name": c.name, **_trainable(c), "input_dim": cfg.input_dim,
                            "output_dim": cfg.output_dim, "mask_zero": cfg.mask_zero}, [c.w("embeddings")])


# ---------------------------------------------------------------------- reshaping

def _pairs(value, rank):
    if rank == 1 and len(value) == 2 and all(isinstance(v, int) for v in value):
        return [[int(value[0]), int(value[1])]]
    return [[int(v[0]), int(v[1])] if isinstance(v, (list, tuple)) else [int(v), int(v)] for v in value]


def _df(c: KCtx) -> dict:
    return {"data_format": getattr(c.config, "data_format", "channels_last")}


@single("ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D")
def _zeropad(c: KCtx):
    rank = int(c.layer.type[-2])
    pads = _pairs(c.config.padding, rank)
    # ZeroPadding1D has data_format only in recent Keras 3 versions: written only when it is not the default
    extra = _df(c) if rank > 1 or _df(c)["data_format"] != "channels_last" else {}
    return _k(c.layer.type, {"name": c.name, "padding": pads[0] if rank == 1 else pads, **extra})


@single("Cropping1D", "Cropping2D", "Cropping3D")
def _crop(c: KCtx):
    rank = int(c.layer.type[-2])
    crops = _pairs(c.config.cropping, rank)
    extra = {} if rank == 1 else _df(c)
    return _k(c.layer.type, {"name": c.name, "cropping": crops[0] if rank == 1 else crops, **extra})


@single("UpSampling1D", "UpSampling2D", "UpSampling3D")
def _upsample(c: KCtx):
    rank = int(c.layer.type[-2])
    size = c.config.size if isinstance(c.config.size, (list, tuple)) else [c.config.size] * rank
    cfg = {"name": c.name, "size": int(size[0]) if rank == 1 else [int(v) for v in size]}
    if rank > 1:
        cfg.update(_df(c))
    if rank == 2:
        cfg["interpolation"] = c.config.interpolation
    return _k(c.layer.type, cfg)


# ---------------------------------------------------------------------- convolution

def _conv_common(c: KCtx) -> dict:
    cfg = c.config
    return {"name": c.name, **_trainable(c), "kernel_size": list(cfg.kernel_size), "strides": list(cfg.strides),
            "padding": cfg.padding, "data_format": cfg.data_format, "dilation_rate": list(cfg.dilation_rate),
            "activation": keras_activation(c.b, cfg.activation), "use_bias": cfg.use_bias}


@single("Conv1D", "Conv2D", "Conv3D")
def _conv(c: KCtx):
    cfg = c.config
    ws = [c.w("kernel")] + ([c.w("bias")] if cfg.use_bias else [])
    return _k(c.layer.type, {**_conv_common(c), "filters": cfg.filters, "groups": int(getattr(cfg, "groups", 1))}, ws)


@single("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")
def _conv_transpose(c: KCtx):
    from ..layers.convolution import deconv_length

    cfg, layer = c.config, c.layer
    first = cfg.data_format == "channels_first"
    spatial = c.shape[1:] if first else c.shape[:-1]
    # Keras 1's output_shape becomes the output_padding that gives the same length (Keras 3 has only the latter)
    wants, defaults, options = [], [], []
    for axis, n in enumerate(spatial):
        want, _ = layer._axis_padding(axis, n, tuple(c.shape))
        k, s, d = cfg.kernel_size[axis], cfg.strides[axis], cfg.dilation_rate[axis]
        wants.append(want)
        defaults.append(deconv_length(n, k, s, d, cfg.padding, None)[0] == want)
        options.append([op for op in range(s) if deconv_length(n, k, s, d, cfg.padding, op)[0] == want])
    if all(defaults):
        output_padding = None
    elif all(options):
        output_padding = [o[0] for o in options]
    else:
        raise c.b.fail("its output length has no Keras 3 output_padding equivalent")
    ws = [c.w("kernel")] + ([c.w("bias")] if cfg.use_bias else [])
    return _k(layer.type, {**_conv_common(c), "filters": cfg.filters, "output_padding": output_padding}, ws)


@single("SeparableConv1D", "SeparableConv2D")
def _separable(c: KCtx):
    cfg = c.config
    ws = [c.w("depthwise_kernel"), c.w("pointwise_kernel")] + ([c.w("bias")] if cfg.use_bias else [])
    return _k(c.layer.type, {**_conv_common(c), "filters": cfg.filters, "depth_multiplier": cfg.depth_multiplier},
              ws)


@single("DepthwiseConv1D", "DepthwiseConv2D")
def _depthwise(c: KCtx):
    cfg = c.config
    ws = [c.w("kernel")] + ([c.w("bias")] if cfg.use_bias else [])
    return _k(c.layer.type, {**_conv_common(c), "depth_multiplier": cfg.depth_multiplier}, ws)


# ---------------------------------------------------------------------- pooling

@single("MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D")
def _pool(c: KCtx):
    cfg = c.config
    return _k(c.layer.type, {"name": c.name, "pool_size": list(cfg.pool_size),
                             "strides": list(cfg.strides) if cfg.strides is not None else None,
                             "padding": cfg.padding, "data_format": cfg.data_format})


@single("GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D", "GlobalAveragePooling1D",
        "GlobalAveragePooling2D", "GlobalAveragePooling3D")
def _global_pool(c: KCtx):
    cfg = c.config
    return _k(c.layer.type, {"name": c.name, "data_format": cfg.data_format, "keepdims": bool(cfg.keepdims)})


# ---------------------------------------------------------------------- locally connected

@composed("LocallyConnected1D", "LocallyConnected2D")
def _local(c: KCtx):
    """Patches by a frozen one-hot convolution (exact: products with 1 and 0), then one Dense per position as an
    EinsumDense with a kernel per position, then the activation."""
    cfg, layer = c.config, c.layer
    rank = int(layer.type[-2])
    first = rank == 2 and cfg.data_format == "channels_first"
    shape = tuple(c.shape)
    kernel = c.w("kernel")  # (P, patch, f)
    positions, patch, f = kernel.shape
    chans = shape[0] if first else shape[-1]
    k = list(cfg.kernel_size)
    # one-hot kernel: output channel j of the patch conv copies element j of the layer's own patch order
    ids = np.arange(math.prod(k) * chans).reshape(([chans] + k) if first else (k + [chans]))
    onehot = np.zeros(tuple(k) + (chans, patch), np.float32)
    # the layer flattens a patch as (steps, channels) in 1D, (row, col, channel) channels_last, (channel, row,
    # col) channels_first
    for j in range(patch):
        pos = np.unravel_index(j, ids.shape)
        if first:
            ch, spatial = pos[0], pos[1:]
        else:
            ch, spatial = pos[-1], pos[:-1]
        onehot[tuple(spatial) + (ch, j)] = 1.0
    conv_type = "Conv1D" if rank == 1 else "Conv2D"
    out_shape = layer.output_shape(shape)
    out_sp = out_shape[1:] if first else out_shape[:-1]
    patches = c.add(conv_type, {"filters": patch, "kernel_size": k, "strides": list(cfg.strides), "padding": "valid",
                                "data_format": cfg.data_format if rank == 2 else "channels_last",
                                "dilation_rate": [1] * rank, "activation": "linear", "use_bias": False,
                                "trainable": False, "groups": 1}, weights={"vars": [onehot]}, suffix="_patches")
    pshape = ((patch,) + tuple(out_sp)) if first else (tuple(out_sp) + (patch,))
    if first:
        patches = c.add("Permute", {"dims": [2, 3, 1]}, inputs=patches, shapes=[pshape], suffix="_to_last")
        pshape = tuple(out_sp) + (patch,)
    flat = c.add("Reshape", {"target_shape": [positions, patch]}, inputs=patches, shapes=[pshape], suffix="_flat")
    use_bias_here = cfg.use_bias and not first
    ws = [kernel] + ([c.w("bias").reshape(positions, f)] if use_bias_here else [])
    z = c.add("EinsumDense", {"equation": "bpi,pif->bpf", "output_shape": [positions, f],
                              "bias_axes": "pf" if use_bias_here else None, "activation": "linear"},
              inputs=flat, shapes=[(positions, patch)], weights={"vars": ws}, suffix="_dense")
    z = c.add("Reshape", {"target_shape": list(out_sp) + [f]}, inputs=z, shapes=[(positions, f)], suffix="_unflat")
    zshape = tuple(out_sp) + (f,)
    if first:
        z = c.add("Permute", {"dims": [3, 1, 2]}, inputs=z, shapes=[zshape], suffix="_to_first")
        zshape = (f,) + tuple(out_sp)
        if cfg.use_bias:  # the (H', W', f) bias buffer read as (f, H', W'), as Keras 1/2 did
            bias = c.w("bias").reshape((f,) + tuple(out_sp))
            z = _affine(c, np.ones_like(bias), bias, z, zshape, "_bias")
    return c.add("Activation", {"activation": keras_activation(c.b, cfg.activation)}, inputs=z, shapes=[zshape])


# ---------------------------------------------------------------------- lambda

def _last_axis_only(node, shapes) -> bool:
    """A reduction node over exactly the last axis."""
    axis = node.static[0]
    ndim = len(shapes[node.args[0].idx])
    axes = (axis,) if isinstance(axis, int) else tuple(axis or ())
    return len(axes) == 1 and axes[0] % ndim == ndim - 1 and ndim >= 2


_KERAS_UNARY = {"tanh": "tanh", "sigmoid": "sigmoid", "relu": "relu", "exp": "exponential", "softplus": "softplus"}
_KERAS_BINARY = {"add": "Add", "sub": "Subtract", "mul": "Multiply", "maximum": "Maximum", "minimum": "Minimum"}


@composed("Lambda")
def _lambda(c: KCtx):
    """An expression written primitive by primitive as Keras 3 layers where each has one: arithmetic with a number
    -> Rescaling (x * scale + offset), elementwise functions Keras has -> Activation, two tensors of one shape ->
    Add / Subtract / Multiply / Maximum / Minimum, softmax -> Softmax, concatenate -> Concatenate, reshape ->
    Reshape. Anything else names the primitive in the error: Keras 3 itself stores a Lambda as Python bytecode,
    which load_model refuses to run."""
    layer = c.layer
    if layer.config.expression is None:
        raise c.b.fail("it runs Python code (`function:`), and Keras 3 keeps a Lambda as Python bytecode, which "
                       "load_model refuses to run (safe_mode)", "export to ONNX with an `expression:` instead")
    expr = layer.expression
    index = layer._name_index(c.shapes if len(c.xs) > 1 else c.shape)
    shapes = expr.node_shapes({name: tuple(c.shapes[k]) for name, k in index.items()})
    vals: list = [None] * len(expr.order)  # ("t", ref) for a tensor, ("n", value) for a number
    count = [0]

    def add(class_name, config, inputs, in_shapes):
        count[0] += 1
        return c.add(class_name, config, inputs=inputs, shapes=[tuple(s) for s in in_shapes],
                     suffix=f"_{count[0]}")[0]

    def unsupported(op):
        return c.b.fail(f"its expression uses '{op}' in a form no Keras 3 layer computes, and Keras 3 keeps "
                        "other Lambdas as Python bytecode, which load_model refuses to run (safe_mode)",
                        "export to ONNX instead (every expression primitive has an ONNX form)")

    for node in expr.order:
        op = node.op
        args = [vals[a.idx] for a in node.args]
        arg_shapes = [shapes[a.idx][1:] if a.batched else shapes[a.idx] for a in node.args]
        if op == "input":
            vals[node.idx] = ("t", c.xs[index[node.static]])
            continue
        if op == "const":
            if np.ndim(node.static) != 0:
                raise unsupported("a constant array")
            vals[node.idx] = ("n", float(node.static))
            continue
        if all(a[0] == "n" for a in args):  # arithmetic on numbers only: fold it
            from ..expressions import _forward_op

            vals[node.idx] = ("n", float(_forward_op(node, [np.float64(a[1]) for a in args], np.float64)))
            continue
        tensors = [a for a in args if a[0] == "t"]
        if op in ("add", "sub", "mul", "div") and len(tensors) == 1:
            num = next(a[1] for a in args if a[0] == "n")
            t_first = args[0][0] == "t"
            if op == "add":
                scale, offset = 1.0, num
            elif op == "sub":
                scale, offset = (1.0, -num) if t_first else (-1.0, num)
            elif op == "mul":
                scale, offset = num, 0.0
            elif t_first:
                scale, offset = 1.0 / num, 0.0
            else:
                raise unsupported("number / tensor")
            shape = arg_shapes[0] if t_first else arg_shapes[1]
            vals[node.idx] = ("t", add("Rescaling", {"scale": scale, "offset": offset}, [tensors[0][1]], [shape]))
        elif op in ("maximum", "minimum") and len(tensors) == 1:
            # max(x, a) = relu(x - a) + a; min(x, a) = a - relu(a - x) (within one rounding of x - a)
            num = next(a[1] for a in args if a[0] == "n")
            shape = next(sh for a, sh in zip(args, arg_shapes) if a[0] == "t")
            sign = 1.0 if op == "maximum" else -1.0
            z = add("Rescaling", {"scale": sign, "offset": -sign * num}, [tensors[0][1]], [shape])
            z = add("ReLU", {"max_value": None, "negative_slope": 0.0, "threshold": 0.0}, [z], [shape])
            vals[node.idx] = ("t", add("Rescaling", {"scale": sign, "offset": num}, [z], [shape]))
        elif op == "pow" and args[0][0] == "t" and args[1][0] == "n" and float(args[1][1]) in (1.0, 2.0, 3.0, 4.0):
            z = args[0][1]
            for _ in range(int(args[1][1]) - 1):
                z = add("Multiply", {}, [z, args[0][1]], arg_shapes[:1] * 2)
            vals[node.idx] = ("t", z)
        elif op in ("sum", "mean") and len(tensors) == 1 and _last_axis_only(node, shapes):
            # a reduction over the last axis: Dense(1) with a kernel of ones (or 1/n), no bias
            shape = tuple(arg_shapes[0])
            n = shape[-1]
            kernel = np.full((n, 1), 1.0 if op == "sum" else 1.0 / n, np.float32)
            z = add("Dense", {"units": 1, "activation": "linear", "use_bias": False, "trainable": False},
                    [args[0][1]], [shape])
            c.b.layers[-1].weights = {"vars": [kernel]}
            if not node.static[1]:  # keepdims=False
                if len(shape) < 2:
                    raise unsupported(f"{op} to one value per sample")
                z = add("Reshape", {"target_shape": list(shape[:-1])}, [z], [shape[:-1] + (1,)])
            vals[node.idx] = ("t", z)
        elif op == "neg":
            vals[node.idx] = ("t", add("Rescaling", {"scale": -1.0, "offset": 0.0}, [args[0][1]], arg_shapes))
        elif op in _KERAS_UNARY:
            vals[node.idx] = ("t", add("Activation", {"activation": _KERAS_UNARY[op]}, [args[0][1]], arg_shapes))
        elif op == "square":
            vals[node.idx] = ("t", add("Multiply", {}, [args[0][1], args[0][1]], arg_shapes * 2))
        elif op in _KERAS_BINARY and len(tensors) == 2 and tuple(arg_shapes[0]) == tuple(arg_shapes[1]):
            vals[node.idx] = ("t", add(_KERAS_BINARY[op], {}, [a[1] for a in args], arg_shapes))
        elif op == "softmax" and len(tensors) == 1:
            vals[node.idx] = ("t", add("Softmax", {"axis": int(node.static)}, [args[0][1]], arg_shapes))
        elif op == "concat" and len(tensors) == len(args) and len(args) > 1:
            vals[node.idx] = ("t", add("Concatenate", {"axis": int(node.static)}, [a[1] for a in args],
                                       arg_shapes))
        elif op == "reshape" and node.args[0].batched:
            vals[node.idx] = ("t", add("Reshape", {"target_shape": list(node.static)}, [args[0][1]], arg_shapes))
        else:
            raise unsupported(op)
    kind, value = vals[-1]
    if kind != "t":  # pragma: no cover - the layer's config refuses expressions without an input
        raise unsupported("a constant result")
    if value in c.xs:  # the identity: still one layer, so the graph keeps this layer's name
        value = add("Rescaling", {"scale": 1.0, "offset": 0.0}, [value], [c.shape])
    return [value]


# ---------------------------------------------------------------------- recurrent

def _rnn_config(c: KCtx, cfg, name: str) -> dict:
    out = {"name": name, "trainable": bool(cfg.trainable), "units": cfg.units,
           "activation": keras_activation(c.b, cfg.activation), "use_bias": cfg.use_bias, "dropout": cfg.dropout,
           "recurrent_dropout": cfg.recurrent_dropout, "return_sequences": cfg.return_sequences,
           "return_state": cfg.return_state, "go_backwards": cfg.go_backwards, "stateful": cfg.stateful,
           "unroll": cfg.unroll, "seed": cfg.seed}
    if hasattr(cfg, "recurrent_activation"):
        out["recurrent_activation"] = keras_activation(c.b, cfg.recurrent_activation, "recurrent_activation")
    if hasattr(cfg, "reset_after"):
        out["reset_after"] = cfg.reset_after
    return out


def _rnn_klayer(c: KCtx, layer, weights: dict, name: str) -> KLayer:
    cfg = layer.config
    ws = [np.asarray(weights["kernel"], np.float32), np.asarray(weights["recurrent_kernel"], np.float32)]
    if cfg.use_bias:
        ws.append(np.asarray(weights["bias"], np.float32))
    return _k(layer.type, _rnn_config(c, cfg, name), {"vars": [], "cell/vars": ws})


@single("SimpleRNN", "LSTM", "GRU")
def _rnn(c: KCtx):
    return _rnn_klayer(c, c.layer, c.weights, c.name)


# ---------------------------------------------------------------------- wrappers and containers

def _nested(kl: KLayer, shape, batch=None) -> dict:
    kl.build_shape = [batch] + list(shape)
    return kl.serialize(nested=True)


def _prefixed(prefix: str, tree: dict) -> dict:
    return {f"{prefix}/{k}": v for k, v in tree.items()}


@single("TimeDistributed")
def _time_distributed(c: KCtx):
    inner_shape = tuple(c.shape[1:])
    kl = single_layer(c.b, c.layer.inner, c.weights, inner_shape)
    tree = {"vars": [], **_prefixed("layer", kl.weights)}
    return _k("TimeDistributed", {"name": c.name, "layer": _nested(kl, inner_shape)}, tree)


@single("Bidirectional")
def _bidirectional(c: KCtx):
    layer = c.layer
    tree = {"vars": []}
    subs = {}
    for key, sub in layer._layers:
        head = key + "/"
        w = {k[len(head):]: v for k, v in c.weights.items() if k.startswith(head)}
        c.b.layer = sub
        kl = _rnn_klayer(c, sub, w, f"{key}_{sub.config.name or snake_case(sub.type)}")
        c.b.layer = layer
        kl.config["zero_output_for_mask"] = bool(layer.config.layer.return_sequences)
        subs[key] = kl
        tree.update(_prefixed(f"{key}_layer", kl.weights))
    return _k("Bidirectional", {"name": c.name, "merge_mode": layer.config.merge_mode,
                                "layer": _nested(subs["forward"], c.shape, c.b.batch),
                                "backward_layer": _nested(subs["backward"], c.shape, c.b.batch)}, tree)


@single("Sequential")
def _sequential(c: KCtx):
    shape = tuple(c.shape)
    inner_cfgs = [{"module": "keras.layers", "class_name": "InputLayer",
                   "config": {"batch_shape": [None] + list(shape), "dtype": "float32", "sparse": False,
                              "name": c.b.fresh(f"{c.name}_input")}, "registered_name": None}]
    tree = {"vars": []}
    used: dict = {}
    for inner in c.layer.inner:
        head = inner.name + "/"
        w = {k[len(head):]: v for k, v in c.weights.items() if k.startswith(head)}
        kl = single_layer(c.b, inner, w, shape)
        kl.config["name"] = c.b.fresh(kl.config.get("name") or inner.name)
        inner_cfgs.append(_nested(kl, shape))
        key = snake_case(kl.class_name)
        if key in used:
            used[key] += 1
            key = f"{key}_{used[key]}"
        else:
            used[key] = 0
        tree.update(_prefixed(f"layers/{key}", kl.weights))
        shape = tuple(inner.output_shape(shape))
    return _k("Sequential", {"name": c.name, "layers": inner_cfgs, "build_input_shape": [None] + list(c.shape)},
              tree, module="keras")


# ====================================================================== the model

def _keras_order(layers: list[KLayer], outputs: list) -> list[KLayer]:
    """model.layers as Keras computes it (keras.src.ops.function.map_graph): depth from the outputs, deepest
    first; ties in the order a depth-first walk from the outputs first reaches them."""
    by_name = {kl.name: kl for kl in layers}
    indices: dict = {}
    finished: set = set()
    order: list = []

    def visit(name: str):
        if name in finished:
            return
        if name not in indices:
            indices[name] = len(indices)
        for ref in by_name[name].inputs:
            visit(ref[0])
        finished.add(name)
        order.append(name)

    for ref in outputs:
        visit(ref[0])
    depth: dict = {}
    for name in reversed(order):
        d = depth.setdefault(name, 0)
        for ref in by_name[name].inputs:
            depth[ref[0]] = max(depth.get(ref[0], 0), d + 1)
    for kl in layers:  # inputs that reach no output still belong to the model
        if kl.class_name == "InputLayer" and kl.name not in depth:
            depth[kl.name] = 0
            indices[kl.name] = -1
    names = sorted(depth, key=lambda n: (-depth[n], indices[n]))
    return [by_name[n] for n in names]


def _write_h5(path_or_buffer, ordered: list[KLayer], model_name: str) -> None:
    h5py = ensure_package("h5py", FMT)
    with h5py.File(path_or_buffer, "w") as f:
        top = f.create_group("layers")
        used: dict = {}
        for kl in ordered:
            key = snake_case(kl.class_name)
            if key in used:
                used[key] += 1
                key = f"{key}_{used[key]}"
            else:
                used[key] = 0
            g = top.create_group(key)
            tree = kl.weights or {"vars": []}
            if "vars" not in tree:
                tree = {"vars": [], **tree}
            for sub, arrays in tree.items():
                vg = g.require_group(sub)
                vg.attrs["name"] = kl.name
                for i, arr in enumerate(arrays):
                    vg.create_dataset(str(i), data=np.asarray(arr, np.float32))
        v = f.create_group("vars")
        v.attrs["name"] = model_name


def keras_archive(model, batch_size: int | None = None) -> bytes:
    """The bytes of the ``.keras`` zip for a layerforge ``api.Model``; raises ExportError for a layer Keras 3 cannot
    express."""
    graph = model.graph
    b = KBuilder(batch_size or graph.batch_size)
    masked = masked_refs(model)
    refs: dict = {}
    shapes: dict = {}
    input_refs = []
    fixed = b.batch
    for inp in graph.inputs:
        name = b.fresh(inp.name)
        kl = KLayer("InputLayer", {"name": name, "batch_shape": [fixed] + list(inp.shape), "dtype": inp.dtype,
                                   "sparse": False})
        b.layers.append(kl)
        refs[(inp.name, 0)] = (name, 0, 0)
        shapes[(inp.name, 0)] = tuple(inp.shape)
        input_refs.append([name, 0, 0])
    weights: dict = {}
    for node_name, spec, arr in model.compiled.weight_items():
        weights.setdefault(node_name, {})[spec.name] = arr
    for node in graph.nodes:
        xs = [refs[r] for r in node.inputs]
        ins = [shapes[r] for r in node.inputs]
        b.masked = any(r in masked for r in node.inputs)
        outs = convert_layer(b, node.layer, weights.get(node.name, {}), xs, ins, node.name)
        for k, ref in enumerate(outs):
            refs[(node.name, k)] = ref
            shapes[(node.name, k)] = tuple(node.output_shapes[k])
    output_refs = [list(refs[r]) for r in graph.outputs]
    ordered = _keras_order(b.layers, output_refs)
    name = model.spec.config.name or "layerforge"
    config = {"module": "keras.src.models.functional", "class_name": "Functional",
              "config": {"name": name, "trainable": True, "layers": [kl.serialize() for kl in ordered],
                         "input_layers": input_refs[0] if len(input_refs) == 1 else input_refs,
                         "output_layers": output_refs[0] if len(output_refs) == 1 else output_refs},
              "registered_name": "Functional", "build_config": {"input_shape": None}, "compile_config": None}
    h5 = io.BytesIO()
    _write_h5(h5, ordered, name)
    import datetime

    meta = {"keras_version": KERAS_VERSION,
            "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
            "exported_by": "layerforge"}
    labels = {}
    for key, enc in (model.encoders or {}).items():
        classes = (enc or {}).get("classes") if isinstance(enc, dict) else None
        if classes is not None:
            labels[key] = [c if isinstance(c, (str, int, float)) else str(c) for c in classes]
    if labels:
        meta["class_labels"] = labels
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("metadata.json", json.dumps(meta))
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", h5.getvalue())
    return buf.getvalue()


def export_keras(model, path=None, *, batch_size: int | None = None) -> bytes:
    """Write the ``.keras`` archive of ``model`` to ``path`` (atomically) when given; return its bytes.
    ``batch_size`` fixes the batch axis (default: variable, or the model's own fixed batch size)."""
    data = keras_archive(model, batch_size)
    if path is not None:
        from ..io.atomic import atomic_write_bytes

        atomic_write_bytes(path, data)
    return data
