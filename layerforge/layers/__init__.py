"""All layer types. Each family module registers its classes on import."""

from __future__ import annotations

import importlib

from .base import REGISTRY, TYPE_NAMES, Example, Layer, LayerConfig, ParamSpec, register

FAMILIES = [
    "core", "merge", "lambda_layer", "convolution", "reshaping", "pooling", "locally_connected",
    "recurrent", "embedding", "advanced_activations", "normalization", "noise", "wrappers",
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


def get_layer_class(type_name: str) -> type[Layer]:
    load_all()
    return REGISTRY[TYPE_NAMES[type_name][0]]


def make_layer(config: LayerConfig, name: str | None = None) -> Layer:
    """Instantiate the layer class for a validated config."""
    load_all()
    return REGISTRY[config.type](config, name)


__all__ = ["REGISTRY", "TYPE_NAMES", "Example", "Layer", "LayerConfig", "ParamSpec", "register", "load_all",
           "get_layer_class", "make_layer", "FAMILIES"]
