"""Weight constraints (Keras 3 formulas), applied in place by the engine after each optimizer step.

``spec`` is what ``layers.fields.ConstraintSpec`` produces: a bare name (``"non_neg"``) or
``{"type": name, **args}`` with the arguments of ``layers.fields.CONSTRAINTS``.  Norms are L2 norms
over ``axis`` (an int or a list of ints, keepdims), with ``epsilon = 1e-7``:

* ``max_norm(max_value=2, axis=0)``: ``w · clip(n, 0, max_value) / (eps + n)``
* ``non_neg``: ``w · (w >= 0)``
* ``unit_norm(axis=0)``: ``w / (eps + n)``
* ``min_max_norm(min_value=0, max_value=1, rate=1, axis=0)``:
  ``w · (rate · clip(n, min_value, max_value) + (1 - rate) · n) / (eps + n)``

For a Dense kernel ``(in, out)`` the default ``axis=0`` constrains each unit's incoming weights; for a
Conv2D kernel ``(kh, kw, in, out)`` use ``axis: [0, 1, 2]``.
"""

from __future__ import annotations

import numpy as np

EPSILON = 1e-7


def _parse(spec) -> tuple[str, dict]:
    from ..layers.fields import CONSTRAINT_ALIASES, CONSTRAINTS, _constraint

    if isinstance(spec, str):
        spec = _constraint(spec)
    elif isinstance(spec, dict) and (spec.get("type") not in CONSTRAINTS or set(spec) - {"type"} - set(
            CONSTRAINTS[spec["type"]])):
        spec = _constraint(spec)
    if isinstance(spec, str):
        name, args = spec, {}
    else:
        args = dict(spec)
        name = args.pop("type")
    name = CONSTRAINT_ALIASES.get(name, name)
    return name, {**CONSTRAINTS[name], **args}


def _axis(axis, ndim: int):
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"constraint axis {axis!r} is out of range for a weight with {ndim} axes")
    return tuple(a % ndim for a in axes)


def _norms(w: np.ndarray, axis) -> np.ndarray:
    return np.sqrt(np.sum(np.square(w), axis=_axis(axis, w.ndim), keepdims=True))


def constrained(spec, w: np.ndarray) -> np.ndarray:
    """The constrained weight (a new array with w's dtype)."""
    if spec is None:
        return w.copy()
    name, a = _parse(spec)
    if name == "non_neg":
        return w * (w >= 0)
    n = _norms(w, a["axis"])
    if name == "unit_norm":
        return w / (EPSILON + n)
    if name == "max_norm":
        desired = np.clip(n, 0.0, float(a["max_value"]))
    elif name == "min_max_norm":
        rate = float(a["rate"])
        desired = rate * np.clip(n, float(a["min_value"]), float(a["max_value"])) + (1.0 - rate) * n
    else:  # pragma: no cover - _parse only returns known names
        raise ValueError(f"unknown constraint {name!r}")
    return w * (desired / (EPSILON + n))


def apply_constraint(spec, w: np.ndarray) -> None:
    """Constrain ``w`` in place (no-op for ``spec=None``)."""
    if spec is None:
        return
    w[...] = constrained(spec, w)
