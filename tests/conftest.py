"""The tests run with the engine's start-up steps taken, as the command-line tool runs (engine/startup.py)."""

from layerforge.engine import startup

startup.start()
