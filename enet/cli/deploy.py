"""``enet export``, ``snap``, ``finetune-int8``, ``infer`` and ``serve``: from a checkpoint to
a model that runs fast where it is deployed, and running it."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import UsageError
from . import args as types

__all__ = ["register"]


def run_export(args: argparse.Namespace) -> int:
    from ..deploy.export import export_onnx
    from ..deploy.infer import IMAGE_SUFFIXES, find_inputs

    calibration = check = None
    if args.int8:
        if not args.calib:
            raise UsageError("--int8 needs --calib DIR (images like those the model will see)")
        calibration = find_inputs([args.calib], IMAGE_SUFFIXES)[: args.calib_count]
        check = find_inputs([args.check], IMAGE_SUFFIXES) if args.check else None
        if not calibration:
            raise UsageError(f"{args.calib}: no images found for int8 calibration")
        if check == []:
            raise UsageError(f"{args.check}: no images found to check int8 against fp32")
    r = export_onnx(
        args.checkpoint,
        args.out,
        size=args.size,
        dynamic_batch=args.dynamic_batch,
        opset=args.opset,
        dynamic=args.dynamic,
        int8_calibration=calibration,
        int8_check=check,
        min_agreement=args.min_agreement,
        int8_residual=args.int8_residual,
        overwrite=args.overwrite,
    )
    print(
        f"exported {args.checkpoint} -> {r['path']} ({r['size'][0]}x{r['size'][1]}, opset "
        f"{r['opset']}); ONNX Runtime vs PyTorch: max |diff| {r['max_abs_diff']:.3g}, "
        f"99.9th pct {r['p999_abs_diff']:.3g}, argmax agreement {r['argmax_agreement']:.4%}"
    )
    if args.int8:
        where = "its calibration images" if r["int8_check_is_calibration"] else "--check images"
        print(
            f"int8 (QDQ, {r['int8_weight_bits']}-bit weights, {r['int8_fp32_convs']} fp32 "
            f"convolutions, {r['int8_residual']} residual stream, {r['int8_branches']} block "
            f"branches, calibrated on {r['int8_calibration_images']} images): argmax "
            f"agreement with fp32 {r['int8_argmax_agreement']:.3%} on {r['int8_check_images']} "
            f"{where} (worst image {r['int8_worst_image_agreement']:.3%}); latency on "
            f"{r['backend']}: int8 {r['int8_latency_ms']:.1f} ms, fp32 "
            f"{r['fp32_latency_ms']:.1f} ms "
            f"(fp32 model kept as {Path(r['path']).with_suffix('.fp32.onnx')})"
        )
    return 0


def run_snap(args: argparse.Namespace) -> int:
    from ..deploy.quantize import snap_checkpoint

    names = snap_checkpoint(args.checkpoint, args.out, overwrite=args.overwrite)
    print(
        f"{args.checkpoint} -> {args.out}: weights of {len(names)} convolutions on the int8 "
        "grid of `enet export --int8`; evaluate it (enet eval) before shipping it"
    )
    return 0


def run_finetune_int8(args: argparse.Namespace) -> int:
    from ..deploy.int8_finetune import finetune_for_int8
    from ..deploy.quantize import TUNED_INT8_SCHEME, WEIGHT_MAX_BY_BITS, Int8Scheme

    scheme = Int8Scheme(
        residual="int8",
        fp32_convs=TUNED_INT8_SCHEME.fp32_convs if args.fp32_convs is None else args.fp32_convs,
        weight_max=WEIGHT_MAX_BY_BITS[args.weight_bits],
        branches=args.branches,
    )
    log = finetune_for_int8(
        args.checkpoint,
        args.data,
        args.out,
        epochs=args.epochs,
        lr=args.lr,
        consistency=args.consistency,
        batch_size=args.batch_size,
        device=args.device,
        seed=args.seed,
        progress=not args.no_progress,
        scheme=scheme,
        overwrite=args.overwrite,
    )
    for row in log:
        losses = "".join(
            f", {key} {row[key]:.4f}" for key in ("ce_fp32", "ce_int8", "kl") if key in row
        )
        print(f"epoch {row['epoch']}: emulated int8 agreement {row['agreement']:.3%}{losses}")
    print(
        f"{args.checkpoint} -> {args.out}: weights on their grid; `enet export --int8` "
        "rounds what it was tuned for (residual stream included). Evaluate it (enet eval) "
        "before shipping it"
    )
    return 0


def run_infer(args: argparse.Namespace) -> int:
    from ..deploy.infer import run_inference

    report = run_inference(
        args.model,
        args.inputs,
        args.out,
        backend=args.backend,
        device=args.device,
        resize=args.resize,
        labels=args.labels,
        timing_file=args.timing,
        outputs=args.outputs,
        progress=not args.no_progress,
        label_ids=args.label_ids,
        compile=args.compile,
        bf16=args.bf16,
        shard=args.shard,
        overwrite=args.overwrite,
    )
    t = report.timing()
    print(
        f"{report.processed} input(s), {t['frames']} frame(s) -> {args.out} in "
        f"{t['seconds']:.1f} s: {t['end_to_end_fps']:.1f} frames/s end to end; the model "
        f"{t['model_fps']:.1f}/s ({t['parallel']} at a time, latency p50 "
        f"{t['latency_ms']['p50']:.1f} ms, p90 {t['latency_ms']['p90']:.1f})"
    )
    if report.metric:
        print(
            f"[seed 310 protocol] mean_iou {report.metric['mean_iou']:.4f} -> "
            f"{Path(args.out) / 'metric.txt'}"
        )
    if report.failed:
        total = report.processed + len(report.failed)
        shown = ", ".join(report.failed[:3]) + (", ..." if len(report.failed) > 3 else "")
        print(
            f"enet: error: {len(report.failed)} of {total} inputs could not be read: {shown} "
            "(see the warnings above)",
            file=sys.stderr,
        )
        return 1
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX (either variant), checked against PyTorch",
        description="Eval graph, input 'input' N x 3 x H x W (RGB/255), output 'logits'; "
        "classes, palette, input size and provenance stored as metadata. ONNX Runtime must "
        "reproduce PyTorch's logits or nothing is written. Needs the onnx extra.",
    )
    p.add_argument("checkpoint", type=Path, help="an enet checkpoint (or a bundled model's name)")
    p.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    p.add_argument(
        "--overwrite", action="store_true", help="replace --out (and its .fp32.onnx) if it exists"
    )
    p.add_argument(
        "--size", type=types.size, help="WxH (default: the training size, else 1024x512)"
    )
    p.add_argument("--dynamic-batch", action="store_true", help="batch size chosen at run time")
    p.add_argument(
        "--dynamic",
        action="store_true",
        help="batch, height and width chosen at run time (height, width: multiples of 8)",
    )
    p.add_argument(
        "--int8",
        action="store_true",
        help="write an int8 QDQ model (ONNX Runtime static quantisation, per-channel weights); "
        "the fp32 model is kept as OUT's stem + .fp32.onnx",
    )
    p.add_argument("--calib", type=Path, help="--int8: folder of calibration images")
    p.add_argument(
        "--calib-count",
        type=types.count(1),
        default=32,
        help="--int8: calibration images used (default 32)",
    )
    p.add_argument(
        "--check",
        type=Path,
        help="--int8: other images on which to measure agreement with fp32 (default: --calib's)",
    )
    p.add_argument(
        "--min-agreement",
        type=types.number(0, 1),
        default=0.95,
        help="--int8: fail below this pixel agreement with fp32 (default 0.95)",
    )
    p.add_argument(
        "--int8-residual",
        choices=["auto", "fp32", "int8"],
        default="auto",
        help="--int8: keep the residual stream (block adds, pools) in fp32, agreeing best "
        "with fp32 for any checkpoint, or in int8, faster on OpenVINO for a checkpoint tuned "
        "by `enet finetune-int8`; auto (default): int8 for such a checkpoint, else fp32",
    )
    p.add_argument(
        "--opset",
        type=types.count(18, 23),
        default=18,
        help="ONNX opset, 18 (default) to 23",
    )
    p.set_defaults(func=run_export)


def _add_int8_tools(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "snap",
        help="round a checkpoint's weights to the int8 grid, so `export --int8` keeps them exact",
        description="Round the weights of every convolution `enet export --int8` quantises to "
        "its per-channel int8 grid and write a new checkpoint. The int8 model then differs "
        "from the fp32 one only by its rounded activations. The rounding moves the fp32 model "
        "a little: evaluate the result before shipping it.",
    )
    p.add_argument("checkpoint", type=Path, help="an enet checkpoint (or a bundled model's name)")
    p.add_argument("--out", type=Path, required=True, help="the checkpoint to write")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=run_snap)

    p = sub.add_parser(
        "finetune-int8",
        help="fine-tune a checkpoint on its own int8 rounding, so `export --int8` agrees with fp32",
        description="Each step runs the fp32 forward and one that rounds what `enet export "
        "--int8` rounds (weights on their int8 grid in both); both learn the labels and a "
        "symmetric KL pulls them together. BatchNorm stays frozen. The result's weights are "
        "on their grid and it exports all in int8, residual stream and block branches "
        "included (docs/deployment.md).",
    )
    p.add_argument("checkpoint", type=Path, help="an enet checkpoint (or a bundled model's name)")
    p.add_argument("--data", type=Path, required=True, help="a prepared set (enet prepare)")
    p.add_argument("--out", type=Path, required=True, help="the checkpoint to write")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--epochs", type=types.count(1), default=2)
    p.add_argument(
        "--lr",
        type=types.number(0, above_low=True),
        default=5e-5,
        help="Adam, cosine to zero (default 5e-5)",
    )
    p.add_argument(
        "--consistency",
        type=types.number(0),
        default=1000.0,
        help="weight of the KL term (default 1000)",
    )
    p.add_argument("--batch-size", type=types.count(1), default=4)
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--seed", type=types.SEED, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--fp32-convs",
        type=types.count(0),
        help="leading convolutions left in fp32, here and in its int8 export (default: "
        "none; an export of an untuned checkpoint keeps the first 4)",
    )
    p.add_argument(
        "--weight-bits",
        type=int,
        choices=(7, 8),
        default=7,
        help="the weights' grid (default 7: int8 kernels without VNNI, on AVX2 say, "
        "overflow with 8-bit weights; 8 is finer where every CPU has VNNI or AMX)",
    )
    p.add_argument(
        "--branches",
        choices=["fp32", "int8"],
        default="int8",
        help="each block's branch at its add (default int8: rounded, so OpenVINO adds and "
        "activates inside the block's last int8 convolution; fp32: left unrounded)",
    )
    p.set_defaults(func=run_finetune_int8)


def _add_infer(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "infer",
        help="segment images, videos or folders with an ONNX model or a checkpoint",
        description="Writes <stem>_pred.png (class id per pixel), _color.png (the same ids "
        "with the classes' colours) and _overlay.jpg per image; per video <stem>_pred/"
        "NNNNNN.png and a colourised <stem>_overlay.mp4 (needs PyAV: pip install "
        "'enet[video]'); and timing.json (model latency mean/p50/p90, the model's rate and "
        "the rate end to end). Outputs mirror the inputs' sub-folders. MODEL may be a "
        "bundled model's name (camvid). Any size: padded to a multiple of 8, or resized with "
        "--resize (always for fixed-size ONNX models). --labels DIR adds the seed's 310 "
        "metric.txt, metric.json and confusion.png. Unreadable files are reported and "
        "skipped; the exit code is 1 if any were. In Python: enet.Segmenter.",
    )
    p.add_argument(
        "inputs", nargs="+", type=Path, metavar="INPUT", help="images, videos or folders of them"
    )
    p.add_argument(
        "--model", type=Path, required=True, help=".onnx file, enet checkpoint or 'camvid'"
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--overwrite", action="store_true", help="replace outputs of an earlier run in --out"
    )
    _add_model_flags(p)
    p.add_argument(
        "--labels",
        type=Path,
        help="folder of labels (gtFine, or the masks of a folder dataset): compute the seed's "
        "metric.txt (+ metric.json, confusion.png)",
    )
    p.add_argument("--timing", type=Path, help="timing JSON path (default OUT/timing.json)")
    p.add_argument(
        "--outputs",
        type=types.words,
        metavar="LIST",
        help="which of pred, color, overlay to write, comma-separated (default: all; videos "
        "have pred and overlay)",
    )
    p.add_argument(
        "--shard",
        type=types.shard,
        metavar="I/N",
        help="segment only share I of N (0 <= I < N) of the sorted inputs: N runs, on one "
        "machine or many, cover each input once (e.g. a Slurm array, a Kubernetes indexed Job)",
    )
    p.add_argument(
        "--label-ids",
        action="store_true",
        help="also write Cityscapes label-id PNGs at the input's resolution, named for a "
        "benchmark submission (OUT/labelIds/<city>_<seq>_<frame>_leftImg8bit.png)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_infer)


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    """How ``infer`` and ``serve`` run the model (``enet.Segmenter``'s options)."""
    p.add_argument(
        "--backend",
        choices=["auto", "onnx", "openvino", "torch"],
        default="auto",
        help="auto (default): OpenVINO for ONNX files on a CPU when installed, else ONNX "
        "Runtime; PyTorch for checkpoints",
    )
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--resize", type=types.size, help="run the model at WxH (e.g. 1024x512)")
    p.add_argument(
        "--compile",
        action="store_true",
        help="checkpoints: torch.compile with BatchNorm folded, PyTorch's fastest fp32 CPU "
        "path after a minute or more of compilation per input size",
    )
    p.add_argument(
        "--bf16",
        action="store_true",
        help="fp32 ONNX files on OpenVINO: compute in bf16, on CPUs that do natively (AMX, "
        "AVX512_BF16); no calibration needed",
    )


def run_serve(args: argparse.Namespace) -> int:
    from ..deploy.segmenter import Segmenter

    try:
        from ..serve.app import Limits
        from ..serve.server import check_token, serve
    except ImportError as exc:
        raise UsageError(f"serve needs {exc.name}: pip install 'enet[serve]'") from None

    token = args.token if args.token is not None else os.environ.get("ENET_TOKEN") or None
    check_token(args.host, token)  # before the model loads: a refusal should not wait on it
    segmenter = Segmenter(
        args.model,
        backend=args.backend,
        device=args.device,
        resize=args.resize,
        compile=args.compile,
        bf16=args.bf16,
        parallel=True,
    )
    limits = Limits(
        max_body_bytes=round(args.max_upload_mb * 2**20),
        max_pixels=args.max_pixels,
        queue=args.queue,
        timeout_s=args.timeout,
    )
    serve(
        segmenter,
        name=str(args.model),
        host=args.host,
        port=args.port,
        limits=limits,
        token=token,
    )
    return 0


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="an HTTP API and a web page (with a live camera) for a model",
        description="Serves MODEL (a bundled name, a checkpoint or an .onnx file) over HTTP: "
        "the page at /, POST /v1/segment (an image in; JSON, class ids, colours or an overlay "
        "out), GET /v1/model, GET /healthz and the /v1/live WebSocket. Loopback only unless "
        "a token is given. See docs/serving.md.",
    )
    p.add_argument(
        "model", type=Path, metavar="MODEL", help=".onnx file, enet checkpoint or 'camvid'"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--port",
        type=types.count(0, 65535),
        default=8000,
        help="port (default 8000; 0: any free one)",
    )
    p.add_argument(
        "--token",
        help="secret clients must send (Authorization: Bearer TOKEN); default $ENET_TOKEN; "
        "required off the loopback address",
    )
    _add_model_flags(p)
    p.add_argument(
        "--max-upload-mb",
        type=types.number(0, above_low=True),
        default=20,
        help="largest upload in MiB (default 20; larger: 413)",
    )
    p.add_argument(
        "--max-pixels",
        type=types.count(1),
        default=16_000_000,
        help="largest image in pixels, refused before decoding (default 16000000; larger: 413)",
    )
    p.add_argument(
        "--queue",
        type=types.count(1),
        default=16,
        help="requests in progress at once (default 16); more are answered 503 with Retry-After",
    )
    p.add_argument(
        "--timeout",
        type=types.number(0, above_low=True),
        default=30.0,
        help="seconds one request may take (default 30; then 408 or 504)",
    )
    p.set_defaults(func=run_serve)


def register(sub: argparse._SubParsersAction) -> None:
    _add_export(sub)
    _add_int8_tools(sub)
    _add_infer(sub)
    _add_serve(sub)
