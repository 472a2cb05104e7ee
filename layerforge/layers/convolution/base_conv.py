"""What every convolution shares: the config model, output lengths, the geometry of a call and the
base layer class (layout, weight specs, the engine's gradient buffers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, create_model, model_validator

from .._numpy import np
from ..base import Layer, LayerConfig, elements, fitting_buffer
from ..fields import ActivationName, ConstraintSpec, DataFormat, InitializerSpec, RegularizerSpec, int_tuple


def _lower(value: Any):
    return value.lower() if isinstance(value, str) else value


Padding = Annotated[Literal["valid", "same"], BeforeValidator(_lower)]


PaddingCausal = Annotated[Literal["valid", "same", "causal"], BeforeValidator(_lower)]


_AXES = {1: "steps", 2: "rows, cols", 3: "dim1, dim2, dim3"}


def conv_length(n: int | None, k: int, s: int, d: int, padding: str) -> tuple[int | None, int]:
    """Output length and zero padding before the input (TF placement: odd padding goes at the end)."""
    k_eff = (k - 1) * d + 1
    if padding == "causal":
        return (None if n is None else (n - 1) // s + 1), k_eff - 1
    if n is None:
        return None, 0
    if padding == "valid":
        return (n - k_eff) // s + 1 if n >= k_eff else 0, 0
    out = -(-n // s)
    total = max((out - 1) * s + k_eff - n, 0)
    return out, total // 2


def deconv_length(n: int | None, k: int, s: int, d: int, padding: str, output_padding: int | None):
    """Transposed-convolution output length (Keras 3 rule) and the padding of the forward conv it inverts."""
    k_eff = (k - 1) * d + 1
    if padding == "valid":
        extra = max(k_eff, s) - k_eff if output_padding is None else output_padding
        left = k_eff - 1
        out = None if n is None else (n - 1) * s + k_eff + extra
    else:
        pad_len = s + k_eff - 2 if output_padding is None else k_eff + k_eff % 2 - 2 + output_padding
        left = min(pad_len // 2 + pad_len % 2, k_eff - 1)
        if n is None:
            out = None
        else:
            out = n * s if output_padding is None else (n - 1) * s + k_eff % 2 + output_padding
    return out, k_eff - 1 - left


@dataclass(frozen=True)
class Geometry:
    """One convolution on three spatial axes: input/output lengths, kernel, stride, dilation, padding."""

    inp: tuple
    out: tuple
    k: tuple
    s: tuple
    d: tuple
    pad: tuple


def _three(values, fill=1) -> tuple:
    values = tuple(values)
    return (fill,) * (3 - len(values)) + values


class _ConvConfig(LayerConfig):
    """Shared validation and Keras 1 conversions of the convolution configs."""

    rank: ClassVar[int] = 2
    kind: ClassVar[str] = "conv"  # conv, transpose, separable, depthwise

    @classmethod
    def upgrade(cls, data: dict[str, Any]) -> dict[str, Any]:
        data = dict(data)
        if "nb_row" in data or "nb_col" in data:
            if cls.rank != 2:
                raise ValueError(f"nb_row / nb_col (Keras 1) belong to 2D layers; {data['type']} takes kernel_size")
            if "nb_row" not in data or "nb_col" not in data:
                raise ValueError("Keras 1 nb_row and nb_col go together (or give kernel_size: [rows, cols])")
            if "kernel_size" in data:
                raise ValueError("give either kernel_size or the Keras 1 nb_row / nb_col, not both")
            data["kernel_size"] = [data.pop("nb_row"), data.pop("nb_col")]
        dims = [f"kernel_dim{i}" for i in (1, 2, 3)]
        if any(k in data for k in dims):
            if cls.rank != 3:
                raise ValueError(f"kernel_dim1..3 (Keras 1) belong to 3D layers; {data['type']} takes kernel_size")
            if not all(k in data for k in dims):
                raise ValueError("Keras 1 kernel_dim1, kernel_dim2 and kernel_dim3 go together "
                                 "(or give kernel_size: [k1, k2, k3])")
            if "kernel_size" in data:
                raise ValueError("give either kernel_size or the Keras 1 kernel_dim1..3, not both")
            data["kernel_size"] = [data.pop(k) for k in dims]
        if "init" in data and cls.kind in ("separable", "depthwise"):
            init = data.pop("init")  # Keras 1 `init` sets every weight initializer
            targets = ["depthwise_initializer"] + (["pointwise_initializer"] if cls.kind == "separable" else [])
            for key in targets:
                if key in data:
                    raise ValueError(f"give either init (Keras 1) or {key}, not both")
                data[key] = init
        if isinstance(data.get("padding"), str) and data["padding"].lower() == "full":
            raise ValueError("padding 'full' (Keras 1, Theano only) is not supported: use a ZeroPadding layer of "
                             "kernel_size - 1 on each side followed by padding: valid")
        return data

    @model_validator(mode="after")
    def _check(self):
        strides = getattr(self, "strides", None)
        dilation = getattr(self, "dilation_rate", None)
        if strides and dilation and max(strides) > 1 and max(dilation) > 1:
            raise ValueError(f"strides > 1 cannot be combined with dilation_rate > 1 (as in Keras); got "
                             f"strides={list(strides)} and dilation_rate={list(dilation)}")
        groups = getattr(self, "groups", 1)
        if groups > 1 and self.filters % groups:
            raise ValueError(f"filters ({self.filters}) must be divisible by groups ({groups})")
        if self.kind == "transpose":
            op = self.output_padding
            if op is not None and any(p >= s for p, s in zip(op, strides, strict=True)):
                raise ValueError(f"output_padding must be smaller than strides on every axis; got "
                                 f"output_padding={list(op)} and strides={list(strides)}")
            shape = getattr(self, "output_shape", None)
            if shape is not None:
                if op is not None:
                    raise ValueError("give either output_padding or the Keras 1 output_shape, not both")
                if len(shape) != self.rank + 2:
                    raise ValueError(f"output_shape (Keras 1) is the full {self.rank + 2}-tuple including the batch "
                                     f"axis, e.g. [null, 14, 14, {self.filters}]; got {list(shape)}")
                chan = shape[1] if self.data_format == "channels_first" else shape[-1]
                if chan is not None and chan != self.filters:
                    raise ValueError(f"output_shape {list(shape)} has {chan} channels but filters is {self.filters} "
                                     f"(data_format {self.data_format})")
                if any(v is not None and v < 1 for v in shape[1:]):
                    raise ValueError(f"output_shape sizes must be positive, got {list(shape)}")
        return self


def _make_config(name: str, rank: int, kind: str, *, causal: bool = False, groups: bool = False,
                 keras1_output_shape: bool = False, input_dim: bool = False):
    """Build the pydantic Config of one convolution layer (fields in the Keras argument order)."""
    f: dict[str, Any] = {}
    if kind != "depthwise":
        f["filters"] = (int, Field(gt=0, description="number of output channels (Keras 1: nb_filter)"))
    k1 = {1: "filter_length", 2: "nb_row, nb_col", 3: "kernel_dim1..3"}[rank]
    f["kernel_size"] = (int_tuple(rank, name="kernel size"),
                        Field(description=f"window size: an int or {rank} ints (Keras 1: {k1})"))
    f["strides"] = (int_tuple(rank, name="stride"),
                    Field(1, description="step of the window (Keras 1: subsample / subsample_length)"))
    if causal:
        f["padding"] = (PaddingCausal, Field("valid", description="valid (no padding), same (output length "
                        "ceil(L/stride); odd padding at the end) or causal (left padding only) (Keras 1: border_mode)"))
    else:
        f["padding"] = (Padding, Field("valid", description="valid (no padding) or same (odd padding at the end) "
                                                            "(Keras 1: border_mode)"))
    if kind == "transpose":
        f["output_padding"] = (int_tuple(rank, minimum=0, name="output padding") | None, Field(
            None, description="extra rows/cols added at the end of the output to pick between the sizes that map "
                              "back to the input; must be < strides. Default: derived (Keras 3)"))
    if keras1_output_shape:
        f["output_shape"] = (tuple[int | None, ...] | None, Field(
            None, description="Keras 1 Deconvolution2D: the full output shape including the batch axis, in the "
                              "layer's data_format, e.g. [null, 14, 14, 3]; checked against the size rule and "
                              "turned into output_padding"))
    f["data_format"] = (DataFormat, Field("channels_last", description="channels_last (batch, ..., channels) or "
                                          "channels_first (batch, channels, ...) (Keras 1: dim_ordering tf / th)"))
    f["dilation_rate"] = (int_tuple(rank, name="dilation rate"),
                          Field(1, description="spacing of the kernel taps (Keras 1: atrous_rate)"))
    if groups:
        f["groups"] = (int, Field(1, gt=0, description="split input and filters into this many independent groups"))
    if kind in ("separable", "depthwise"):
        f["depth_multiplier"] = (int, Field(1, gt=0, description="depthwise output channels per input channel"))
    f["activation"] = (ActivationName, Field("linear", description="activation applied to the output"))
    f["use_bias"] = (bool, Field(True, description="add a bias per output channel (Keras 1: bias)"))
    weights = {"conv": ["kernel"], "transpose": ["kernel"], "separable": ["depthwise", "pointwise"],
               "depthwise": ["depthwise"]}[kind]
    k1_names = {"kernel": " (Keras 1: init)", "depthwise": " (Keras 1: init)", "pointwise": " (Keras 1: init)"}
    label = {"kernel": "kernel", "depthwise": "depthwise kernel", "pointwise": "pointwise kernel"}
    for w in weights:
        f[f"{w}_initializer"] = (InitializerSpec, Field("glorot_uniform", description=f"{label[w]} initializer"
                                                                                        + k1_names[w]))
    f["bias_initializer"] = (InitializerSpec, Field("zeros", description="bias initializer"))
    for w in weights:
        extra = " (Keras 1: W_regularizer)" if w == "kernel" else ""
        f[f"{w}_regularizer"] = (RegularizerSpec, Field(None, description=f"penalty on the {label[w]}{extra}"))
    f["bias_regularizer"] = (RegularizerSpec, Field(None, description="penalty on the bias (Keras 1: b_regularizer)"))
    f["activity_regularizer"] = (RegularizerSpec, Field(None, description="penalty on the output"))
    for w in weights:
        extra = " (Keras 1: W_constraint)" if w == "kernel" else ""
        f[f"{w}_constraint"] = (ConstraintSpec, Field(None, description=f"constraint on the {label[w]}{extra}"))
    f["bias_constraint"] = (ConstraintSpec, Field(None, description="constraint on the bias (Keras 1: b_constraint)"))
    cls = create_model(f"{name}Config", __base__=_ConvConfig, __module__=__name__, **f)
    cls.rank = rank
    cls.kind = kind
    # the Keras 1 names upgrade() folds into kernel_size / both initializers, and the global renames
    # that no Keras 1 convolution of this rank took
    cls.keras1_structural = {1: {}, 2: {"nb_row": "kernel_size", "nb_col": "kernel_size"},
                             3: {f"kernel_dim{i}": "kernel_size" for i in (1, 2, 3)}}[rank] | (
        {"init": "depthwise_initializer"} if kind in ("separable", "depthwise") else {})
    cls.keras1_exclude = frozenset({"stride", "subsample"} if rank == 1 else
                                   {"stride", "subsample_length", "filter_length"})
    if input_dim:
        cls.accepts_input_dim = "sequence"
    return cls


class _Cache:
    """What backward needs; ``cols`` is a pooled buffer handed back once backward has used it."""

    __slots__ = ("x5", "cols", "mid", "y2d", "z2d", "geo", "in_shape")

    def __init__(self, **kw):
        for key in self.__slots__:
            setattr(self, key, kw.get(key))


class _ConvBase(Layer):
    family = "convolution"
    rank: ClassVar[int] = 2
    kind: ClassVar[str] = "conv"

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self._geometries: dict = {}  # input spatial shape -> geometry: a pure memo, the same for every call

    # ------------------------------------------------------------------ shape side
    def _split(self, input_shape):
        """(spatial lengths, channels) of an input shape, or a ShapeError."""
        r = self.rank
        first = self.config.data_format == "channels_first"
        layout = f"(channels, {_AXES[r]})" if first else f"({_AXES[r]}, channels)"
        if not isinstance(input_shape, (tuple, list)) or len(input_shape) != r + 1:
            hint = None
            if isinstance(input_shape, (tuple, list)) and len(input_shape) == r and all(input_shape):
                with_c = (1, *input_shape) if first else (*input_shape, 1)
                hint = f"add a channel axis, e.g. a Reshape layer with target_shape {list(with_c)}"
            elif isinstance(input_shape, (tuple, list)) and len(input_shape) == r + 2 and r < 3:
                hint = f"this is {r + 1}D data: use the {r + 1}D layer"
            raise self.shape_error(input_shape, f"expects {r + 1} axes {layout} besides the batch axis", hint)
        chans = input_shape[0] if first else input_shape[-1]
        spatial = tuple(input_shape[1:] if first else input_shape[:-1])
        if chans is None:
            raise self.shape_error(input_shape, "the channel axis must have a known size",
                                   "give the number of channels in the input shape")
        return spatial, chans

    def _join(self, spatial, chans):
        return (chans, *spatial) if self.config.data_format == "channels_first" else (*spatial, chans)

    def _conv_out(self, input_shape, spatial):
        """Output lengths of the (forward) convolution, with a ShapeError when one would be empty."""
        c = self.config
        out, pads = [], []
        for axis, n in enumerate(spatial):
            k, s, d = c.kernel_size[axis], c.strides[axis], c.dilation_rate[axis]
            o, p = conv_length(n, k, s, d, c.padding)
            if o is not None and o < 1:
                k_eff = (k - 1) * d + 1
                raise self.shape_error(
                    input_shape, f"spatial axis {axis + 1} has length {n}, shorter than the "
                    f"{'dilated ' if d > 1 else ''}kernel ({k_eff}) with padding valid",
                    "use padding: same, a smaller kernel_size / dilation_rate, or a larger input")
            out.append(o)
            pads.append(p)
        return tuple(out), tuple(pads)

    def _spatial_out(self, input_shape, spatial):
        return self._conv_out(input_shape, spatial)[0]

    def output_shape(self, input_shape):
        spatial, chans = self._split(input_shape)
        self._check_channels(input_shape, chans)
        return self._join(self._spatial_out(input_shape, spatial), self._out_channels(chans))

    def _check_channels(self, input_shape, chans):
        groups = getattr(self.config, "groups", 1)
        if chans % groups:
            raise self.shape_error(input_shape, f"{chans} input channels cannot be split into {groups} groups",
                                   f"use a groups value that divides {chans}")

    def _out_channels(self, chans):
        return self.config.filters

    def _geometry(self, spatial) -> Geometry:
        """Three-axis geometry for a concrete input (cached per spatial shape)."""
        geo = self._geometries.get(spatial)
        if geo is None:
            c = self.config
            out, pads = self._conv_out(tuple(spatial) + (None,), spatial)
            geo = Geometry(_three(spatial), _three(out), _three(c.kernel_size), _three(c.strides),
                           _three(c.dilation_rate), _three(pads, 0))
            self._geometries[spatial] = geo
        return geo

    def flops(self, input_shape, output_shape):
        spatial, chans = self._split(input_shape)
        out_spatial = output_shape[1:] if self.config.data_format == "channels_first" else output_shape[:-1]
        taps = math.prod(self.config.kernel_size)
        groups = getattr(self.config, "groups", 1)
        return elements(out_spatial) * taps * (chans // groups) * self.config.filters

    # ------------------------------------------------------------------ array helpers
    def _buffers(self, workspace):
        """This layer's pool of scratch arrays in the caller's workspace (fresh arrays without one)."""
        from ...kernels.workspace import pool_of

        return pool_of(workspace, (id(self), "conv"))

    def _to_last(self, x):
        if self.config.data_format == "channels_first":
            return np.ascontiguousarray(np.moveaxis(x, 1, -1))
        return np.ascontiguousarray(x)

    def _from_last(self, y):
        if self.config.data_format == "channels_first":
            return np.ascontiguousarray(np.moveaxis(y, -1, 1))
        return y

    def _bias(self, params, dtype):
        return params["bias"].astype(dtype, copy=False) if self.config.use_bias else None

    @staticmethod
    def _kernel_grad(params, name, dw, out):
        """{name: gradient} in the weight's shape and dtype, written into the engine's buffer when it has one."""
        w = params[name]
        buf = fitting_buffer(out, name, w.shape, w.dtype)
        if buf is not None:
            buf[...] = dw.reshape(w.shape)
            return {name: buf}
        return {name: dw.reshape(w.shape).astype(w.dtype, copy=False)}

    def _bias_grad(self, params, db, out):
        if not self.config.use_bias:
            return {}
        bias = params["bias"]
        buf = fitting_buffer(out, "bias", bias.shape, bias.dtype)
        if buf is not None:
            buf[...] = db
            return {"bias": buf}
        return {"bias": db.astype(bias.dtype, copy=False)}


_DESC_COMMON = ("Bias per output channel, then the activation. Weights in the Keras 3 layout. "
                "Keras 1 names (nb_filter, nb_row/nb_col, border_mode, subsample, dim_ordering, init, W_regularizer, "
                "...) are accepted. Masks are dropped.")
