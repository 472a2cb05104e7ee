"""`layerforge serve`, for real: the server runs as a subprocess on a free loopback port and the tests talk to it
with httpx: every endpoint, every class of bad input (each followed by a good request), a bounded load test whose
answers must equal `layerforge predict`'s, and a graceful shutdown on SIGTERM with a request in flight.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("fastapi", reason="the serve extra (pip install 'layerforge[serve]') is not installed")
pytest.importorskip("uvicorn", reason="the serve extra (pip install 'layerforge[serve]') is not installed")
httpx = pytest.importorskip("httpx", reason="httpx (in the test extra) talks to the server")

import layerforge  # noqa: E402
from layerforge.cli import app  # noqa: E402
from layerforge.data import InputInfo  # noqa: E402
from layerforge.serve.batcher import MicroBatcher  # noqa: E402
from layerforge.serve.inputs import BadInput, json_inputs  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
IRIS = ROOT / "examples" / "data" / "iris.csv"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
STARTUP_S = 90  # a cold Numba cache on a busy 2-core machine; normally a few seconds


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`layerforge serve RUN ...` in a subprocess on 127.0.0.1, stopped by its pid."""

    def __init__(self, run: Path, *args: str, log: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self._log = open(log, "wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "layerforge", "serve", str(run), "--host", "127.0.0.1",
                                      "--port", str(self.port), *args], stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env)
        deadline = time.monotonic() + STARTUP_S
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"the server did not start within {STARTUP_S}s:\n{self.log()}")
            time.sleep(0.2)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory) -> Path:
    model = layerforge.Model.from_yaml(ROOT / "configs" / "iris.yaml", ["training.epochs=15"])
    model.fit()
    return model.save(tmp_path_factory.mktemp("serve") / "iris")


@pytest.fixture(scope="module")
def server(iris_run, tmp_path_factory):
    srv = Server(iris_run, "--max-body-mb", "1", "--max-rows", "500", log=tmp_path_factory.mktemp("log") / "s.log")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def iris_features() -> np.ndarray:
    rows = [r.split(",") for r in IRIS.read_text().splitlines()[1:]]
    return np.array([[float(v) for v in r[:4]] for r in rows])


@pytest.fixture(scope="module")
def cli_predictions(iris_run, iris_features, tmp_path_factory):
    """What `layerforge predict` writes for every Iris row: labels and probabilities."""
    d = tmp_path_factory.mktemp("cli")
    data = d / "x.csv"
    lines = [",".join(FEATURES)] + [",".join(map(repr, r)) for r in iris_features.tolist()]
    data.write_text("\n".join(lines) + "\n")
    out = {}
    for name, extra in (("labels", []), ("probabilities", ["--probabilities"])):
        dest = d / f"{name}.csv"
        result = CliRunner().invoke(app, ["predict", str(iris_run), "--data", str(data), "-o", str(dest), *extra])
        assert result.exit_code == 0, result.output
        lines = dest.read_text().splitlines()
        out[name] = (lines[0].split(","), [ln.split(",") for ln in lines[1:]])
    return out


def _ok(r, n: int):
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["predictions"]) == n
    return body


# ---------------------------------------------------------------------------------------------- endpoints


