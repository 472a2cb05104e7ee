"""numpy, imported on first use.

Layer modules are imported by `validate` and `summary`, which only need the shape side of each layer; numpy's
import is a third of those commands' start-up. Layer modules (``from ._numpy import np``, layers/_numpy.py) and the
activation registry (layerforge/activations.py) therefore use this proxy, and numpy loads the first time one computes.
"""

from __future__ import annotations

import importlib


class _LazyNumpy:
    """Looks a name up in numpy the first time and keeps it as an instance attribute, so later lookups are plain
    attribute hits (``__getattr__`` only runs for names not found; a training step makes thousands of them)."""

    def __getattr__(self, name: str):
        value = getattr(importlib.import_module("numpy"), name)
        setattr(self, name, value)
        return value

    def __repr__(self) -> str:
        return "<numpy, imported on first use>"


np = _LazyNumpy()
