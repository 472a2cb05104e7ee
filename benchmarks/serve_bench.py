"""Load figures for `layerforge serve`: throughput and p50/p99 latency under concurrent clients.

    python benchmarks/serve_bench.py                         # iris and digits_cnn, 1 and 50 clients
    python benchmarks/serve_bench.py --models iris --clients 1,8,50 --requests 4000 --json out.json
    python benchmarks/serve_bench.py --run-dir runs/ --max-wait-ms 2 --workers 2
    python benchmarks/serve_bench.py --against-onnx --rounds 3     # and the ONNX baseline, alternating

For each model the script trains the shipped config (a few epochs: speed does not depend on accuracy) unless a
run directory already exists under --run-dir, starts `layerforge serve` on a free 127.0.0.1 port, and drives it
with a small asyncio HTTP/1.1 client (keep-alive connections, --rows rows per request as JSON arrays, written on
raw sockets so the client costs the shared cores as little as possible). It reports requests/s, rows/s, and the
p50/p99 latency per request, next to the batched in-process figure (`Model.predict` over the same rows in batches
of --max-batch), the ceiling the micro-batcher approaches. Every response is checked to be a 200 with one
prediction per row sent.
With --against-onnx the same model is also exported (`layerforge export RUN --format onnx`) and served by
benchmarks/onnx_server.py (onnxruntime in a minimal Starlette loop, no batching), and the same load is run
against both servers, alternating which goes first from round to round (--rounds), after checking that both
answer the same rows with the same labels.
All traffic is to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODELS = {
    "iris": ("configs/iris.yaml", ["training.epochs=30"]),
    "digits_cnn": ("configs/digits_cnn.yaml", ["training.epochs=2"]),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_run(name: str, run_dir: Path) -> Path:
    import layerforge

    config, overrides = MODELS[name]
    path = run_dir / name
    if not (path / "weights.safetensors").exists():
        model = layerforge.Model.from_yaml(ROOT / config, overrides)
        print(f"training {name} ({' '.join(overrides)}) ...", file=sys.stderr, flush=True)
        model.fit()
        model.save(path)
    return path


def sample_rows(name: str, n: int) -> np.ndarray:
    if name == "iris":
        lines = (ROOT / "examples/data/iris.csv").read_text().splitlines()[1:]
        x = np.array([[float(v) for v in ln.split(",")[:4]] for ln in lines])
    else:
        with np.load(ROOT / "examples/data/digits.npz", allow_pickle=False) as f:
            x = f["x"].reshape(len(f["x"]), -1).astype(np.float64)
    return x[np.arange(n) % len(x)]


def batched_predict_rate(run: Path, rows: np.ndarray, batch: int) -> float:
    """Rows/s of the model in-process, in batches of ``batch`` (the ceiling for the server)."""
    import layerforge

    model = layerforge.load(run)
    shape = tuple(model.graph.inputs[0].shape)
    x = rows.reshape((len(rows),) + shape).astype(np.float32)
    model.predict(x[:batch], batch_size=batch)
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        for s in range(0, len(x), batch):
            model.predict(x[s:s + batch], batch_size=batch)
        best = max(best, len(x) / (time.perf_counter() - t))
    return best


def export_onnx(run: Path) -> Path:
    path = run.with_suffix(".onnx")
    if not path.exists():
        subprocess.run([sys.executable, "-m", "layerforge", "export", str(run), "--format", "onnx", "-o", str(path)],
                       check=True, stdout=subprocess.DEVNULL)
    return path


class Server:
    """`layerforge serve RUN` (kind "layerforge") or benchmarks/onnx_server.py on RUN's .onnx (kind "onnxruntime")."""

    def __init__(self, run: Path, args: list[str], kind: str = "layerforge"):
        self.port = _free_port()
        self.log = tempfile.TemporaryFile()
        if kind == "layerforge":
            cmd = [sys.executable, "-m", "layerforge", "serve", str(run)]
        else:
            cmd = [sys.executable, str(ROOT / "benchmarks/onnx_server.py"), str(export_onnx(run))]
        self.proc = subprocess.Popen([*cmd, "--host", "127.0.0.1", "--port", str(self.port), *args],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise SystemExit(f"the server exited:\n{self.log.read().decode(errors='replace')}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(64).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit("the server did not start")

    def answer(self, rows: list) -> bytes:
        """The response body to one request of ``rows`` (to check that two servers agree)."""
        body = json.dumps(rows).encode()
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
            s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
                      b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return data.split(b"\r\n\r\n", 1)[1]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


async def _client(port: int, bodies: list[bytes], latencies: list[float], errors: list, want_braces: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for body in bodies:
            request = (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                       b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            t = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            payload = await reader.readexactly(length)
            latencies.append(time.perf_counter() - t)
            if not head.startswith(b"HTTP/1.1 200") or payload.count(b"{") != want_braces:
                errors.append(head.split(b"\r\n", 1)[0] + b" " + payload[:200])
    finally:
        writer.close()


def drive(port: int, rows: np.ndarray, requests: int, clients: int, per_request: int = 1) -> dict:
    listed = rows.tolist()
    bodies = [json.dumps([listed[(i * per_request + j) % len(listed)] for j in range(per_request)]).encode()
              for i in range(requests)]
    want_braces = 1 + per_request  # {"columns":..,"predictions":[{..}, ...]}
    latencies: list[float] = []
    errors: list = []

    async def main():
        per = [bodies[k::clients] for k in range(clients)]
        await asyncio.gather(*(_client(port, b, latencies, errors, want_braces) for b in per if b))

    asyncio.run(main())  # warm-up pass (connections, caches), not reported
    latencies.clear()
    start = time.perf_counter()
    asyncio.run(main())
    elapsed = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    return {"clients": clients, "rows_per_request": per_request, "requests": len(bodies), "errors": len(errors),
            "seconds": round(elapsed, 3), "requests_per_s": round(len(bodies) / elapsed, 1),
            "rows_per_s": round(len(bodies) * per_request / elapsed, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "first_errors": [e.decode(errors="replace") for e in errors[:3]]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="iris,digits_cnn")
    ap.add_argument("--clients", default="1,50", help="concurrent clients, comma-separated")
    ap.add_argument("--requests", type=int, default=3000, help="requests per measurement")
    ap.add_argument("--rows", default="1", help="rows per request, comma-separated (e.g. 1,32)")
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--run-dir", type=Path, default=None, help="where to keep the trained runs (default: temp)")
    ap.add_argument("--against-onnx", action="store_true",
                    help="also serve the model exported to ONNX with benchmarks/onnx_server.py, same load")
    ap.add_argument("--rounds", type=int, default=1, help="measure everything this many times (alternating servers)")
    ap.add_argument("--onnx-threads", type=int, default=None, help="onnxruntime intra-op threads (default: all)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="layerforge-serve-bench-"))
    results = []
    print(f"{os.cpu_count()} cores; server: --max-batch {args.max_batch} --max-wait-ms {args.max_wait_ms} "
          f"--workers {args.workers}; client and server share the machine")
    print("| round | model | server | clients | rows/request | requests/s | rows/s | p50 ms | p99 ms | errors "
          "| batched predict rows/s | load average |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    kinds = ["layerforge", "onnxruntime"] if args.against_onnx else ["layerforge"]
    server_args = {"layerforge": ["--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms),
                                  "--workers", str(args.workers)],
                   "onnxruntime": ["--threads", str(args.onnx_threads)] if args.onnx_threads else []}
    for name in args.models.split(","):
        run = prepare_run(name, run_dir)
        rows = sample_rows(name, args.requests)
        answers = {}
        for round_ in range(1, args.rounds + 1):
            ceiling = batched_predict_rate(run, sample_rows(name, 4096), args.max_batch)
            for kind in kinds if round_ % 2 else kinds[::-1]:  # ABBA: a change of load hits both servers
                server = Server(run, server_args[kind], kind)
                try:
                    answers[kind] = server.answer(rows[:64].tolist())
                    for per_request in (int(v) for v in args.rows.split(",")):
                        for clients in (int(c) for c in args.clients.split(",")):
                            r = drive(server.port, rows, args.requests, clients, per_request)
                            r.update(round=round_, model=name, server=kind, load_average=os.getloadavg()[0],
                                     batched_predict_rows_per_s=round(ceiling, 1), max_batch=args.max_batch,
                                     max_wait_ms=args.max_wait_ms, workers=args.workers)
                            results.append(r)
                            print(f"| {round_} | {name} | {kind} | {clients} | {per_request} "
                                  f"| {r['requests_per_s']:,.0f} | {r['rows_per_s']:,.0f} | {r['p50_ms']:.2f} "
                                  f"| {r['p99_ms']:.2f} | {r['errors']} | {ceiling:,.0f} "
                                  f"| {r['load_average']:.1f} |", flush=True)
                finally:
                    server.stop()
            if len(set(answers.values())) > 1:
                raise SystemExit(f"{name}: the servers disagree on the first 64 rows:\n"
                                 + "\n".join(f"{k}: {v[:300]!r}" for k, v in answers.items()))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
