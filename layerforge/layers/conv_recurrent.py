"""ConvLSTM2D (Keras 3 semantics and weight layout; Keras 1.2 names accepted).

The input convolution of all time steps is one im2col + GEMM before the recurrence; the recurrence (a 'same'
padded, stride-1 convolution of the previous output per step, then the gates) runs as one Numba kernel over
the time steps (kernels/conv_lstm.py). Backward: one kernel for the BPTT loop, then one GEMM each for the kernel,
recurrent-kernel and input gradients.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from ._numpy import np
from .base import Example, Layer, LayerConfig, ParamSpec, register
from .convolution import Padding, conv_length
from .fields import ActivationName, ConstraintSpec, DataFormat, InitializerSpec, RegularizerSpec, int_tuple
from .recurrent.base_rnn import _InitWithForgetBias

_SUPPORTED = ("linear", "tanh", "sigmoid", "hard_sigmoid", "hard_sigmoid_keras1", "relu")


@register
class ConvLSTM2D(Layer):
    """Convolutional LSTM (Keras 3 ``ConvLSTM2D``): input (time, rows, cols, channels) (channels_first: (time,
    channels, rows, cols)); every gate is a 2D convolution of the input (``kernel (kh, kw, channels, 4*filters)``,
    with ``padding``, ``strides``, ``dilation_rate``) plus a 'same' convolution of the previous output
    (``recurrent_kernel (kh, kw, filters, 4*filters)``), gate blocks in Keras order i|f|c|o, ``bias
    (4*filters,)``. ``c = f*c + i*activation(.)``, ``h = o*activation(c)``. Output: the last h (rows', cols',
    filters) or, with return_sequences, every step's. dropout (one mask on the input for the whole sequence) and
    recurrent_dropout (one mask on h) in training; a (batch, time) mask keeps a sample's state at its masked
    steps; go_backwards, stateful and return_state as the other recurrent layers. Keras 1.2 names: nb_filter,
    nb_row/nb_col, border_mode, subsample, dim_ordering, init, inner_init, inner_activation (hard_sigmoid means
    Keras 1's 0.2x+0.5), forget_bias_init, W/U/b_regularizer, dropout_W/dropout_U."""

    type = "ConvLSTM2D"
    family = "recurrent"
    stochastic = True
    state_names: ClassVar[tuple[str, ...]] = ("h", "c")

    class Config(LayerConfig):
        filters: int = Field(gt=0, description="number of filters (Keras 1: nb_filter)")
        kernel_size: int_tuple(2, name="kernel size") = Field(description="kernel rows, cols (Keras 1: nb_row, "
                                                                          "nb_col)")
        strides: int_tuple(2, name="stride") = Field(1, description="strides of the input convolution "
                                                                    "(Keras 1: subsample)")
        padding: Padding = Field("valid", description="valid or same, of the input convolution (Keras 1: "
                                                      "border_mode); the recurrent one is always same")
        data_format: DataFormat = Field("channels_last", description="channels_last or channels_first (Keras 1: "
                                                                     "dim_ordering tf / th)")
        dilation_rate: int_tuple(2, name="dilation rate") = Field(1, description="dilation of the input "
                                                                                 "convolution")
        activation: ActivationName = Field("tanh", description="activation of the candidate and of the cell "
                                                               "output")
        recurrent_activation: ActivationName = Field(
            "sigmoid", description="activation of the gates (Keras 3 sigmoid; Keras 1's hard_sigmoid 0.2x+0.5 is "
                                   "hard_sigmoid_keras1, and Keras 1 `inner_activation: hard_sigmoid` maps to it)")
        use_bias: bool = Field(True, description="add a bias (Keras 1: bias)")
        kernel_initializer: InitializerSpec = Field("glorot_uniform", description="initializer of the input kernel "
                                                                                  "(Keras 1: init)")
        recurrent_initializer: InitializerSpec = Field("orthogonal", description="initializer of the recurrent "
                                                                                 "kernel (Keras 1: inner_init)")
        bias_initializer: InitializerSpec = Field("zeros", description="bias initializer")
        unit_forget_bias: bool = Field(True, description="start the forget-gate bias at 1 (Keras 1: "
                                                         "forget_bias_init: one)")
        kernel_regularizer: RegularizerSpec = Field(None, description="penalty on the kernel (Keras 1: "
                                                                      "W_regularizer)")
        recurrent_regularizer: RegularizerSpec = Field(None, description="penalty on the recurrent kernel (Keras "
                                                                         "1: U_regularizer)")
        bias_regularizer: RegularizerSpec = Field(None, description="penalty on the bias (Keras 1: b_regularizer)")
        activity_regularizer: RegularizerSpec = Field(None, description="penalty on the output")
        kernel_constraint: ConstraintSpec = Field(None, description="constraint on the kernel")
        recurrent_constraint: ConstraintSpec = Field(None, description="constraint on the recurrent kernel")
        bias_constraint: ConstraintSpec = Field(None, description="constraint on the bias")
        dropout: float = Field(0.0, ge=0.0, lt=1.0, description="fraction of the input dropped in training, one "
                                                                "mask per sequence (Keras 1: dropout_W)")
        recurrent_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="fraction of the previous output "
                                                                          "dropped before the recurrent "
                                                                          "convolution (Keras 1: dropout_U)")
        seed: int | None = Field(None, description="per-layer seed of the dropout masks")
        return_sequences: bool = Field(False, description="output every step (time, rows', cols', filters)")
        return_state: bool = Field(False, description="also output the final h and c (name:1, name:2)")
        go_backwards: bool = Field(False, description="process the sequence from the end (with return_sequences "
                                                      "the output is in processing order, as Keras)")
        stateful: bool = Field(False, description="carry the final states into the next batch (needs a fixed "
                                                  "batch size)")
        unroll: bool = Field(False, description="accepted for Keras compatibility; same maths")
        keras1_renames = {"inner_activation": "_keras1_inner_activation", "forget_bias_init": "_forget_bias_init"}
        keras1_structural = {"nb_row": "kernel_size", "nb_col": "kernel_size"}
        # Keras 1.2's ConvLSTM2D took none of the 1D / atrous names
        keras1_exclude = frozenset({"filter_length", "subsample_length", "stride", "atrous_rate"})

        @classmethod
        def upgrade(cls, data: dict[str, Any]) -> dict[str, Any]:
            data = dict(data)
            if "nb_row" in data or "nb_col" in data:
                if "nb_row" not in data or "nb_col" not in data:
                    raise ValueError("Keras 1 nb_row and nb_col go together (or give kernel_size: [rows, cols])")
                if "kernel_size" in data:
                    raise ValueError("give either kernel_size or the Keras 1 nb_row / nb_col, not both")
                data["kernel_size"] = [data.pop("nb_row"), data.pop("nb_col")]
            if "_keras1_inner_activation" in data:
                value = data.pop("_keras1_inner_activation")
                if "recurrent_activation" in data:
                    raise ValueError("'inner_activation' (Keras 1) and 'recurrent_activation' mean the same "
                                     "parameter; give only one")
                if isinstance(value, str) and value.lower() == "hard_sigmoid":
                    value = "hard_sigmoid_keras1"
                data["recurrent_activation"] = value
            if "_forget_bias_init" in data:
                value = str(data.pop("_forget_bias_init")).lower()
                if value not in ("one", "ones", "zero", "zeros"):
                    raise ValueError(f"forget_bias_init {value!r} is not supported: use one or zero")
                data["unit_forget_bias"] = value in ("one", "ones")
            return data

        @model_validator(mode="after")
        def _check(self):
            for what in ("activation", "recurrent_activation"):
                if getattr(self, what) not in _SUPPORTED:
                    raise ValueError(f"{what} {getattr(self, what)!r} is not available in ConvLSTM2D "
                                     f"(available: {', '.join(_SUPPORTED)})")
            if max(self.strides) > 1 and max(self.dilation_rate) > 1:
                raise ValueError("strides > 1 cannot be combined with dilation_rate > 1 (as in Keras)")
            return self

    examples = [
        Example({"type": "ConvLSTM2D", "filters": 4, "kernel_size": 3}, (5, 8, 8, 2), output_shape=(6, 6, 4),
                params=4 * 4 * (9 * 2 + 9 * 4 + 1), gradcheck=False, note="reference figure"),
        Example({"type": "ConvLSTM2D", "filters": 2, "kernel_size": [2, 3], "padding": "same",
                 "return_sequences": True, "bias_initializer": {"type": "random_normal", "stddev": 0.3}},
                (3, 3, 4, 2), output_shape=(3, 3, 4, 2), params=8 * (6 * 2 + 6 * 2) + 8, mask=True),
        Example({"type": "ConvLSTM2D", "nb_filter": 2, "nb_row": 2, "nb_col": 2, "subsample": [2, 1],
                 "dim_ordering": "th", "inner_activation": "hard_sigmoid", "go_backwards": True},
                (3, 1, 4, 3), output_shape=(2, 2, 2), params=8 * (4 * 1 + 4 * 2) + 8, note="Keras 1.2 names"),
        Example({"type": "ConvLSTM2D", "filters": 2, "kernel_size": 2, "dilation_rate": 2, "dropout": 0.3,
                 "recurrent_dropout": 0.3, "return_state": True}, (2, 4, 4, 1),
                output_shape=[(2, 2, 2), (2, 2, 2), (2, 2, 2)], params=8 * (4 + 8) + 8, note="dropout replayed"),
        Example({"type": "ConvLSTM2D", "filters": 2, "kernel_size": 1, "stateful": True, "use_bias": False},
                (2, 2, 2, 1), output_shape=(2, 2, 2), params=8 * (1 + 2), batch_size=2, training=False),
    ]

    # ------------------------------------------------------------------ shapes
    @property
    def reentrant(self) -> bool:
        return not self.config.stateful  # carried state: batches follow each other in order

    def num_outputs(self) -> int:
        return 3 if self.config.return_state else 1

    def _geometry(self, input_shape):
        if isinstance(input_shape, list) or len(input_shape) != 4:
            raise self.shape_error(input_shape, "ConvLSTM2D takes (time, rows, cols, channels) (channels_first: "
                                                "(time, channels, rows, cols))")
        c = self.config
        if c.data_format == "channels_first":
            ch, rows, cols = input_shape[1], input_shape[2], input_shape[3]
        else:
            rows, cols, ch = input_shape[1], input_shape[2], input_shape[3]
        if ch is None or rows is None or cols is None:
            raise self.shape_error(input_shape, "rows, cols and channels must have known sizes (only time may vary)")
        oh, ph = conv_length(rows, c.kernel_size[0], c.strides[0], c.dilation_rate[0], c.padding)
        ow, pw = conv_length(cols, c.kernel_size[1], c.strides[1], c.dilation_rate[1], c.padding)
        if not oh or not ow:
            raise self.shape_error(input_shape, f"a {c.kernel_size[0]}x{c.kernel_size[1]} kernel (dilation "
                                                f"{list(c.dilation_rate)}) does not fit {rows}x{cols} frames",
                                   hint="use padding: same or a smaller kernel")
        if c.stateful and not self.batch_size:
            raise self.shape_error(input_shape, "stateful=true needs a fixed batch size",
                                   hint="set `batch_size: N` at the top level or batch_input_shape on the first layer")
        return rows, cols, ch, oh, ow, ph, pw

    def _frame(self, oh, ow):
        f = self.config.filters
        return (f, oh, ow) if self.config.data_format == "channels_first" else (oh, ow, f)

    def output_shape(self, input_shape):
        _, _, _, oh, ow, _, _ = self._geometry(input_shape)
        frame = self._frame(oh, ow)
        y = (input_shape[0],) + frame if self.config.return_sequences else frame
        return [y, frame, frame] if self.config.return_state else y

    def param_specs(self, input_shape):
        c = self.config
        _, _, ch, _, _, _, _ = self._geometry(input_shape)
        kh, kw = c.kernel_size
        f = c.filters
        specs = [ParamSpec("kernel", (kh, kw, ch, 4 * f), c.kernel_initializer, regularizer=c.kernel_regularizer,
                           constraint=c.kernel_constraint),
                 ParamSpec("recurrent_kernel", (kh, kw, f, 4 * f), c.recurrent_initializer,
                           regularizer=c.recurrent_regularizer, constraint=c.recurrent_constraint)]
        if c.use_bias:
            init = _InitWithForgetBias(c.bias_initializer, f) if c.unit_forget_bias else c.bias_initializer
            specs.append(ParamSpec("bias", (4 * f,), init, regularizer=c.bias_regularizer,
                                   constraint=c.bias_constraint))
        return specs

    def flops(self, input_shape, output_shape):
        c = self.config
        _, _, ch, oh, ow, _, _ = self._geometry(input_shape)
        kk = c.kernel_size[0] * c.kernel_size[1]
        return (input_shape[0] or 1) * oh * ow * 4 * c.filters * kk * (ch + c.filters)

    def compute_mask(self, x, mask):
        out = mask if self.config.return_sequences else None
        return [out, None, None] if self.config.return_state else out

    # ------------------------------------------------------------------ state
    def init_state(self, batch_size, dtype) -> None:
        self.state = {k: v for k, v in self.state.items() if k not in self.state_names}
        if self.config.stateful and batch_size and self.input_shape is not None:
            _, _, _, oh, ow, _, _ = self._geometry(self.input_shape)
            for s in self.state_names:
                self.state[s] = np.zeros((batch_size, oh, ow, self.config.filters), dtype=dtype)

    def reset_states(self) -> None:
        for s in self.state_names:
            if s in self.state:
                self.state[s] = np.zeros_like(self.state[s])

    def _initial(self, B, oh, ow, dt):
        f = self.config.filters
        if not self.config.stateful:
            return np.zeros((B, oh, ow, f), dt), np.zeros((B, oh, ow, f), dt)
        if "h" not in self.state or self.state["h"].shape[0] != B:
            from ..errors import DataError

            if "h" in self.state:
                raise DataError(f"ConvLSTM2D layer '{self.name}' is stateful with batch size "
                                f"{self.state['h'].shape[0]} but got a batch of {B} samples")
            self.state["h"] = np.zeros((B, oh, ow, f), dt)
            self.state["c"] = np.zeros((B, oh, ow, f), dt)
        return np.asarray(self.state["h"], dt), np.asarray(self.state["c"], dt)

    # ------------------------------------------------------------------ maths
    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        from ..kernels import conv_lstm as K
        from ..kernels.conv import im2col

        c = self.config
        dt = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float32)
        rows, cols, ch, oh, ow, ph, pw = self._geometry(x.shape[1:])
        if c.data_format == "channels_first":
            x = x.transpose(0, 1, 3, 4, 2)
        B, T = x.shape[0], x.shape[1]
        f = c.filters
        kh, kw = c.kernel_size
        N = B * oh * ow
        dmask = rmask = None
        if training and c.dropout > 0:
            dmask = ((rng.random((B, rows, cols, ch)) >= c.dropout) / (1.0 - c.dropout)).astype(dt)
        if training and c.recurrent_dropout > 0:
            rmask = ((rng.random((B, oh, ow, f)) >= c.recurrent_dropout) / (1.0 - c.recurrent_dropout)).astype(dt)
        xt = np.ascontiguousarray((x[:, ::-1] if c.go_backwards else x).transpose(1, 0, 2, 3, 4), dtype=dt)
        if dmask is not None:
            xt = xt * dmask[None]
        # input convolution of every step: one im2col + GEMM
        x5 = xt.reshape(T * B, 1, rows, cols, ch)
        xcols = np.empty((1, T * N, kh * kw * ch), dt)
        geo = ((1, oh, ow), (1, kh, kw), (1, *c.strides), (1, *c.dilation_rate), (0, ph, pw))
        im2col(x5, xcols, *geo)
        W2 = np.ascontiguousarray(params["kernel"], dtype=dt).reshape(-1, 4 * f)
        Xp = xcols[0] @ W2
        if c.use_bias:
            Xp += params["bias"].astype(dt, copy=False)
        Xp = Xp.reshape(T, N, 4 * f)
        Wr2 = np.ascontiguousarray(params["recurrent_kernel"], dtype=dt).reshape(-1, 4 * f)
        h0, c0 = self._initial(B, oh, ow, dt)
        Hs = np.empty((T + 1, B, oh, ow, f), dt)
        Cs = np.empty((T + 1, N, f), dt)
        Hs[0] = h0
        Cs[0] = c0.reshape(N, f)
        G = np.empty((T, N, 4 * f), dt)
        HC = np.empty((T, N, kh * kw * f), dt)
        m = None
        if mask is not None:
            m = np.asarray(mask, dtype=bool)
            m = np.ascontiguousarray((m[:, ::-1] if c.go_backwards else m).T)
        rpad = ((kh - 1) // 2, (kw - 1) // 2)
        ksize, rec_pad = (1, kh, kw), (0, *rpad)
        acts = (K.ACTIVATION_CODES[c.activation], K.ACTIVATION_CODES[c.recurrent_activation])
        K.forward(Xp, Wr2, m if m is not None else np.ones((1, 1), bool), m is not None,
                  rmask if rmask is not None else np.ones((1, 1, 1, 1), dt), rmask is not None, ksize, rec_pad,
                  acts[0], acts[1], Hs, Cs, G, HC)
        h_last, c_last = Hs[T], Cs[T].reshape(B, oh, ow, f)
        if c.stateful:
            self.state["h"], self.state["c"] = h_last.copy(), c_last.copy()
        y = np.ascontiguousarray(Hs[1:].transpose(1, 0, 2, 3, 4)) if c.return_sequences else h_last.copy()
        outs = [y, h_last.copy(), c_last.copy()]
        if c.data_format == "channels_first":
            outs = [np.ascontiguousarray(np.moveaxis(o, -1, -3)) for o in outs]
        cache = (xcols, W2, Wr2, Cs, G, HC, m, dmask, rmask, geo, ksize, rec_pad, acts, (B, T, rows, cols, ch, oh,
                                                                                         ow))
        return (outs if c.return_state else outs[0]), cache

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        from ..kernels import conv_lstm as K
        from ..kernels.conv import col2im

        c = self.config
        xcols, W2, Wr2, Cs, G, HC, m, dmask, rmask, geo, ksize, rec_pad, acts, dims = cache
        B, T, rows, cols, ch, oh, ow = dims
        f = c.filters
        N = B * oh * ow
        dt = W2.dtype
        dys = dy if isinstance(dy, list) else [dy]
        if c.data_format == "channels_first":
            dys = [None if d is None else np.moveaxis(d, -3, -1) for d in dys]
        dY = dys[0]
        dh0 = np.zeros((N, f), dt)
        dc0 = np.zeros((N, f), dt)
        if c.return_state:
            if dys[1] is not None:
                dh0 += np.asarray(dys[1], dt).reshape(N, f)
            if dys[2] is not None:
                dc0 += np.asarray(dys[2], dt).reshape(N, f)
        if c.return_sequences:
            dYt = np.ascontiguousarray(np.asarray(dY, dt).transpose(1, 0, 2, 3, 4)).reshape(T, N, f)
            seq = True
        else:
            dh0 += np.asarray(dY, dt).reshape(N, f)
            dYt = np.zeros((1, N, f), dt)
            seq = False
        dZ = np.empty((T, N, 4 * f), dt)
        K.backward(dYt, seq, dh0, dc0, np.ascontiguousarray(Wr2.T), m if m is not None else np.ones((1, 1), bool),
                   m is not None, rmask if rmask is not None else np.ones((1, 1, 1, 1), dt), rmask is not None,
                   ksize, rec_pad, acts[0], acts[1], Cs, G, B, oh, ow, dZ)
        dZ2 = dZ.reshape(T * N, 4 * f)
        grads = {"kernel": (xcols[0].T @ dZ2).reshape(params["kernel"].shape),
                 "recurrent_kernel": (HC.reshape(T * N, -1).T @ dZ2).reshape(params["recurrent_kernel"].shape)}
        if c.use_bias:
            grads["bias"] = dZ2.sum(axis=0)
        if not need_dx:
            return None, grads
        dcols = (dZ2 @ W2.T).reshape(1, T * N, -1)
        dx5 = np.empty((T * B, 1, rows, cols, ch), dt)
        col2im(dcols, dx5, *geo)
        dxt = dx5.reshape(T, B, rows, cols, ch)
        if dmask is not None:
            dxt = dxt * dmask[None]
        dx = dxt.transpose(1, 0, 2, 3, 4)
        if c.go_backwards:
            dx = dx[:, ::-1]
        if c.data_format == "channels_first":
            dx = dx.transpose(0, 1, 4, 2, 3)
        return np.ascontiguousarray(dx), grads

