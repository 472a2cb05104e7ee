"""Convolution layers: Conv1D/2D/3D, Conv1D/2D/3DTranspose, SeparableConv1D/2D and DepthwiseConv1D/2D,
with the Keras 1 names (Convolution1D/2D/3D, AtrousConvolution1D/2D, SeparableConvolution2D,
Deconvolution2D/Deconv2D) as aliases.

All of them share one N-d implementation: the maths lives in ``layerforge.kernels.conv``
(im2col/col2im + BLAS GEMMs, direct kernels for small windows, depthwise kernels, one block of samples
per thread) and always runs channels_last with three spatial axes (1D and 2D layers add unit axes;
channels_first is transposed at entry and exit), so this module only does shapes and bookkeeping.
A transposed convolution is the adjoint of a convolution and reuses the same kernels (its forward is
the convolution's input gradient, its backward the convolution's forward).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, create_model, model_validator

from ._numpy import np
from .base import Example, Layer, LayerConfig, ParamSpec, elements, fitting_buffer, register
from .fields import ActivationName, ConstraintSpec, DataFormat, InitializerSpec, RegularizerSpec, int_tuple


def _lower(value: Any):
    return value.lower() if isinstance(value, str) else value


Padding = Annotated[Literal["valid", "same"], BeforeValidator(_lower)]
PaddingCausal = Annotated[Literal["valid", "same", "causal"], BeforeValidator(_lower)]

_AXES = {1: "steps", 2: "rows, cols", 3: "dim1, dim2, dim3"}


# ----------------------------------------------------------------------------- length rules (pure)

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


# ----------------------------------------------------------------------------- configs

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


# ----------------------------------------------------------------------------- the shared layer


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
        from ..kernels.workspace import pool_of

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


class _Conv(_ConvBase):
    """Plain (optionally grouped) convolution: direct kernels when a window holds few values, else im2col + GEMM."""

    def param_specs(self, input_shape):
        c = self.config
        _, chans = self._split(input_shape)
        specs = [ParamSpec("kernel", (*c.kernel_size, chans // c.groups, c.filters), c.kernel_initializer,
                           regularizer=c.kernel_regularizer, constraint=c.kernel_constraint)]
        if c.use_bias:
            specs.append(ParamSpec("bias", (c.filters,), c.bias_initializer, regularizer=c.bias_regularizer,
                                   constraint=c.bias_constraint))
        return specs

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        from ..kernels import conv as K

        c = self.config
        xl = self._to_last(x)
        geo = self._geometry(xl.shape[1:-1])
        x5 = xl.reshape((xl.shape[0], *geo.inp, xl.shape[-1]))
        kernel = params["kernel"]
        bias = self._bias(params, x.dtype)
        taps = geo.k[0] * geo.k[1] * geo.k[2]
        cols = None
        if K.use_direct(taps, x5.shape[-1], c.groups):
            w3 = np.ascontiguousarray(kernel.reshape(taps, x5.shape[-1], c.filters), dtype=x.dtype)
            y2d, z_keep = K.direct_conv(x5, w3, bias, geo, c.activation)
        else:
            w2d = np.ascontiguousarray(kernel.reshape(-1, c.filters), dtype=x.dtype)
            y2d, z_keep, cols = K.gemm_conv_forward(x5, w2d, bias, geo, c.groups, c.activation,
                                                    self._buffers(workspace), keep=training)
        y = y2d.reshape((xl.shape[0], *geo.out[3 - self.rank:], c.filters))
        return self._from_last(y), _Cache(x5=x5, cols=cols, y2d=y2d, z2d=z_keep, geo=geo, in_shape=xl.shape)

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        from ..kernels import conv as K

        c = self.config
        geo = cache.geo
        x5 = cache.x5
        kernel = params["kernel"]
        dy2d = self._to_last(dy).reshape(-1, c.filters)
        w2d = np.ascontiguousarray(kernel.reshape(-1, c.filters), dtype=dy2d.dtype)
        taps = geo.k[0] * geo.k[1] * geo.k[2]
        pool = self._buffers(workspace)
        cols, cache.cols = cache.cols, None  # a second backward on this cache rebuilds the columns
        if K.use_direct(taps, x5.shape[-1], c.groups):
            dw, db, dx5 = K.direct_conv_backward(x5, dy2d, cache.y2d, cache.z2d, w2d, geo, c.activation,
                                                 need_dx, pool)
        elif c.activation == "relu":  # relu derivative and bias gradient fused into the chunks
            dw, dx5, db = K.gemm_conv_backward(x5, np.ascontiguousarray(dy2d), w2d, geo, c.groups, pool, cols,
                                               need_dx, relu_y2d=cache.y2d)
            db = db if c.use_bias else None
        else:
            dz2d, db = K.activation_backward(dy2d, cache.y2d, cache.z2d, c.activation, c.use_bias, x5.shape[0])
            dw, dx5, _ = K.gemm_conv_backward(x5, dz2d, w2d, geo, c.groups, pool, cols, need_dx)
        grads = {**self._kernel_grad(params, "kernel", dw, out), **self._bias_grad(params, db, out)}
        dx = self._from_last(dx5.reshape(cache.in_shape)) if need_dx else None
        return dx, grads


class _ConvTranspose(_ConvBase):
    """Transposed convolution = the adjoint of a convolution: forward is conv's backward-data (col2im),
    backward is conv's forward (im2col)."""

    kind = "transpose"

    def _axis_padding(self, axis, n, input_shape):
        """(output length, forward-conv padding) on one axis, honouring output_padding / Keras 1 output_shape."""
        c = self.config
        k, s, d = c.kernel_size[axis], c.strides[axis], c.dilation_rate[axis]
        shape = getattr(c, "output_shape", None)
        if shape is not None:
            spatial = shape[2:] if c.data_format == "channels_first" else shape[1:-1]
            want = spatial[axis]
            if want is not None:
                if n is None:
                    return want, None
                for op in (None, *range(s)):
                    got, pad = deconv_length(n, k, s, d, c.padding, op)
                    if got == want:
                        return got, pad
                possible = sorted({deconv_length(n, k, s, d, c.padding, op)[0] for op in (None, *range(s))})
                raise self.shape_error(
                    input_shape, f"output_shape asks for length {want} on spatial axis {axis + 1}, "
                    f"but a transposed convolution (kernel {k}, stride {s}, padding {c.padding}) of length {n} "
                    f"can only give {', '.join(map(str, possible))}",
                    f"set output_shape to one of those sizes (or drop it: the default is {possible[-1]}); "
                    f"the forward convolution of the output must map back to length {n}")
        op = None if c.output_padding is None else c.output_padding[axis]
        return deconv_length(n, k, s, d, c.padding, op)

    def _spatial_out(self, input_shape, spatial):
        out = []
        for axis, n in enumerate(spatial):
            o, _ = self._axis_padding(axis, n, input_shape)
            if o is not None and o < 1:
                raise self.shape_error(input_shape, f"the output would have length {o} on spatial axis {axis + 1}",
                                       "use a larger output_padding or padding: valid")
            out.append(o)
        return tuple(out)

    def _geometry(self, spatial) -> Geometry:
        geo = self._geometries.get(spatial)
        if geo is None:
            c = self.config
            shown = self._join(spatial, None)
            out, pads = zip(*(self._axis_padding(a, n, shown) for a, n in enumerate(spatial)), strict=True)
            # the conv this layer transposes maps `out` (its input) back to `spatial`
            geo = Geometry(_three(out), _three(spatial), _three(c.kernel_size), _three(c.strides),
                           _three(c.dilation_rate), _three(pads, 0))
            self._geometries[spatial] = geo
        return geo

    def param_specs(self, input_shape):
        c = self.config
        _, chans = self._split(input_shape)
        specs = [ParamSpec("kernel", (*c.kernel_size, c.filters, chans), c.kernel_initializer,
                           regularizer=c.kernel_regularizer, constraint=c.kernel_constraint)]
        if c.use_bias:
            specs.append(ParamSpec("bias", (c.filters,), c.bias_initializer, regularizer=c.bias_regularizer,
                                   constraint=c.bias_constraint))
        return specs

    def flops(self, input_shape, output_shape):
        spatial, chans = self._split(input_shape)
        return elements(spatial) * math.prod(self.config.kernel_size) * chans * self.config.filters

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        from ..kernels import conv as K

        c = self.config
        xl = self._to_last(x)
        B, chans = xl.shape[0], xl.shape[-1]
        geo = self._geometry(xl.shape[1:-1])
        x2d = xl.reshape(-1, chans)
        w2d = np.ascontiguousarray(params["kernel"].reshape(-1, chans), dtype=x.dtype)  # (taps * f, C_in)
        y2d, z_keep = K.transpose_forward(x2d, w2d, self._bias(params, x.dtype), geo, (B, *geo.inp, c.filters),
                                          c.activation, self._buffers(workspace))
        y = y2d.reshape((B, *geo.inp[3 - self.rank:], c.filters))
        return self._from_last(y), _Cache(x5=x2d, y2d=y2d, z2d=z_keep, geo=geo, in_shape=xl.shape)

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        from ..kernels import conv as K

        c = self.config
        B = cache.in_shape[0]
        dy2d = self._to_last(dy).reshape(-1, c.filters)
        dz2d, db = K.activation_backward(dy2d, cache.y2d, cache.z2d, c.activation, c.use_bias, B)
        kernel = params["kernel"]
        w2d = np.ascontiguousarray(kernel.reshape(-1, kernel.shape[-1]), dtype=dz2d.dtype)
        dw, dx2d = K.transpose_backward(dz2d, cache.x5, w2d, cache.geo, self._buffers(workspace), need_dx, B)
        grads = {**self._kernel_grad(params, "kernel", dw, out), **self._bias_grad(params, db, out)}
        dx = self._from_last(dx2d.reshape(cache.in_shape)) if need_dx else None
        return dx, grads


