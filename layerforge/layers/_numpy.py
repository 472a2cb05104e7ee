"""numpy, imported on first use.

Layer modules are imported by `validate` and `summary`, which only need the shape side of each layer; numpy's
import is a third of those commands' start-up. Layer modules therefore write ``from ._numpy import np`` and
numpy loads the first time a layer computes (one attribute lookup more per ``np.`` call, negligible next to
the array work).
"""

from __future__ import annotations

import importlib


class _LazyNumpy:
    __slots__ = ()

    def __getattr__(self, name: str):
        numpy = importlib.import_module("numpy")
        return getattr(numpy, name)

    def __repr__(self) -> str:
        return "<numpy, imported on first use>"


np = _LazyNumpy()
