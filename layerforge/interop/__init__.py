"""Interop with other frameworks.

- `keras_import`: Keras 1, 2 and 3 model files (JSON, legacy HDF5, `.keras`) -> a layerforge config and run directory.
- `onnx_export`, `keras_export`: a trained model -> ONNX, or a Keras 3 `.keras` archive. Both read a layerforge
  model (``api.Model``) and never import Numba themselves."""

from __future__ import annotations

from ..errors import Problem, UserError


class ExportError(UserError):
    """A model (or one of its layers) that the chosen format cannot express; exit code 2."""


def cannot_export(fmt: str, layer_type: str, layer_name: str, reason: str, hint: str | None = None) -> ExportError:
    """The one error every exporter raises for a layer it cannot write: names the layer, its type and why."""
    return ExportError(problems=[Problem(
        message=f"layer '{layer_name}' ({layer_type}) cannot be exported to {fmt}: {reason}", hint=hint)])


def ensure_package(module: str, fmt: str):
    """Import an optional package an exporter needs, or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExportError(problems=[Problem(
            message=f"exporting to {fmt} needs the '{module}' package, which is not installed",
            hint='install it with: pip install "layerforge[export]"')]) from None


__all__ = ["ExportError", "cannot_export", "ensure_package"]
