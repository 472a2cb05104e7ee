"""GRU: update, reset and candidate gates (Keras order z, r, h), reset_after or not."""

from __future__ import annotations

from pydantic import Field

from .._numpy import np
from ..base import Example, ParamSpec, register
from .base_rnn import _blocks_of, _GatedConfig, _RNNBase


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

    def _forward_weights(self, params, run):
        c, dt = self.config, run["dt"]
        u = c.units
        bias = np.asarray(params["bias"], dtype=dt) if c.use_bias else None
        run["W_in"] = self._with_bias_row(params, None if bias is None else (bias[0] if c.reset_after else bias), dt)
        U = np.asarray(params["recurrent_kernel"], dtype=dt)
        if c.reset_after:
            run["U"] = _blocks_of(U, dt, run["rows"])
            run["brec"] = np.ascontiguousarray(bias[1]) if bias is not None else np.zeros(3 * u, dt)
        else:
            run["Uzr"] = _blocks_of(U[:, :2 * u], dt, run["rows"])
            run["Uh"] = _blocks_of(U[:, 2 * u:], dt, run["rows"])

    def _backward_weights(self, params, dt, rows):
        u = self.config.units
        U = np.asarray(params["recurrent_kernel"], dtype=dt)
        w = {"W": np.asarray(params["kernel"], dtype=dt)}
        if self.config.reset_after:
            w["UT"] = _blocks_of(U.T, dt, rows)
        else:
            w["UzrT"] = _blocks_of(U[:, :2 * u].T, dt, rows)
            w["UhT"] = _blocks_of(U[:, 2 * u:].T, dt, rows)
        return w

    def _forward_block(self, run, k, b0, b1, y, finals):
        from ...kernels import recurrent as K

        c = self.config
        dt, T, u, Bk = run["dt"], run["T"], c.units, b1 - b0
        xe, m, rmask = self._block_inputs(run, k, b0, b1)
        G = self._take(run, k, "G", (T, Bk, 3 * u), dt)
        np.matmul(xe.reshape(T * Bk, -1), run["W_in"], out=G.reshape(T * Bk, 3 * u))
        Hs = self._take(run, k, "Hs", (T + 1, Bk, u), dt)
        RH = self._take(run, k, "RH", (T, Bk, u), dt)
        Y = self._take(run, k, "Y", (T, Bk, u), dt) if m is not None else np.empty((1, 1, 1), dt)
        mm, rm = self._dummies(dt, m, rmask)
        ract, act = self._codes()
        h0 = run["states"][0][b0:b1]
        fast = dt == np.float32
        if c.reset_after:
            K.gru_forward_after(*self._head(dt, True), run["U"], run["brec"], h0, mm, m is not None, rm,
                                rmask is not None, ract, act, self.zero_output_for_mask, fast, G, RH, Hs, Y)
        else:
            K.gru_forward_before(*self._head(dt, True), run["Uzr"], run["Uh"], h0, mm, m is not None, rm,
                                 rmask is not None, ract, act, self.zero_output_for_mask, fast, G, RH, Hs, Y)
        self._write_outputs(run, b0, b1, Y if m is not None else Hs[1:], [Hs[T]], y, finals)
        return {"xe": xe, "m": m, "rmask": rmask, "Hs": Hs, "G": G, "RH": RH,
                "buffers": {"xe": xe, "G": G, "Hs": Hs, "RH": RH, "Y": Y}}

    def _backward_block(self, run, weights, cache, k, b0, b1, dys, g, dx):
        from ...kernels import recurrent as K

        c = self.config
        dt, T, u, Bk = run["dt"], run["T"], c.units, b1 - b0
        Hs, m, rmask, G, RH = cache["Hs"], cache["m"], cache["rmask"], cache["G"], cache["RH"]
        dY, (dh,), carry0 = self._split_dy(dys, T, Bk, u, m is not None, dt)
        mm, rm = self._dummies(dt, m, rmask)
        ract, act = self._codes()
        dX = self._take(run, k, "dX", (T, Bk, 3 * u), dt)
        cache["buffers"]["dX"] = dX
        dX2 = dX.reshape(T * Bk, 3 * u)
        hprev = self._hprev(Hs, rmask)
        if c.reset_after:
            dR = self._take(run, k, "dR", (T, Bk, 3 * u), dt)
            cache["buffers"]["dR"] = dR
            K.gru_backward_after(*self._head(dt, False), dY, dh, carry0, G, RH, Hs, weights["UT"], mm, m is not None,
                                 rm, rmask is not None, ract, act, self.zero_output_for_mask, dX, dR)
            dR2 = dR.reshape(T * Bk, 3 * u)
            db = self._kernel_grads(cache["xe"], dX2, g)
            np.matmul(hprev.T, dR2, out=g["recurrent_kernel"])
            if db is not None:
                g["bias"][0] = db
                np.sum(dR2, axis=0, out=g["bias"][1])
        else:
            K.gru_backward_before(*self._head(dt, False), dY, dh, carry0, G, Hs, weights["UzrT"], weights["UhT"], mm,
                                  m is not None, rm, rmask is not None, ract, act, self.zero_output_for_mask, dX)
            db = self._kernel_grads(cache["xe"], dX2, g)
            dU = g["recurrent_kernel"]
            dU[:, :2 * u] = hprev.T @ dX2[:, :2 * u]
            dU[:, 2 * u:] = RH.reshape(T * Bk, u).T @ dX2[:, 2 * u:]
            if db is not None:
                g["bias"][...] = db
        self._input_grad(run, dX2, weights["W"], b0, b1, dx)