class _Depthwise(_ConvBase):
    """Depthwise convolution (direct Numba kernels), optionally followed by a 1x1 pointwise GEMM (separable)."""

    kind = "depthwise"

    def _out_channels(self, chans):
        return chans * self.config.depth_multiplier

    def param_specs(self, input_shape):
        c = self.config
        _, chans = self._split(input_shape)
        dm = c.depth_multiplier
        specs = [ParamSpec(self._dw_name, (*c.kernel_size, chans, dm), c.depthwise_initializer,
                           regularizer=c.depthwise_regularizer, constraint=c.depthwise_constraint)]
        if self.kind == "separable":
            specs.append(ParamSpec("pointwise_kernel", (*(1,) * self.rank, chans * dm, c.filters),
                                   c.pointwise_initializer, regularizer=c.pointwise_regularizer,
                                   constraint=c.pointwise_constraint))
        if c.use_bias:
            specs.append(ParamSpec("bias", (self._out_channels(chans),), c.bias_initializer,
                                   regularizer=c.bias_regularizer, constraint=c.bias_constraint))
        return specs

    _dw_name = "kernel"

    def flops(self, input_shape, output_shape):
        spatial, chans = self._split(input_shape)
        out_spatial = output_shape[1:] if self.config.data_format == "channels_first" else output_shape[:-1]
        pixels = elements(out_spatial)
        mid = chans * self.config.depth_multiplier
        total = pixels * math.prod(self.config.kernel_size) * mid
        if self.kind == "separable":
            total += pixels * mid * self.config.filters
        return total

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        from ..kernels import conv as K

        c = self.config
        xl = self._to_last(x)
        B, chans = xl.shape[0], xl.shape[-1]
        geo = self._geometry(xl.shape[1:-1])
        x5 = xl.reshape((B, *geo.inp, chans))
        dm = c.depth_multiplier
        w5 = np.ascontiguousarray(params[self._dw_name].reshape((*geo.k, chans, dm)), dtype=x.dtype)
        pw = None
        if self.kind == "separable":
            pw = np.ascontiguousarray(params["pointwise_kernel"].reshape(chans * dm, c.filters), dtype=x.dtype)
        y2d, z_keep, mid = K.depthwise_conv(x5, w5, pw, self._bias(params, x.dtype), geo, c.activation)
        y = y2d.reshape((B, *geo.out[3 - self.rank:], y2d.shape[1]))
        return self._from_last(y), _Cache(x5=x5, mid=mid, y2d=y2d, z2d=z_keep, geo=geo, in_shape=xl.shape)

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        from ..kernels import conv as K

        c = self.config
        x5 = cache.x5
        chans, dm = x5.shape[-1], c.depth_multiplier
        dy2d = self._to_last(dy).reshape(-1, cache.y2d.shape[1])
        dz2d, db = K.activation_backward(dy2d, cache.y2d, cache.z2d, c.activation, c.use_bias, x5.shape[0])
        w5 = np.ascontiguousarray(params[self._dw_name].reshape((*cache.geo.k, chans, dm)), dtype=dz2d.dtype)
        pw = None
        if self.kind == "separable":
            pw = np.ascontiguousarray(params["pointwise_kernel"].reshape(chans * dm, c.filters), dtype=dz2d.dtype)
        dwk, dpw, dx5 = K.depthwise_conv_backward(dz2d, x5, w5, pw, cache.mid, cache.geo, need_dx)
        grads = self._kernel_grad(params, self._dw_name, dwk, out)
        if pw is not None:
            grads.update(self._kernel_grad(params, "pointwise_kernel", dpw, out))
        grads.update(self._bias_grad(params, db, out))
        dx = self._from_last(dx5.reshape(cache.in_shape)) if need_dx else None
        return dx, grads


