"""One Keras layer config (any version) -> one layerforge layer mapping, with the semantics of the version that
wrote the file.

The mapping is written in the parameter names layerforge accepts (Keras 1 names included: the config parser
translates them), then validated by layerforge's own parser, whose canonical output is what the YAML shows.
Version-dependent meanings are decided here and recorded as notes for the config's header:

- `hard_sigmoid` in a Keras 1/2 file is 0.2x+0.5 -> `hard_sigmoid_keras1` (Keras 3's is x/6+0.5);
- a Keras 1/2 GRU has no reset_after (or false) -> `reset_after: false`; Keras 3's default is true;
- Keras 1 `dim_ordering: th` / Keras 2 `data_format: channels_first` stay channels_first;
- serialized initializers, regularizers and constraints (Keras 1 {"name": ...}, Keras 2 {"class_name", "config"},
  Keras 3 with "module") become layerforge's forms; ones layerforge lacks fall back to the default (weights are
  imported, so only re-initialisation would differ) and are listed in the header;
- numbers stored as strings (Keras 1.0) become numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

# Keras class name -> layerforge type. Same-name classes are not listed; None: no layerforge equivalent.
CLASS_RENAMES = {
    "Convolution1D": "Conv1D", "Convolution2D": "Conv2D", "Convolution3D": "Conv3D",
    "AtrousConvolution1D": "Conv1D", "AtrousConvolution2D": "Conv2D", "Deconvolution2D": "Conv2DTranspose",
    "Deconv2D": "Conv2DTranspose", "Conv2DTranspose": "Conv2DTranspose", "Deconvolution3D": "Conv3DTranspose",
    "SeparableConvolution2D": "SeparableConv2D", "SeparableConvolution1D": "SeparableConv1D",
    "Convolution2DTranspose": "Conv2DTranspose", "MaxPool1D": "MaxPooling1D", "MaxPool2D": "MaxPooling2D",
    "MaxPool3D": "MaxPooling3D", "AvgPool1D": "AveragePooling1D", "AvgPool2D": "AveragePooling2D",
    "AvgPool3D": "AveragePooling3D", "GlobalMaxPool1D": "GlobalMaxPooling1D", "GlobalMaxPool2D": "GlobalMaxPooling2D",
    "GlobalMaxPool3D": "GlobalMaxPooling3D", "GlobalAvgPool1D": "GlobalAveragePooling1D",
    "GlobalAvgPool2D": "GlobalAveragePooling2D", "GlobalAvgPool3D": "GlobalAveragePooling3D",
}

# Layer types added alongside this importer (issue #14); listed so the table is complete. Their Keras 3 weight
# layouts are the ones weights.py converts to.
NEWER_TYPES = {"SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "ConvLSTM2D", "LayerNormalization",
               "MultiHeadAttention", "Attention", "AdditiveAttention", "ReLU", "Softmax", "GroupNormalization",
               "UnitNormalization", "Identity"}

# What to tell the user for Keras classes that layerforge has no layer for.
KNOWN_UNSUPPORTED = {
    "AlphaDropout": "not in layerforge; it does nothing at inference: remove it before saving, or replace it by "
                    "Dropout",
}

# Keras 1 layers whose get_config left out dim_ordering (it came from keras.json when the model was loaded)
KERAS1_UNSAVED_ORDERING = {"UpSampling2D", "UpSampling3D", "ZeroPadding2D", "ZeroPadding3D", "Cropping2D",
                           "Cropping3D"}

# Config keys that carry nothing layerforge needs (bookkeeping, or already handled elsewhere)
QUIET_KEYS = {
    "name", "trainable", "dtype", "batch_input_shape", "batch_shape", "input_dtype", "build_config", "weights",
    "module", "registered_name", "shared_object_id", "autocast", "zero_output_for_mask", "use_cudnn", "sparse",
    "ragged", "input_shape", "input_dim", "input_length", "output_shape_type", "output_mask", "output_mask_type",
    "mode_type", "arguments", "lora_rank", "lora_alpha", "quantization_config", "time_major", "custom_objects",
    "W_learning_rate_multiplier", "b_learning_rate_multiplier", "cache", "optional", "renorm_momentum",
    "renorm_clipping", "synchronized", "transform_bias", "__build_config", "__call_constants", "__op_module",
}
# Keys a layerforge type takes through its `upgrade` step rather than as a field
EXTRA_KEYS = {"Dot": {"normalize"}, "Merge": {"normalize"}}
# Keys that say nothing when they hold this value (Keras 2 writes groups=1 on every convolution)
QUIET_VALUES = {"groups": 1}
# Keras 2 SeparableConv saves the Conv base class's unused kernel_* settings
QUIET_FOR = {"SeparableConv1D": {"kernel_initializer", "kernel_regularizer", "kernel_constraint"},
             "SeparableConv2D": {"kernel_initializer", "kernel_regularizer", "kernel_constraint"},
             "DepthwiseConv2D": {"kernel_initializer", "kernel_regularizer", "kernel_constraint", "filters"},
             "DepthwiseConv1D": {"kernel_initializer", "kernel_regularizer", "kernel_constraint", "filters"}}
INIT_KEYS = re.compile(r"(^init$|^inner_init$|_initializer$|_init$)")
REG_KEYS = re.compile(r"(_regularizer$)")
CON_KEYS = re.compile(r"(_constraint$)")
ACT_KEYS = {"activation", "inner_activation", "recurrent_activation"}


@dataclass
class Unsupported:
    name: str
    class_name: str
    where: str
    reason: str
    fix: str


@dataclass
class Dialect:
    """What the file's Keras version and backend mean."""

    major: int
    version: tuple = ()
    backend: str | None = None
    notes: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    image_ordering: str = "tf"  # Keras 1: the keras.json default the file's layers were built with

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


