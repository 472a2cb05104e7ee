"""Keras weights (any version, either backend) -> layerforge's arrays (the Keras 3 order and layout).

The rules are written down in the package docstring (`layerforge.interop.keras_import`); this module applies them.
"""

from __future__ import annotations

import re

import numpy as np

from .sources import Keras3Weights, LegacyWeights

RNN_CLASSES = {"LSTM", "GRU", "SimpleRNN", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D"}
CONV_TYPES = {"Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
              "SeparableConv1D", "SeparableConv2D", "DepthwiseConv1D", "DepthwiseConv2D", "ConvLSTM2D"}
_LSTM_GATES = ("i", "c", "f", "o")  # Keras 1 stores them in this order; layerforge / Keras 2+ want i, f, c, o
_GRU_GATES = ("z", "r", "h")


class WeightMismatch(ValueError):
    pass


# ---------------------------------------------------------------------- finding a layer's arrays


def _belongs(weight_name: str, layer: str) -> bool:
    """Does a weight name inside a nested model's group belong to `layer`? Keras 2 names are
    "<layer>/<weight>:0" (possibly under more scopes), Keras 1 names "<layer>_<weight>"."""
    parts = weight_name.split("/")
    if layer in parts[:-1]:
        return True
    rest = weight_name[len(layer) + 1:] if weight_name.startswith(layer + "_") else ""
    return bool(re.fullmatch(r"[A-Za-z][A-Za-z_]*(:\d+)?", rest))  # dense_1_W, not dense_1 for layer "dense"


def legacy_arrays(store: LegacyWeights, groups, own_groups: set) -> list[tuple[str, np.ndarray]] | None:
    for group, prefix in groups:
        if not store.has(group):
            continue
        arrays = store.arrays(group)
        if prefix is None:
            return arrays
        mine = [(n, a) for n, a in arrays if _belongs(n, prefix)]
        if mine:
            return mine
    # A Keras 1 nested Sequential has no name in its config: look through the groups that are no layer's own
    for group in store.layer_names:
        if group in own_groups or not store.has(group):
            continue
        for _, prefix in groups[1:2]:
            mine = [(n, a) for n, a in store.arrays(group) if _belongs(n, prefix)]
            if mine:
                return mine
    return None


def keras3_arrays(store: Keras3Weights, path: str, class_name: str, cfg: dict) -> list[tuple[str, np.ndarray]]:
    if class_name == "Bidirectional":
        inner = cfg.get("layer") or {}
        back = cfg.get("backward_layer") or inner
        return (keras3_arrays(store, f"{path}/forward_layer", inner.get("class_name", ""), inner.get("config") or {})
                + keras3_arrays(store, f"{path}/backward_layer", back.get("class_name", ""),
                                back.get("config") or {}))
    if class_name == "TimeDistributed":
        inner = cfg.get("layer") or {}
        return keras3_arrays(store, f"{path}/layer", inner.get("class_name", ""), inner.get("config") or {})
    if class_name == "Sequential":  # a Sequential inside a wrapper: its layers' arrays, tagged with their names
        from .layer_map import sequential_layers
        from .topology import _K3Names

        names = _K3Names(f"{path}/layers")
        out = []
        for item in sequential_layers(cfg):
            sub = names.next(item["class_name"])
            inner = (item.get("config") or {}).get("name", "")
            out += [(f"{inner}/{i}", a) for i, (_, a) in enumerate(
                keras3_arrays(store, sub, item["class_name"], item.get("config") or {}))]
        return out
    if class_name == "MultiHeadAttention":  # four EinsumDense sub-layers, in the order of model.weights
        return [("", a) for part in ("query_dense", "key_dense", "value_dense", "output_dense")
                for a in store.vars(f"{path}/{part}")]
    if class_name in RNN_CLASSES and store.has(f"{path}/cell"):
        return [("", a) for a in store.vars(f"{path}/cell")]
    return [("", a) for a in store.vars(path)]


# ---------------------------------------------------------------------- conversion


def _suffix(name: str) -> str:
    base = name.split("/")[-1].split(":")[0]
    return base


def _by_gate(arrays, gates):
    """Keras 1 per-gate RNN weights (W_x, U_x, b_x for each gate x) -> dict gate -> (W, U, b)."""
    named = {}
    for n, a in arrays:
        s = _suffix(n)
        for kind in ("W", "U", "b"):
            for g in gates:
                if s.endswith(f"_{kind}_{g}") or s == f"{kind}_{g}":
                    named[(kind, g)] = a
    if len(named) != 3 * len(gates):  # unnamed (param_0, ...): the order Keras 1 saved them in
        named = {}
        for k, (_, a) in enumerate(arrays):
            named[(("W", "U", "b")[k % 3], gates[k // 3])] = a
    return named


def _keras1_layout(type_name: str, kernel: np.ndarray, channels_first: bool, transpose: bool) -> np.ndarray:
    """Keras 1 kernels -> the Keras 2/3 layout (spatial..., in, out), or (spatial..., out, in) for transposed."""
    nd = kernel.ndim
    if type_name == "Conv1D":
        if kernel.ndim == 4 and kernel.shape[1] != 1 and kernel.shape[3] == 1:  # Keras 1.0: (out, in, length, 1)
            kernel = np.transpose(kernel, (2, 3, 1, 0))
        return kernel[:, 0] if kernel.ndim == 4 else kernel
    if transpose:
        if channels_first:  # (out, in, rows, cols) -> (rows, cols, out, in)
            return np.transpose(kernel, (*range(2, nd), 0, 1))
        return np.transpose(kernel, (*range(nd - 2), nd - 1, nd - 2))  # (rows, cols, in, out) -> (.., out, in)
    if channels_first:  # (out, in, spatial...) -> (spatial..., in, out)
        return np.transpose(kernel, (*range(2, nd), 1, 0))
    return kernel


def _flip(kernel: np.ndarray) -> np.ndarray:
    """Theano convolves (flips the kernel), TensorFlow and layerforge correlate: flip every spatial axis, as Keras'
    convert_kernel does."""
    spatial = tuple(range(kernel.ndim - 2))
    return np.ascontiguousarray(np.flip(kernel, axis=spatial))


def convert(class_name: str, keras_cfg: dict, lf: dict, arrays: list[tuple[str, np.ndarray]], d) -> list[np.ndarray]:
    """Arrays in layerforge's (Keras 3) order and layout for one layer; `lf` is its layerforge mapping."""
    type_name = lf.get("type")
    a = [np.asarray(x) for _, x in arrays]
    if type_name == "TimeDistributed":
        inner_k = keras_cfg.get("layer") or {"class_name": "Dense", "config": keras_cfg}
        return convert(inner_k.get("class_name", "Dense"), inner_k.get("config") or {}, lf["layer"], arrays, d)
    if type_name == "Bidirectional":
        half = len(arrays) // 2
        inner = keras_cfg.get("layer") or {}
        back = keras_cfg.get("backward_layer") or inner
        return (convert(inner.get("class_name", ""), inner.get("config") or {}, lf["layer"], arrays[:half], d)
                + convert(back.get("class_name", ""), back.get("config") or {}, lf.get("backward_layer") or lf["layer"],
                          arrays[half:], d))
    if type_name == "Sequential":  # split the arrays by the inner layer their names carry
        from .layer_map import sequential_layers

        out = []
        for item, inner_lf in zip(sequential_layers(keras_cfg), lf["layers"]):
            inner = (item.get("config") or {}).get("name", "")
            mine = [(n, x) for n, x in arrays if _belongs(n, inner)]
            if mine:
                out += convert(item["class_name"], item.get("config") or {}, inner_lf, mine, d)
        return out
    if class_name in ("CuDNNLSTM", "CuDNNGRU") and len(a) == 3:
        return _from_cudnn(a, 4 if class_name == "CuDNNLSTM" else 3)
    if d.major == 1:
        if type_name == "LSTM" and len(a) == 12:
            g = _by_gate(arrays, _LSTM_GATES)
            order = ("i", "f", "c", "o")
            return [np.concatenate([g[(k, x)] for x in order], axis=-1) for k in ("W", "U", "b")]
        if type_name == "ConvLSTM2D" and len(a) == 12:  # per gate like LSTM; kernels in the dim_ordering layout
            g = _by_gate(arrays, _LSTM_GATES)
            cf = str(keras_cfg.get("dim_ordering", "tf")) == "th"
            out = [np.concatenate([g[(k, x)] for x in ("i", "f", "c", "o")], axis=0 if cf and k != "b" else -1)
                   for k in ("W", "U", "b")]
            if cf:  # (4f, in, rows, cols) -> (rows, cols, in, 4f)
                out[0], out[1] = np.transpose(out[0], (2, 3, 1, 0)), np.transpose(out[1], (2, 3, 1, 0))
            a = out
        if type_name == "GRU" and len(a) == 9:
            g = _by_gate(arrays, _GRU_GATES)
            return [np.concatenate([g[(k, x)] for x in _GRU_GATES], axis=-1) for k in ("W", "U", "b")]
        if type_name == "BatchNormalization" and len(a) == 4:
            gamma, beta, mean, std = a
            if d.version and d.version < (1, 0, 6) or not d.version:
                eps = float(lf.get("epsilon", keras_cfg.get("epsilon", 1e-6)))
                d.note("Keras 1.0.0-1.0.5 BatchNormalization: running_std is a standard deviation and the layer "
                       "divides by (std + epsilon): moving_variance = (running_std + epsilon)^2 - epsilon")
                var = (std.astype(np.float64) + eps) ** 2 - eps
            else:
                d.note("Keras 1 BatchNormalization (1.0.6-1.2.2): running_std holds the moving variance")
                var = std
            return [gamma, beta, mean, var.astype(std.dtype)]
        if type_name in CONV_TYPES and a and type_name != "ConvLSTM2D":
            cf = str(keras_cfg.get("dim_ordering", "tf")) == "th"
            transpose = type_name.endswith("Transpose")
            if type_name.startswith("Separable"):
                a[0] = np.transpose(a[0], (2, 3, 1, 0)) if cf else a[0]
                a[1] = np.transpose(a[1], (2, 3, 1, 0)) if cf else a[1]
            else:
                a[0] = _keras1_layout(type_name, a[0], cf, transpose)
    if type_name == "LocallyConnected2D" and d.major >= 2 and len(a) == 2 and a[1].ndim == 3 \
            and keras_cfg.get("data_format") == "channels_first":
        a[1] = np.transpose(a[1], (1, 2, 0))  # Keras 2 channels_first bias (filters, rows, cols) -> (rows, cols, f)
    if type_name in CONV_TYPES and a and d.backend == "theano":
        d.note("Theano-backend kernels flipped on every spatial axis (Theano convolves, layerforge correlates), "
               "as Keras' convert_kernel does")
        a[0] = _flip(a[0])
        if type_name == "ConvLSTM2D" and len(a) > 1:
            a[1] = _flip(a[1])
    return a


def _from_cudnn(a: list[np.ndarray], n_gates: int) -> list[np.ndarray]:
    """Keras 2 CuDNNLSTM / CuDNNGRU weights -> LSTM / GRU(reset_after) (Keras 2's _convert_rnn_weights): each
    gate's input kernel is stored transposed in Fortran order, each recurrent kernel transposed; the LSTM's two
    bias sets (input and recurrent) add up, the GRU's become the (2, 3u) bias."""
    kernel, recurrent, bias = a

    def per_gate(k, fn):
        return np.hstack([fn(g) for g in np.hsplit(k, n_gates)])

    kernel = per_gate(kernel, lambda g: g.T.reshape(g.shape, order="F"))
    recurrent = per_gate(recurrent, lambda g: g.T)
    bias = np.sum(np.split(bias, 2), axis=0) if n_gates == 4 else bias.reshape(2, -1)
    return [kernel, recurrent, bias]


def fit_to_specs(name: str, arrays: list[np.ndarray], specs, where: str) -> dict[str, np.ndarray]:
    """Check the converted arrays against the layer's weights (a squeeze of unit axes is allowed)."""
    if len(arrays) != len(specs):
        raise WeightMismatch(f"{where}: layer {name!r} has {len(specs)} weights in layerforge "
                             f"({', '.join(s.name for s in specs) or 'none'}) but the file has {len(arrays)}")
    out = {}
    for spec, arr in zip(specs, arrays):
        shape = tuple(spec.shape)
        if tuple(arr.shape) != shape:
            if arr.size == int(np.prod(shape)) and [s for s in arr.shape if s != 1] == [s for s in shape if s != 1]:
                arr = arr.reshape(shape)
            else:
                raise WeightMismatch(f"{where}: weight {name}/{spec.name} has shape {tuple(arr.shape)} in the file, "
                                     f"layerforge needs {shape}")
        out[f"{name}/{spec.name}"] = np.ascontiguousarray(arr, dtype=np.float32)
    return out