class _Separable(_Depthwise):
    kind = "separable"
    _dw_name = "depthwise_kernel"

    def _out_channels(self, chans):
        return self.config.filters


# ----------------------------------------------------------------------------- the registered layers

_DESC_COMMON = ("Bias per output channel, then the activation. Weights in the Keras 3 layout. "
                "Keras 1 names (nb_filter, nb_row/nb_col, border_mode, subsample, dim_ordering, init, W_regularizer, "
                "...) are accepted. Masks are dropped.")


@register
class Conv1D(_Conv):
    """1D convolution (cross-correlation) over steps: input (steps, channels) -> (new_steps, filters).
    padding valid / same (TF placement) / causal (left padding only, for autoregressive models); dilation_rate for
    atrous convolution; groups for grouped convolution. Kernel (kernel_size, channels/groups, filters)
    (Keras 1 stored (k, 1, in, f)). Keras 1 Convolution1D / AtrousConvolution1D, including input_dim /
    input_length. Bias per output channel, then the activation. Masks are dropped."""

    type = "Conv1D"
    rank = 1
    aliases = {"Convolution1D": {}, "AtrousConvolution1D": {}}
    Config = _make_config("Conv1D", 1, "conv", causal=True, groups=True, input_dim=True)
    examples = [
        Example({"type": "Convolution1D", "nb_filter": 64, "filter_length": 3, "border_mode": "same",
                 "input_dim": 32, "input_length": 10}, (10, 32), output_shape=(10, 64), params=6208,
                gradcheck=False, note="reference figure"),
        Example({"type": "Convolution1D", "nb_filter": 64, "filter_length": 3, "subsample_length": 2}, (10, 32),
                output_shape=(4, 64), params=6208, gradcheck=False, note="reference figure"),
        Example({"type": "AtrousConvolution1D", "nb_filter": 16, "filter_length": 3, "atrous_rate": 2}, (20, 8),
                output_shape=(16, 16), params=400, gradcheck=False, note="reference figure"),
        Example({"type": "Conv1D", "filters": 4, "kernel_size": 2, "dilation_rate": 2, "padding": "causal",
                 "activation": "tanh"}, (7, 3), output_shape=(7, 4), params=28),
        Example({"type": "Conv1D", "filters": 6, "kernel_size": 4, "strides": 2, "padding": "same", "groups": 2},
                (9, 4), output_shape=(5, 6), params=4 * 2 * 6 + 6),
        Example({"type": "Conv1D", "filters": 3, "kernel_size": 3, "data_format": "channels_first",
                 "use_bias": False, "activation": "sigmoid"}, (2, 8), output_shape=(3, 6), params=18),
    ]