def version_tuple(text: str | None) -> tuple:
    if not text:
        return ()
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def _snake(name: str) -> str:
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s).lower()


def _number(value):
    """Keras 1.0 wrote some numbers as strings."""
    if isinstance(value, str):
        if re.fullmatch(r"[-+]?\d+", value):
            return int(value)
        if re.fullmatch(r"[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?", value):
            return float(value)
    if isinstance(value, list):
        return [_number(v) for v in value]
    return value


# ---------------------------------------------------------------------- serialized objects


def _unwrap(obj):
    """(class name, arguments) of a serialized object in any version's form."""
    if isinstance(obj, str):
        return obj, {}
    if not isinstance(obj, dict):
        return None, {}
    if "class_name" in obj:
        cfg = obj.get("config")
        if isinstance(cfg, str):  # Keras 3 serialized function: {"class_name": "function", "config": "relu"}
            return cfg, {}
        return str(obj["class_name"]), dict(cfg or {})
    args = {k: v for k, v in obj.items() if k != "name"}
    return str(obj.get("name", "")), args


def activation(value, d: Dialect, where: str):
    name, _ = _unwrap(value)
    if name is None:
        return "linear"
    name = _snake(name) if name[:1].isupper() else name.lower()
    if name in ("hard_sigmoid", "hardsigmoid") and d.major < 3:
        d.note("hard_sigmoid -> hard_sigmoid_keras1: the Keras 1/2 slope 0.2 (0.2x + 0.5), not Keras 3's x/6 + 0.5")
        return "hard_sigmoid_keras1"
    return name


def initializer(value, d: Dialect, where: str):
    from ...layers.fields import INITIALIZER_ALIASES, INITIALIZERS

    name, args = _unwrap(value)
    if name is None:
        return None
    key = _snake(name) if name[:1].isupper() else name.lower()
    key = INITIALIZER_ALIASES.get(key.replace("_", ""), INITIALIZER_ALIASES.get(key, key))
    if key == "variance_scaling":
        scale, mode = float(args.get("scale", 1.0)), args.get("mode", "fan_in")
        dist = str(args.get("distribution", "truncated_normal"))
        uniform = dist == "uniform"
        named = {(1.0, "fan_avg"): "glorot", (2.0, "fan_in"): "he", (1.0, "fan_in"): "lecun"}.get((scale, mode))
        if named:
            return f"{named}_{'uniform' if uniform else 'normal'}"
        if dist == "normal":
            args["distribution"] = "truncated_normal"
    if key not in INITIALIZERS:
        d.ignored.append(f"{where}: initializer {name!r} (layerforge has none by that name; the default is used, "
                         "which matters only if the weights are re-initialised)")
        return None
    allowed = INITIALIZERS[key]
    keep = {k: _number(v) for k, v in args.items() if k in allowed and v is not None and k != "seed"
            and _number(v) != allowed[k]}
    if key == "random_uniform" and "scale" in args:  # Keras 1 initializations took a scale
        keep = {"minval": -float(args["scale"]), "maxval": float(args["scale"])}
    return {"type": key, **keep} if keep else key


