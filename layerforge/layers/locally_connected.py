"""Locally-connected layers (Keras 1/2 semantics; Keras 3 removed them): LocallyConnected1D/2D.

Like a valid convolution, but every output position has its own weight matrix. Weights use the
Keras 2 layout: 1D ``kernel (L_out, k*in, f)``, ``bias (L_out, f)``; 2D ``kernel (H'*W', kh*kw*C, f)``,
``bias (H', W', f)``. A patch is flattened step-major then feature (1D), (row, col, channel) for
channels_last and (channel, row, col) for channels_first (2D). The forward pass is a batched
per-position matmul (one BLAS GEMM per position); the backward scatters the patch gradients back
with one strided add per kernel tap.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, Field, WithJsonSchema

from ._numpy import np
from .base import Example, Layer, ParamSpec, register
from .fields import ActivationName, DataFormat, InitializerSpec, int_tuple
from .weighted import KernelBiasConfig


def _valid_only(value: Any) -> str:
    v = value.lower() if isinstance(value, str) else value
    if v != "valid":
        raise ValueError(f"locally-connected layers support only padding 'valid', not {value!r} (Keras 1 and 2 "
                         "never implemented 'same'); put a ZeroPadding layer in front to pad the input")
    return v


ValidPadding = Annotated[str, BeforeValidator(_valid_only), WithJsonSchema({"enum": ["valid"]})]


class _LocalConfig(KernelBiasConfig):
    filters: int = Field(gt=0, description="number of output channels (Keras 1: nb_filter)")
    padding: ValidPadding = Field("valid", description="only 'valid' (Keras 1: border_mode)")
    activation: ActivationName = Field("linear", description="activation applied to the output")
    use_bias: bool = Field(True, description="add a bias per output position and filter (Keras 1: bias)")
    kernel_initializer: InitializerSpec = Field(
        "glorot_uniform", description="kernel initializer (Keras 1: init); fans are those of one position's "
                                      "(patch, filters) matrix")


class _LocallyConnected(Layer):
    family = "locally_connected"
    rank: ClassVar[int]

    # ------------------------------------------------------------------ geometry
    def _split(self, shape):
        if self.rank == 2 and self.config.data_format == "channels_first":
            return tuple(shape[1:]), shape[0]
        return tuple(shape[:-1]), shape[-1]

    def _out_spatial(self, input_shape):
        c = self.config
        want = "(steps, features)" if self.rank == 1 else (
            "(channels, rows, cols)" if c.data_format == "channels_first" else "(rows, cols, channels)")
        if len(input_shape) != self.rank + 1:
            raise self.shape_error(input_shape, f"expected {self.rank + 1} axes besides the batch: {want}")
        spatial, channels = self._split(input_shape)
        if channels is None or any(d is None for d in spatial):
            raise self.shape_error(input_shape, "every axis must have a known size (one weight matrix per "
                                   "output position)", hint="give a fixed input_shape")
        out = []
        for axis, (length, k, s) in enumerate(zip(spatial, c.kernel_size, c.strides, strict=True)):
            if length < k:
                raise self.shape_error(input_shape, f"spatial axis {axis + 1} has length {length}, shorter than "
                                       f"the kernel size {k}", hint="use a smaller kernel_size or pad the input "
                                       "with a ZeroPadding layer (only 'valid' padding exists here)")
            out.append((length - k) // s + 1)
        return tuple(out), channels

    def output_shape(self, input_shape):
        out, _ = self._out_spatial(input_shape)
        f = self.config.filters
        if self.rank == 2 and self.config.data_format == "channels_first":
            return (f, *out)
        return (*out, f)

    def param_specs(self, input_shape):
        c = self.config
        out, channels = self._out_spatial(input_shape)
        patch = math.prod(c.kernel_size) * channels
        specs = [ParamSpec("kernel", (math.prod(out), patch, c.filters), c.kernel_initializer,
                           regularizer=c.kernel_regularizer, constraint=c.kernel_constraint,
                           fan=(patch, c.filters))]
        if c.use_bias:
            specs.append(ParamSpec("bias", (*out, c.filters), c.bias_initializer, regularizer=c.bias_regularizer,
                                   constraint=c.bias_constraint))
        return specs

    def flops(self, input_shape, output_shape):
        out, channels = self._out_spatial(input_shape)
        return math.prod(out) * math.prod(self.config.kernel_size) * channels * self.config.filters

    # ------------------------------------------------------------------ maths
    def _windows(self, x):
        """(B, *out, patch...) strided view of the input windows, patch axes in flattening order."""
        c = self.config
        k, s = c.kernel_size, c.strides
        if self.rank == 1:  # x (B, L, C) -> (B, L', C, k) -> (B, L', k, C)
            w = np.lib.stride_tricks.sliding_window_view(x, k[0], axis=1)[:, ::s[0]]
            return w.transpose(0, 1, 3, 2)
        if c.data_format == "channels_first":  # x (B, C, H, W) -> (B, C, H', W', kh, kw) -> (B, H', W', C, kh, kw)
            w = np.lib.stride_tricks.sliding_window_view(x, k, axis=(2, 3))[:, :, ::s[0], ::s[1]]
            return w.transpose(0, 2, 3, 1, 4, 5)
        # x (B, H, W, C) -> (B, H', W', C, kh, kw) -> (B, H', W', kh, kw, C)
        w = np.lib.stride_tricks.sliding_window_view(x, k, axis=(1, 2))[:, ::s[0], ::s[1]]
        return w.transpose(0, 1, 2, 4, 5, 3)

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        from ..activations import activate

        c = self.config
        batch = x.shape[0]
        kernel = params["kernel"]
        positions, patch, f = kernel.shape
        win = self._windows(x)
        out = win.shape[1:1 + self.rank]
        cols = np.ascontiguousarray(win.reshape(batch, positions, patch).transpose(1, 0, 2))  # (P, B, patch)
        z = np.matmul(cols, kernel)  # (P, B, f)
        z = z.transpose(1, 0, 2).reshape((batch, *out, f))  # channels_last
        if self.rank == 2 and c.data_format == "channels_first":
            z = z.transpose(0, 3, 1, 2)
            if c.use_bias:  # Keras 1/2 quirk: the (H', W', f) bias buffer is reinterpreted as (f, H', W')
                z = z + params["bias"].reshape(f, *out)
        elif c.use_bias:
            z = z + params["bias"]
        z = np.ascontiguousarray(z, dtype=x.dtype)
        y = activate(c.activation, z)
        return y, (x.shape, cols, z, y)

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        from ..activations import activate_backward

        c = self.config
        x_shape, cols, z, y = cache
        kernel = params["kernel"]
        positions, patch, f = kernel.shape
        batch = x_shape[0]
        dz = activate_backward(c.activation, z, y, dy)
        grads = {}
        if self.rank == 2 and c.data_format == "channels_first":
            out = dz.shape[2:]
            if c.use_bias:
                grads["bias"] = dz.sum(axis=0).reshape(*out, f)
            dz = dz.transpose(0, 2, 3, 1)
        else:
            out = dz.shape[1:-1]
            if c.use_bias:
                grads["bias"] = dz.sum(axis=0)
        dzp = np.ascontiguousarray(dz.reshape(batch, positions, f).transpose(1, 0, 2))  # (P, B, f)
        grads["kernel"] = np.matmul(cols.transpose(0, 2, 1), dzp)  # (P, patch, f)
        dcols = np.matmul(dzp, kernel.transpose(0, 2, 1))  # (P, B, patch)
        dwin = dcols.transpose(1, 0, 2)  # (B, P, patch)
        dx = np.zeros(x_shape, dtype=dy.dtype)
        k, s = c.kernel_size, c.strides
        if self.rank == 1:
            dwin = dwin.reshape(batch, out[0], k[0], -1)
            span = s[0] * (out[0] - 1) + 1
            for i in range(k[0]):  # one strided add per kernel tap
                dx[:, i:i + span:s[0], :] += dwin[:, :, i, :]
        elif c.data_format == "channels_first":
            dwin = dwin.reshape(batch, out[0], out[1], -1, k[0], k[1])
            sh, sw = s[0] * (out[0] - 1) + 1, s[1] * (out[1] - 1) + 1
            for i in range(k[0]):
                for j in range(k[1]):
                    dx[:, :, i:i + sh:s[0], j:j + sw:s[1]] += dwin[:, :, :, :, i, j].transpose(0, 3, 1, 2)
        else:
            dwin = dwin.reshape(batch, out[0], out[1], k[0], k[1], -1)
            sh, sw = s[0] * (out[0] - 1) + 1, s[1] * (out[1] - 1) + 1
            for i in range(k[0]):
                for j in range(k[1]):
                    dx[:, i:i + sh:s[0], j:j + sw:s[1], :] += dwin[:, :, :, i, j, :]
        return dx, grads


@register
class LocallyConnected1D(_LocallyConnected):
    """1D locally-connected layer (Keras 1/2 semantics; removed in Keras 3): a valid Conv1D whose weights are
    not shared, one (kernel_size*features, filters) matrix and one bias vector per output step.
    Weights: kernel (L_out, kernel_size*features, filters), bias (L_out, filters); the input length must be
    known. Only padding 'valid'. Glorot-style initialisers use the fans of one position's matrix
    (kernel_size*features, filters). Keras 1 names: nb_filter, filter_length, subsample_length, border_mode,
    init, W_regularizer, b_regularizer, W_constraint, b_constraint, bias, input_dim/input_length."""

    rank = 1
    type = "LocallyConnected1D"

    class Config(_LocalConfig):
        kernel_size: int_tuple(1, name="kernel size") = Field(
            description="window length, an int (Keras 1: filter_length)")
        strides: int_tuple(1, name="stride") = Field(1, description="step between windows (Keras 1: "
                                                                    "subsample_length)")
        accepts_input_dim = "sequence"

    examples = [
        Example({"type": "LocallyConnected1D", "filters": 64, "kernel_size": 3}, (10, 32), output_shape=(8, 64),
                params=49664, note="reference figure"),
        Example({"type": "LocallyConnected1D", "nb_filter": 8, "filter_length": 3, "subsample_length": 2},
                (10, 4), output_shape=(4, 8), params=416, note="reference figure"),
        Example({"type": "LocallyConnected1D", "filters": 3, "kernel_size": 2, "strides": 3, "activation": "tanh"},
                (8, 2), output_shape=(3, 3), params=3 * (2 * 2 * 3 + 3)),
        Example({"type": "LocallyConnected1D", "nb_filter": 2, "filter_length": 3, "input_dim": 3,
                 "input_length": 7, "bias": False, "activation": "sigmoid"}, (7, 3), output_shape=(5, 2),
                params=5 * 9 * 2),
    ]


@register
class LocallyConnected2D(_LocallyConnected):
    """2D locally-connected layer (Keras 1/2 semantics; removed in Keras 3): a valid Conv2D whose weights are
    not shared, one (kh*kw*channels, filters) matrix per output pixel. Weights: kernel (H'*W', kh*kw*C, filters)
    (position i*W'+j), bias (H', W', filters); patches flatten as (row, col, channel) for channels_last and
    (channel, row, col) for channels_first, where (as in Keras 1/2) the (H', W', filters) bias buffer is read
    as (filters, H', W'). Input rows/cols must be known; only padding 'valid'. Glorot-style initialisers use
    the fans of one position's matrix. Keras 1 names: nb_filter, nb_row + nb_col, subsample, border_mode,
    dim_ordering, init, W_*/b_* regularizers and constraints, bias."""

    rank = 2
    type = "LocallyConnected2D"

    class Config(_LocalConfig):
        kernel_size: int_tuple(2, name="kernel size") = Field(
            description="window (rows, cols), an int or 2 ints (Keras 1: nb_row, nb_col)")
        strides: int_tuple(2, name="stride") = Field(1, description="step between windows (Keras 1: subsample)")
        data_format: DataFormat = Field("channels_last", description="channels_last or channels_first "
                                                                     "(Keras 1: dim_ordering tf/th)")

        @classmethod
        def upgrade(cls, data):
            if "nb_row" in data or "nb_col" in data:
                if "kernel_size" in data:
                    raise ValueError("give either kernel_size or Keras 1 nb_row/nb_col, not both")
                if "nb_row" not in data or "nb_col" not in data:
                    raise ValueError("Keras 1 nb_row and nb_col go together (or use kernel_size: [rows, cols])")
                data = dict(data)
                data["kernel_size"] = [data.pop("nb_row"), data.pop("nb_col")]
            return data

    examples = [
        Example({"type": "LocallyConnected2D", "filters": 64, "kernel_size": 3}, (32, 32, 3),
                output_shape=(30, 30, 64), params=1612800, gradcheck=False, note="reference figure"),
        Example({"type": "LocallyConnected2D", "filters": 2, "kernel_size": [2, 3], "strides": [2, 1],
                 "activation": "tanh"}, (5, 4, 2), output_shape=(2, 2, 2), params=4 * (12 * 2 + 2)),
        Example({"type": "LocallyConnected2D", "nb_filter": 3, "nb_row": 2, "nb_col": 2, "subsample": [1, 2],
                 "dim_ordering": "th"}, (2, 3, 5), output_shape=(3, 2, 2), params=4 * (8 * 3 + 3)),
        Example({"type": "LocallyConnected2D", "filters": 2, "kernel_size": 2, "use_bias": False,
                 "data_format": "channels_first"}, (1, 3, 3), output_shape=(2, 2, 2), params=4 * 4 * 2),
    ]