def test_health_metadata_docs(server, iris_run):
    h = httpx.get(server.url + "/health").json()
    assert h["status"] == "ok" and h["model"] == "iris"
    meta = httpx.get(server.url + "/metadata").json()
    assert meta["inputs"] == [{"name": "input", "shape": [4], "dtype": "float32"}]
    assert meta["feature_names"] == FEATURES
    assert meta["outputs"][0]["name"] == "species" and meta["outputs"][0]["shape"] == [3]
    assert meta["label_mapping"]["species"]["classes"] == ["setosa", "versicolor", "virginica"]
    assert meta["columns"] == ["species"]
    assert meta["probability_columns"] == ["p_setosa", "p_versicolor", "p_virginica"]
    assert meta["config"]["name"] == "iris" and meta["config"]["layers"][0]["type"] == "Dense"
    assert meta["limits"]["max_rows"] == 500
    docs = httpx.get(server.url + "/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = httpx.get(server.url + "/openapi.json").json()
    assert "/predict" in spec["paths"] and "text/csv" in spec["paths"]["/predict"]["post"]["requestBody"]["content"]


def test_predict_json_rows_objects_and_probabilities(server, cli_predictions, iris_features):
    url = server.url + "/predict"
    _, labels = cli_predictions["labels"]
    rows = iris_features[:3].tolist()
    want = [r[0] for r in labels[:3]]
    body = _ok(httpx.post(url, json=rows), 3)
    assert body["columns"] == ["species"] and [p["species"] for p in body["predictions"]] == want
    objects = [dict(zip(FEATURES, r)) for r in rows]
    assert _ok(httpx.post(url, json={"rows": objects}), 3)["predictions"] == body["predictions"]
    # object keys in any order
    shuffled = [{k: o[k] for k in reversed(FEATURES)} for o in objects]
    assert _ok(httpx.post(url, json=shuffled), 3)["predictions"] == body["predictions"]
    probs = _ok(httpx.post(url, params={"probabilities": "true"}, json=rows), 3)
    names, cli_probs = cli_predictions["probabilities"]
    assert probs["columns"] == names == ["p_setosa", "p_versicolor", "p_virginica"]
    got = np.array([[p[n] for n in names] for p in probs["predictions"]])
    np.testing.assert_allclose(got, np.array(cli_probs[:3], dtype=float), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)


def test_predict_csv_tsv_npy_bodies(server, cli_predictions, iris_features):
    url = server.url + "/predict"
    _, labels = cli_predictions["labels"]
    want = [r[0] for r in labels[:5]]
    rows = iris_features[:5]
    csv = ",".join(FEATURES) + ",species\n" + "\n".join(",".join(map(repr, r)) + ",?" for r in rows.tolist()) + "\n"
    got = _ok(httpx.post(url, content=csv, headers={"content-type": "text/csv"}), 5)
    assert [p["species"] for p in got["predictions"]] == want
    headerless = "\n".join(",".join(map(repr, r)) for r in rows.tolist())
    got = _ok(httpx.post(url, content=headerless, headers={"content-type": "text/csv"}), 5)
    assert [p["species"] for p in got["predictions"]] == want
    tsv = "\t".join(FEATURES) + "\n" + "\n".join("\t".join(map(repr, r)) for r in rows.tolist())
    got = _ok(httpx.post(url, content=tsv, headers={"content-type": "text/tab-separated-values"}), 5)
    assert [p["species"] for p in got["predictions"]] == want
    buf = io.BytesIO()
    np.save(buf, rows.astype(np.float32))
    got = _ok(httpx.post(url, content=buf.getvalue(), headers={"content-type": "application/x-npy"}), 5)
    assert [p["species"] for p in got["predictions"]] == want
    # curl -d without a content type (form-urlencoded): the body is recognised by its first bytes
    got = _ok(httpx.post(url, content=json.dumps(rows.tolist()),
                         headers={"content-type": "application/x-www-form-urlencoded"}), 5)
    assert [p["species"] for p in got["predictions"]] == want


def test_predict_parquet_body(server, cli_predictions, iris_features):
    pa = pytest.importorskip("pyarrow", reason="Parquet bodies need pyarrow (optional)")
    import pyarrow.parquet as pq

    table = pa.table({name: iris_features[:4, j] for j, name in enumerate(FEATURES)})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    got = _ok(httpx.post(server.url + "/predict", content=buf.getvalue(),
                         headers={"content-type": "application/vnd.apache.parquet"}), 4)
    assert [p["species"] for p in got["predictions"]] == [r[0] for r in cli_predictions["labels"][1][:4]]
    bad = pa.table({**{name: iris_features[:2, j] for j, name in enumerate(FEATURES[:3])}, "petal_width": ["a", "b"]})
    buf = io.BytesIO()
    pq.write_table(bad, buf)
    r = httpx.post(server.url + "/predict", content=buf.getvalue(),
                   headers={"content-type": "application/vnd.apache.parquet"})
    assert r.status_code == 400 and "'petal_width' holds string" in r.json()["error"], r.text
    r = httpx.post(server.url + "/predict", content=b"PAR1 not really", headers={"content-type": "application/parquet"})
    assert r.status_code == 400 and "not a readable Parquet file" in r.json()["error"], r.text


# ---------------------------------------------------------------------------------------------- bad input

ROW = [5.1, 3.5, 1.4, 0.2]
OBJ = dict(zip(FEATURES, ROW))
JSON = {"content-type": "application/json"}
BAD = [
    pytest.param(json.dumps([ROW[:3]]), JSON, 400, "expects (4,)", id="wrong_shape"),
    pytest.param(json.dumps([ROW, ROW[:3]]), JSON, 400, "different shapes", id="ragged_rows"),
    pytest.param(json.dumps([{**OBJ, "sepal_lenght": 1.0}]), JSON, 400, "unknown column 'sepal_lenght'",
                 id="unknown_column"),
    pytest.param(json.dumps([{k: v for k, v in OBJ.items() if k != "petal_width"}]), JSON, 400,
                 "missing column petal_width", id="missing_column"),
    pytest.param(json.dumps([[5.1, "3.5", 1.4, 0.2]]), JSON, 400, 'rows[0][1] is the string "3.5"',
                 id="string_in_array"),
    pytest.param(json.dumps([{**OBJ, "sepal_width": "wide"}]), JSON, 400,
                 "rows[0].sepal_width is the string \"wide\"", id="string_in_object"),
    pytest.param("[[5.1, NaN, 1.4, 0.2]]", JSON, 400, "NaN is not a number JSON allows", id="nan_token"),
    pytest.param("[[5.1, 1e999, 1.4, 0.2]]", JSON, 400, "infinite value", id="infinity"),
    pytest.param(json.dumps([[5.1, None, 1.4, 0.2]]), JSON, 400, "null", id="null"),
    pytest.param("sepal_length,sepal_width,petal_length,petal_width\n5.1,abc,1.4,0.2\n5.0,3.0,1.0,0.1\n",
                 {"content-type": "text/csv"}, 400, "row 2, column 'sepal_width': 'abc' is not a number",
                 id="csv_text_cell"),
    pytest.param("sepal_length,sepal_width,petal_length,petal_width\n5.1,,1.4,0.2\n",
                 {"content-type": "text/csv"}, 400, "missing value", id="csv_missing_cell"),
    pytest.param("", JSON, 400, "the request body is empty", id="empty_body"),
    pytest.param("   \n", {"content-type": "text/csv"}, 400, "the request body is empty", id="blank_body"),
    pytest.param("[[5.1, 3.5, ", JSON, 400, "invalid JSON at line 1", id="invalid_json"),
    pytest.param("[]", JSON, 400, "empty list", id="no_rows"),
    pytest.param('{"data": []}', JSON, 400, "expected a list of rows", id="wrong_envelope"),
    pytest.param("[1, 2, 3, 4]", JSON, 400, "not single numbers", id="flat_numbers"),
    pytest.param(b"\x93NUMPY\x09\x09garbage", {"content-type": "application/x-npy"}, 400, "not a valid array",
                 id="npy_garbage"),
    pytest.param(b"\xff\xfe[[1]]", JSON, 400, "not UTF-8", id="not_utf8"),
    pytest.param("xx", {"content-type": "image/png"}, 415, "unsupported content type", id="content_type"),
    pytest.param(json.dumps([ROW] * 501), JSON, 413, "at most 500 per request", id="too_many_rows"),
]


@pytest.mark.parametrize("content, headers, status, message", BAD)
def test_bad_input_is_a_4xx_with_a_message_and_the_next_request_is_served(server, content, headers, status,
                                                                         message):
    r = httpx.post(server.url + "/predict", content=content, headers=headers)
    assert r.status_code == status, r.text
    assert message in r.json()["error"], r.json()
    _ok(httpx.post(server.url + "/predict", json=[ROW]), 1)


def test_mangled_bodies_never_get_a_500(server, iris_features):
    """Truncated, byte-flipped and type-swapped versions of good bodies: always a 2xx/4xx, the server lives."""
    rng = np.random.default_rng(19)
    rows = iris_features[:3].tolist()
    good = [json.dumps(rows).encode(), json.dumps([dict(zip(FEATURES, r)) for r in rows]).encode(),
            json.dumps({"rows": rows}).encode(), ("\n".join(",".join(map(str, r)) for r in rows)).encode()]
    npy = io.BytesIO()
    np.save(npy, iris_features[:3])
    good.append(npy.getvalue())
    oddities = [b"null", b"true", b'"x"', b"{}", b"[[]]", b"[[[]]]", b"[{}]", b"[[1,2,3,{}]]", b"[[1e308,1,1,1]]",
                b"[[" + b"9" * 400 + b",1,1,1]]", b"[" * 100_000, b"\x00\x01\x02", b"[[1,2,3,4]" + b"]" * 5]
    bodies = oddities
    for _ in range(120):
        body = bytearray(good[rng.integers(len(good))])
        kind = rng.integers(3)
        if kind == 0:
            body = body[:rng.integers(1, len(body))]
        elif kind == 1:
            for _ in range(rng.integers(1, 4)):
                body[rng.integers(len(body))] = int(rng.integers(256))
        else:
            body = bytearray(bytes(body).replace(b"5.1", b'"5.1"').replace(b"3.5", b"null"))
        bodies.append(bytes(body))
    types = ["application/json", "text/csv", "application/x-npy", ""]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for i, body in enumerate(bodies):
            r = http.post("/predict", content=body, headers={"content-type": types[i % len(types)]})
            assert r.status_code < 500, (body[:80], r.status_code, r.text[:300])
            assert "error" in r.json() or "predictions" in r.json()
        _ok(http.post("/predict", json=[ROW]), 1)
    assert server.proc.poll() is None


def test_object_npy_needs_pickle_and_is_refused(server):
    buf = io.BytesIO()
    np.save(buf, np.array([["a", 1]], dtype=object), allow_pickle=True)
    r = httpx.post(server.url + "/predict", content=buf.getvalue(), headers={"content-type": "application/x-npy"})
    assert r.status_code == 400 and "never unpickles" in r.json()["error"]


def test_bad_query_and_unknown_routes(server):
    r = httpx.post(server.url + "/predict", params={"probabilities": "maybe"}, json=[ROW])
    assert r.status_code == 400 and "not a boolean" in r.json()["error"]
    assert httpx.get(server.url + "/nowhere").status_code == 404
    assert httpx.get(server.url + "/predict").status_code == 405


def test_100_mb_body_is_refused_while_it_streams_in(server):
    url = server.url + "/predict"
    big = b"[" + b"1.0," * (25 * 1024 * 1024) + b"1.0]"  # 100 MB with a Content-Length
    r = httpx.post(url, content=big, headers=JSON, timeout=60)
    assert r.status_code == 413 and "at most 1,048,576 bytes" in r.json()["error"]

    def chunks():  # 100 MB without a Content-Length: the cap applies while reading
        for _ in range(100):
            yield b" " * (1024 * 1024)

    r = httpx.post(url, content=chunks(), headers=JSON, timeout=60)
    assert r.status_code == 413 and "passed 1,048,576 bytes" in r.json()["error"]
    _ok(httpx.post(url, json=[ROW]), 1)
    assert server.proc.poll() is None
    assert "Traceback" not in server.log()


# ---------------------------------------------------------------------------------------------- load


def test_load_2000_requests_from_50_clients_equal_cli_predict(server, cli_predictions, iris_features):
    """Zero errors, and every answer equals `layerforge predict`'s (labels exactly, probabilities to 1e-5)."""
    label_names, labels = cli_predictions["labels"]
    prob_names, probs = cli_predictions["probabilities"]
    labels = [r[0] for r in labels]
    probs = np.array(probs, dtype=float)
    n_requests, n_clients = 2000, 50
    rng = np.random.default_rng(0)
    plan = [(rng.integers(0, 150, rng.integers(1, 4)), bool(rng.integers(0, 4) == 0)) for _ in range(n_requests)]
    before = httpx.get(server.url + "/health").json()
    failures: list = []

    async def client(k: int, http):
        for i in range(k, n_requests, n_clients):
            idx, want_probs = plan[i]
            rows = iris_features[idx].tolist()
            if i % 2:
                rows = [dict(zip(FEATURES, r)) for r in rows]
            try:
                r = await http.post("/predict", json=rows, params={"probabilities": "true"} if want_probs else None)
            except httpx.HTTPError as exc:
                failures.append((i, repr(exc)))
                continue
            if r.status_code != 200:
                failures.append((i, r.status_code, r.text[:200]))
                continue
            preds = r.json()["predictions"]
            if want_probs:
                got = np.array([[p[n] for n in prob_names] for p in preds])
                if not np.allclose(got, probs[idx], rtol=1e-5, atol=1e-7):
                    failures.append((i, "probabilities differ", got.tolist(), probs[idx].tolist()))
            elif [p["species"] for p in preds] != [labels[j] for j in idx]:
                failures.append((i, "labels differ", preds, [labels[j] for j in idx]))

    async def main():
        limits = httpx.Limits(max_connections=n_clients, max_keepalive_connections=n_clients)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as http:
            await asyncio.wait_for(asyncio.gather(*(client(k, http) for k in range(n_clients))), timeout=120)

    asyncio.run(main())
    assert not failures, failures[:5]
    after = httpx.get(server.url + "/health").json()
    served = after["requests"] - before["requests"]
    assert served == n_requests
    assert after["batches"] - before["batches"] < served  # concurrent requests shared forward passes


# ---------------------------------------------------------------------------------------------- shutdown, workers


def test_sigterm_finishes_the_request_in_flight_with_two_workers(iris_run, tmp_path):
    srv = Server(iris_run, "--workers", "2", log=tmp_path / "w.log")
    try:
        pids = {httpx.get(srv.url + "/health", headers={"connection": "close"}).json()["pid"] for _ in range(6)}
        assert srv.proc.pid not in pids  # answered by worker processes
        # a request in flight: headers and half the body sent, the rest only after SIGTERM
        body = json.dumps([ROW]).encode()
        conn = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        conn.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:10])
        time.sleep(0.5)
        srv.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        conn.sendall(body[10:])
        reply = b""
        while b"predictions" not in reply or not reply.endswith(b"}"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            reply += chunk
        conn.close()
        assert reply.startswith(b"HTTP/1.1 200"), reply
        assert reply.split(b"\r\n\r\n", 1)[1] == b'{"columns":["species"],"predictions":[{"species":"setosa"}]}'
        srv.proc.wait(timeout=30)
        assert "Application shutdown complete" in srv.log()
        with pytest.raises(httpx.TransportError):
            httpx.get(srv.url + "/health", timeout=2)
    finally:
        srv.stop()


def test_missing_run_port_in_use_and_missing_extra_are_clear_errors(iris_run, tmp_path, monkeypatch):
    result = CliRunner().invoke(app, ["serve", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", str(iris_run), "--port", str(port)])
    assert result.exit_code == 2 and f"127.0.0.1:{port} is in use" in result.output
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if the serve extra were not installed
    result = CliRunner().invoke(app, ["serve", str(tmp_path / "nothing")])
    assert result.exit_code == 2
    assert "layerforge[serve]" in result.output and "uvicorn" in result.output


# ---------------------------------------------------------------------------------------------- units


def test_json_rows_fit_like_npy_files():
    inp = [InputInfo("image", (8, 8, 1), "float32")]
    flat = json_inputs([[0.5] * 64, [1.0] * 64], inp, None)[0]
    nested = json_inputs({"rows": [[[[0.5]] * 8] * 8]}, inp, None)[0]  # one (8, 8, 1) sample
    no_channel = json_inputs([[[0.5] * 8] * 8], inp, None)[0]  # one (8, 8) sample
    assert flat.shape == (2, 8, 8, 1) and flat.dtype == np.float32
    assert nested.shape == no_channel.shape == (1, 8, 8, 1)
    with pytest.raises(BadInput, match="trained on arrays without column names"):
        json_inputs([{"a": 1.0}], inp, None)
    two = [InputInfo("a", (2,), "float32"), InputInfo("b", (3,), "float32")]
    a, b = json_inputs({"inputs": {"a": [[1, 2]], "b": [[1, 2, 3]]}}, two, None)
    assert a.shape == (1, 2) and b.shape == (1, 3)
    with pytest.raises(BadInput, match="different numbers of rows"):
        json_inputs({"inputs": {"a": [[1, 2]], "b": [[1, 2, 3]] * 2}}, two, None)
    with pytest.raises(BadInput, match="unknown: c"):
        json_inputs({"inputs": {"a": [[1, 2]], "b": [[1, 2, 3]], "c": [[1]]}}, two, None)


def test_batcher_merges_up_to_max_batch_and_isolates_a_failing_request():
    sizes: list[int] = []

    def predict(xs):
        sizes.append(len(xs[0]))
        if (xs[0] < 0).any():
            raise ValueError("negative")
        return [xs[0] * 2]

    async def main():
        b = MicroBatcher(predict, max_batch=4, max_wait_ms=50)
        await b.start()
        outs = await asyncio.gather(*(b.predict([np.full((1, 2), float(i))]) for i in range(10)))
        assert [float(o[0][0, 0]) for o in outs] == [2.0 * i for i in range(10)]
        assert sizes[:3] == [4, 4, 2]
        sizes.clear()
        results = await asyncio.gather(b.predict([np.ones((1, 2))]), b.predict([-np.ones((1, 2))]),
                                       b.predict([np.ones((2, 2))]), return_exceptions=True)
        assert isinstance(results[1], ValueError)
        assert results[0][0].tolist() == [[2.0, 2.0]] and results[2][0].shape == (2, 2)
        sizes.clear()
        with b.expect():  # a request on its way (its body being read): the forming batch waits for it
            first = b.submit([np.ones((1, 2))])
            await asyncio.sleep(0.01)
            second = b.submit([np.ones((1, 2))])
        await asyncio.gather(first, second)
        assert sizes == [2]
        await b.stop()

    asyncio.run(main())
