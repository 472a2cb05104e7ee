"""L1/L2 weight penalties (Keras ``L1L2``): ``l1·sum|w| + l2·sum w²``.

``spec`` is what ``layers.fields.RegularizerSpec`` produces, ``{"l1": a, "l2": b}`` (either key may
be missing), or None for no penalty.  The engine adds ``penalty`` to the loss and ``penalty_grad`` to
the weight's gradient (activity regularizers: to the layer output's gradient, divided as the engine
chooses).
"""

from __future__ import annotations

import numpy as np


def _coefs(spec) -> tuple[float, float]:
    if spec is None:
        return 0.0, 0.0
    if not isinstance(spec, dict) or set(spec) - {"l1", "l2"}:  # a name or an unnormalised mapping
        from ..layers.fields import _regularizer

        spec = _regularizer(spec)
    return float(spec.get("l1", 0.0) or 0.0), float(spec.get("l2", 0.0) or 0.0)


def penalty(spec, w: np.ndarray) -> float:
    """``l1·sum|w| + l2·sum w²`` as a Python float (accumulated in float64)."""
    l1, l2 = _coefs(spec)
    w = np.asarray(w)
    total = 0.0
    if l1:
        total += l1 * float(np.sum(np.abs(w), dtype=np.float64))
    if l2:
        total += l2 * float(np.sum(np.square(w, dtype=np.float64)))
    return total


def penalty_grad(spec, w: np.ndarray) -> np.ndarray:
    """``l1·sign(w) + 2·l2·w`` with w's dtype (sign(0) = 0, the subgradient TF uses)."""
    l1, l2 = _coefs(spec)
    w = np.asarray(w)
    g = np.zeros_like(w)
    if l1:
        g += l1 * np.sign(w)
    if l2:
        g += (2.0 * l2) * w
    return g


def has_penalty(spec) -> bool:
    l1, l2 = _coefs(spec)
    return bool(l1 or l2)
