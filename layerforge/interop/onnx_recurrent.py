"""SimpleRNN / LSTM / GRU to ONNX.

Without a mask and with activations the ONNX operators have, a layer becomes the RNN / LSTM / GRU operator: Keras 3
keeps the gate blocks of LSTM as i|f|c|o (ONNX: i|o|f|c), of GRU as z|r|h (the same as ONNX), and
``reset_after=True`` is ONNX's ``linear_before_reset=1`` with the two bias vectors as Wb and Rb. Otherwise (a mask,
an activation such as relu6, Keras 1's hard sigmoid) the layer becomes a ``Scan`` over time whose body is one step
written in operators; masked steps keep the state and repeat it as the output (zeros under a Bidirectional
wrapper that returns sequences), as Keras 3 does.
"""

from __future__ import annotations

import numpy as np

# activations the ONNX recurrent operators take without parameters
_OP_ACTS = {"tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "Relu", "softsign": "Softsign", "softplus": "Softplus"}


def _blocks(a: np.ndarray, k: int, axis: int = -1) -> list:
    return np.split(np.asarray(a, np.float32), k, axis=axis)


def recurrent_converter(c):
    from .onnx_export import Builder

    b: Builder = c.b
    cfg = c.config
    acts = [cfg.activation] + ([cfg.recurrent_activation] if hasattr(cfg, "recurrent_activation") else [])
    use_op = c.mask is None and all(a in _OP_ACTS for a in acts)
    x = c.x
    xt = b.transpose(x, [1, 0, 2])  # time-major (T, B, F)
    if cfg.go_backwards:
        xt = b.slice(xt, [-1], [np.iinfo(np.int64).min], [0], [-1])
    mask_t = None
    if c.mask is not None:
        mask_t = b.transpose(c.mask, [1, 0])
        if cfg.go_backwards:
            mask_t = b.slice(mask_t, [-1], [np.iinfo(np.int64).min], [0], [-1])
    if use_op:
        ys, states = _with_operator(c, xt)
    else:
        ys, states = _with_scan(c, xt, mask_t)
    out = b.transpose(ys, [1, 0, 2]) if cfg.return_sequences else states[0]
    outs = [out] + (states if cfg.return_state else [])
    out_mask = c.mask if cfg.return_sequences else None
    return outs, [out_mask] + [None] * (len(outs) - 1)


def _with_operator(c, xt):
    b, cfg, layer = c.b, c.config, c.layer
    u = cfg.units
    kernel = np.asarray(c.weights["kernel"], np.float32)
    rec = np.asarray(c.weights["recurrent_kernel"], np.float32)
    bias = c.weights.get("bias") if cfg.use_bias else None
    act = _OP_ACTS[cfg.activation]
    if layer.type == "LSTM":
        order = [0, 3, 1, 2]  # Keras i f c o -> ONNX i o f c
        W = np.concatenate([_blocks(kernel, 4)[i] for i in order], axis=1).T
        R = np.concatenate([_blocks(rec, 4)[i] for i in order], axis=1).T
        Bv = np.zeros(8 * u, np.float32)
        if bias is not None:
            Bv[:4 * u] = np.concatenate([_blocks(bias, 4)[i] for i in order])
        ract = _OP_ACTS[cfg.recurrent_activation]
        y, yh, yc = b.op("LSTM", [xt, b.const(W[None], hint=f"{layer.name}/W"),
                                  b.const(R[None], hint=f"{layer.name}/R"),
                                  b.const(Bv[None], hint=f"{layer.name}/B")], n_out=3, hidden_size=u,
                         activations=[ract, act, act])
        states = [b.squeeze(yh, [0]), b.squeeze(yc, [0])]
    elif layer.type == "GRU":
        W, R = kernel.T, rec.T  # z r h in both
        Bv = np.zeros(6 * u, np.float32)
        if bias is not None:
            bias = np.asarray(bias, np.float32)
            if cfg.reset_after:
                Bv = bias.reshape(-1)  # [input bias, recurrent bias]
            else:
                Bv[:3 * u] = bias
        ract = _OP_ACTS[cfg.recurrent_activation]
        y, yh = b.op("GRU", [xt, b.const(W[None], hint=f"{layer.name}/W"), b.const(R[None], hint=f"{layer.name}/R"),
                             b.const(Bv[None], hint=f"{layer.name}/B")], n_out=2, hidden_size=u,
                     activations=[ract, act], linear_before_reset=int(bool(cfg.reset_after)))
        states = [b.squeeze(yh, [0])]
    else:
        Bv = np.zeros(2 * u, np.float32)
        if bias is not None:
            Bv[:u] = bias
        y, yh = b.op("RNN", [xt, b.const(kernel.T[None], hint=f"{layer.name}/W"),
                             b.const(rec.T[None], hint=f"{layer.name}/R"), b.const(Bv[None], hint=f"{layer.name}/B")],
                     n_out=2, hidden_size=u, activations=[act])
        states = [b.squeeze(yh, [0])]
    return b.squeeze(y, [1]), states


def _with_scan(c, xt, mask_t):
    from onnx import TensorProto, helper

    from .onnx_export import Builder, activation

    b, cfg, layer = c.b, c.config, c.layer
    u = cfg.units
    kernel = np.asarray(c.weights["kernel"], np.float32)
    rec = np.asarray(c.weights["recurrent_kernel"], np.float32)
    bias = np.asarray(c.weights["bias"], np.float32) if cfg.use_bias else None
    # the input projection for every step at once, outside the loop
    in_bias = None
    if bias is not None:
        in_bias = bias[0] if bias.ndim == 2 else bias
    xw = b.op("MatMul", [xt, b.const(kernel, hint=f"{layer.name}/kernel")])
    if in_bias is not None:
        xw = b.op("Add", [xw, b.const(in_bias, hint=f"{layer.name}/bias")])
    # zero initial state shaped (B, u)
    first = b.op("Gather", [xt, b.const(np.int64(0), np.int64)], axis=0)
    h0 = b.op("MatMul", [first, b.const(np.zeros((kernel.shape[0], u), np.float32), hint="zeros")])
    n_states = 2 if layer.type == "LSTM" else 1

    s = Builder(opset=b.opset, onnx=b.onnx, initializers=b.initializers, used=b.used, layer=layer)
    h_in = s.fresh("h_in")
    c_in = s.fresh("c_in") if n_states == 2 else None
    xw_t = s.fresh("xw_t")
    m_t = s.fresh("m_t") if mask_t is not None else None
    ract = getattr(cfg, "recurrent_activation", None)
    if layer.type == "LSTM":
        z = s.op("Add", [xw_t, s.op("MatMul", [h_in, b.const(rec, hint=f"{layer.name}/recurrent_kernel")])])
        i, f, g, o = s.split(z, [u] * 4, axis=-1)
        i, f, o = (activation(s, ract, v) for v in (i, f, o))
        g = activation(s, cfg.activation, g)
        c_new = s.op("Add", [s.op("Mul", [f, c_in]), s.op("Mul", [i, g])])
        h_new = s.op("Mul", [o, activation(s, cfg.activation, c_new)])
        new = [h_new, c_new]
    elif layer.type == "GRU":
        xz, xr, xh = s.split(xw_t, [u] * 3, axis=-1)
        Rz, Rr, Rh = _blocks(rec, 3)
        if cfg.reset_after:
            rh = s.op("MatMul", [h_in, b.const(rec, hint=f"{layer.name}/recurrent_kernel")])
            if bias is not None:
                rh = s.op("Add", [rh, b.const(bias[1], hint=f"{layer.name}/recurrent_bias")])
            hz, hr, hh = s.split(rh, [u] * 3, axis=-1)
            zg = activation(s, ract, s.op("Add", [xz, hz]))
            rg = activation(s, ract, s.op("Add", [xr, hr]))
            cand = activation(s, cfg.activation, s.op("Add", [xh, s.op("Mul", [rg, hh])]))
        else:
            zg = activation(s, ract, s.op("Add", [xz, s.op("MatMul", [h_in, b.const(Rz, hint="Rz")])]))
            rg = activation(s, ract, s.op("Add", [xr, s.op("MatMul", [h_in, b.const(Rr, hint="Rr")])]))
            cand = activation(s, cfg.activation, s.op("Add", [xh, s.op("MatMul", [s.op("Mul", [rg, h_in]),
                                                                                  b.const(Rh, hint="Rh")])]))
        one = b.scalar(1.0)
        h_new = s.op("Add", [s.op("Mul", [zg, h_in]), s.op("Mul", [s.op("Sub", [one, zg]), cand])])
        new = [h_new]
    else:
        h_new = activation(s, cfg.activation, s.op("Add", [xw_t, s.op("MatMul", [
            h_in, b.const(rec, hint=f"{layer.name}/recurrent_kernel")])]))
        new = [h_new]
    olds = [h_in] + ([c_in] if c_in else [])
    if m_t is not None:
        keep = s.unsqueeze(m_t, [1])  # (B, 1) bool
        new = [s.op("Where", [keep, nv, ov]) for nv, ov in zip(new, olds)]
        y_t = s.op("Where", [keep, new[0], b.scalar(0.0)]) if layer.zero_output_for_mask else \
            s.op("Identity", [new[0]])
    else:
        y_t = s.op("Identity", [new[0]])
    outs_names = [s.op("Identity", [v]) for v in new]
    f32 = TensorProto.FLOAT
    body_inputs = [helper.make_tensor_value_info(h_in, f32, None)]
    if c_in:
        body_inputs.append(helper.make_tensor_value_info(c_in, f32, None))
    body_inputs.append(helper.make_tensor_value_info(xw_t, f32, None))
    if m_t:
        body_inputs.append(helper.make_tensor_value_info(m_t, TensorProto.BOOL, None))
    body_outputs = [helper.make_tensor_value_info(n, f32, None) for n in outs_names + [y_t]]
    body = helper.make_graph(s.nodes, b.fresh(f"{layer.name}_step"), body_inputs, body_outputs)
    scan_inputs = [h0] + ([h0] if c_in else []) + [xw] + ([mask_t] if m_t else [])
    res = b.op("Scan", scan_inputs, n_out=n_states + 1, body=body, num_scan_inputs=2 if m_t else 1)
    states, ys = list(res[:n_states]), res[n_states]
    return ys, states
