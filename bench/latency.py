"""CPU inference latency at 1 x 3 x 512 x 1024 (batch 1), every deploy path, one run.

    python bench/latency.py [--threads 2] [--rounds 4] [--calls 4] [--skip-compile]

Paths: (a) baseline: the ``pytorch-enet`` variant in eager fp32 (PyTorch-ENet's own setup,
in a process of its own);
(b) our fastest PyTorch path: torch.compile with freezing (BatchNorm folded into the
convolutions, weights constant-folded), channels_last, inference_mode; (c) ONNX Runtime fp32
on ``enet export``'s file; (d) ``enet export --int8``'s file (QDQ, per-channel weights,
calibrated on real CamVid frames; the shipped model was tuned by ``enet finetune-int8``, so
every convolution, the residual stream and the blocks' branches are int8, on 7-bit weights
that CPUs without VNNI multiply without overflow) as ``enet infer`` runs it on a CPU: on
OpenVINO when installed, (d2) and (d3) the same with the residual stream or the branches
left fp32 (what each is worth), (d4) with the last layer whole (on CPUs without AVX-512,
where (d) computes it in row bands so that OpenVINO keeps it int8), (d5) on OpenVINO's own
choice of int8 kernels (on AVX-512 CPUs, AMX ones too, where (d) asks for others that apply
ENet's per-channel PReLU faster: ``enet.deploy.openvino_graph``), (d') on ONNX Runtime;
(e) OpenVINO fp32 on the fp32 file, (e2) with the image's max-pool as exported (where (e)
pools its channels apart); (f) OpenVINO computing the fp32 file in bf16 (``enet infer
--bf16``), on CPUs that do so natively (AMX, AVX512_BF16; elsewhere it is left out). Our
paths run the shipped CamVid model; the reduced-precision paths are judged by their
per-pixel argmax agreement with fp32 on the real frames of ../shared/data that calibration
did not see. Prints each path's median ms over turns that the paths take one after another
(so the speed-ups over (a) compare calls made side by side), GFLOP/s and the share of the
fp32 peak measured here (a large matrix product on the same threads).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from enet.checkpoint import load_checkpoint, read_checkpoint  # noqa: E402
from enet.deploy.backends import (  # noqa: E402
    OpenVinoPredictor,
    compile_for_inference,
    has_openvino,
    keep_freed_memory,
    openvino_computes_bf16,
)
from enet.deploy.export import export_onnx  # noqa: E402
from enet.deploy.onnx_meta import onnx_metadata, set_onnx_metadata  # noqa: E402
from enet.deploy.openvino_graph import (  # noqa: E402
    IMAGE_POOL,
    INT8_KERNELS,
    ROW_BANDS,
    int8_convolution_kernels,
    int8_deconv_bound,
)
from enet.deploy.quantize import (  # noqa: E402
    Int8Scheme,
    argmax_agreement,
    ort_runner,
    quantize_int8,
)
from enet.model import ENet  # noqa: E402

SHARED = Path(os.environ.get("ENET_SHARED", ROOT.parent / "shared"))
SIZE = (1024, 512)
#: (d)'s scheme with one rounding left out, each timed as a path of its own.
ABLATIONS = {
    "(d2) int8, fp32 residual stream, OpenVINO": {"residual": "fp32"},
    "(d3) int8, fp32 block branches, OpenVINO": {"branches": "fp32"},
}
#: (d) with the last layer whole, where OpenVINO runs it in fp32 (enet.deploy.openvino_graph).
WHOLE_LAST_LAYER = "(d4) int8, last layer whole, OpenVINO"
#: (d) on the kernels OpenVINO picks itself, where (d) asks for others (enet.deploy.openvino_graph).
OWN_KERNELS = "(d5) int8, OpenVINO's own kernels"
#: (e) with the image's max-pool as exported (enet.deploy.openvino_graph).
POOL_AS_EXPORTED = "(e2) OpenVINO fp32, image pool as exported"
#: the fp32 file computed in bf16, where the CPU does so natively.
BF16 = "(f) OpenVINO bf16 (fp32 file)"


#: A path's turn: one untimed call, then ``calls`` timed ones; returns their seconds.
Turn = Callable[[int], list[float]]


def in_process(fn: Callable[[], object]) -> Turn:
    def turn(calls: int) -> list[float]:
        fn()
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return times

    return turn


def _baseline_worker(conn: Connection, threads: int) -> None:
    torch.set_num_threads(threads)
    model = ENet(12, "pytorch-enet").eval()
    x = torch.rand(1, 3, SIZE[1], SIZE[0], generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        turn = in_process(lambda: model(x))
        while (calls := conn.recv()) is not None:
            conn.send(turn(calls))


def baseline_in_own_process(threads: int) -> tuple[Turn, Callable[[], None]]:
    """The baseline as PyTorch-ENet's users run it: eager in a process of its own, with
    glibc's default handling of freed memory (ours keeps it, as ``enet infer`` does for
    PyTorch on a CPU). Returns its turn and a function that ends it."""
    ours, theirs = mp.get_context("spawn").Pipe()
    worker = mp.get_context("spawn").Process(
        target=_baseline_worker, args=(theirs, threads), daemon=True
    )
    worker.start()

    def turn(calls: int) -> list[float]:
        ours.send(calls)
        return ours.recv()

    def stop() -> None:
        ours.send(None)
        worker.join()

    return turn, stop


def interleaved_median_ms(paths: dict[str, Turn], rounds: int, calls: int) -> dict[str, float]:
    """Each path's median wall time over ``rounds`` turns of ``calls`` timed calls, the paths
    taking turns: a slow spell of this shared machine then falls on every path alike, not on
    one. Each turn starts with an untimed call (caches refilled, the previous runtime's
    worker threads done spinning): the timed calls are the steady state of a folder or video."""
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(rounds):
        for name, turn in paths.items():
            times[name] += turn(calls)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def fp32_peak_gflops(threads: int) -> float:
    """A large fp32 matrix product on ``threads`` threads: the ceiling convolutions approach."""
    a, b = torch.rand(2048, 2048), torch.rand(2048, 2048)
    ms = statistics.median(in_process(lambda: a @ b)(5)) * 1e3
    return 2 * 2048**3 / ms / 1e6


def cpu_description() -> str:
    """The CPU's name and the vector extensions its int8 and bf16 kernels depend on (int8
    speed and rounding differ between AVX2 and AVX-512 VNNI; bf16 needs AMX or AVX512_BF16)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return platform.processor() or platform.machine()
    text = cpuinfo.read_text()
    name = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if "model name" in ln), "")
    flags = set(next((ln for ln in text.splitlines() if ln.startswith("flags")), "").split())
    known = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile")
    isa = [f for f in known if f in flags]
    return f"{name or platform.machine()} ({', '.join(isa) or 'no AVX2'})"


