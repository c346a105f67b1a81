"""``enet serve`` against the real server (uvicorn in its own process, on loopback): every
answer equals the Python API's on the same image, the limits answer with the status and line
they promise, a token guards /v1, the live socket carries frames, a stop finishes the request
in flight; and the model's queue batches what waits together."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import socket
import sys
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image
from websockets.sync.client import connect

from enet.cli import main
from enet.deploy.segmenter import Segmenter
from enet.serve.jobs import JobQueue
from enet.serve.server import _listen
from enet.visualize import overlay

from .conftest import DATA, enet_server, one_line_error, require, run_enet

pytestmark = pytest.mark.subprocess

TOKEN = "s3cret"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    files = sorted(require(DATA / "camvid_sample").glob("test/*.png"))[:3]
    return [np.asarray(Image.open(f).convert("RGB")) for f in files]


def _encode(rgb: np.ndarray, format: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format, quality=90)
    return buffer.getvalue()


def _decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with enet_server(log_path=tmp_path_factory.mktemp("serve") / "log.txt") as running:
        yield running


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    """Small limits and a token: a 300 KiB upload, 200,000 pixels, one request at a time,
    2 s per request."""
    flags = ["--token", TOKEN, "--max-upload-mb", "0.3", "--max-pixels", "200000"]
    flags += ["--queue", "1", "--timeout", "2"]
    log_path = tmp_path_factory.mktemp("strict") / "log.txt"
    with enet_server(*flags, log_path=log_path) as running:
        yield running


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter("camvid")


def test_every_answer_is_the_python_apis(server, frames, segmenter):
    rgb = frames[0]
    jpeg = _encode(rgb)
    sent = _decoded(jpeg)  # what the server decodes
    expected = segmenter(sent)

    ids = httpx.post(f"{server.url}/v1/segment?answer=ids", content=jpeg)
    assert ids.status_code == 200 and ids.headers["content-type"] == "image/png"
    assert ids.headers["server-timing"].startswith("model;dur=")
    got = _decoded(ids.content)
    assert got.shape == rgb.shape[:2]
    assert np.mean(got == expected.ids) > 0.999

    figures = httpx.post(f"{server.url}/v1/segment", content=jpeg).json()
    assert (figures["width"], figures["height"]) == (rgb.shape[1], rgb.shape[0])
    counts = np.bincount(got.ravel(), minlength=len(segmenter.classes.names))
    assert figures["shares"] == {
        name: pytest.approx(counts[i] / got.size, abs=1e-6)
        for i, name in enumerate(segmenter.classes.names)
    }
    assert figures["latency_ms"] > 0 and figures["backend"] == segmenter.backend

    form = httpx.post(
        f"{server.url}/v1/segment?answer=color", files={"image": ("f.jpg", jpeg, "image/jpeg")}
    )
    colours = Image.open(io.BytesIO(form.content))
    assert colours.mode == "P" and np.array_equal(np.asarray(colours), got)
    palette = np.array(segmenter.classes.palette, np.uint8)
    assert np.array_equal(np.asarray(colours.convert("RGB")), palette[got])

    blend = httpx.post(f"{server.url}/v1/segment?answer=overlay&alpha=0.3", content=jpeg)
    assert np.array_equal(_decoded(blend.content), overlay(sent, palette[got], 0.3))
    as_jpeg = httpx.post(f"{server.url}/v1/segment?answer=overlay&format=jpeg", content=jpeg)
    assert as_jpeg.headers["content-type"] == "image/jpeg"
    assert _decoded(as_jpeg.content).shape == rgb.shape

    png = httpx.post(f"{server.url}/v1/segment?answer=ids", content=_encode(rgb, "PNG"))
    assert np.mean(_decoded(png.content) == segmenter(rgb).ids) > 0.999


def test_model_health_and_page(server, segmenter):
    model = httpx.get(f"{server.url}/v1/model").json()
    assert model["model"] == "camvid" and model["precision"] == "fp32"
    assert [c["name"] for c in model["classes"]] == list(segmenter.classes.names)
    assert [tuple(c["color"]) for c in model["classes"]] == [
        tuple(c) for c in segmenter.classes.palette
    ]
    assert model["limits"]["queue"] == 16
    assert httpx.get(f"{server.url}/healthz").json() == {
        "status": "ok",
        "requests": 0,
        "capacity": 16,
    }
    page = httpx.get(f"{server.url}/")
    assert page.headers["content-type"].startswith("text/html")
    assert "/v1/live" in page.text


@pytest.mark.parametrize(
    ("send", "status", "words"),
    [
        ({"content": b"hello, not an image"}, 415, "not an image"),
        ({"content": b"{}", "headers": {"Content-Type": "application/json"}}, 415, "content type"),
        ({"content": b""}, 400, "no image"),
        ({"files": {"text": (None, "x")}}, 400, "no file"),
    ],
)
def test_bad_requests_get_a_status_and_a_line(server, send, status, words):
    answer = httpx.post(f"{server.url}/v1/segment", **send)
    assert answer.status_code == status
    assert words in answer.json()["error"]


def test_bad_parameters_paths_and_truncated_images(server, frames):
    jpeg = _encode(frames[0])
    for query, words in [("answer=mask", "answer=mask"), ("alpha=2", "alpha=2")]:
        answer = httpx.post(f"{server.url}/v1/segment?{query}", content=jpeg)
        assert answer.status_code == 400 and words in answer.json()["error"]
    answer = httpx.post(f"{server.url}/v1/segment", content=jpeg[: len(jpeg) // 2])
    assert answer.status_code == 400 and "truncated" in answer.json()["error"]
    assert httpx.get(f"{server.url}/v1/nothing").status_code == 404
    assert httpx.get(f"{server.url}/v1/segment").status_code == 405


def test_limits_refuse_large_uploads_and_images(strict, frames):
    big = _encode(np.tile(frames[0], (2, 2, 1)), "PNG")  # 960x720: 691,200 pixels, ~1 MB
    answer = httpx.post(f"{strict.url}/v1/segment", content=big, headers=BEARER)
    assert answer.status_code == 413 and "0.3 MiB" in answer.json()["error"]
    wide = _encode(np.tile(frames[0][:200], (1, 3, 1)))  # 1440x200 = 288,000 pixels, small JPEG
    assert len(wide) < 0.3 * 2**20
    answer = httpx.post(f"{strict.url}/v1/segment", content=wide, headers=BEARER)
    assert answer.status_code == 413 and "200,000 pixels" in answer.json()["error"]


def test_a_full_queue_answers_503_with_retry_after(strict, frames):
    jpeg = _encode(frames[0])
    start = threading.Barrier(6)
    answers: list[httpx.Response] = []

    def client() -> None:
        start.wait()
        answers.append(httpx.post(f"{strict.url}/v1/segment", content=jpeg, headers=BEARER))

    threads = [threading.Thread(target=client) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(a.status_code for a in answers)
    assert 200 in statuses and 503 in statuses and set(statuses) <= {200, 503}, statuses
    busy = next(a for a in answers if a.status_code == 503)
    assert busy.headers["retry-after"] == "1" and "busy" in busy.json()["error"]
    assert httpx.get(f"{strict.url}/healthz").json()["requests"] == 0


def _raw_request(url: str, body_length: int, *, token: bool = True) -> socket.socket:
    """A POST whose headers promise ``body_length`` bytes, none sent yet."""
    host, port = url.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)))
    auth = f"Authorization: Bearer {TOKEN}\r\n" if token else ""
    conn.sendall(
        f"POST /v1/segment HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/jpeg\r\n{auth}"
        f"Content-Length: {body_length}\r\n\r\n".encode()
    )
    return conn


def _response(conn: socket.socket) -> tuple[int, bytes]:
    data = b""
    conn.settimeout(30)
    while chunk := conn.recv(65536):
        data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = [ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")]
        if length and len(body) >= int(length[0].split(b":")[1]):
            break
    return int(data.split(b" ")[1]), data.partition(b"\r\n\r\n")[2]


def test_slow_uploads_time_out_and_gone_clients_free_their_place(strict, frames):
    conn = _raw_request(strict.url, 5000)
    conn.sendall(b"\xff\xd8" + b"\0" * 100)
    status, body = _response(conn)  # nothing more comes: the 2 s timeout answers
    conn.close()
    assert status == 408 and b"took longer than 2 s" in body

    conn = _raw_request(strict.url, 5000)
    conn.sendall(b"\xff\xd8" + b"\0" * 100)
    time.sleep(0.3)
    conn.close()  # the client leaves mid-upload
    time.sleep(0.5)
    assert httpx.get(f"{strict.url}/healthz").json()["requests"] == 0
    answer = httpx.post(f"{strict.url}/v1/segment", content=_encode(frames[0]), headers=BEARER)
    assert answer.status_code == 200
    assert " POST /v1/segment 408 " in strict.log()


def test_a_token_guards_the_api_not_the_page(strict, frames):
    assert httpx.get(f"{strict.url}/healthz").status_code == 200
    assert httpx.get(f"{strict.url}/").status_code == 200
    refused = httpx.get(f"{strict.url}/v1/model")
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    wrong = httpx.get(f"{strict.url}/v1/model", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert httpx.get(f"{strict.url}/v1/model", headers=BEARER).status_code == 200
    assert httpx.get(f"{strict.url}/v1/model?token={TOKEN}").status_code == 200
    ws_url = strict.url.replace("http", "ws") + "/v1/live"
    with pytest.raises(Exception, match=r"1008|403|rejected"), connect(ws_url) as ws:
        ws.send(_encode(frames[0]))
        ws.recv(timeout=10)
    with connect(f"{ws_url}?token={TOKEN}&answer=json") as ws:
        ws.send(_encode(frames[0]))
        assert json.loads(ws.recv(timeout=30))["width"] == frames[0].shape[1]


def test_live_socket_answers_each_frame(server, frames, segmenter):
    with connect(server.url.replace("http", "ws") + "/v1/live?answer=ids") as ws:
        for rgb in frames:
            jpeg = _encode(rgb)
            figures = json.loads(_ask(ws, jpeg))
            assert figures["media_type"] == "image/png"
            ids = _decoded(ws.recv(timeout=30))
            assert (figures["width"], figures["height"]) == (rgb.shape[1], rgb.shape[0])
            assert np.mean(ids == segmenter(_decoded(jpeg)).ids) > 0.999
        ws.send("a text message")
        assert json.loads(ws.recv(timeout=10)) == {
            "error": "send each frame as a binary message (JPEG or PNG bytes)",
            "status": 415,
        }
        ws.send(b"not an image")
        assert json.loads(ws.recv(timeout=10))["status"] == 415
        figures = json.loads(_ask(ws, _encode(frames[0])))  # the socket is still open
        assert figures["width"] == frames[0].shape[1]
        ws.recv(timeout=30)
    time.sleep(0.3)
    assert " WS /v1/live 101 " in server.log()
    assert f" {len(frames) + 1} frames " in server.log()


def _ask(ws, data: bytes) -> str:
    ws.send(data)
    return ws.recv(timeout=30)


def test_every_request_has_one_log_line(server):
    before = server.log().count("\n")
    httpx.get(f"{server.url}/healthz")
    httpx.post(f"{server.url}/v1/segment", content=b"nope")
    time.sleep(0.2)
    lines = server.log().splitlines()[before:]
    assert [line.split()[3:6] for line in lines] == [
        ["GET", "/healthz", "200"],
        ["POST", "/v1/segment", "415"],
    ]


def test_a_stop_finishes_the_request_in_flight(tmp_path, frames):
    jpeg = _encode(frames[1])
    with enet_server(log_path=tmp_path / "log.txt") as server:
        conn = _raw_request(server.url, len(jpeg), token=False)
        conn.sendall(jpeg[:1000])
        time.sleep(0.3)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        conn.sendall(jpeg[1000:])
        status, body = _response(conn)
        conn.close()
        assert status == 200 and json.loads(body)["width"] == frames[1].shape[1]
        assert server.process.wait(timeout=30) == 0
    assert "Traceback" not in server.log()


def test_bad_starts_are_one_line(tmp_path):
    result = run_enet("serve", "camvid", "--host", "0.0.0.0", "--port", "0")
    one_line_error(result, "--host 0.0.0.0", "token is required")
    result = run_enet("serve", str(tmp_path / "missing.onnx"), "--port", "0")
    one_line_error(result, "missing.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    one_line_error(run_enet("serve", str(broken), "--port", "0"), "broken.onnx")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        one_line_error(run_enet("serve", "camvid", "--port", port), "cannot listen there")
    one_line_error(run_enet("serve", "camvid", "--token", " "), "--token: empty")


def test_the_listening_socket_says_tcp_so_answers_are_not_held_back():
    """asyncio turns Nagle's algorithm off on accepted sockets only where the listening one
    names TCP; otherwise each answer waited for the client's delayed ACK (~40 ms)."""
    with _listen("127.0.0.1", 0) as listening:
        assert listening.proto == socket.IPPROTO_TCP


