"""All layer types. Each family module registers its classes on import."""

from __future__ import annotations

import importlib

from .base import REGISTRY, TYPE_NAMES, Example, Layer, LayerConfig, ParamSpec, register

FAMILIES = [
    "core", "merge", "lambda_layer", "convolution", "reshaping", "pooling", "locally_connected",
    "recurrent", "embedding", "advanced_activations", "normalization", "noise", "wrappers", "container",
    "core_extra", "normalization_extra", "attention", "conv_recurrent",
]

_loaded = False


def load_all() -> None:
    """Import every family module once (no Numba: kernels are imported lazily by forward passes)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for family in FAMILIES:
        importlib.import_module(f"{__name__}.{family}")


def ensure_type(type_name: str) -> bool:
    """Import the family module that defines ``type_name`` (only that one); False if no family does."""
    if type_name in TYPE_NAMES:
        return True
    from ._index import TYPE_MODULES

    family = TYPE_MODULES.get(type_name)
    if family is None:
        return False
    importlib.import_module(f"{__name__}.{family}")
    return type_name in TYPE_NAMES


def known_type_names() -> list[str]:
    """Every accepted type name, without importing the families."""
    from ._index import TYPE_MODULES

    return sorted(set(TYPE_MODULES) | set(TYPE_NAMES))


def make_layer(config: LayerConfig, name: str | None = None) -> Layer:
    """Instantiate the layer class for a validated config."""
    ensure_type(config.type)
    return REGISTRY[config.type](config, name)


__all__ = ["REGISTRY", "TYPE_NAMES", "Example", "Layer", "LayerConfig", "ParamSpec", "register", "load_all",
           "ensure_type", "known_type_names", "make_layer", "FAMILIES"]