def regularizer(value, d: Dialect, where: str):
    if value is None:
        return None
    name, args = _unwrap(value)
    key = (name or "").lower().replace("regularizer", "").replace("_", "")
    if key in ("l1", "l2", "l1l2", "weight", "activity", ""):
        l1 = float(_number(args.get("l1", 0.0)) or 0.0)
        l2 = float(_number(args.get("l2", 0.0)) or 0.0)
        if key in ("l1", "l2") and "l" in args:
            l1, l2 = (float(args["l"]), 0.0) if key == "l1" else (0.0, float(args["l"]))
        if l1 == 0 and l2 == 0:
            return None
        return {"l1": float(f"{l1:.7g}"), "l2": float(f"{l2:.7g}")}  # Keras saved float32: 9.9999997e-05 is 1e-4
    d.ignored.append(f"{where}: regularizer {name!r} (not in layerforge; dropped, which changes only training)")
    return None


def constraint(value, d: Dialect, where: str):
    from ...layers.fields import CONSTRAINT_ALIASES, CONSTRAINTS

    if value is None:
        return None
    name, args = _unwrap(value)
    key = _snake(name or "") if (name or "")[:1].isupper() else (name or "").lower()
    key = CONSTRAINT_ALIASES.get(key.replace("_", ""), key)
    if key not in CONSTRAINTS:
        d.ignored.append(f"{where}: constraint {name!r} (not in layerforge; dropped, which changes only training)")
        return None
    renames = {"m": "max_value", "low": "min_value", "high": "max_value"}
    keep = {renames.get(k, k): _number(v) for k, v in args.items()}
    keep = {k: v for k, v in keep.items() if k in CONSTRAINTS[key] and v != CONSTRAINTS[key][k]}
    return {"type": key, **keep} if keep else key


# ---------------------------------------------------------------------- layers


class _Skip(Exception):
    def __init__(self, unsupported: Unsupported):
        self.unsupported = unsupported


def _accepted(type_name: str) -> tuple[set, dict] | None:
    """(keys the layerforge type accepts, its Keras 1 renames) or None when the type does not exist here."""
    from ...layers import REGISTRY, TYPE_NAMES, ensure_type

    if not ensure_type(type_name):
        return None
    cls = REGISTRY[TYPE_NAMES[type_name][0]]
    c = cls.Config
    fields = set(c.model_fields)
    renames = dict(c.keras1_rename_table())
    return fields | set(renames) | set(c.keras1_structural), renames


