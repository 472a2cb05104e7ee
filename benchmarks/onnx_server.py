"""The baseline for benchmarks/serve_bench.py: an exported model served by onnxruntime in a minimal loop.

    python benchmarks/onnx_server.py MODEL.onnx [--port 8001] [--threads N]

Not part of layerforge and not for production: uvicorn (the same httptools + uvloop stack `layerforge serve`
runs on) and a bare Starlette app with `GET /health` and one `POST /predict` taking what `layerforge serve`
takes for a single-input classifier when rows are sent as arrays (a JSON list of rows, bare or as
{"rows": [...]}, each row the sample's numbers flat or nested), answered in the same shape:
{"columns": [output], "predictions": [{output: label}, ...]}, the label the argmax mapped through the class
labels `layerforge export` writes into the ONNX metadata. No micro-batching: each request is one
`InferenceSession.run`, in one worker thread off the event loop, so requests run one after the other. Bad JSON
or a wrong row length is a 400; there are no other checks (no NaN check, no body cap).
Listens on 127.0.0.1 unless --host says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def build_app(model: Path, threads: int | None):
    import onnxruntime as ort
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or 0  # 0: onnxruntime's default, one per core
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    (inp,) = session.get_inputs()
    (out,) = session.get_outputs()
    sample_shape = tuple(inp.shape[1:])
    size = int(np.prod(sample_shape))
    labels = json.loads(meta["class_labels"])[out.name] if "class_labels" in meta else None
    executor = ThreadPoolExecutor(max_workers=1)  # the one inference thread

    def infer(x: np.ndarray) -> list:
        (y,) = session.run([out.name], {inp.name: x})
        idx = y.argmax(axis=1).tolist()
        return [labels[i] for i in idx] if labels else idx

    def json_response(payload, status: int = 200) -> Response:
        return Response(json.dumps(payload, separators=(",", ":")), status_code=status,
                        media_type="application/json")

    async def predict(request):
        try:
            rows = json.loads(await request.body())
            if isinstance(rows, dict):
                rows = rows["rows"]
            x = np.asarray(rows, dtype=np.float32).reshape((len(rows),) + sample_shape)
        except (ValueError, TypeError, KeyError) as exc:
            return json_response({"error": f"expected a JSON list of rows of {size} numbers: {exc}", "status": 400},
                                 400)
        predicted = await asyncio.get_running_loop().run_in_executor(executor, infer, x)
        return json_response({"columns": [out.name], "predictions": [{out.name: v} for v in predicted]})

    async def health(request):
        return json_response({"status": "ok"})

    infer(np.zeros((1,) + sample_shape, np.float32))  # warm up before the port opens
    return Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/health", health)])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path, help="an .onnx file written by `layerforge export --format onnx`")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8001)
    ap.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default: all cores)")
    args = ap.parse_args(argv)
    import uvicorn

    uvicorn.run(build_app(args.model, args.threads), host=args.host, port=args.port, access_log=False,
                log_level="warning", backlog=2048, server_header=False)


if __name__ == "__main__":
    main()
