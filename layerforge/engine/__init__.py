"""The numpy + Numba engine: model execution, losses, metrics, optimizers, fit loop."""