def map_layer(class_name: str, cfg: dict, d: Dialect, *, name: str, where: str,
              lambdas: dict[str, str] | None = None, n_inputs: int = 1) -> dict:
    """A layerforge layer mapping for one Keras layer; raises _Skip for what cannot be imported."""
    lambdas = lambdas or {}
    cfg = dict(cfg or {})
    if class_name == "Lambda" or (class_name == "TFOpLambda" and name in lambdas):
        return _lambda(cfg, d, name=name, where=where, lambdas=lambdas, n_inputs=n_inputs)
    if class_name == "TimeDistributedDense":  # Keras 1.0: the same maths as TimeDistributed(Dense)
        d.note("TimeDistributedDense -> TimeDistributed(Dense) (the same computation and weights)")
        inner = map_layer("Dense", cfg, d, name=name, where=where)
        return {"type": "TimeDistributed", "layer": inner}
    if class_name in ("CuDNNLSTM", "CuDNNGRU"):  # Keras 2's GPU-only layers: the plain layer with CuDNN's maths
        d.note(f"{class_name} -> {class_name[5:]} with sigmoid gates"
               + (" and reset_after: true" if class_name == "CuDNNGRU" else "")
               + " (what CuDNN computes); weights converted from the CuDNN layout as Keras 2 does")
        cfg.update(activation="tanh", recurrent_activation="sigmoid")
        if class_name == "CuDNNGRU":
            cfg["reset_after"] = True
        return map_layer(class_name[5:], cfg, d, name=name, where=where)
    if cfg.get("__op_module") and name not in lambdas:
        return _keras_op(class_name, cfg, d, name=name, where=where)
    if class_name == "TFOpLambda" and name not in lambdas:
        return _tf_op(cfg, d, name=name, where=where, n_inputs=n_inputs)
    if class_name in ("Rescaling", "Normalization"):
        return _preprocessing(class_name, cfg, d, name=name, where=where)
    if class_name == "Merge":
        mode = cfg.get("mode")
        if cfg.get("mode_type") == "lambda" or not isinstance(mode, str):
            raise _Skip(Unsupported(name, class_name, where, "a Merge with a custom (Python) merge function",
                                    "rebuild the merge as a Lambda on several inputs and pass "
                                    f"--lambda {name}=EXPRESSION (inputs x0, x1, ...)"))
    if class_name in KNOWN_UNSUPPORTED:
        raise _Skip(Unsupported(name, class_name, where, "layerforge has no such layer",
                                KNOWN_UNSUPPORTED[class_name]))
    if class_name == "Sequential":  # a Sequential model inside a wrapper: layerforge's Sequential layer
        return {"type": "Sequential", "layers": [
            {**map_layer(item["class_name"], item.get("config") or {}, d, name=str((item.get("config") or {}).get(
                "name", f"{name}_{i}")), where=f"{where}.config.layers[{i}]", lambdas=lambdas),
             "name": _clean_name(str((item.get("config") or {}).get("name", f"layer_{i}")))}
            for i, item in enumerate(sequential_layers(cfg))]}
    type_name = CLASS_RENAMES.get(class_name, class_name)
    accepted = _accepted(type_name)
    if accepted is None and class_name in ("ReLU", "Softmax", "Identity"):
        fallback = _as_activation(class_name, cfg)
        if fallback is not None:  # the same function as an Activation layer, where this layerforge lacks the type
            d.note(f"{class_name} layers -> Activation {fallback['activation']} (the same function)")
            return fallback
    if accepted is None:
        if type_name in NEWER_TYPES:
            raise _Skip(Unsupported(name, class_name, where, f"this layerforge has no {type_name} layer yet",
                                    "update layerforge (the layer type is being added)"))
        raise _Skip(Unsupported(name, class_name, where, "not a layer layerforge has (custom or unknown class)",
                                "replace it in Keras by layers layerforge has (`layerforge layers` lists them), or, "
                                "for a custom class, by a Lambda and --lambda NAME=EXPRESSION"))
    keys, _renames = accepted
    out: dict = {"type": type_name}
    if cfg.get("trainable") is False:
        out["trainable"] = False
    if d.major == 1 and class_name in KERAS1_UNSAVED_ORDERING and "dim_ordering" not in cfg:
        # Keras 1 did not save their dim_ordering: they took keras.json's, the one the model's other layers show
        cfg["dim_ordering"] = d.image_ordering
        if d.image_ordering == "th":
            d.note(f"Keras 1 {', '.join(sorted(KERAS1_UNSAVED_ORDERING))} saved no dim_ordering: th assumed, as "
                   "the model's other layers use it")
    if class_name in ("AtrousConvolution1D", "AtrousConvolution2D") and "atrous_rate" not in cfg:
        cfg["atrous_rate"] = 1
    for key, value in cfg.items():
        where_k = f"{where}.config.{key}"
        if key in ("layer", "backward_layer") and isinstance(value, dict) and "class_name" in value:
            if key in keys:
                out[key] = map_layer(value["class_name"], value.get("config") or {}, d,
                                     name=f"{name}.{key}", where=f"{where}.config.{key}", lambdas=lambdas)
                out[key].pop("trainable", None)
            continue
        if key in ("layer", "backward_layer") and value is None:
            continue
        if key in ("input_dim", "input_length", "input_shape", "batch_input_shape") and key in keys and \
                type_name == "Embedding":
            if key in ("input_dim", "input_length"):
                out[key] = _number(value)
            continue
        if key in QUIET_KEYS and not (key == "arguments" and type_name == "Lambda"):
            continue
        if key in QUIET_FOR.get(type_name, ()) or QUIET_VALUES.get(key, object()) == value:
            continue
        if key not in keys and key not in EXTRA_KEYS.get(type_name, ()):
            if value not in (None, False, 0, 0.0, "", [], {}):
                d.ignored.append(f"{where}: {class_name} parameter {key}={_short(value)} (layerforge's "
                                 f"{type_name} has no such parameter)")
            continue
        if key in ACT_KEYS:
            out[key] = activation(value, d, where_k)
        elif INIT_KEYS.search(key) and key not in ("alpha_init", "beta_init", "forget_bias_init"):
            v = initializer(value, d, where_k)
            if v is not None:
                out[key] = v
        elif key == "forget_bias_init":
            out[key] = _unwrap(value)[0]
        elif REG_KEYS.search(key):
            v = regularizer(value, d, where_k)
            if v is not None:
                out[key] = v
        elif CON_KEYS.search(key):
            v = constraint(value, d, where_k)
            if v is not None:
                out[key] = v
        else:
            out[key] = _number(value)
    _version_rules(class_name, type_name, cfg, out, d)
    return out


