"""Small helpers the core layers share."""

from __future__ import annotations

from ..base import Layer


def _known_last_dim(layer: Layer, shape, what: str = "last axis") -> int:
    if len(shape) < 1 or shape[-1] is None:
        raise layer.shape_error(shape, f"the {what} must have a known size")
    return shape[-1]


def _show(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
