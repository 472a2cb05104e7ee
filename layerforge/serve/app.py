"""The HTTP application: a trained run behind POST /predict, GET /health, GET /metadata and /docs (FastAPI).

One :class:`ServedModel` per process holds the loaded run; its forward passes go through a
:class:`~layerforge.serve.batcher.MicroBatcher`. Bodies are read with a size cap while they stream in (a
413 as soon as the cap is passed, without buffering the rest), decoded by :mod:`layerforge.serve.inputs`
(the data readers' own checks) and answered with the labels `layerforge predict` prints
(``cli.commands.decode_outputs``). Every refusal is a 4xx with a message; an unexpected failure is a 500
with its error and the server goes on serving.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import Route

from .. import __version__
from ..data import InputInfo
from ..errors import UserError
from .batcher import MicroBatcher
from .inputs import BadInput, decode_body, parquet_available, rows_in, supported_types

SETTINGS_ENV = "LAYERFORGE_SERVE_SETTINGS"  # how `--workers` processes receive the settings
INLINE_DECODE_BYTES = 64 * 1024  # bodies up to this size are decoded on the event loop, larger ones in a thread


@dataclass
class ServeSettings:
    run: str
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    max_batch: int = 64
    max_wait_ms: float = 5.0
    max_rows: int = 10_000
    max_body_bytes: int = 16 * 1024 * 1024
    threads: int | None = None
    allow_code: bool = False
    access_log: bool = False
    shutdown_timeout: float = 30.0


class ServedModel:
    """A run directory loaded for serving: inputs, the batched forward pass and the CLI's label decoding."""

    def __init__(self, run: str | Path, *, allow_code: bool = False):
        from ..api import load

        self.run = Path(run)
        self.model = load(self.run, allow_code=allow_code)
        graph = self.model.graph
        self.inputs = [InputInfo(i.name, tuple(i.shape), i.dtype) for i in graph.inputs]
        self.feature_names = self.model.feature_names
        self.name = self.model.spec.config.name
        self.columns: list[str] = []
        self.probability_columns: list[str] = []

    def forward(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        """One forward pass (called in the batcher's worker thread)."""
        outs = self.model.predict(xs if len(xs) > 1 else xs[0])
        return list(outs) if isinstance(outs, (list, tuple)) else [outs]

    def decode(self, outs: list[np.ndarray], probabilities: bool) -> tuple[list[str], list[np.ndarray]]:
        # the labels exactly as `layerforge predict` maps them; the writer's text columns become JSON values again
        from ..cli.commands import decode_outputs, prediction_encoders, target_column_names

        names, columns = decode_outputs(self.model, outs, probabilities)
        encoders = prediction_encoders(self.model)
        label_kind = {} if probabilities else {
            shown: encoders[name].get("kind") for name, shown in zip(self.model.output_names,
                                                                       target_column_names(self.model))
            if name in encoders}
        typed = []
        for name, column in zip(names, columns):
            if name not in label_kind:
                typed.append(np.asarray(column, dtype=np.float64))
            elif label_kind[name] == "int":
                typed.append(np.asarray(column, dtype=np.int64))
            else:
                typed.append(np.asarray(column, dtype=object))
        return names, typed

    def warm_up(self) -> None:
        """Compile (or load from Numba's cache) every kernel before the first request; learn the columns."""
        xs = [np.zeros((1,) + tuple(1 if d is None else d for d in i.shape), dtype=i.dtype) for i in self.inputs]
        outs = self.forward(xs)
        self.columns = self.decode(outs, False)[0]
        self.probability_columns = self.decode(outs, True)[0]

    def metadata(self, settings: ServeSettings) -> dict:
        schema = self.model.data_schema()
        encoders = schema.get("encoders") or {}
        outputs = []
        for out in schema["outputs"]:
            enc = encoders.get(out["name"]) or {}
            outputs.append({**out, "classes": enc.get("classes")})
        return {
            "name": self.name,
            "run": str(self.run),
            "layerforge": __version__,
            "inputs": schema["inputs"],
            "feature_names": self.feature_names,
            "outputs": outputs,
            "label_mapping": encoders,
            "columns": self.columns,
            "probability_columns": self.probability_columns,
            "content_types": supported_types(),
            "limits": {"max_batch": settings.max_batch, "max_wait_ms": settings.max_wait_ms,
                       "max_rows": settings.max_rows, "max_body_bytes": settings.max_body_bytes},
            "config": self.model.spec.canonical_dict(),
        }

    def example_rows(self) -> list:
        if self.feature_names:
            return [dict.fromkeys(self.feature_names, 0.0)]
        size = int(np.prod([1 if d is None else d for d in self.inputs[0].shape]))
        return [[0.0] * size]


# ---------------------------------------------------------------------------------------------- helpers


def _json_response(payload, status: int = 200, headers: dict | None = None):
    body = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _error(message: str, status: int, problems: list | None = None, headers: dict | None = None):
    payload = {"error": message, "status": status}
    if problems:
        payload["problems"] = problems
    return _json_response(payload, status, headers)


async def read_capped_body(request: Request, limit: int) -> bytes:
    """The request body, refused with a 413 as soon as it passes ``limit`` bytes (never buffered whole)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise BadInput(f"invalid Content-Length header {declared!r}") from None
        if size > limit:
            raise BadInput(f"the body is {size:,} bytes; this server accepts at most {limit:,} bytes per request "
                           "(split the rows over several requests, or raise --max-body-mb)", status=413)
    received = bytearray()
    try:
        async for chunk in request.stream():
            received += chunk
            if len(received) > limit:
                raise BadInput(f"the body passed {limit:,} bytes, the most this server accepts per request (split "
                               "the rows over several requests, or raise --max-body-mb)", status=413)
    except ClientDisconnect:
        raise BadInput("the client disconnected before the body was complete") from None
    return bytes(received)


def _flag(value: str | None, name: str) -> bool:
    if value is None:
        return False
    v = value.strip().lower()
    if v in ("", "1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise BadInput(f"query parameter {name}={value!r} is not a boolean; use {name}=true or {name}=false")


def _column_values(col: np.ndarray) -> list:
    arr = np.asarray(col)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        return [float(v) if np.isfinite(v) else None for v in arr.tolist()]
    return arr.tolist()


def _predictions(names: list[str], columns: list[np.ndarray]) -> list[dict]:
    values = [_column_values(c) for c in columns]
    return [dict(zip(names, row)) for row in zip(*values)]


# ---------------------------------------------------------------------------------------------- the app


def create_app(settings: ServeSettings, served: ServedModel | None = None):
    """The FastAPI application for one run (loads the run now unless ``served`` is given)."""

    served = served or ServedModel(settings.run, allow_code=settings.allow_code)
    state: dict = {"ready": False, "started": time.time(), "metadata": None}
    batcher = MicroBatcher(served.forward, max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await run_in_threadpool(served.warm_up)
        state["metadata"] = _json_response(served.metadata(settings)).body
        await batcher.start()
        state["ready"] = True
        try:
            yield
        finally:
            state["ready"] = False
            await batcher.stop()  # uvicorn calls this after the in-flight requests are answered

    app = FastAPI(title=f"layerforge: {served.name}", version=__version__, lifespan=lifespan,
                  description=f"The layerforge run `{served.run}` served over HTTP. POST rows to /predict; "
                              "GET /metadata for the inputs, outputs, label mapping and config.")

    @app.exception_handler(BadInput)
    async def _bad_input(request, exc: BadInput):
        headers = {"Connection": "close"} if exc.status == 413 else None  # the rest of the body was not read
        return _error(exc.message, exc.status, exc.problems, headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc):
        return _error(str(exc.detail), exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc):
        return _error("invalid request: " + "; ".join(str(e.get("msg")) for e in exc.errors()), 422)

    @app.exception_handler(Exception)
    async def _internal(request, exc):  # a bug in layerforge: say so, keep serving
        return _error(f"internal error: {type(exc).__name__}: {exc}", 500)

    json_schema = {"oneOf": [
        {"type": "array", "description": "rows: objects keyed by the training column names, or arrays"},
        {"type": "object", "properties": {"rows": {"type": "array"}}, "required": ["rows"]},
        {"type": "object", "properties": {"inputs": {"type": "object"}}, "required": ["inputs"],
         "description": "multi-input models: rows per input name"},
    ]}
    content = {
        "application/json": {"schema": json_schema, "example": served.example_rows()},
        "text/csv": {"schema": {"type": "string"}, "example": ",".join(served.feature_names or []) + "\n"},
        "application/x-npy": {"schema": {"type": "string", "format": "binary"}},
    }
    if parquet_available():
        content["application/vnd.apache.parquet"] = {"schema": {"type": "string", "format": "binary"}}

    @app.post("/predict", summary="Predict for one or more rows",
              openapi_extra={
                  "requestBody": {"required": True, "content": content},
                  "parameters": [{"name": "probabilities", "in": "query", "required": False,
                                  "schema": {"type": "boolean", "default": False},
                                  "description": "class probabilities instead of labels"}]},
              responses={400: {"description": "bad input (the message says what is wrong)"},
                         413: {"description": "too many bytes or rows"},
                         415: {"description": "unsupported content type"}})
    async def predict(request: Request):
        """Rows in, predictions out: labels mapped back to the training labels, as `layerforge predict` does."""
        probabilities = _flag(request.query_params.get("probabilities"), "probabilities")
        with batcher.expect():
            body = await read_capped_body(request, settings.max_body_bytes)
            ctype = request.headers.get("content-type", "")
            if len(body) <= INLINE_DECODE_BYTES:
                xs = decode_body(body, ctype, served.model, served.inputs, served.feature_names)
            else:
                xs = await run_in_threadpool(decode_body, body, ctype, served.model, served.inputs,
                                             served.feature_names)
            n = rows_in(xs)
            if n > settings.max_rows:
                raise BadInput(f"the request has {n:,} rows; this server accepts at most {settings.max_rows:,} "
                               "per request (split them, or raise --max-rows)", status=413)
            waiting = batcher.submit(xs)  # queued before expect() ends, so a forming batch can take it
        try:
            outs = await waiting
        except UserError as exc:
            raise BadInput(exc.render_plain()) from None
        names, columns = served.decode(outs, probabilities)
        return _json_response({"columns": names, "predictions": _predictions(names, columns)})

    @app.get("/health", summary="Liveness and readiness")
    async def health():
        status = 200 if state["ready"] else 503
        return _json_response({"status": "ok" if state["ready"] else "starting", "model": served.name,
                               "pid": os.getpid(), "uptime_s": round(time.time() - state["started"], 3),
                               "requests": batcher.requests, "batches": batcher.batches, "rows": batcher.rows,
                               "engine_busy_s": round(batcher.busy_s, 3)},
                              status)

    @app.get("/metadata", summary="Inputs, outputs, shapes, label mapping and the config")
    async def metadata():
        if state["metadata"] is None:
            return _error("the model is still loading", 503)
        return Response(state["metadata"], media_type="application/json")

    # Requests to /predict skip FastAPI's per-request machinery (dependency solving, telemetry): a plain
    # Starlette route to the same function, the docs kept from the route above (the schema is made first).
    # Measured with 50 clients on iris: 1,506 and 2,013 requests/s against 735 and 1,122 through FastAPI's route.
    app.openapi()
    index = next(i for i, r in enumerate(app.router.routes) if getattr(r, "path", None) == "/predict")
    app.router.routes[index] = Route("/predict", predict, methods=["POST"])

    return app


def app_from_environment():
    """The app of one `--workers` process: the settings come from the parent through the environment."""
    settings = ServeSettings(**json.loads(os.environ[SETTINGS_ENV]))
    if settings.threads:
        from ..kernels.threads import set_threads

        set_threads(settings.threads)
    return create_app(settings)


def settings_to_environment(settings: ServeSettings) -> None:
    os.environ[SETTINGS_ENV] = json.dumps(asdict(settings))