# layer types whose `axis` counts the batch axis; layerforge's canonical form writes the last axis as -1
_AXIS_TYPES = {"BatchNormalization", "LayerNormalization", "GroupNormalization", "UnitNormalization", "Softmax"}


def _last_axis_negative(type_name: str, cfg: dict, out: dict) -> None:
    """An axis Keras saved as a positive index of the last axis (3 of a 4D input) becomes -1, as layerforge writes
    it, when the built input shape says which axis is last (Keras 3 build_config)."""
    if type_name not in _AXIS_TYPES or "axis" not in out:
        return
    built = (cfg.get("__build_config") or {}).get("input_shape")
    if not isinstance(built, list) or not built or isinstance(built[0], list):
        return
    last = len(built) - 1
    axis = out["axis"]
    if isinstance(axis, int) and axis == last:
        out["axis"] = -1
    elif isinstance(axis, list) and len(axis) == 1 and axis[0] == last:
        out["axis"] = [-1] if type_name != "BatchNormalization" else -1


def _version_rules(class_name: str, type_name: str, cfg: dict, out: dict, d: Dialect) -> None:
    if type_name == "GRU" and d.major < 3:
        if not cfg.get("reset_after", False):
            out["reset_after"] = False
            d.note("GRU reset_after: false (Keras 1/2 GRU: the reset gate applies before the recurrent product)")
        if "recurrent_activation" not in out and "inner_activation" not in out:
            out["recurrent_activation"] = "hard_sigmoid_keras1"
    if type_name in ("LSTM", "GRU") and d.major < 3 and "recurrent_activation" not in out \
            and "inner_activation" not in out:
        out["recurrent_activation"] = "hard_sigmoid_keras1"  # the Keras 1/2 default
        d.note("recurrent_activation not saved: the Keras 1/2 default hard_sigmoid -> hard_sigmoid_keras1")
    if type_name == "BatchNormalization" and isinstance(out.get("axis"), list):
        if len(out["axis"]) != 1:
            raise ValueError(f"BatchNormalization over several axes {out['axis']} is not supported")
        out["axis"] = out["axis"][0]
    _last_axis_negative(type_name, cfg, out)
    if class_name == "Deconvolution2D" and cfg.get("output_shape"):
        d.note("Keras 1 Deconvolution2D: its output_shape (batch axis included) is kept and fixes the output size")
    policy = cfg.get("dtype")
    if isinstance(policy, dict):  # Keras 3 DTypePolicy
        policy = (policy.get("config") or {}).get("name")
    if isinstance(policy, str) and policy not in ("float32", "float64"):
        d.note(f"dtype policy {policy!r} read as float32: layerforge computes in float32")
    fmt = cfg.get("dim_ordering", cfg.get("data_format"))
    if fmt in ("th", "channels_first"):
        d.note("channels_first layout kept (Keras 1 dim_ordering th / data_format channels_first): inputs are "
               "(channels, rows, cols)")
    if type_name == "Dropout" and d.major == 1 and "p" in out:
        out["rate"] = out.pop("p")