@register
class Conv2D(_Conv):
    """2D convolution (cross-correlation) over images: input (rows, cols, channels) -> (new_rows, new_cols,
    filters) (channels first with data_format channels_first / Keras 1 dim_ordering th). padding valid or same
    (TF placement: odd padding at the bottom/right); dilation_rate for atrous convolution; groups for grouped
    convolution. Kernel (kh, kw, channels/groups, filters). Keras 1 Convolution2D / AtrousConvolution2D.
    Bias per output channel, then the activation. Masks are dropped."""

    type = "Conv2D"
    rank = 2
    aliases = {"Convolution2D": {}, "AtrousConvolution2D": {}}
    Config = _make_config("Conv2D", 2, "conv", groups=True)
    examples = [
        Example({"type": "Convolution2D", "nb_filter": 32, "nb_row": 3, "nb_col": 3, "activation": "relu"},
                (28, 28, 1), output_shape=(26, 26, 32), params=320, gradcheck=False, note="reference figure"),
        Example({"type": "Convolution2D", "nb_filter": 64, "nb_row": 3, "nb_col": 3, "border_mode": "same",
                 "dim_ordering": "th"}, (3, 32, 32), output_shape=(64, 32, 32), params=1792, gradcheck=False,
                note="reference figure"),
        Example({"type": "AtrousConvolution2D", "nb_filter": 16, "nb_row": 3, "nb_col": 3, "atrous_rate": [2, 2]},
                (32, 32, 3), output_shape=(28, 28, 16), params=448, gradcheck=False, note="reference figure"),
        Example({"type": "Convolution2D", "nb_filter": 4, "nb_row": 3, "nb_col": 3, "border_mode": "same",
                 "subsample": [2, 2]}, (7, 7, 3), output_shape=(4, 4, 4), params=112),
        Example({"type": "Convolution2D", "nb_filter": 4, "nb_row": 3, "nb_col": 3, "subsample": [2, 2]},
                (7, 7, 3), output_shape=(3, 3, 4), params=112),
        Example({"type": "Conv2D", "filters": 3, "kernel_size": [2, 4], "padding": "same", "dilation_rate": 2,
                 "activation": "tanh"}, (5, 6, 2), output_shape=(5, 6, 3), params=51),
        Example({"type": "Conv2D", "filters": 4, "kernel_size": 3, "strides": [2, 1], "groups": 2,
                 "data_format": "channels_first", "use_bias": False}, (4, 5, 6), output_shape=(4, 2, 4),
                params=72),
    ]


