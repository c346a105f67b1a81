"""``enet infer`` end to end against the model alone, on a folder of 1024x512 PNG frames and on
an H.264 clip, one run.

    python bench/infer_throughput.py [--model FILE.onnx] [--frames 30] [--rounds 3]

Inputs, made in a temporary folder from the real frames of ../shared/data: ``--frames``
1024x512 PNGs (Cityscapes and CamVid frames resized), and a clip of twice as many frames
(H.264, 30 fps) of them. The model: ``--model``, else the shipped CamVid model exported as
int8 at 1024x512 (calibrated on the CamVid train and val frames).

Each round times, one after another: the model alone (``Segmenter.predictor.class_ids`` on
the frames decoded and in memory, as ``--timing``'s latency counts it); ``enet infer`` over
the PNG folder with every output (pred, color, overlay), with pred and overlay, and with
pred only; over the same frames as JPEG files; and over the clip. Reported: medians over
the rounds of frames per second, each beside the model's rate in the same round (end to end
/ model alone); ``enet infer``'s time is the whole run after the model is loaded (decoding,
the model, encoding and writing every output).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.latency import machine_description  # noqa: E402
from enet.deploy.export import export_onnx  # noqa: E402
from enet.deploy.infer import run_inference  # noqa: E402
from enet.deploy.segmenter import Segmenter  # noqa: E402
from enet.images import read_rgb  # noqa: E402

SHARED = Path(os.environ.get("ENET_SHARED", ROOT.parent / "shared"))
SIZE = (1024, 512)


def make_frames(folder: Path, count: int) -> list[Path]:
    data = SHARED / "data"
    sources = sorted((data / "cityscapes_sample" / "leftImg8bit").rglob("*.png"))
    sources += sorted(data.glob("camvid_sample/t*/*.png"))
    sources = [p for p in sources if "annot" not in p.parent.name]
    if not sources:
        sys.exit(f"no frames under {data} (set ENET_SHARED)")
    folder.mkdir(parents=True)
    paths = []
    for i, source in zip(range(count), itertools.cycle(sources)):
        path = folder / f"frame{i:04d}.png"
        Image.open(source).convert("RGB").resize(SIZE, Image.BILINEAR).save(path)
        paths.append(path)
    return paths


def make_clip(path: Path, frames: list[Path], count: int) -> None:
    import av

    with av.open(str(path), "w") as sink:
        stream = sink.add_stream("libx264", rate=30)
        stream.width, stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        for i in range(count):
            rgb = np.asarray(Image.open(frames[i % len(frames)]).convert("RGB"))
            sink.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        sink.mux(stream.encode())


def model_alone_fps(segmenter: Segmenter, frames: list[np.ndarray]) -> float:
    """Frames per second from the median latency of the model on frames in memory."""
    segmenter.predictor.class_ids(frames[0][None])  # warm
    times = []
    for rgb in frames:
        start = time.perf_counter()
        segmenter.predictor.class_ids(rgb[None])
        times.append(time.perf_counter() - start)
    return 1 / statistics.median(times)


def infer_fps(model: Path, inputs: list[Path], out: Path, **options) -> float:
    report = run_inference(model, inputs, out, progress=False, overwrite=True, **options)
    return len(report.latency_ms) / report.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="an .onnx file (default: camvid as int8)")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="enet-infer-bench-") as folder:
        run(Path(folder), args)


def shipped_int8(folder: Path) -> Path:
    """The shipped CamVid model exported as int8 at 1024x512 into ``folder``, calibrated on
    the CamVid train and val frames."""
    model = folder / "camvid.int8.onnx"
    camvid = SHARED / "data" / "camvid_sample"
    calibration = sorted(camvid.glob("train/*.png")) + sorted(camvid.glob("val/*.png"))
    export_onnx("camvid", model, size=SIZE, int8_calibration=calibration)
    return model


def run(tmp: Path, args: argparse.Namespace) -> None:
    frames = make_frames(tmp / "frames", args.frames)
    (tmp / "jpeg").mkdir()
    for path in frames:  # the same frames as a camera would store them
        Image.open(path).save(tmp / "jpeg" / f"{path.stem}.jpg", quality=90)
    clip = tmp / "clip.mp4"
    make_clip(clip, frames, 2 * args.frames)
    model = args.model or shipped_int8(tmp)
    segmenter = Segmenter(model)
    decoded = [read_rgb(p) for p in frames]
    cases = {
        "folder, every output": dict(inputs=[tmp / "frames"], out=tmp / "all"),
        "folder, pred + overlay": dict(
            inputs=[tmp / "frames"], out=tmp / "pred-overlay", outputs=["pred", "overlay"]
        ),
        "folder, --outputs pred": dict(inputs=[tmp / "frames"], out=tmp / "pred", outputs=["pred"]),
        "JPEG folder, every output": dict(inputs=[tmp / "jpeg"], out=tmp / "jpeg-all"),
        "video, pred + overlay.mp4": dict(inputs=[clip], out=tmp / "video"),
    }
    rates: dict[str, list[float]] = {"model alone": [], **{name: [] for name in cases}}
    ratios: dict[str, list[float]] = {name: [] for name in cases}
    for round_ in range(args.rounds):
        alone = model_alone_fps(segmenter, decoded)
        rates["model alone"].append(alone)
        for name, case in cases.items():
            fps = infer_fps(model, **case)
            rates[name].append(fps)
            ratios[name].append(fps / alone)
        print(f"round {round_ + 1}/{args.rounds} done", flush=True)
    print(f"\nmachine: {machine_description(os.cpu_count() or 1)}")
    print(f"model: {model.name} on {segmenter.backend}, {SIZE[0]}x{SIZE[1]}")
    print(f"{'path':30s} {'frames/s':>9s} {'vs model alone':>15s}")
    print(f"{'model alone':30s} {statistics.median(rates['model alone']):9.1f} {'1.00x':>15s}")
    for name in cases:
        fps, ratio = statistics.median(rates[name]), statistics.median(ratios[name])
        print(f"{name:30s} {fps:9.1f} {ratio:14.2f}x")


if __name__ == "__main__":
    main()
