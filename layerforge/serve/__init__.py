"""`layerforge serve`: a trained run behind an HTTP API (FastAPI on uvicorn; the optional extra
``layerforge[serve]``).

- :mod:`.inputs`   request bodies (JSON, CSV/TSV, NPY, Parquet) -> model inputs, with the data readers' checks
- :mod:`.batcher`  micro-batching of concurrent requests into one forward pass, off the event loop
- :mod:`.app`      the endpoints: POST /predict, GET /health, GET /metadata, /docs
- :mod:`.server`   running it under uvicorn, with ``--workers`` processes and graceful shutdown on SIGTERM
"""

from __future__ import annotations

from ..errors import UserError

EXTRA_HINT = "pip install 'layerforge[serve]'  (FastAPI and uvicorn)"


def require_serve_dependencies() -> None:
    """A clear message, not an ImportError traceback, when the serve extra is not installed."""
    missing = []
    for module in ("fastapi", "uvicorn"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise UserError(f"`layerforge serve` needs {' and '.join(missing)}, which are not installed; "
                        f"install the serve extra: {EXTRA_HINT}")