def _preprocessing(class_name: str, cfg: dict, d: Dialect, *, name: str, where: str) -> dict:
    """Keras' Rescaling and Normalization layers are fixed element-wise maps: a safe Lambda expression with the
    layer's constants (Normalization's mean and variance come from its weights, put in `cfg` by the caller)."""
    def flat(v):
        a = np.asarray(v, dtype=np.float64)
        return float(a) if a.ndim == 0 or a.size == 1 else [float(f"{x:.9g}") for x in a.reshape(-1)]

    if class_name == "Rescaling":
        d.note(f"{class_name} {name}: a Lambda computing x * scale + offset")
        return {"type": "Lambda", "expression": "x * scale + offset",
                "arguments": {"scale": flat(_number(cfg.get("scale", 1.0))),
                              "offset": flat(_number(cfg.get("offset", 0.0)))}}
    axis = cfg.get("axis", -1)
    if isinstance(axis, (list, tuple)):
        axis = axis[0] if len(axis) == 1 else axis
    built = ((cfg.get("__build_config") or {}).get("input_shape"))
    if isinstance(axis, int) and isinstance(built, list) and axis == len(built) - 1:
        axis = -1  # the last axis, counted from the front
    if axis not in (-1, None) or cfg.get("invert") or cfg.get("mean") is None or cfg.get("variance") is None:
        raise _Skip(Unsupported(name, class_name, where, "a Normalization over axes other than the last, inverted, "
                                "or without its mean and variance", "normalize the data before the model instead"))
    d.note(f"{class_name} {name}: a Lambda computing (x - mu) / maximum(sqrt(var), 1e-7) with its adapted mean "
           "mu and variance var, as Keras does")
    return {"type": "Lambda", "expression": "(x - mu) / maximum(sqrt(var), 1e-7)",
            "arguments": {"mu": flat(cfg["mean"]), "var": flat(cfg["variance"])}}


_TF_BINARY = {"__operators__.add": "{a} + {b}", "math.add": "{a} + {b}", "math.subtract": "{a} - {b}",
              "math.multiply": "{a} * {b}", "math.truediv": "{a} / {b}", "math.divide": "{a} / {b}",
              "math.maximum": "maximum({a}, {b})", "math.minimum": "minimum({a}, {b})", "math.pow": "pow({a}, {b})"}
_TF_UNARY = {"nn.relu": "relu(x)", "math.sigmoid": "sigmoid(x)", "nn.sigmoid": "sigmoid(x)", "math.tanh": "tanh(x)",
             "nn.tanh": "tanh(x)", "math.exp": "exp(x)", "math.log": "log(x)", "math.sqrt": "sqrt(x)",
             "math.square": "square(x)", "math.abs": "abs(x)", "nn.softplus": "softplus(x)",
             "math.negative": "-x", "nn.softmax": "softmax(x)"}


def _tf_op(cfg: dict, d: Dialect, *, name: str, where: str, n_inputs: int) -> dict:
    """tf.keras 2.4+ TFOpLambda (a tf.* function called on Keras tensors) -> a safe expression, for the element-wise
    functions whose meaning is plain; anything else asks for --lambda."""
    fn = str(cfg.get("function", ""))
    consts = cfg.get("__call_constants") or {}
    expr = None
    if fn in _TF_UNARY and n_inputs == 1 and "y" not in consts:
        expr = _TF_UNARY[fn]
    elif fn in _TF_BINARY:
        y = consts.get("y")
        if n_inputs == 2:
            expr = _TF_BINARY[fn].format(a="x0", b="x1")
        elif n_inputs == 1 and isinstance(y, (int, float)) and not isinstance(y, bool):
            expr = _TF_BINARY[fn].format(a="x", b=repr(float(y)))
    if expr is None:
        raise _Skip(Unsupported(name, "TFOpLambda", where, f"a call of tf.{fn} (TensorFlow code)",
                                f"pass --lambda {name}=EXPRESSION with what it computes"))
    d.note("TFOpLambda layers (tf.* functions on Keras tensors) -> Lambda expressions")
    return {"type": "Lambda", "expression": expr}


_OP_BINARY = {"Add": "{a} + {b}", "Subtract": "{a} - {b}", "Multiply": "{a} * {b}", "Divide": "{a} / {b}",
              "TrueDivide": "{a} / {b}", "Maximum": "maximum({a}, {b})", "Minimum": "minimum({a}, {b})",
              "Power": "pow({a}, {b})"}
_OP_UNARY = {"Relu": "relu({a})", "Sigmoid": "sigmoid({a})", "Tanh": "tanh({a})", "Exp": "exp({a})",
             "Log": "log({a})", "Sqrt": "sqrt({a})", "Square": "square({a})", "Absolute": "abs({a})",
             "Abs": "abs({a})", "Negative": "-({a})", "Softplus": "softplus({a})", "Silu": "{a} * sigmoid({a})",
             "Swish": "{a} * sigmoid({a})"}