@register
class Conv3D(_Conv):
    """3D convolution (cross-correlation) over volumes: input (dim1, dim2, dim3, channels) -> (d1', d2', d3',
    filters) (channels first with channels_first / th). padding valid / same (TF placement), dilation_rate,
    groups. Kernel (k1, k2, k3, channels/groups, filters). Keras 1 Convolution3D (kernel_dim1..3).
    Bias per output channel, then the activation. Masks are dropped."""

    type = "Conv3D"
    rank = 3
    aliases = {"Convolution3D": {}}
    Config = _make_config("Conv3D", 3, "conv", groups=True)
    examples = [
        Example({"type": "Convolution3D", "nb_filter": 8, "kernel_dim1": 3, "kernel_dim2": 3, "kernel_dim3": 3},
                (16, 16, 16, 1), output_shape=(14, 14, 14, 8), params=224, gradcheck=False, note="reference figure"),
        Example({"type": "Conv3D", "filters": 2, "kernel_size": [2, 3, 2], "strides": 2, "padding": "same",
                 "activation": "tanh"}, (3, 5, 4, 2), output_shape=(2, 3, 2, 2), params=50),
        Example({"type": "Conv3D", "filters": 2, "kernel_size": 2, "dilation_rate": [1, 2, 1], "groups": 2,
                 "data_format": "channels_first"}, (2, 3, 4, 3), output_shape=(2, 2, 2, 2), params=18),
    ]


@register
class Conv1DTranspose(_ConvTranspose):
    """1D transposed convolution (the gradient of Conv1D with respect to its input, sometimes called
    deconvolution): input (steps, channels) -> (new_steps, filters); length (L-1)*stride + max(k, stride) (valid)
    or L*stride (same), output_padding picks another valid length. Kernel (k, filters, channels) as in Keras 3.
    Bias per output channel, then the activation. Masks are dropped."""

    type = "Conv1DTranspose"
    rank = 1
    aliases = {"Convolution1DTranspose": {}}
    Config = _make_config("Conv1DTranspose", 1, "transpose")
    examples = [
        Example({"type": "Conv1DTranspose", "filters": 3, "kernel_size": 3, "strides": 2}, (4, 2),
                output_shape=(9, 3), params=21),
        Example({"type": "Conv1DTranspose", "filters": 2, "kernel_size": 4, "strides": 3, "padding": "same",
                 "output_padding": 1, "activation": "tanh"}, (3, 2), output_shape=(7, 2), params=18),
    ]


