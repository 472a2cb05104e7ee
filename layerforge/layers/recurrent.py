"""Recurrent layers: SimpleRNN, GRU, LSTM (Keras 3 semantics, Keras 1 names accepted).

The maths lives in ``layerforge/kernels/recurrent.py``; this module keeps the configs, shapes, weight
specs and the glue: one GEMM for the input projection of every time step, the recurrence in one
Numba kernel per direction, and one GEMM each for the kernel, recurrent-kernel and input gradients
after the BPTT loop.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import Field, model_validator

from .base import Example, Layer, LayerConfig, ParamSpec, register
from .fields import ActivationName, ConstraintSpec, InitializerSpec, RegularizerSpec

# activation name -> code understood by the kernels (derivatives are taken from the output)
ACTIVATION_CODES = {
    "linear": 0, "tanh": 1, "sigmoid": 2, "hard_sigmoid": 3, "hard_sigmoid_keras1": 4, "relu": 5, "relu6": 6,
    "elu": 7, "selu": 8, "softplus": 9, "softsign": 10, "exponential": 11, "leaky_relu": 12,
}
_CONSUME_LESS = {"cpu": 0, "mem": 1, "gpu": 2}


def _check_activation(value: str, what: str) -> str:
    if value not in ACTIVATION_CODES:
        raise ValueError(f"{what} {value!r} is not available in recurrent layers "
                         f"(available: {', '.join(sorted(ACTIVATION_CODES))})")
    return value


class _InitWithForgetBias(dict):
    """LSTM bias initializer with ``unit_forget_bias``: the forget-gate block starts at one (Keras).

    A mapping equal to the plain bias initializer spec (so anything that reads the spec as data
    sees the user's ``bias_initializer``) that is also callable ``(shape, rng, dtype, fan) -> array``.
    """

    def __init__(self, spec, units: int):
        super().__init__({"type": spec} if isinstance(spec, str) else dict(spec))
        self.spec = spec
        self.units = units

    def __call__(self, shape, rng, dtype=np.float32, fan=None):
        from ..engine.initializers import initialize

        u = self.units
        out = np.concatenate([initialize(self.spec, (u,), rng, dtype), np.ones(u, dtype=dtype),
                              initialize(self.spec, (2 * u,), rng, dtype)])
        return out.astype(dtype, copy=False)


class RNNConfig(LayerConfig):
    """Parameters shared by SimpleRNN, GRU and LSTM."""

    units: int = Field(gt=0, description="size of the output and of the state (Keras 1: output_dim)")
    activation: ActivationName = Field("tanh", description="activation of the candidate state and output")
    use_bias: bool = Field(True, description="add bias vectors (Keras 1: bias)")
    kernel_initializer: InitializerSpec = Field("glorot_uniform", description="initializer of the input kernel "
                                                                              "(Keras 1: init)")
    recurrent_initializer: InitializerSpec = Field("orthogonal", description="initializer of the recurrent kernel "
                                                                             "(Keras 1: inner_init)")
    bias_initializer: InitializerSpec = Field("zeros", description="bias initializer")
    kernel_regularizer: RegularizerSpec = Field(None, description="penalty on the kernel (Keras 1: W_regularizer)")
    recurrent_regularizer: RegularizerSpec = Field(None, description="penalty on the recurrent kernel "
                                                                     "(Keras 1: U_regularizer)")
    bias_regularizer: RegularizerSpec = Field(None, description="penalty on the bias (Keras 1: b_regularizer)")
    activity_regularizer: RegularizerSpec = Field(None, description="penalty on the output")
    kernel_constraint: ConstraintSpec = Field(None, description="constraint on the kernel (Keras 1: W_constraint)")
    recurrent_constraint: ConstraintSpec = Field(None, description="constraint on the recurrent kernel "
                                                                   "(Keras 1: U_constraint)")
    bias_constraint: ConstraintSpec = Field(None, description="constraint on the bias (Keras 1: b_constraint)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="fraction of the input features dropped in training; "
                                                            "one mask per sequence (Keras 1: dropout_W)")
    recurrent_dropout: float = Field(0.0, ge=0.0, lt=1.0,
                                     description="fraction of the recurrent state dropped before the recurrent "
                                                 "kernel in training; one mask per sequence (Keras 1: dropout_U)")
    seed: int | None = Field(None, description="per-layer seed for the dropout masks; the model seed is used "
                                               "when unset")
    return_sequences: bool = Field(False, description="output the whole sequence (B, T, units) instead of the "
                                                      "last output (B, units)")
    return_state: bool = Field(False, description="also output the final state(s): [output, h] (LSTM: "
                                                  "[output, h, c]); refer to them as name:1, name:2")
    go_backwards: bool = Field(False, description="process the sequence from the end; with return_sequences the "
                                                  "output is in processing order (reversed), as Keras")
    stateful: bool = Field(False, description="carry the final state of a batch into the next batch (needs a "
                                              "fixed batch size: top-level batch_size or batch_input_shape)")
    unroll: bool = Field(False, description="accepted for Keras compatibility; same maths")
    implementation: int = Field(2, ge=0, le=2, description="accepted for Keras compatibility (Keras 1: "
                                                           "consume_less cpu/mem/gpu = 0/1/2); same maths")

    accepts_input_dim: ClassVar[str | None] = "sequence"
    # `inner_activation` goes to a marker key so `upgrade` knows the user wrote the Keras 1 name:
    # Keras 1's `hard_sigmoid` is 0.2x+0.5, Keras 3's is x/6+0.5.
    keras1_renames: ClassVar[dict[str, str]] = {"inner_activation": "_keras1_inner_activation",
                                                "consume_less": "implementation"}

    @model_validator(mode="after")
    def _supported_activations(self):
        _check_activation(self.activation, "activation")
        if "recurrent_activation" in type(self).model_fields:
            _check_activation(self.recurrent_activation, "recurrent_activation")
        return self

    @classmethod
    def upgrade(cls, data: dict[str, Any]) -> dict[str, Any]:
        data = dict(data)
        if "_keras1_inner_activation" in data:
            value = data.pop("_keras1_inner_activation")
            if "recurrent_activation" in data:
                raise ValueError("'inner_activation' (Keras 1) and 'recurrent_activation' mean the same "
                                 "parameter; give only one")
            if "recurrent_activation" not in cls.model_fields:
                raise ValueError(f"{data.get('type')} has no inner_activation")
            if isinstance(value, str) and value.lower() == "hard_sigmoid":
                value = "hard_sigmoid_keras1"  # Keras 1 slope 0.2
            data["recurrent_activation"] = value
        impl = data.get("implementation")
        if isinstance(impl, str):
            if impl.lower() not in _CONSUME_LESS:
                raise ValueError(f"consume_less must be cpu, mem or gpu, not {impl!r}")
            data["implementation"] = _CONSUME_LESS[impl.lower()]
        return data


class _GatedConfig(RNNConfig):
    recurrent_activation: ActivationName = Field(
        "sigmoid", description="activation of the gates (Keras 3 default sigmoid; Keras 1 default was hard_sigmoid "
                               "0.2x+0.5, written `hard_sigmoid_keras1`; `hard_sigmoid` is Keras 3's x/6+0.5; "
                               "Keras 1 `inner_activation: hard_sigmoid` maps to hard_sigmoid_keras1)")


class _RNNBase(Layer):
    """Shared shape logic and glue for the three recurrent layers."""

    family = "recurrent"
    n_gates: ClassVar[int] = 1
    state_names: ClassVar[tuple[str, ...]] = ("h",)

    def __init__(self, config, name=None):
        super().__init__(config, name)
        # Keras 3 Bidirectional with return_sequences zeroes the output at masked steps.
        self.zero_output_for_mask = False

    # ------------------------------------------------------------------ shape side
    def num_outputs(self) -> int:
        return 1 + len(self.state_names) if self.config.return_state else 1

    def _check_input(self, input_shape):
        if isinstance(input_shape, list) or len(input_shape) != 2:
            raise self.shape_error(input_shape, "a recurrent layer takes (time steps, features)",
                                   hint="flatten extra axes with Reshape or TimeDistributed, or add a time axis")
        if input_shape[-1] is None:
            raise self.shape_error(input_shape, "the feature axis must have a known size")
        if self.config.stateful and not self.batch_size:
            raise self.shape_error(input_shape, "stateful=true needs a fixed batch size",
                                   hint="set `batch_size: N` at the top level or `batch_input_shape: [N, T, F]` on "
                                        "the first layer")

    def output_shape(self, input_shape):
        self._check_input(input_shape)
        u = self.config.units
        y = (input_shape[0], u) if self.config.return_sequences else (u,)
        if self.config.return_state:
            return [y] + [(u,)] * len(self.state_names)
        return y

    def _bias_spec(self, k: int):
        c = self.config
        return ParamSpec("bias", (k * c.units,), c.bias_initializer, regularizer=c.bias_regularizer,
                         constraint=c.bias_constraint)

    def param_specs(self, input_shape):
        c = self.config
        k, u, n_in = self.n_gates, c.units, input_shape[-1]
        specs = [ParamSpec("kernel", (n_in, k * u), c.kernel_initializer, regularizer=c.kernel_regularizer,
                           constraint=c.kernel_constraint),
                 ParamSpec("recurrent_kernel", (u, k * u), c.recurrent_initializer,
                           regularizer=c.recurrent_regularizer, constraint=c.recurrent_constraint)]
        if c.use_bias:
            specs.append(self._bias_spec(k))
        return specs

    def flops(self, input_shape, output_shape):
        steps = input_shape[0] or 1
        k, u = self.n_gates, self.config.units
        return steps * (input_shape[-1] * k * u + u * k * u)

    def compute_mask(self, x, mask):
        out = mask if self.config.return_sequences else None
        if self.config.return_state:
            return [out] + [None] * len(self.state_names)
        return out

    # ------------------------------------------------------------------ state
    def init_state(self, batch_size, dtype) -> None:
        self.state = {k: v for k, v in self.state.items() if k not in self.state_names}
        if self.config.stateful and batch_size:
            for s in self.state_names:
                self.state[s] = np.zeros((batch_size, self.config.units), dtype=dtype)

    def reset_states(self) -> None:
        """Zero the carried state of a stateful layer (Keras `reset_states()`)."""
        for s in self.state_names:
            if s in self.state:
                self.state[s] = np.zeros_like(self.state[s])

    def _initial_states(self, batch: int, dtype):
        if not self.config.stateful:
            return [np.zeros((batch, self.config.units), dtype) for _ in self.state_names]
        from ..errors import DataError

        if self.state_names[0] not in self.state:
            self.init_state(batch, dtype)
        states = [self.state[s] for s in self.state_names]
        if states[0].shape[0] != batch:
            raise DataError(f"{self.type} layer '{self.name}' is stateful with batch size {states[0].shape[0]} "
                            f"but got a batch of {batch} samples; every batch must have exactly "
                            f"{states[0].shape[0]} samples (make the number of samples a multiple of the batch size)")
        return [np.ascontiguousarray(s, dtype=dtype) for s in states]

    # ------------------------------------------------------------------ glue
    def _inputs(self, x, training, rng, mask, lead: int = 0):
        """Time-major inputs in processing order (after ``lead`` columns left for the kernel, and followed by a
        column of ones that carries the input bias through the projection GEMM), the dropout masks and the
        time-major mask."""
        c = self.config
        x = np.asarray(x)
        if x.ndim != 3:
            raise ValueError(f"{self.type} '{self.name}' expects (batch, time, features), got shape {x.shape}")
        dt = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float32)
        B, T, F = x.shape
        xe = np.empty((T, B, lead + F + (1 if c.use_bias else 0)), dt)
        xe[:, :, lead:lead + F] = (x[:, ::-1] if c.go_backwards else x).transpose(1, 0, 2)
        if c.use_bias:
            xe[:, :, lead + F] = 1
        dmask = rmask = None
        if training and c.dropout > 0:
            dmask = ((rng.random((B, F)) >= c.dropout) / (1.0 - c.dropout)).astype(dt)
            xe[:, :, lead:lead + F] *= dmask[None]
        if training and c.recurrent_dropout > 0:
            rmask = ((rng.random((B, c.units)) >= c.recurrent_dropout) / (1.0 - c.recurrent_dropout)).astype(dt)
        m = None
        if mask is not None:
            m = np.asarray(mask, dtype=bool)
            if m.shape != (B, T):
                raise ValueError(f"{self.type} '{self.name}': mask shape {m.shape} does not match the input "
                                 f"(batch, time) = {(B, T)}")
            m = np.ascontiguousarray((m[:, ::-1] if c.go_backwards else m).T)
        self._dtype = dt
        return dt, xe, dmask, rmask, m

    @staticmethod
    def _project(params, xe, in_bias, out):
        """out (T, B, k*u) = [x, 1] @ [kernel; input bias] for every step at once (one GEMM)."""
        T, B, Fe = xe.shape
        W = np.asarray(params["kernel"], dtype=xe.dtype)
        if in_bias is not None:
            W = np.concatenate([W, np.asarray(in_bias, dtype=xe.dtype)[None]], axis=0)
        np.matmul(xe.reshape(T * B, Fe), W, out=out.reshape(T * B, out.shape[2]))

    def _finish(self, dt, Hs, Y, m, finals):
        """Assemble the outputs from the (T, B, u) processing-order buffers."""
        from ..kernels import recurrent as K

        seq = Y if m is not None else Hs[1:]
        T, B, u = seq.shape
        if self.config.return_sequences:
            y = np.empty((B, T, u), dt)
            K.to_batch_major(seq, False, y)
        else:
            y = seq[T - 1].copy() if T else np.zeros((B, u), dt)
        if self.config.stateful:
            for s, v in zip(self.state_names, finals, strict=True):
                self.state[s] = v.copy()
        if self.config.return_state:
            return [y] + [v.copy() for v in finals]
        return y

    def _split_dy(self, dy, shape, masked: bool):
        """(dY in processing order, [d final states], initial output carry) for the backward kernels.

        Without return_sequences only the last output has a gradient: dY is a (1, B, u) zero block and that
        gradient enters as the final state's gradient (no mask: the last output is h_T) or as the output
        carry (masks: the last output may repeat an earlier one)."""
        T, B, u = shape
        dys = dy if isinstance(dy, list) else [dy]
        d0 = dys[0]
        dt = self._dtype
        dstates = []
        for k in range(len(self.state_names)):
            v = dys[1 + k] if self.config.return_state and len(dys) > 1 + k else None
            dstates.append(np.zeros((B, u), dt) if v is None else np.array(v, dtype=dt))
        carry0 = np.zeros((B, u), dt)
        if self.config.return_sequences:
            dY = np.ascontiguousarray(np.asarray(d0, dtype=dt).transpose(1, 0, 2)) if d0 is not None \
                else np.zeros((1, B, u), dt)
        else:
            dY = np.zeros((1, B, u), dt)
            if d0 is not None:
                if masked:
                    carry0[...] = d0
                else:
                    dstates[0] += d0
        return dY, dstates, carry0

    def _input_grads(self, params, cache, dXg):
        """(dkernel, d input bias or None, dx, dXg as (T*B, k*u), gradient of the extra columns) from the
        input-side gate gradients."""
        from ..kernels import recurrent as K

        xe, dmask, x0 = cache["xe"], cache["dmask"], cache.get("lead", 0)
        T, B, Fx = xe.shape
        F = params["kernel"].shape[0]
        dX2 = dXg.reshape(T * B, -1)
        W = np.asarray(params["kernel"], dtype=dX2.dtype)
        dWb = xe.reshape(T * B, Fx).T @ dX2  # kernel, input-bias (and lead columns) gradients in one GEMM
        dW, db, lead = dWb[x0:x0 + F], (dWb[x0 + F] if self.config.use_bias else None), dWb[:x0]
        if not self.needs_input_grad:  # nothing upstream trains (the engine says so): skip dx
            return dW, db, None, dX2, lead
        dxt = (dX2 @ W.T).reshape(T, B, F)
        if dmask is not None:
            dxt *= dmask[None]
        dx = np.empty((B, T, F), dX2.dtype)
        K.to_batch_major(dxt, self.config.go_backwards, dx)
        return dW, db, dx, dX2, lead

    @staticmethod
    def _hprev(cache, Hs):
        """h_{t-1} of every step as the recurrent GEMM saw it, flattened to (T*B, u)."""
        T1, B, u = Hs.shape
        h = Hs[:T1 - 1].reshape((T1 - 1) * B, u)
        rmask = cache["rmask"]
        if rmask is not None:
            h = (Hs[:T1 - 1] * rmask[None]).reshape((T1 - 1) * B, u)
        return h

    @staticmethod
    def _dummies(dt, m, rmask):
        mm = m if m is not None else np.ones((1, 1), dtype=bool)
        rm = rmask if rmask is not None else np.ones((1, 1), dtype=dt)
        return mm, rm

    def _codes(self):
        c = self.config
        return ACTIVATION_CODES[getattr(c, "recurrent_activation", "sigmoid")], ACTIVATION_CODES[c.activation]


# ---------------------------------------------------------------------------------------- SimpleRNN

@register
class SimpleRNN(_RNNBase):
    """Fully connected recurrent layer: ``h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias)``.
    Input (batch, time, features); output the last h (or every h with return_sequences). Consumes masks:
    a masked step keeps the state and repeats the previous output. Same defaults as Keras 1 and 3."""

    type = "SimpleRNN"
    n_gates = 1
    state_names = ("h",)

    class Config(RNNConfig):
        pass

    examples = [
        Example({"type": "SimpleRNN", "units": 32}, (10, 8), output_shape=(32,), params=1312, gradcheck=False,
                note="reference figure"),
        Example({"type": "SimpleRNN", "units": 3, "return_sequences": True}, (4, 2), output_shape=(4, 3), params=18,
                mask=True),
        Example({"type": "SimpleRNN", "units": 3, "go_backwards": True, "return_state": True, "activation": "relu6"},
                (4, 2), output_shape=[(3,), (3,)], params=18),
        Example({"type": "SimpleRNN", "units": 3, "stateful": True, "return_sequences": True, "go_backwards": True},
                (3, 2), output_shape=(3, 3), params=18, batch_size=2, mask=True),
        Example({"type": "SimpleRNN", "units": 3, "dropout": 0.3, "recurrent_dropout": 0.4, "use_bias": False},
                (4, 2), output_shape=(3,), params=15),
    ]

    def forward(self, params, x, *, training=False, rng=None, mask=None):
        from ..kernels import recurrent as K

        dt, xe, dmask, rmask, m = self._inputs(x, training, rng, mask)
        T, B, u = xe.shape[0], xe.shape[1], self.config.units
        Hs = np.empty((T + 1, B, u), dt)
        self._project(params, xe, params.get("bias"), Hs[1:])
        (h0,) = self._initial_states(B, dt)
        Y = np.empty((T, B, u), dt) if m is not None else np.empty((1, 1, 1), dt)
        mm, rm = self._dummies(dt, m, rmask)
        U = np.ascontiguousarray(params["recurrent_kernel"], dtype=dt)
        _, act = self._codes()
        K.simple_forward(U, h0, mm, m is not None, rm, rmask is not None, act, self.zero_output_for_mask,
                         dt == np.float32, Hs, Y)
        y = self._finish(dt, Hs, Y if m is not None else None, m, [Hs[T]])
        return y, {"xe": xe, "dmask": dmask, "rmask": rmask, "m": m, "Hs": Hs, "dt": dt}

    def backward(self, params, dy, cache):
        from ..kernels import recurrent as K

        Hs, m, rmask, dt = cache["Hs"], cache["m"], cache["rmask"], cache["dt"]
        self._dtype = dt
        T, B, u = Hs.shape[0] - 1, Hs.shape[1], Hs.shape[2]
        dY, (dh,), carry0 = self._split_dy(dy, (T, B, u), m is not None)
        mm, rm = self._dummies(dt, m, rmask)
        UT = np.ascontiguousarray(np.asarray(params["recurrent_kernel"], dtype=dt).T)
        dG = np.empty((T, B, u), dt)
        _, act = self._codes()
        K.simple_backward(dY, dh, carry0, Hs, UT, mm, m is not None, rm, rmask is not None, act,
                          self.zero_output_for_mask, dG)
        dW, db, dx, dG2, _ = self._input_grads(params, cache, dG)
        grads = {"kernel": dW, "recurrent_kernel": self._hprev(cache, Hs).T @ dG2}
        if self.config.use_bias:
            grads["bias"] = db
        return dx, grads


# ---------------------------------------------------------------------------------------- LSTM

@register
class LSTM(_RNNBase):
    """Long short-term memory (gate blocks i|f|c|o in the Keras 3 weight layout). Keras 3 defaults:
    recurrent_activation sigmoid (Keras 1: hard_sigmoid 0.2x+0.5, here `hard_sigmoid_keras1`) and
    unit_forget_bias true. Outputs the last h (every h with return_sequences; [y, h, c] with
    return_state). Consumes masks: a masked step keeps h and c and repeats the previous output."""

    type = "LSTM"
    n_gates = 4
    state_names = ("h", "c")

    class Config(_GatedConfig):
        unit_forget_bias: bool = Field(True, description="start the forget-gate bias at 1 (Keras 1: "
                                                         "forget_bias_init 'one' = true, anything else = false)")
        keras1_renames: ClassVar[dict[str, str]] = {**RNNConfig.keras1_renames,
                                                    "forget_bias_init": "unit_forget_bias"}

        @classmethod
        def upgrade(cls, data):
            data = super().upgrade(data)
            v = data.get("unit_forget_bias")
            if isinstance(v, dict):
                v = v.get("type") or v.get("class_name")
            if isinstance(v, str):  # Keras 1 forget_bias_init: an initializer name
                data["unit_forget_bias"] = v.lower() in ("one", "ones")
            return data

    examples = [
        Example({"type": "LSTM", "units": 32}, (10, 8), output_shape=(32,), params=5248, gradcheck=False,
                note="reference figure"),
        Example({"type": "LSTM", "units": 32, "return_sequences": True}, (10, 8), output_shape=(10, 32), params=5248,
                gradcheck=False, note="reference figure"),
        Example({"type": "LSTM", "units": 32, "stateful": True, "batch_input_shape": [32, 10, 8]}, (10, 8),
                output_shape=(32,), params=5248, batch_size=32, gradcheck=False, note="reference figure M10"),
        Example({"type": "LSTM", "units": 3, "return_sequences": True}, (4, 2), output_shape=(4, 3), params=72,
                mask=True),
        Example({"type": "LSTM", "units": 3, "go_backwards": True, "return_state": True}, (4, 2),
                output_shape=[(3,), (3,), (3,)], params=72, mask=True),
        Example({"type": "LSTM", "units": 3, "return_sequences": True, "go_backwards": True,
                 "recurrent_activation": "hard_sigmoid_keras1", "activation": "softsign"}, (3, 2),
                output_shape=(3, 3), params=72),
        Example({"type": "LSTM", "units": 3, "stateful": True, "return_state": True}, (3, 2),
                output_shape=[(3,), (3,), (3,)], params=72, batch_size=2),
        Example({"type": "LSTM", "units": 3, "dropout": 0.25, "recurrent_dropout": 0.5, "return_sequences": True},
                (3, 2), output_shape=(3, 3), params=72, mask=True),
    ]

    def _bias_spec(self, k):
        c = self.config
        init = _InitWithForgetBias(c.bias_initializer, c.units) if c.unit_forget_bias else c.bias_initializer
        return ParamSpec("bias", (k * c.units,), init, regularizer=c.bias_regularizer, constraint=c.bias_constraint)

    def forward(self, params, x, *, training=False, rng=None, mask=None):
        from ..kernels import recurrent as K

        c = self.config
        u = c.units
        dt, xe, dmask, rmask, m = self._inputs(x, training, rng, mask, lead=u)
        T, B = xe.shape[:2]
        WU = [np.asarray(params["recurrent_kernel"], dtype=dt), np.asarray(params["kernel"], dtype=dt)]
        if c.use_bias:
            WU.append(np.asarray(params["bias"], dtype=dt)[None])
        WU = np.concatenate(WU, axis=0)
        h0, c0 = self._initial_states(B, dt)
        G = np.empty((T, B, 4 * u), dt)
        Hs = np.empty((T + 1, B, u), dt)
        Cs = np.empty((T + 1, B, u), dt)
        TC = np.empty((T, B, u), dt)
        Y = np.empty((T, B, u), dt) if m is not None else np.empty((1, 1, 1), dt)
        mm, rm = self._dummies(dt, m, rmask)
        ract, act = self._codes()
        K.lstm_forward(xe, WU, h0, c0, mm, m is not None, rm, rmask is not None, ract, act,
                       self.zero_output_for_mask, dt == np.float32, G, Hs, Cs, TC, Y)
        y = self._finish(dt, Hs, Y if m is not None else None, m, [Hs[T], Cs[T]])
        cache = {"xe": xe, "lead": u, "dmask": dmask, "rmask": rmask, "m": m, "Hs": Hs, "Cs": Cs, "G": G, "TC": TC,
                 "dt": dt}
        return y, cache

    def backward(self, params, dy, cache):
        from ..kernels import recurrent as K

        m, rmask, dt, G = cache["m"], cache["rmask"], cache["dt"], cache["G"]
        self._dtype = dt
        T, B, G4 = G.shape
        dY, (dh, dc), carry0 = self._split_dy(dy, (T, B, G4 // 4), m is not None)
        mm, rm = self._dummies(dt, m, rmask)
        UT = np.ascontiguousarray(np.asarray(params["recurrent_kernel"], dtype=dt).T)
        dG = np.empty((T, B, G4), dt)
        ract, act = self._codes()
        K.lstm_backward(dY, dh, dc, carry0, G, cache["Cs"], cache["TC"], UT, mm, m is not None, rm, rmask is not None,
                        ract, act, self.zero_output_for_mask, dG)
        dW, db, dx, _, dU = self._input_grads(params, cache, dG)  # the leading h_{t-1} columns give dU
        grads = {"kernel": dW, "recurrent_kernel": dU}
        if self.config.use_bias:
            grads["bias"] = db
        return dx, grads


# ---------------------------------------------------------------------------------------- GRU

@register
class GRU(_RNNBase):
    """Gated recurrent unit (gate blocks z|r|h in the Keras 3 layout). Keras 3 defaults: reset_after
    true (reset gate applied after the recurrent matmul, bias of shape (2, 3*units): row 0 input,
    row 1 recurrent) and recurrent_activation sigmoid. Keras 1's GRU is reset_after false (bias
    (3*units,)) with hard_sigmoid 0.2x+0.5 gates (`hard_sigmoid_keras1`). ``h = z*h_prev + (1-z)*h~``.
    Consumes masks: a masked step keeps the state and repeats the previous output."""

    type = "GRU"
    n_gates = 3
    state_names = ("h",)

    class Config(_GatedConfig):
        reset_after: bool = Field(True, description="Keras 3 default true (reset gate after the recurrent matmul, "
                                                    "separate recurrent bias); false = Keras 1 GRU")

    examples = [
        Example({"type": "GRU", "units": 32}, (10, 8), output_shape=(32,), params=4032, gradcheck=False,
                note="reference figure"),
        Example({"type": "GRU", "units": 32, "reset_after": False}, (10, 8), output_shape=(32,), params=3936,
                gradcheck=False, note="reference figure"),
        Example({"type": "GRU", "units": 3, "return_sequences": True}, (4, 2), output_shape=(4, 3), params=63,
                mask=True),
        Example({"type": "GRU", "units": 3, "reset_after": False, "return_sequences": True, "go_backwards": True},
                (4, 2), output_shape=(4, 3), params=54, mask=True),
        Example({"type": "GRU", "units": 3, "reset_after": False, "return_state": True, "dropout": 0.2,
                 "recurrent_dropout": 0.3}, (3, 2), output_shape=[(3,), (3,)], params=54),
        Example({"type": "GRU", "units": 3, "go_backwards": True, "dropout": 0.2, "recurrent_dropout": 0.3,
                 "stateful": True}, (3, 2), output_shape=(3,), params=63, batch_size=2),
        Example({"type": "GRU", "units": 3, "use_bias": False, "return_state": True, "go_backwards": True,
                 "recurrent_activation": "hard_sigmoid"}, (3, 2), output_shape=[(3,), (3,)], params=45, mask=True),
    ]

    def _bias_spec(self, k):
        c = self.config
        shape = (2, 3 * c.units) if c.reset_after else (3 * c.units,)
        return ParamSpec("bias", shape, c.bias_initializer, regularizer=c.bias_regularizer,
                         constraint=c.bias_constraint)

    def forward(self, params, x, *, training=False, rng=None, mask=None):
        from ..kernels import recurrent as K

        c = self.config
        dt, xe, dmask, rmask, m = self._inputs(x, training, rng, mask)
        T, B, u = xe.shape[0], xe.shape[1], c.units
        G3 = 3 * u
        bias = np.asarray(params["bias"], dtype=dt) if c.use_bias else None
        G = np.empty((T, B, G3), dt)
        self._project(params, xe, None if bias is None else (bias[0] if c.reset_after else bias), G)
        (h0,) = self._initial_states(B, dt)
        Hs = np.empty((T + 1, B, u), dt)
        RH = np.empty((T, B, u), dt)
        Y = np.empty((T, B, u), dt) if m is not None else np.empty((1, 1, 1), dt)
        mm, rm = self._dummies(dt, m, rmask)
        U = np.asarray(params["recurrent_kernel"], dtype=dt)
        ract, act = self._codes()
        fast = dt == np.float32
        if c.reset_after:
            brec = bias[1].copy() if bias is not None else np.zeros(G3, dt)
            K.gru_forward_after(np.ascontiguousarray(U), brec, h0, mm, m is not None, rm, rmask is not None,
                                ract, act, self.zero_output_for_mask, fast, G, RH, Hs, Y)
        else:
            K.gru_forward_before(np.ascontiguousarray(U[:, :2 * u]), np.ascontiguousarray(U[:, 2 * u:]), h0,
                                 mm, m is not None, rm, rmask is not None, ract, act, self.zero_output_for_mask, fast,
                                 G, RH, Hs, Y)
        y = self._finish(dt, Hs, Y if m is not None else None, m, [Hs[T]])
        return y, {"xe": xe, "dmask": dmask, "rmask": rmask, "m": m, "Hs": Hs, "G": G, "RH": RH, "dt": dt}

    def backward(self, params, dy, cache):
        from ..kernels import recurrent as K

        c = self.config
        Hs, m, rmask, dt, G, RH = cache["Hs"], cache["m"], cache["rmask"], cache["dt"], cache["G"], cache["RH"]
        self._dtype = dt
        T, B, G3 = G.shape
        u = G3 // 3
        dY, (dh,), carry0 = self._split_dy(dy, (T, B, u), m is not None)
        mm, rm = self._dummies(dt, m, rmask)
        U = np.asarray(params["recurrent_kernel"], dtype=dt)
        ract, act = self._codes()
        dX = np.empty((T, B, G3), dt)
        if c.reset_after:
            dR = np.empty((T, B, G3), dt)
            K.gru_backward_after(dY, dh, carry0, G, RH, Hs, np.ascontiguousarray(U.T), mm, m is not None, rm,
                                 rmask is not None, ract, act, self.zero_output_for_mask, dX, dR)
            dW, db, dx, dX2, _ = self._input_grads(params, cache, dX)
            dR2 = dR.reshape(T * B, G3)
            grads = {"kernel": dW, "recurrent_kernel": self._hprev(cache, Hs).T @ dR2}
            if c.use_bias:
                grads["bias"] = np.stack([db, dR2.sum(axis=0)])
        else:
            K.gru_backward_before(dY, dh, carry0, G, Hs, np.ascontiguousarray(U[:, :2 * u].T),
                                  np.ascontiguousarray(U[:, 2 * u:].T), mm, m is not None, rm, rmask is not None,
                                  ract, act, self.zero_output_for_mask, dX)
            dW, db, dx, dX2, _ = self._input_grads(params, cache, dX)
            dU = np.empty_like(U)
            dU[:, :2 * u] = self._hprev(cache, Hs).T @ dX2[:, :2 * u]
            dU[:, 2 * u:] = RH.reshape(T * B, u).T @ dX2[:, 2 * u:]
            grads = {"kernel": dW, "recurrent_kernel": dU}
            if c.use_bias:
                grads["bias"] = db
        return dx, grads


RNN_TYPES = ("SimpleRNN", "GRU", "LSTM")