def _keras_op(class_name: str, cfg: dict, d: Dialect, *, name: str, where: str) -> dict:
    """A keras.ops call on Keras tensors in a Keras 3 functional model (`x * 2.0`, `ops.relu(x)`) -> a safe
    expression with the call's constants; other ops ask for --lambda."""
    args = list((cfg.get("__call_constants") or {}).get("__args") or [])
    n_tensors = sum(a is None for a in args)
    names = iter(["x"] if n_tensors == 1 else [f"x{i}" for i in range(n_tensors)])
    terms = []
    for a in args:
        if a is None:
            terms.append(next(names))
        elif isinstance(a, (int, float)) and not isinstance(a, bool):
            terms.append(repr(float(a)))
        else:
            terms = None
            break
    expr = None
    if terms and class_name in _OP_BINARY and len(terms) == 2 and n_tensors >= 1:
        expr = _OP_BINARY[class_name].format(a=terms[0], b=terms[1])
    elif terms and class_name in _OP_UNARY and len(terms) == 1 and n_tensors == 1:
        expr = _OP_UNARY[class_name].format(a=terms[0])
    if expr is None:
        raise _Skip(Unsupported(name, class_name, where, f"a keras.ops call ({cfg.get('__op_module')}."
                                f"{class_name}) layerforge has no expression for",
                                f"pass --lambda {name}=EXPRESSION with what it computes"))
    d.note("keras.ops calls on Keras tensors (Keras 3 functional models) -> Lambda expressions")
    return {"type": "Lambda", "expression": expr}


def _as_activation(class_name: str, cfg: dict) -> dict | None:
    """ReLU / Softmax / Identity layers as the Activation they equal, when their settings allow."""
    if class_name == "Identity":
        return {"type": "Activation", "activation": "linear"}
    if class_name == "Softmax":
        axis = cfg.get("axis", -1)
        return {"type": "Activation", "activation": "softmax"} if axis in (-1, [-1]) else None
    max_value = _number(cfg.get("max_value"))
    slope = _number(cfg.get("negative_slope", cfg.get("alpha", 0.0))) or 0.0
    if slope or _number(cfg.get("threshold", 0.0)):
        return None
    if max_value is None:
        return {"type": "Activation", "activation": "relu"}
    if float(max_value) == 6.0:
        return {"type": "Activation", "activation": "relu6"}
    return None


def sequential_layers(cfg) -> list[dict]:
    """The layers of a Sequential config (any version's form), InputLayers left out."""
    items = cfg if isinstance(cfg, list) else (cfg or {}).get("layers") or []
    return [item for item in items if item.get("class_name") != "InputLayer"]


def _clean_name(name: str) -> str:
    clean = re.sub(r"[^A-Za-z0-9_\-]", "_", name)
    return clean if re.match(r"^[A-Za-z_]", clean) else "l_" + clean


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _lambda(cfg: dict, d: Dialect, *, name: str, where: str, lambdas: dict[str, str], n_inputs: int) -> dict:
    fn = cfg.get("function")
    fname = None
    if isinstance(fn, dict) and fn.get("class_name") not in ("__lambda__",):
        fname = fn.get("config") if isinstance(fn.get("config"), str) else fn.get("class_name")
    elif isinstance(fn, str) and cfg.get("function_type") == "function":
        fname = fn
    expression = lambdas.get(name)
    if expression is None:
        what = (f"a Lambda calling the Python function {fname!r}" if fname else
                "a Lambda holding Python bytecode (never unmarshalled or run here)")
        example = "x * 2" if n_inputs == 1 else "x0 + x1"
        raise _Skip(Unsupported(name, "Lambda", where, what,
                                f"pass --lambda {name}=EXPRESSION with what it computes, e.g. "
                                f"--lambda {name}=\"{example}\" (see `layerforge layers Lambda`)"))
    d.note(f"Lambda {name}: expression {expression!r} given with --lambda")
    out: dict = {"type": "Lambda", "expression": expression}
    shape = cfg.get("output_shape")
    if isinstance(shape, list) and all(isinstance(v, int) or v is None for v in shape) and shape:
        out["output_shape"] = shape
    args = cfg.get("arguments")
    if isinstance(args, dict) and args:
        out["arguments"] = args
    return out
