"""``enet serve`` under load: concurrent clients on the loopback address against two baselines
measured in the same run.

    python bench/serve_load.py [--model FILE.onnx] [--clients 1,8,32] [--seconds 15]

Frames: 1024x512 JPEGs made from the real Cityscapes and CamVid frames of ../shared/data, as
a camera sends them. The model: ``--model``, else the shipped CamVid model exported as int8
at 1024x512. Each request asks for the class ids as a PNG (``--answer``).

Baselines, in this process before the server starts: the model alone (``parallel`` threads
calling the backend on decoded frames), and the requests' work without HTTP: decoding the
JPEG, segmenting and encoding the answer in a loop, in as many threads as the model runs
images at once (``Segmenter(parallel=True)``, as the server runs it), and in one thread with
one image at a time (``parallel=False``). Then ``enet serve`` in its own process, and for each
client count, that many clients (asyncio, one connection each, keep-alive) sending frames
back to back for ``--seconds``: requests/s, p50/p99 latency, errors (other than 503), 503s,
and the server's resident memory before and after (and its peak).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.infer_throughput import SIZE, make_frames, shipped_int8  # noqa: E402
from bench.latency import machine_description  # noqa: E402
from enet.deploy.segmenter import Segmenter  # noqa: E402
from enet.images import read_rgb, rgb_from_bytes  # noqa: E402
from enet.serve.answers import answer, question_of  # noqa: E402


def rate_in_threads(work, items: list, threads: int, seconds: float) -> float:
    """Items per second from ``threads`` threads calling ``work`` on ``items`` in turn."""
    done = [0] * threads
    stop = time.perf_counter() + seconds

    def loop(k: int) -> None:
        i = k
        while time.perf_counter() < stop:
            work(items[i % len(items)])
            done[k] += 1
            i += threads

    start = time.perf_counter()
    pool = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(done) / (time.perf_counter() - start)


def baselines(model: Path, jpegs: list[bytes], question, seconds: float) -> dict[str, float]:
    rates = {}
    for parallel in (True, False):
        segmenter = Segmenter(model, parallel=parallel)
        decoded = [rgb_from_bytes(j, source="frame")[None] for j in jpegs]

        def request(data: bytes, segmenter: Segmenter = segmenter) -> bytes:
            result = segmenter(rgb_from_bytes(data, source="frame"))
            return answer(result, question, backend=segmenter.backend).body

        request(jpegs[0])
        if parallel:
            segmenter.predictor.class_ids(decoded[0])
            rates["model alone"] = rate_in_threads(
                segmenter.predictor.class_ids, decoded, segmenter.parallel, seconds
            )
            name = f"no HTTP, {segmenter.parallel} at a time"
        else:
            name = "no HTTP, one at a time"
        rates[name] = rate_in_threads(request, jpegs, segmenter.parallel, seconds)
        del segmenter
    return rates


async def client(port: int, bodies: list[bytes], path: str, stop: float, out: dict) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = 0
    try:
        while time.perf_counter() < stop:
            body = bodies[i % len(bodies)]
            i += 1
            start = time.perf_counter()
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: image/jpeg\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            if status == 200:
                out["latency"].append(time.perf_counter() - start)
            elif status == 503:
                out["busy"] += 1
                await asyncio.sleep(1)  # as Retry-After says
            else:
                out["errors"] += 1
            if b"connection: close" in head.lower():
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except (OSError, asyncio.IncompleteReadError):
        out["errors"] += 1
    finally:
        writer.close()


async def load(port: int, bodies: list[bytes], path: str, clients: int, seconds: float) -> dict:
    out = {"latency": [], "busy": 0, "errors": 0}
    start = time.perf_counter()
    stop = start + seconds
    await asyncio.gather(*(client(port, bodies, path, stop, out) for _ in range(clients)))
    out["seconds"] = time.perf_counter() - start
    return out


def memory_mb(pid: int) -> tuple[float, float]:
    """Resident and peak resident memory of a process, in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    return int(fields["VmRSS"][0]) / 1024, int(fields["VmHWM"][0]) / 1024


def start_server(model: Path, port: int) -> subprocess.Popen:
    import httpx

    server = subprocess.Popen(
        [sys.executable, "-m", "enet", "serve", str(model), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    sys.exit("enet serve did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="an .onnx file (default: camvid as int8)")
    parser.add_argument("--clients", default="1,8,32", help="client counts, comma-separated")
    parser.add_argument("--seconds", type=float, default=15, help="seconds per client count")
    parser.add_argument("--answer", default="ids", help="what each request asks for")
    parser.add_argument("--port", type=int, default=8791)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="enet-serve-bench-") as folder:
        run(Path(folder), args)


def run(tmp: Path, args: argparse.Namespace) -> None:
    import io

    from PIL import Image

    jpegs = []
    for path in make_frames(tmp / "frames", 8):
        buffer = io.BytesIO()
        Image.fromarray(read_rgb(path)).save(buffer, "JPEG", quality=90)
        jpegs.append(buffer.getvalue())
    model = args.model or shipped_int8(tmp)
    question = question_of({"answer": args.answer})
    rates = baselines(model, jpegs, question, min(args.seconds, 10))
    reference = max(v for k, v in rates.items() if k.startswith("no HTTP"))

    server = start_server(model, args.port)
    rows = []
    try:
        path = f"/v1/segment?answer={args.answer}"
        asyncio.run(load(args.port, jpegs, path, 2, 3))  # warm
        before, _ = memory_mb(server.pid)
        for clients in (int(c) for c in args.clients.split(",")):
            out = asyncio.run(load(args.port, jpegs, path, clients, args.seconds))
            latency = sorted(out["latency"])
            rps = len(latency) / out["seconds"]
            p50 = statistics.median(latency) * 1e3 if latency else float("nan")
            p99 = latency[min(len(latency) - 1, int(0.99 * len(latency)))] * 1e3
            rss, peak = memory_mb(server.pid)
            rows.append((clients, rps, rps / reference, p50, p99, out, rss, peak))
    finally:
        server.terminate()
        server.wait(timeout=60)

    print(f"machine: {machine_description(os.cpu_count() or 1)}")
    print(f"model: {model.name}, {SIZE[0]}x{SIZE[1]} JPEG in, answer={args.answer}")
    print(f"\n{'baseline':32s} {'images/s':>9s}")
    for name, value in rates.items():
        print(f"{name:32s} {value:9.1f}")
    print(f"\nserver memory after warm-up: {before:.0f} MB")
    print(
        f"{'clients':>7s} {'req/s':>7s} {'vs no HTTP':>10s} {'p50 ms':>7s} {'p99 ms':>7s} "
        f"{'p99/p50':>7s} {'errors':>6s} {'503s':>5s} {'RSS MB':>7s} {'peak MB':>7s}"
    )
    for clients, rps, ratio, p50, p99, out, rss, peak in rows:
        print(
            f"{clients:7d} {rps:7.1f} {ratio:9.2f}x {p50:7.1f} {p99:7.1f} {p99 / p50:7.2f} "
            f"{out['errors']:6d} {out['busy']:5d} {rss:7.0f} {peak:7.0f}"
        )
    print(f"\n(vs no HTTP: against the faster no-HTTP baseline, {reference:.1f} images/s)")


if __name__ == "__main__":
    main()