@register
class Conv2DTranspose(_ConvTranspose):
    """2D transposed convolution (the gradient of Conv2D with respect to its input; Keras 1 Deconvolution2D):
    input (rows, cols, channels) -> (rows', cols', filters); each length is (L-1)*stride + max(k, stride) with
    padding valid or L*stride with same (Keras 3 rule); output_padding (< strides) picks another of the sizes that
    map back to the input. The Keras 1 `output_shape` (full 4-tuple incl. batch, in the layer's data_format) is
    accepted and checked: it must be one of those sizes. Kernel (kh, kw, filters, channels) as in Keras 2/3
    (Keras 1 stored (kh, kw, channels, filters)). Bias per output channel, then the activation. Masks are dropped."""

    type = "Conv2DTranspose"
    rank = 2
    aliases = {"Deconvolution2D": {}, "Deconv2D": {}, "Convolution2DTranspose": {}}
    Config = _make_config("Conv2DTranspose", 2, "transpose", keras1_output_shape=True)
    examples = [
        Example({"type": "Deconvolution2D", "nb_filter": 3, "nb_row": 3, "nb_col": 3, "output_shape": [None, 3, 14, 14],
                 "dim_ordering": "th"}, (3, 12, 12), output_shape=(3, 14, 14), params=84, gradcheck=False,
                note="reference figure"),
        Example({"type": "Deconvolution2D", "nb_filter": 3, "nb_row": 3, "nb_col": 3, "output_shape": [None, 3, 25, 25],
                 "subsample": [2, 2], "dim_ordering": "th"}, (3, 12, 12), output_shape=(3, 25, 25), params=84,
                gradcheck=False, note="reference figure"),
        Example({"type": "Conv2DTranspose", "filters": 3, "kernel_size": 2, "strides": 3}, (12, 12, 3),
                output_shape=(36, 36, 3), params=39, gradcheck=False, note="reference figure"),
        Example({"type": "Conv2DTranspose", "filters": 3, "kernel_size": 3, "strides": 3, "padding": "same"},
                (12, 12, 3), output_shape=(36, 36, 3), params=84, gradcheck=False, note="reference figure"),
        Example({"type": "Conv2DTranspose", "filters": 16, "kernel_size": 4, "strides": 2, "padding": "same"},
                (7, 7, 32), output_shape=(14, 14, 16), params=8208, gradcheck=False, note="reference figure"),
        Example({"type": "Conv2DTranspose", "filters": 2, "kernel_size": 3, "strides": 2, "padding": "same",
                 "output_padding": [1, 0], "activation": "tanh"}, (3, 4, 2), output_shape=(6, 7, 2), params=38),
        Example({"type": "Conv2DTranspose", "filters": 2, "kernel_size": [2, 3], "dilation_rate": 2,
                 "data_format": "channels_first"}, (3, 3, 2), output_shape=(2, 5, 6), params=38),
        Example({"type": "Deconv2D", "filters": 2, "kernel_size": 4, "strides": 2, "padding": "same",
                 "output_shape": [None, 5, 6, 2]}, (3, 3, 2), output_shape=(5, 6, 2), params=66),
    ]


@register
class Conv3DTranspose(_ConvTranspose):
    """3D transposed convolution (the gradient of Conv3D with respect to its input): input (d1, d2, d3,
    channels) -> (d1', d2', d3', filters), lengths as Conv2DTranspose. Kernel (k1, k2, k3, filters, channels).
    Bias per output channel, then the activation. Masks are dropped."""

    type = "Conv3DTranspose"
    rank = 3
    aliases = {"Convolution3DTranspose": {}}
    Config = _make_config("Conv3DTranspose", 3, "transpose")
    examples = [
        Example({"type": "Conv3DTranspose", "filters": 2, "kernel_size": 2, "strides": 2}, (2, 3, 2, 2),
                output_shape=(4, 6, 4, 2), params=34),
        Example({"type": "Conv3DTranspose", "filters": 1, "kernel_size": [3, 2, 2], "strides": [2, 1, 1],
                 "padding": "same", "data_format": "channels_first", "activation": "tanh"}, (2, 2, 3, 2),
                output_shape=(1, 4, 3, 2), params=25),
    ]


@register
class SeparableConv1D(_Separable):
    """Depthwise-separable 1D convolution: a per-channel convolution producing depth_multiplier maps per input
    channel (channel-major: output c*depth_multiplier + m), then a 1x1 convolution to `filters`, bias,
    activation. Weights depthwise_kernel (k, channels, depth_multiplier), pointwise_kernel (1, channels *
    depth_multiplier, filters), bias (filters). Masks are dropped."""

    type = "SeparableConv1D"
    rank = 1
    aliases = {"SeparableConvolution1D": {}}
    Config = _make_config("SeparableConv1D", 1, "separable")
    examples = [
        Example({"type": "SeparableConv1D", "filters": 3, "kernel_size": 3, "depth_multiplier": 2,
                 "padding": "same"}, (7, 2), output_shape=(7, 3), params=12 + 12 + 3),
        Example({"type": "SeparableConv1D", "filters": 2, "kernel_size": 2, "strides": 2,
                 "data_format": "channels_first", "activation": "tanh"}, (3, 7), output_shape=(2, 3),
                params=6 + 6 + 2),
    ]


