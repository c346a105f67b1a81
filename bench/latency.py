"""CPU inference latency at 1 x 3 x 512 x 1024 (batch 1), every deploy path, one run.

    python bench/latency.py [--threads 2] [--repeats 10] [--skip-compile]

Paths: (a) baseline: the ``pytorch-enet`` variant in eager fp32 (PyTorch-ENet's own setup);
(b) our fastest PyTorch path: torch.compile with freezing (BatchNorm folded into the
convolutions, weights constant-folded), channels_last, inference_mode; (c) ONNX Runtime fp32
on ``enet export``'s file; (d) ``enet export --int8``'s file (QDQ, per-channel weights,
calibrated on real CamVid frames) as ``enet infer`` runs it on a CPU: on OpenVINO when
installed, (d') on ONNX Runtime; (e) OpenVINO fp32 on the fp32 ONNX file. bf16 is left out
where the CPU has no AMX (without it bf16 runs slower than fp32 here). Our paths run the
shipped CamVid model; the reduced-precision path is judged by its per-pixel argmax agreement
with fp32 on the real frames of ../shared/data that calibration did not see. Prints ms, the
speed-up over (a) measured in this same run, GFLOP/s and the share of the fp32 peak measured
here (a large matrix product on the same threads).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from enet.checkpoint import load_checkpoint  # noqa: E402
from enet.export import export_onnx  # noqa: E402
from enet.infer import OpenVinoPredictor, compile_for_inference, has_openvino  # noqa: E402
from enet.model import ENet  # noqa: E402
from enet.quantize import argmax_agreement, ort_runner  # noqa: E402

SHARED = Path(os.environ.get("ENET_SHARED", ROOT.parent / "shared"))
SIZE = (1024, 512)


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def fp32_peak_gflops(threads: int) -> float:
    """A large fp32 matrix product on ``threads`` threads: the ceiling convolutions approach."""
    a, b = torch.rand(2048, 2048), torch.rand(2048, 2048)
    ms = median_ms(lambda: a @ b, 5)
    return 2 * 2048**3 / ms / 1e6


def model_gflop(model: torch.nn.Module, x: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(x)
    return counter.get_total_flops() / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--skip-compile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    w, h = SIZE
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    xn = x.numpy()
    results: dict[str, float] = {}

    def record(name: str, ms: float) -> None:
        results[name] = ms
        print(f"{name:46s} {ms:8.1f} ms", flush=True)

    baseline_model = ENet(12, "pytorch-enet").eval()
    with torch.inference_mode():
        record(
            "(a) baseline: pytorch-enet eager fp32",
            median_ms(lambda: baseline_model(x), args.repeats),
        )
    model = load_checkpoint("camvid")
    gflop = model_gflop(model, x)

    if not args.skip_compile:
        cl = x.contiguous(memory_format=torch.channels_last)
        compiled = compile_for_inference(model.to(memory_format=torch.channels_last))
        with torch.inference_mode():
            record(
                "(b) PyTorch compile+freezing channels_last",
                median_ms(lambda: compiled(cl), args.repeats),
            )

    tmp = Path(tempfile.mkdtemp(prefix="enet-latency-"))
    camvid = SHARED / "data" / "camvid_sample"
    calibration = sorted(camvid.glob("train/*.png")) + sorted(camvid.glob("val/*.png"))
    check = sorted(camvid.glob("test/*.png")) + sorted(
        (SHARED / "data" / "cityscapes_sample" / "leftImg8bit").rglob("*.png")
    )
    agreement = int8 = None
    if calibration:  # the int8 export keeps the fp32 file it quantised beside it
        int8 = tmp / "camvid.int8.onnx"
        report = export_onnx(
            "camvid",
            int8,
            size=SIZE,
            int8_calibration=calibration,
            int8_check=check,
            min_agreement=0.0,
        )
        fp32 = int8.with_suffix(".fp32.onnx")
        agreement = (report["int8_argmax_agreement"], report["int8_worst_image_agreement"])
    else:
        fp32 = tmp / "camvid.onnx"
        export_onnx("camvid", fp32, size=SIZE)
    ort_fp32 = ort_runner(fp32, args.threads)
    record("(c) ONNX Runtime fp32", median_ms(lambda: ort_fp32(xn), 5))

    if int8 is None:
        print(f"(d) skipped: no calibration frames under {camvid}")
    else:
        if has_openvino():
            vino_int8 = OpenVinoPredictor(int8, threads=args.threads)
            record("(d) int8 QDQ on OpenVINO", median_ms(lambda: vino_int8(xn), 5))
        ort_int8 = ort_runner(int8, args.threads)
        record("(d') int8 QDQ on ONNX Runtime", median_ms(lambda: ort_int8(xn), 5))

    vino_agreement = None
    if not has_openvino():
        print("(e) skipped: OpenVINO is not installed (pip install 'enet[openvino]')")
    else:
        vino = OpenVinoPredictor(fp32, threads=args.threads)
        record("(e) OpenVINO fp32", median_ms(lambda: vino(xn), 5))
        vino_agreement = argmax_agreement(vino, ort_fp32, check, SIZE)

    peak = fp32_peak_gflops(args.threads)
    base = results["(a) baseline: pytorch-enet eager fp32"]
    print(f"\nmodel: {gflop:.2f} GFLOP per 1x3x{h}x{w} image; fp32 peak here {peak:.0f} GFLOP/s")
    print(f"{'path':46s} {'ms':>8s} {'speed-up':>9s} {'GFLOP/s':>8s} {'of peak':>8s}")
    for name, ms in results.items():
        rate = gflop / ms * 1e3
        print(f"{name:46s} {ms:8.1f} {base / ms:8.2f}x {rate:8.1f} {rate / peak:8.1%}")
    if agreement is not None:
        print(
            f"int8 vs fp32 argmax agreement ({report['backend']}) on {len(check)} real frames "
            f"it was not calibrated on: {agreement[0]:.3%} (worst frame {agreement[1]:.3%})"
        )
    if vino_agreement is not None:
        print(f"OpenVINO vs ONNX Runtime fp32 argmax agreement: {vino_agreement[0]:.4%}")
    amx = "amx" in Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else False
    summary = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{args.threads} threads, torch {torch.__version__}, AMX: {amx}",
        "gflop": gflop,
        "fp32_peak_gflops": peak,
        "latency_ms": results,
        "speedup_vs_baseline": {k: base / v for k, v in results.items()},
        "int8_agreement": agreement,
        "openvino_vs_ort_fp32_agreement": vino_agreement,
    }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
