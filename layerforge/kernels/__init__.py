"""Numba kernels. Import these modules lazily (inside forward/backward), never at package import:
`summary`, `validate` and `--help` must not load Numba."""
