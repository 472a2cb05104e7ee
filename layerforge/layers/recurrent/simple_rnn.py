"""SimpleRNN: h_t = act(x_t W + h_{t-1} U + b)."""

from __future__ import annotations

from .._numpy import np
from ..base import Example, register
from .base_rnn import RNNConfig, _blocks_of, _RNNBase


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

    def _forward_weights(self, params, run):
        dt = run["dt"]
        run["W_in"] = self._with_bias_row(params, params.get("bias"), dt)
        run["U"] = _blocks_of(params["recurrent_kernel"], dt, run["rows"])

    def _backward_weights(self, params, dt, rows):
        return {"UT": _blocks_of(np.asarray(params["recurrent_kernel"]).T, dt, rows),
                "W": np.asarray(params["kernel"], dtype=dt)}

    def _forward_block(self, run, k, b0, b1, y, finals):
        from ...kernels import recurrent as K

        dt, T, u, Bk = run["dt"], run["T"], self.config.units, b1 - b0
        xe, m, rmask = self._block_inputs(run, k, b0, b1)
        Hs = self._take(run, k, "Hs", (T + 1, Bk, u), dt)
        np.matmul(xe.reshape(T * Bk, -1), run["W_in"], out=Hs[1:].reshape(T * Bk, u))
        Y = self._take(run, k, "Y", (T, Bk, u), dt) if m is not None else np.empty((1, 1, 1), dt)
        mm, rm = self._dummies(dt, m, rmask)
        _, act = self._codes()
        K.simple_forward(*self._head(dt, True), run["U"], run["states"][0][b0:b1], mm, m is not None, rm,
                         rmask is not None, act, self.zero_output_for_mask, dt == np.float32, Hs, Y)
        self._write_outputs(run, b0, b1, Y if m is not None else Hs[1:], [Hs[T]], y, finals)
        return {"xe": xe, "m": m, "rmask": rmask, "Hs": Hs, "buffers": {"xe": xe, "Hs": Hs, "Y": Y}}

    def _backward_block(self, run, weights, cache, k, b0, b1, dys, g, dx):
        from ...kernels import recurrent as K

        dt, T, u, Bk = run["dt"], run["T"], self.config.units, b1 - b0
        Hs, m, rmask = cache["Hs"], cache["m"], cache["rmask"]
        dY, (dh,), carry0 = self._split_dy(dys, T, Bk, u, m is not None, dt)
        mm, rm = self._dummies(dt, m, rmask)
        dG = self._take(run, k, "dG", (T, Bk, u), dt)
        cache["buffers"]["dG"] = dG
        _, act = self._codes()
        K.simple_backward(*self._head(dt, False), dY, dh, carry0, Hs, weights["UT"], mm, m is not None, rm,
                          rmask is not None, act, self.zero_output_for_mask, dG)
        dG2 = dG.reshape(T * Bk, u)
        db = self._kernel_grads(cache["xe"], dG2, g)
        if db is not None:
            g["bias"][...] = db
        np.matmul(self._hprev(Hs, rmask).T, dG2, out=g["recurrent_kernel"])
        self._input_grad(run, dG2, weights["W"], b0, b1, dx)