def machine_description(threads: int) -> str:
    cpu = f"{cpu_description()}, {os.cpu_count()} cores"
    return f"{cpu}, {threads} threads, torch {torch.__version__}"


def model_gflop(model: torch.nn.Module, x: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(x)
    return counter.get_total_flops() / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4, help="turns each path takes")
    parser.add_argument("--calls", type=int, default=4, help="timed calls per turn")
    parser.add_argument("--skip-compile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    w, h = SIZE
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    xn = x.numpy()
    paths: dict[str, Turn] = {}

    def eager(model: torch.nn.Module, x: torch.Tensor) -> Turn:
        def run() -> object:
            with torch.inference_mode():
                return model(x)

        return in_process(run)

    baseline, stop_baseline = baseline_in_own_process(args.threads)
    keep_freed_memory()  # our PyTorch path as enet infer runs it
    paths["(a) baseline: pytorch-enet eager fp32"] = baseline
    model = load_checkpoint("camvid")
    gflop = model_gflop(model, x)
    if not args.skip_compile:
        cl = x.contiguous(memory_format=torch.channels_last)
        compiled = compile_for_inference(model.to(memory_format=torch.channels_last))
        paths["(b) PyTorch compile+freezing channels_last"] = eager(compiled, cl)

    tmp = Path(tempfile.mkdtemp(prefix="enet-latency-"))
    camvid = SHARED / "data" / "camvid_sample"
    calibration = sorted(camvid.glob("train/*.png")) + sorted(camvid.glob("val/*.png"))
    check = sorted(camvid.glob("test/*.png")) + sorted(
        (SHARED / "data" / "cityscapes_sample" / "leftImg8bit").rglob("*.png")
    )
    agreement = int8 = None
    ablations: dict[str, tuple[float, float]] = {}  # (d2) to (d5), (f): their agreement
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
    paths["(c) ONNX Runtime fp32"] = in_process(lambda: ort_fp32(xn))

    if int8 is None:
        print(f"(d) skipped: no calibration frames under {camvid}")
    else:
        if has_openvino():
            vino_int8 = OpenVinoPredictor(int8, threads=args.threads)
            paths["(d) int8 QDQ on OpenVINO"] = in_process(lambda: vino_int8(xn))
            # the same model and scheme with one of its roundings left out: what each is
            # worth (an untuned checkpoint gets an fp32 residual stream and fp32 branches)
            scheme = Int8Scheme.for_checkpoint(read_checkpoint("camvid")["provenance"])
            for name, change in ABLATIONS.items():
                if all(getattr(scheme, k) == v for k, v in change.items()):
                    continue
                ablated = tmp / f"camvid.int8-{name[1:3]}.onnx"
                changed = replace(scheme, **change)
                quantize_int8(fp32, ablated, calibration, SIZE, changed)
                meta = onnx_metadata(fp32) | {"enet.precision": changed.describe()}
                set_onnx_metadata(ablated, meta)
                vino_ablated = OpenVinoPredictor(ablated, threads=args.threads)
                paths[name] = in_process(lambda run=vino_ablated: run(xn))
                ablations[name] = argmax_agreement(vino_ablated, ort_fp32, check, SIZE)
            if int8_deconv_bound():  # (d) runs the last layer in row bands on this CPU
                whole = OpenVinoPredictor(int8, threads=args.threads, skip_rewrites={ROW_BANDS})
                paths[WHOLE_LAST_LAYER] = in_process(lambda: whole(xn))
                ablations[WHOLE_LAST_LAYER] = argmax_agreement(whole, ort_fp32, check, SIZE)
            if int8_convolution_kernels():  # (d) asks for other kernels on this CPU
                own = OpenVinoPredictor(int8, threads=args.threads, skip_rewrites={INT8_KERNELS})
                paths[OWN_KERNELS] = in_process(lambda: own(xn))
                ablations[OWN_KERNELS] = argmax_agreement(own, ort_fp32, check, SIZE)
        ort_int8 = ort_runner(int8, args.threads)
        paths["(d') int8 QDQ on ONNX Runtime"] = in_process(lambda: ort_int8(xn))

    vino_agreement = None
    if not has_openvino():
        print("(e) skipped: OpenVINO is not installed (pip install 'enet[openvino]')")
    else:
        vino = OpenVinoPredictor(fp32, threads=args.threads)
        paths["(e) OpenVINO fp32"] = in_process(lambda: vino(xn))
        pool = OpenVinoPredictor(fp32, threads=args.threads, skip_rewrites={IMAGE_POOL})
        paths[POOL_AS_EXPORTED] = in_process(lambda: pool(xn))
        vino_agreement = argmax_agreement(vino, ort_fp32, check, SIZE)
        if openvino_computes_bf16(vino.core):
            bf16 = OpenVinoPredictor(fp32, threads=args.threads, bf16=True)
            paths[BF16] = in_process(lambda: bf16(xn))
            ablations[BF16] = argmax_agreement(bf16, ort_fp32, check, SIZE)

    print(f"timing {len(paths)} paths, {args.rounds} turns of {args.calls} calls each", flush=True)
    results = interleaved_median_ms(paths, args.rounds, args.calls)
    stop_baseline()
    peak = fp32_peak_gflops(args.threads)
    base = results["(a) baseline: pytorch-enet eager fp32"]
    print(f"\nmachine: {machine_description(args.threads)}")
    print(f"model: {gflop:.2f} GFLOP per 1x3x{h}x{w} image; fp32 peak here {peak:.0f} GFLOP/s")
    print(f"{'path':46s} {'ms':>8s} {'speed-up':>9s} {'GFLOP/s':>8s} {'of peak':>8s}")
    for name, ms in results.items():
        rate = gflop / ms * 1e3
        print(f"{name:46s} {ms:8.1f} {base / ms:8.2f}x {rate:8.1f} {rate / peak:8.1%}")
    if agreement is not None:
        print(
            f"int8 ({report['int8_weight_bits']}-bit weights, {report['int8_fp32_convs']} fp32 "
            f"convolutions, {report['int8_residual']} residual stream, "
            f"{report['int8_branches']} block branches) vs fp32 argmax agreement "
            f"({report['backend']}) on {len(check)} real frames "
            f"it was not calibrated on: {agreement[0]:.3%} (worst frame {agreement[1]:.3%})"
        )
    for name, (mean, worst) in ablations.items():
        print(f"{name.split()[0]} vs fp32 argmax agreement: {mean:.3%} (worst frame {worst:.3%})")
    if vino_agreement is not None:
        print(f"OpenVINO vs ONNX Runtime fp32 argmax agreement: {vino_agreement[0]:.4%}")
    summary = {
        "machine": machine_description(args.threads),
        "gflop": gflop,
        "fp32_peak_gflops": peak,
        "latency_ms": results,
        "speedup_vs_baseline": {k: base / v for k, v in results.items()},
        "int8_agreement": agreement,
        "ablation_agreement": ablations,
        "openvino_vs_ort_fp32_agreement": vino_agreement,
    }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