def test_a_missing_serve_extra_is_one_line(monkeypatch, capsys):
    for module in [m for m in sys.modules if m.startswith(("uvicorn", "enet.serve"))]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn fails
    assert main(["serve", "camvid", "--port", "0"]) == 2
    assert capsys.readouterr().err == (
        "enet: error: serve needs uvicorn: pip install 'enet[serve]'\n"
    )


class _GatedSegmenter:
    """A stand-in model whose first call waits for a gate: what queues behind it is seen."""

    parallel = 1
    batch_size = 4

    def __init__(self) -> None:
        self.calls: list[list[tuple[int, ...]]] = []
        self.gate = threading.Event()
        self.started = threading.Event()

    def __call__(self, rgbs):
        self.started.set()
        self.gate.wait(10)
        self.calls.append([rgb.shape for rgb in rgbs])
        return [int(rgb[0, 0, 0]) for rgb in rgbs]


def test_the_queue_batches_images_of_one_size_and_drops_cancelled_ones():
    model = _GatedSegmenter()
    jobs = JobQueue(model)  # type: ignore[arg-type]
    small, large = np.zeros((8, 8, 3), np.uint8), np.zeros((16, 8, 3), np.uint8)

    async def run() -> list:
        first = asyncio.ensure_future(jobs.segment(small + 1))
        while not model.started.is_set():
            await asyncio.sleep(0.01)
        waiting = [asyncio.ensure_future(jobs.segment(small + i)) for i in range(2, 8)]
        waiting.append(asyncio.ensure_future(jobs.segment(large + 9)))
        await asyncio.sleep(0.05)
        waiting[0].cancel()  # its client left before its turn: it never runs
        await asyncio.sleep(0.05)
        model.gate.set()
        return await asyncio.gather(first, *waiting[1:])

    try:
        results = asyncio.run(run())
    finally:
        jobs.close()
    assert results == [1, 3, 4, 5, 6, 7, 9]
    s, big = (8, 8, 3), (16, 8, 3)
    assert model.calls == [[s], [s, s, s, s], [s], [big]]
    assert (jobs.batches, jobs.images) == (4, 7)
