"""LSTM: input, forget, cell and output gates (Keras order i, f, c, o)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from .._numpy import np
from ..base import Example, ParamSpec, register
from ..packed import stacked_rows
from .base_rnn import RNNConfig, _blocks_of, _GatedConfig, _InitWithForgetBias, _RNNBase


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

    # Speed: the per-step GEMM runs over [x_t, h_{t-1}, 1] against [kernel; recurrent_kernel; bias] (a view of the
    # engine's packed weights when they sit back to back, as they do), and the weight gradients are one GEMM over
    # all steps written straight into the engine's gradient buffer in that same layout.
    def _forward_weights(self, params, run):
        dt = run["dt"]
        names = ["kernel", "recurrent_kernel"] + (["bias"] if self.config.use_bias else [])
        arrays = [np.asarray(params[n], dtype=dt) for n in names]
        WU = stacked_rows(arrays, dt)
        if WU is None:
            WU = np.concatenate([a.reshape(-1, a.shape[-1]) for a in arrays], axis=0)
        run["WU"] = _blocks_of(WU, dt, run["rows"])

    def _backward_weights(self, params, dt, rows):
        return {"UT": _blocks_of(np.asarray(params["recurrent_kernel"]).T, dt, rows),
                "W": np.asarray(params["kernel"], dtype=dt)}

    def _forward_block(self, run, k, b0, b1, y, finals):
        from ...kernels import recurrent as K

        dt, T, F, u, Bk = run["dt"], run["T"], run["F"], self.config.units, b1 - b0
        xe, m, rmask = self._block_inputs(run, k, b0, b1, hcols=u)
        Tg = T if run["keep"] else 1  # inference: the gates of one step at a time, nothing kept for backward
        G = self._take(run, k, "G", (Tg, Bk, 4 * u), dt)
        Hs = self._take(run, k, "Hs", (T + 1, Bk, u), dt)
        Cs = self._take(run, k, "Cs", (T + 1, Bk, u), dt)
        TC = self._take(run, k, "TC", (Tg, Bk, u), dt)
        Y = self._take(run, k, "Y", (T, Bk, u), dt) if m is not None else np.empty((1, 1, 1), dt)
        mm, rm = self._dummies(dt, m, rmask)
        ract, act = self._codes()
        h0, c0 = run["states"]
        K.lstm_forward(*self._head(dt, True), xe, run["WU"], F, h0[b0:b1], c0[b0:b1], mm, m is not None, rm,
                       rmask is not None, ract, act, self.zero_output_for_mask, dt == np.float32, G, Hs, Cs, TC, Y)
        self._write_outputs(run, b0, b1, Y if m is not None else Hs[1:], [Hs[T], Cs[T]], y, finals)
        return {"xe": xe, "m": m, "rmask": rmask, "Cs": Cs, "G": G, "TC": TC,
                "buffers": {"xe": xe, "G": G, "Hs": Hs, "Cs": Cs, "TC": TC, "Y": Y}}

    def _backward_block(self, run, weights, cache, k, b0, b1, dys, g, dx):
        from ...kernels import recurrent as K

        dt, T, F, u, Bk = run["dt"], run["T"], run["F"], self.config.units, b1 - b0
        m, rmask, G = cache["m"], cache["rmask"], cache["G"]
        dY, (dh, dc), carry0 = self._split_dy(dys, T, Bk, u, m is not None, dt)
        mm, rm = self._dummies(dt, m, rmask)
        dG = self._take(run, k, "dG", (T, Bk, 4 * u), dt)
        cache["buffers"]["dG"] = dG
        ract, act = self._codes()
        K.lstm_backward(*self._head(dt, False), dY, dh, dc, carry0, G, cache["Cs"], cache["TC"], weights["UT"], mm,
                        m is not None, rm, rmask is not None, ract, act, self.zero_output_for_mask, dG)
        dG2 = dG.reshape(T * Bk, 4 * u)
        xe2 = cache["xe"].reshape(T * Bk, -1)
        names = ["kernel", "recurrent_kernel"] + (["bias"] if self.config.use_bias else [])
        dWU = stacked_rows([g[n] for n in names], dt)
        if dWU is not None:  # the h_{t-1} columns of xe give the recurrent kernel's gradient, the ones the bias's
            np.matmul(xe2.T, dG2, out=dWU)
        else:
            dWU = xe2.T @ dG2
            g["kernel"][...] = dWU[:F]
            g["recurrent_kernel"][...] = dWU[F:F + u]
            if self.config.use_bias:
                g["bias"][...] = dWU[F + u]
        self._input_grad(run, dG2, weights["W"], b0, b1, dx)
