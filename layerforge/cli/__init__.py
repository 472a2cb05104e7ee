"""The `layerforge` command, the top floor: ``app.py`` is the thin Typer app (arguments, Rich output, exit codes),
``commands.py`` what `train`, `predict` and `evaluate` do between argument parsing and the library (``api``),
``streaming.py`` the predict/evaluate passes over files larger than the data memory budget."""

from .app import app, main

__all__ = ["app", "main"]
