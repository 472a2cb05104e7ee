"""Conv1DTranspose, Conv2DTranspose and Conv3DTranspose: the gradient of a convolution run forward."""

from __future__ import annotations

import math

from .._numpy import np
from ..base import Example, ParamSpec, elements, register
from .base_conv import Geometry, _Cache, _ConvBase, _make_config, _three, deconv_length


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
        from ...kernels import conv as K

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
        from ...kernels import conv as K

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
