"""The activation registry: every activation a layer's `activation:` may name, in one table.

Each entry gives the numpy forward ``y = f(z)`` and derivative ``dL/dz = f'(z, y, dL/dy)`` (both keep the dtype of
``z``), whether the derivative needs only the output (then layers drop ``z`` from their cache), and the codes of
the fused Numba paths that implement it: the Dense epilogue (``kernels/elementwise.bias_act``), the recurrent cells
(``kernels/recurrent``), the convolutions' bias pass (``kernels/conv``). Everything else is derived from this table:
the YAML type and JSON Schema of `activation:` (``layers/fields.py``), the recurrent layers' allowed activations,
the fused paths' choices. Adding an activation: one ``_register`` call here (and its fused code, if any, in the
kernel that runs it).

This module imports numpy lazily (``layerforge/_numpy.py``): `validate` and `summary` read the names without loading
numpy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ._numpy import np

SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805
LEAKY_SLOPE = 0.2  # Keras 3 `leaky_relu` function default

# Codes of the fused Dense epilogue (kernels/elementwise.py) and of the recurrent kernels (kernels/recurrent.py).
DENSE_LINEAR, DENSE_RELU, DENSE_TANH, DENSE_SIGMOID, DENSE_SOFTMAX = range(5)


@dataclass(frozen=True)
class Activation:
    name: str
    forward: Callable  # z -> y
    backward: Callable  # (z, y, dy) -> dz; z is None when needs_only_output
    needs_only_output: bool = False  # the derivative is computed from y alone
    dense_code: int | None = None  # fused in Dense's bias + activation pass (only for needs_only_output ones)
    recurrent_code: int | None = None  # runs inside SimpleRNN/GRU/LSTM (and ConvLSTM2D) cells
    conv_fused: bool = False  # fused into the convolutions' bias pass (relu, linear)


ACTIVATIONS: dict[str, Activation] = {}
ALIASES = {"none": "linear", "identity": "linear", "hard_swish": "hard_silu"}  # accepted spellings -> name


def _register(name: str, forward, backward, **kinds) -> None:
    ACTIVATIONS[name] = Activation(name, forward, backward, **kinds)


def sigmoid(z):
    """Overflow-free logistic (separate branches for z >= 0 and z < 0); keeps the dtype."""
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def softplus(z):
    """log(1 + exp(z)) without overflow."""
    return np.log1p(np.exp(-np.abs(z))) + np.maximum(z, 0)


def _softmax(z):
    m = z.max(axis=-1, keepdims=True)
    e = np.exp(z - m)
    return e / e.sum(axis=-1, keepdims=True)


def _log_softmax(z):
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


def _gelu(z):
    from .kernels.elementwise import gelu

    return gelu(z)


def _gelu_backward(z, y, dy):
    from .kernels.elementwise import gelu_grad

    return dy * gelu_grad(z)


def _swish_backward(z, y, dy):
    s = sigmoid(z)
    return dy * (s + z * s * (1 - s))


def _softsign_backward(z, y, dy):
    d = 1 + np.abs(z)
    return dy / (d * d)


def _mish_backward(z, y, dy):
    sp = softplus(z)
    t = np.tanh(sp)
    return dy * (t + z * (1 - t * t) * sigmoid(z))


# the recurrent codes are the kernels' integer constants (kernels/recurrent.py): keep them stable
_register("linear", lambda z: z, lambda z, y, dy: dy, needs_only_output=True, dense_code=DENSE_LINEAR,
          recurrent_code=0, conv_fused=True)
_register("relu", lambda z: np.maximum(z, 0), lambda z, y, dy: dy * (y > 0), needs_only_output=True,
          dense_code=DENSE_RELU, recurrent_code=5, conv_fused=True)
_register("relu6", lambda z: np.clip(z, 0, 6), lambda z, y, dy: dy * ((y > 0) & (y < 6)), needs_only_output=True,
          recurrent_code=6)
_register("elu", lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
          lambda z, y, dy: np.where(y > 0, dy, dy * (y + 1)), needs_only_output=True, recurrent_code=7)
_register("selu", lambda z: SELU_SCALE * np.where(z > 0, z, SELU_ALPHA * np.expm1(np.minimum(z, 0))),
          lambda z, y, dy: dy * np.where(z > 0, SELU_SCALE, SELU_SCALE * SELU_ALPHA * np.exp(np.minimum(z, 0))),
          recurrent_code=8)
_register("gelu", _gelu, _gelu_backward)
_register("sigmoid", sigmoid, lambda z, y, dy: dy * y * (1 - y), needs_only_output=True, dense_code=DENSE_SIGMOID,
          recurrent_code=2)
_register("hard_sigmoid", lambda z: np.clip(z / 6 + 0.5, 0, 1).astype(z.dtype, copy=False),
          lambda z, y, dy: dy * ((z > -3) & (z < 3)) / 6, recurrent_code=3)
_register("hard_sigmoid_keras1", lambda z: np.clip(0.2 * z + 0.5, 0, 1).astype(z.dtype, copy=False),
          lambda z, y, dy: dy * ((z > -2.5) & (z < 2.5)) * 0.2, recurrent_code=4)
_register("tanh", lambda z: np.tanh(z), lambda z, y, dy: dy * (1 - y * y), needs_only_output=True,
          dense_code=DENSE_TANH, recurrent_code=1)
_register("softmax", _softmax, lambda z, y, dy: y * (dy - (dy * y).sum(axis=-1, keepdims=True)),
          needs_only_output=True, dense_code=DENSE_SOFTMAX)
_register("log_softmax", _log_softmax, lambda z, y, dy: dy - np.exp(y) * dy.sum(axis=-1, keepdims=True),
          needs_only_output=True)
_register("softplus", softplus, lambda z, y, dy: dy * sigmoid(z), recurrent_code=9)
_register("softsign", lambda z: z / (1 + np.abs(z)), _softsign_backward, recurrent_code=10)
_register("swish", lambda z: z * sigmoid(z), _swish_backward)
_register("silu", lambda z: z * sigmoid(z), _swish_backward)
_register("exponential", lambda z: np.exp(z), lambda z, y, dy: dy * y, needs_only_output=True, recurrent_code=11)
_register("leaky_relu", lambda z: np.where(z >= 0, z, LEAKY_SLOPE * z),
          lambda z, y, dy: np.where(z >= 0, dy, LEAKY_SLOPE * dy), recurrent_code=12)
_register("mish", lambda z: z * np.tanh(softplus(z)), _mish_backward)
_register("hard_silu", lambda z: z * np.clip(z / 6 + 0.5, 0, 1),
          lambda z, y, dy: dy * (np.clip(z / 6 + 0.5, 0, 1) + z * ((z > -3) & (z < 3)) / 6))

# Derived views, for the code that picks a path
NEEDS_ONLY_OUTPUT = frozenset(n for n, a in ACTIVATIONS.items() if a.needs_only_output)
DENSE_FUSED = {n: a.dense_code for n, a in ACTIVATIONS.items() if a.dense_code is not None}
RECURRENT_CODES = {n: a.recurrent_code for n, a in ACTIVATIONS.items() if a.recurrent_code is not None}
CONV_FUSED = frozenset(n for n, a in ACTIVATIONS.items() if a.conv_fused)


def activate(name: str, z):
    """y = activation ``name`` of z."""
    entry = ACTIVATIONS.get(name)
    if entry is None:
        raise ValueError(f"unknown activation {name!r}")
    return entry.forward(z)


def activate_backward(name: str, z, y, dy):
    """dL/dz given dL/dy; ``z`` may be None for names in NEEDS_ONLY_OUTPUT."""
    entry = ACTIVATIONS.get(name)
    if entry is None:
        raise ValueError(f"unknown activation {name!r}")
    return entry.backward(z, y, dy)