@register
class SeparableConv2D(_Separable):
    """Depthwise-separable 2D convolution (Keras 1 SeparableConvolution2D): a per-channel spatial convolution
    producing depth_multiplier maps per input channel (channel-major: output c*depth_multiplier + m), then a 1x1
    convolution to `filters`, then bias and activation; strides/padding/dilation apply to the depthwise step.
    Weights depthwise_kernel (kh, kw, channels, depth_multiplier), pointwise_kernel (1, 1, channels *
    depth_multiplier, filters), bias (filters). Keras 1 `init` sets both initializers. Masks are dropped."""

    type = "SeparableConv2D"
    rank = 2
    aliases = {"SeparableConvolution2D": {}}
    Config = _make_config("SeparableConv2D", 2, "separable")
    examples = [
        Example({"type": "SeparableConvolution2D", "nb_filter": 64, "nb_row": 3, "nb_col": 3}, (32, 32, 16),
                output_shape=(30, 30, 64), params=1232, gradcheck=False, note="reference figure"),
        Example({"type": "SeparableConvolution2D", "nb_filter": 64, "nb_row": 3, "nb_col": 3,
                 "depth_multiplier": 2}, (32, 32, 16), output_shape=(30, 30, 64), params=2400, gradcheck=False,
                note="reference figure"),
        Example({"type": "SeparableConvolution2D", "nb_filter": 64, "nb_row": 3, "nb_col": 3, "border_mode": "same",
                 "subsample": [2, 2]}, (32, 32, 16), output_shape=(16, 16, 64), params=1232, gradcheck=False,
                note="reference figure"),
        Example({"type": "SeparableConv2D", "filters": 3, "kernel_size": [3, 2], "depth_multiplier": 2,
                 "strides": 2, "padding": "same", "activation": "tanh"}, (5, 6, 2), output_shape=(3, 3, 3),
                params=24 + 12 + 3),
        Example({"type": "SeparableConv2D", "filters": 2, "kernel_size": 2, "dilation_rate": 2,
                 "data_format": "channels_first", "use_bias": False}, (3, 5, 4), output_shape=(2, 3, 2),
                params=12 + 6),
    ]


@register
class DepthwiseConv1D(_Depthwise):
    """Depthwise 1D convolution: each input channel convolved with its own depth_multiplier filters
    (output channel c*depth_multiplier + m), bias, activation. Kernel (k, channels, depth_multiplier),
    bias (channels * depth_multiplier). Masks are dropped."""

    type = "DepthwiseConv1D"
    rank = 1
    Config = _make_config("DepthwiseConv1D", 1, "depthwise")
    examples = [
        Example({"type": "DepthwiseConv1D", "kernel_size": 3, "depth_multiplier": 2, "padding": "same",
                 "strides": 2}, (7, 3), output_shape=(4, 6), params=18 + 6),
        Example({"type": "DepthwiseConv1D", "kernel_size": 2, "dilation_rate": 2, "activation": "tanh",
                 "data_format": "channels_first"}, (2, 6), output_shape=(2, 4), params=6),
    ]


@register
class DepthwiseConv2D(_Depthwise):
    """Depthwise 2D convolution: each input channel convolved with its own depth_multiplier filters
    (output channel c*depth_multiplier + m), bias, activation; padding valid / same (TF placement), strides,
    dilation_rate. Kernel (kh, kw, channels, depth_multiplier), bias (channels * depth_multiplier).
    Masks are dropped."""

    type = "DepthwiseConv2D"
    rank = 2
    Config = _make_config("DepthwiseConv2D", 2, "depthwise")
    examples = [
        Example({"type": "DepthwiseConv2D", "kernel_size": 3, "depth_multiplier": 2, "padding": "same",
                 "strides": 2, "activation": "tanh"}, (5, 4, 2), output_shape=(3, 2, 4), params=36 + 4),
        Example({"type": "DepthwiseConv2D", "kernel_size": [2, 3], "dilation_rate": [2, 1],
                 "data_format": "channels_first", "use_bias": False}, (3, 5, 4), output_shape=(3, 3, 2),
                params=18),
    ]
