"""The ``enet`` command: each subcommand parses its flags and calls one library function."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NoReturn

from . import __version__
from .config import presets
from .data.classes import CLASS_SETS
from .errors import EnetError, UsageError, describe_os_error

__all__ = ["build_parser", "main"]


def _cmd_convert(args: argparse.Namespace) -> int:
    from .convert import convert_checkpoint

    model = convert_checkpoint(
        args.src, args.dst, args.source, args.classes, overwrite=args.overwrite
    )
    kind = "encoder + head" if model.encoder_only else "full ENet"
    print(
        f"converted {args.src} ({args.source}) -> {args.dst}: {model.variant} {kind}, "
        f"{model.num_classes} classes ({model.classes.name}), "
        f"{sum(p.numel() for p in model.parameters()):,} parameters"
    )
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from .checkpoint import model_from_checkpoint, read_checkpoint

    ckpt = read_checkpoint(args.checkpoint)
    model = model_from_checkpoint(ckpt, args.checkpoint)
    summary = {
        "path": str(args.checkpoint),
        **ckpt["model"],
        "parameters": sum(p.numel() for p in model.parameters()),
        "classes": ckpt["classes"]["name"],
        "class_names": ckpt["classes"]["names"],
        "void": ckpt["classes"]["void"],
        "provenance": ckpt.get("provenance", {}),
    }
    print(json.dumps(summary, indent=2))
    return 0


def _count(minimum: int, maximum: int | None = None):
    """An argparse type: a whole number in [``minimum``, ``maximum``]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            limits = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
            raise argparse.ArgumentTypeError(f"must be {limits}, got {value}")
        return value

    return parse


def _number(low: float, high: float = math.inf, *, above_low: bool = False):
    """An argparse type: a finite number from ``low`` (excluded with ``above_low``) to
    ``high``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        below = value <= low if above_low else value < low
        if not math.isfinite(value) or below or value > high:
            where = f"above {low:g}" if above_low else f"at least {low:g}"
            where += f" and at most {high:g}" if math.isfinite(high) else ""
            raise argparse.ArgumentTypeError(f"must be a finite number {where}, got {text!r}")
        return value

    return parse


#: Seeds are whole numbers torch, NumPy and Python's random all take.
_SEED = _count(0, 2**63 - 1)


def _epochs(text: str) -> list[int]:
    """``65,85,100``: one whole number of epochs for each of the three stages."""
    parts = text.split(",")
    try:
        values = [int(v) for v in parts]
    except ValueError:
        values = []
    if len(parts) != 3 or len(values) != 3 or min(values) < 0:
        raise argparse.ArgumentTypeError(
            f"expected the epochs of stages 1, 2 and 3 as three whole numbers such as "
            f"65,85,100, got {text!r}"
        )
    return values


def _size(text: str) -> tuple[int, int]:
    """``WxH`` -> (width, height)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected WIDTHxHEIGHT such as 1024x512, got {text!r}"
        ) from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return w, h


def _cmd_synth(args: argparse.Namespace) -> int:
    from .data.synthetic import synthesize

    out = synthesize(
        args.out, args.train, args.val, args.size, args.seed, args.workers, not args.no_progress
    )
    print(
        f"{out} holds {args.train} train + {args.val} val synthetic frames ({args.size[0]}x"
        f"{args.size[1]}) in the Cityscapes layout"
    )
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from .data.prepare import prepare

    prepare(
        args.dataset,
        args.root,
        args.out,
        tuple(args.split) if args.split else None,
        args.size,
        args.workers,
        args.skip_bad,
        args.enet_c,
        not args.no_progress,
    )
    return 0


#: ``enet train`` flags that a resumed run takes from its saved config instead.
_RUN_SETTINGS = (
    "data", "out", "stage", "config", "variant", "size", "batch_size", "lr", "epochs",
    "repeat", "amp", "channels_last", "compile", "sync_bn", "seed", "deterministic",
    "save_every", "val_every", "tensorboard", "init", "set",
)  # fmt: skip


def _cmd_train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .engine import train

    if args.resume:
        cfg = load_config(None, out=str(args.resume))
        runtime = {"workers": args.workers, "device": args.device}
        if args.overwrite:
            raise UsageError("--resume continues a run and --overwrite replaces it: give one")
        fixed = [
            f"--{name.replace('_', '-')}"
            for name in _RUN_SETTINGS
            if getattr(args, name) not in (None, False, [])
        ]
        if fixed:
            raise UsageError(
                f"{args.resume}: --resume continues the run with its saved config; "
                f"{', '.join(fixed)} cannot change it (only --workers and --device can; to "
                f"train differently, start a new run with --init {args.resume}/last.pt)"
            )
        run = train(cfg, resume=True, progress=not args.no_progress, runtime=runtime)
    else:
        overrides = {
            "data": str(args.data) if args.data else None,
            "out": str(args.out) if args.out else None,
            "variant": args.variant,
            "size": args.size,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "repeat": args.repeat,
            "workers": args.workers,
            "device": args.device,
            "amp": args.amp,
            "channels_last": args.channels_last or None,
            "compile": args.compile or None,
            "sync_bn": args.sync_bn or None,
            "seed": args.seed,
            "deterministic": args.deterministic or None,
            "save_every": args.save_every,
            "val_every": args.val_every,
            "tensorboard": args.tensorboard or None,
            "init": str(args.init) if args.init else None,
        }
        if args.epochs:
            for n, value in enumerate(args.epochs, 1):
                overrides[f"stage{n}.epochs"] = value
        for item in args.set or []:
            key, sep, value = item.partition("=")
            if not sep:
                raise UsageError(f"--set expects KEY=VALUE, got {item!r}")
            overrides[key.strip()] = value.strip()
        cfg = load_config(args.config, **overrides)
        run = train(cfg, stage=args.stage, progress=not args.no_progress, overwrite=args.overwrite)
    print(f"run folder: {run} (log.jsonl, curves.png, checkpoints/)")
    return 0


def _print_official(res: dict) -> None:
    def fmt(v: float) -> str:
        return "  n/a " if v != v else f"{v:.4f}"

    print(
        f"[cityscapes protocol] mIoU {fmt(res['mean_iou'])}, iIoU {fmt(res['mean_iiou'])}, "
        f"category IoU {fmt(res['mean_category_iou'])}"
    )
    for name, v in res["iou_class"].items():
        iiou = res["iiou_class"].get(name)
        print(f"  {name:14s} {fmt(v)}" + (f"   iIoU {fmt(iiou)}" if iiou is not None else ""))


def _cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_cityscapes, evaluate_path
    from .fileio import check_output_file, write_json_atomic

    if args.protocol == "cityscapes":
        if args.target is None and args.predictions is None:
            raise UsageError("give a CHECKPOINT or --predictions DIR")
        if args.json:
            inputs = [p for p in (args.data, args.predictions, args.target) if p is not None]
            check_output_file(args.json, overwrite=args.overwrite, inputs=inputs)
        res = evaluate_cityscapes(
            args.data,
            args.split,
            args.predictions,
            args.target,
            args.save_predictions,
            args.device,
            overwrite=args.overwrite,
        )
        _print_official(res)
        if args.json:
            clean = json.loads(json.dumps(res).replace("NaN", "null"))
            write_json_atomic(args.json, clean)
            print(f"wrote {args.json}")
        return 0
    if args.target is None:
        raise UsageError("the seed protocol needs a CHECKPOINT or RUN_DIR")

    results = evaluate_path(
        args.target,
        args.data,
        split=args.split,
        batch_size=args.batch_size,
        device=args.device,
        workers=args.workers,
        save_images=args.save_images,
        overwrite=args.overwrite,
    )
    for r in results:
        print(
            f"[seed protocol] {r['metric_file']}: mean_iou {r['mean_iou']:.4f}, "
            f"mean_loss {r['mean_loss']:.4f}"
        )
        width = max(len(n) for n in r["class_names"])
        for name, iou in zip(r["class_names"], r["iou_class"], strict=True):
            print(f"  {name:{width}s} {iou:.4f}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import export_onnx

    calibration = check = None
    if args.int8:
        from .infer import IMAGE_SUFFIXES, find_inputs

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
        args.size,
        args.dynamic_batch,
        args.opset,
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
        f"99.9th pct {r['p999_abs_diff']:.3g}, argmax agreement "
        f"{r['argmax_agreement']:.4%}"
    )
    if args.int8:
        where = "its calibration images" if r["int8_check_is_calibration"] else "--check images"
        print(
            f"int8 (QDQ, {r['int8_weight_bits']}-bit weights, {r['int8_fp32_convs']} fp32 "
            f"convolutions, {r['int8_residual']} residual stream, {r['int8_branches']} block "
            f"branches, calibrated on "
            f"{r['int8_calibration_images']} images): argmax "
            f"agreement with fp32 {r['int8_argmax_agreement']:.3%} on {r['int8_check_images']} "
            f"{where} (worst image {r['int8_worst_image_agreement']:.3%}); latency on "
            f"{r['backend']}: int8 {r['int8_latency_ms']:.1f} ms, fp32 "
            f"{r['fp32_latency_ms']:.1f} ms "
            f"(fp32 model kept as {Path(r['path']).with_suffix('.fp32.onnx')})"
        )
    return 0


def _cmd_snap(args: argparse.Namespace) -> int:
    from .quantize import snap_checkpoint

    names = snap_checkpoint(args.checkpoint, args.out, overwrite=args.overwrite)
    print(
        f"{args.checkpoint} -> {args.out}: weights of {len(names)} convolutions on the int8 "
        "grid of `enet export --int8`; evaluate it (enet eval) before shipping it"
    )
    return 0


def _cmd_finetune_int8(args: argparse.Namespace) -> int:
    from .int8_finetune import finetune_for_int8
    from .quantize import TUNED_INT8_SCHEME, WEIGHT_MAX_BY_BITS, Int8Scheme

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
        scheme=Int8Scheme(
            "int8",
            TUNED_INT8_SCHEME.fp32_convs if args.fp32_convs is None else args.fp32_convs,
            WEIGHT_MAX_BY_BITS[args.weight_bits],
            args.branches,
        ),
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


def _cmd_infer(args: argparse.Namespace) -> int:
    from .infer import run_inference

    report = run_inference(
        args.model,
        args.inputs,
        args.out,
        args.backend,
        args.device,
        args.resize,
        args.labels,
        args.timing,
        not args.no_pictures,
        not args.no_progress,
        args.label_ids,
        args.compile,
        args.bf16,
        overwrite=args.overwrite,
    )
    t = report.timing()
    print(
        f"{report.processed} input(s), {t['frames']} frame(s) -> {args.out}; model latency mean "
        f"{t['latency_ms']['mean']:.1f} ms, p50 {t['latency_ms']['p50']:.1f}, p90 "
        f"{t['latency_ms']['p90']:.1f}; {t['throughput_fps']:.2f} img/s"
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


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(Path(args.out))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"enet: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="enet",
        description="ENet semantic segmentation: train, evaluate, convert, export, deploy.",
    )
    parser.add_argument("--version", action="version", version=f"enet {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of an error instead of one line (or set ENET_DEBUG=1)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "convert",
        help="import a PyTorch-ENet (.pth) or seed MindSpore (.ckpt) checkpoint",
        description="Read a checkpoint of davidtvs/PyTorch-ENet or of the seed's MindSpore "
        "port (network-only or training file, with or without CRC; MindSpore need not be "
        "installed) and write an enet checkpoint with its variant, classes and provenance.",
    )
    p.add_argument("--from", dest="source", required=True, choices=["pytorch-enet", "mindspore"])
    p.add_argument("src", type=Path, help="the checkpoint to import")
    p.add_argument("dst", type=Path, help="where to write the enet checkpoint (.pt)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace OUTPUT if it exists (never the input)"
    )
    p.add_argument(
        "--classes",
        choices=sorted(CLASS_SETS),
        help="class set of the outputs (default: cityscapes for 20-class MindSpore files, "
        "cityscapes-pytorch-enet / camvid for 20 / 12-class PyTorch-ENet files)",
    )
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("info", help="describe an enet checkpoint")
    p.add_argument("checkpoint", type=Path)
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser(
        "synth",
        help="draw synthetic street scenes in the Cityscapes layout (the built-in data)",
        description="Procedural street scenes with real Cityscapes label ids, written as "
        "leftImg8bit/ + gtFine/ so that prepare, train and eval treat them like Cityscapes. "
        "Deterministic for a given --seed; rerunning finishes an interrupted run.",
    )
    p.add_argument("--out", type=Path, required=True, help="dataset root to write")
    p.add_argument("--train", type=_count(0), default=60, help="train frames (default 60)")
    p.add_argument("--val", type=_count(0), default=20, help="val frames (default 20)")
    p.add_argument("--size", type=_size, default=(512, 256), help="WxH (default 512x256)")
    p.add_argument("--seed", type=_SEED, default=0)
    p.add_argument("--workers", type=_count(1), default=None, help="processes (default: all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser(
        "prepare",
        help="decode a Cityscapes or CamVid tree into a fast training-ready set",
        description="Pair images and labels by name, map labels to training classes "
        "(Cityscapes: 19 trainIds + void 19), resize and store them as memory-mappable "
        "arrays with a manifest, class histograms and class weights. Never writes into "
        "--root; an interrupted run leaves no manifest and is finished by rerunning.",
    )
    p.add_argument("--dataset", choices=["cityscapes", "camvid"], default="cityscapes")
    p.add_argument("--root", type=Path, required=True, help="the dataset in its own layout")
    p.add_argument("--out", type=Path, required=True, help="folder for the prepared set")
    p.add_argument(
        "--split", action="append", help="split to prepare (repeatable; default: all labelled)"
    )
    p.add_argument(
        "--size",
        type=_size,
        default=None,
        help="stored WxH (default: Cityscapes 1024x512, CamVid as is)",
    )
    p.add_argument("--workers", type=_count(1), default=None, help="processes (default: all cores)")
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip unpaired, unreadable or wrongly sized files with a warning instead of failing",
    )
    p.add_argument(
        "--enet-c",
        type=_number(1, above_low=True),
        default=1.02,
        help="c in ENet's 1/ln(c + p) weights, above 1 (default 1.02)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser(
        "train",
        help="train ENet: the seed's three stages, resumable, one device or torchrun DDP",
        description="Stage 1: encoder + head, 65 epochs of a 150-epoch poly curve; stage 2: 85 "
        "more on that curve; stage 3: full ENet, 100 epochs, encoder from stage 2. Adam 5e-4, "
        "coupled L2 1e-4 (BN exempt), batch 6, weighted cross-entropy. Defaults reproduce the "
        "seed; --config TOML and flags override. Multi-device: torchrun --nproc_per_node N "
        "-m enet train ... (gradients are averaged across ranks).",
    )
    p.add_argument("--data", type=Path, help="a prepared set (enet prepare)")
    p.add_argument("--out", type=Path, help="run folder (default runs/train)")
    p.add_argument(
        "--stage",
        choices=["1", "2", "3", "all"],
        help="stages to run (default: the config's stages, all unless a preset says otherwise)",
    )
    p.add_argument(
        "--config",
        type=Path,
        help="TOML (or JSON) file of config values, or a packaged preset: " + ", ".join(presets()),
    )
    p.add_argument("--resume", type=Path, metavar="RUN", help="continue RUN from last.pt")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start anew in an --out that holds a run, removing that run's files first",
    )
    p.add_argument("--variant", choices=["seed", "pytorch-enet"])
    p.add_argument("--size", type=_size, help="training WxH (default 1024x512)")
    p.add_argument("--batch-size", type=_count(1), help="per device (default 6)")
    p.add_argument(
        "--lr", type=_number(0, above_low=True), help="peak learning rate (default 5e-4)"
    )
    p.add_argument("--epochs", type=_epochs, help="epochs of stages 1,2,3 (e.g. 65,85,100)")
    p.add_argument("--repeat", type=_count(1), help="passes over the data per epoch (default 1)")
    p.add_argument("--workers", type=_count(0), help="loader processes per device (default 4)")
    p.add_argument("--device", help="auto (default), cpu or cuda")
    p.add_argument("--amp", choices=["off", "bf16", "fp16"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across GPUs")
    p.add_argument("--seed", type=_SEED)
    p.add_argument("--deterministic", action="store_true")
    p.add_argument("--save-every", type=_count(1), help="checkpoint every N epochs (default 20)")
    p.add_argument(
        "--val-every", type=_count(0), help="validate every K epochs (default: stage end)"
    )
    p.add_argument("--tensorboard", action="store_true")
    p.add_argument(
        "--init", type=Path, help="enet checkpoint to start from, or 'random' (any stage)"
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="any config value, e.g. --set stage3.weights=enet --set dropout=0,0 (repeatable)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "eval",
        help="per-class IoU and mIoU of a checkpoint, or of every checkpoint in a run",
        description="Seed protocol: inputs at the training size, labels by nearest, void as "
        "its own output, erfnet's iouEval (absent class = 0), mIoU over the non-void classes. "
        "Writes <checkpoint>.metric.txt (the seed's format) and .metric.json. Given a run "
        "folder, evaluates each checkpoint that has no metrics file yet (split across ranks "
        "under torchrun).",
    )
    p.add_argument("target", type=Path, nargs="?", metavar="CHECKPOINT|RUN_DIR")
    p.add_argument("--data", type=Path, required=True, help="a prepared set or dataset root")
    p.add_argument(
        "--protocol",
        choices=["seed", "cityscapes"],
        default="seed",
        help="seed (default; 512x1024, void as a class, absent class = 0) or cityscapes (the "
        "official benchmark at full resolution against gtFine labelIds; --data is the "
        "Cityscapes root)",
    )
    p.add_argument("--predictions", type=Path, help="cityscapes protocol: labelId PNGs to score")
    p.add_argument(
        "--save-predictions",
        type=Path,
        help="cityscapes protocol: write labelId PNGs in the benchmark's submission naming",
    )
    p.add_argument("--json", type=Path, help="cityscapes protocol: write the scores as JSON")
    p.add_argument("--split", default="val")
    p.add_argument("--batch-size", type=_count(1), default=6)
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=_count(0), default=2)
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="evaluate checkpoints that have metrics files again, replacing those files",
    )
    p.add_argument(
        "--save-images",
        type=_count(0),
        default=0,
        metavar="N",
        help="write image | overlay | prediction | ground-truth sheets for the first N samples",
    )
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX (either variant), checked against PyTorch",
        description="Eval graph, input 'input' N x 3 x H x W (RGB/255), output 'logits'; "
        "classes, palette, input size and provenance stored as metadata. ONNX Runtime must "
        "reproduce PyTorch's logits or nothing is written. Needs the onnx extra.",
    )
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    p.add_argument(
        "--overwrite", action="store_true", help="replace --out (and its .fp32.onnx) if it exists"
    )
    p.add_argument("--size", type=_size, help="WxH (default: the training size, else 1024x512)")
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
        type=_count(1),
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
        type=_number(0, 1),
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
        type=_count(18, 23),
        default=18,
        help="ONNX opset, 18 (default) or newer: enet's own ops are written for 18",
    )
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser(
        "snap",
        help="round a checkpoint's weights to the int8 grid, so `export --int8` keeps them exact",
        description="Round the weights of every convolution `enet export --int8` quantises to "
        "its per-channel int8 grid and write a new checkpoint. The int8 model then differs "
        "from the fp32 one only by its rounded activations (on the bundled CamVid model: "
        "98.7%% -> 99.2%% pixel agreement, test mIoU unchanged). The rounding moves the fp32 "
        "model a little: evaluate the result before shipping it.",
    )
    p.add_argument("checkpoint", type=Path, help="an enet checkpoint (or a bundled model's name)")
    p.add_argument("--out", type=Path, required=True, help="the checkpoint to write")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=_cmd_snap)

    p = sub.add_parser(
        "finetune-int8",
        help="fine-tune a checkpoint on its own int8 rounding, so `export --int8` agrees with fp32",
        description="Each step runs the fp32 forward and one that rounds what `enet export "
        "--int8` rounds (weights on their int8 grid in both); both learn the labels and a "
        "symmetric KL pulls them together. BatchNorm stays frozen. The result's weights are "
        "on their grid and it exports all in int8, residual stream and block branches "
        "included, faster on OpenVINO. On the bundled CamVid model (4 epochs on a CPU, "
        "~33 min): see results/camvid/README.md.",
    )
    p.add_argument("checkpoint", type=Path, help="an enet checkpoint (or a bundled model's name)")
    p.add_argument("--data", type=Path, required=True, help="a prepared set (enet prepare)")
    p.add_argument("--out", type=Path, required=True, help="the checkpoint to write")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--epochs", type=_count(1), default=2)
    p.add_argument(
        "--lr",
        type=_number(0, above_low=True),
        default=5e-5,
        help="Adam, cosine to zero (default 5e-5)",
    )
    p.add_argument(
        "--consistency",
        type=_number(0),
        default=1000.0,
        help="weight of the KL term (default 1000)",
    )
    p.add_argument("--batch-size", type=_count(1), default=4)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=_SEED, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--fp32-convs",
        type=_count(0),
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
    p.set_defaults(func=_cmd_finetune_int8)

    p = sub.add_parser(
        "infer",
        help="segment images, videos or folders with an ONNX model or a checkpoint",
        description="Writes <stem>_pred.png (class per pixel), _color.png and _overlay.png "
        "per image; per video <stem>_pred/NNNNNN.png and a colourised <stem>_overlay.mp4 "
        "(needs PyAV: pip install 'enet[video]'); and timing.json (model latency "
        "mean/p50/p90, throughput). MODEL may be a bundled model's name (camvid). Any size: padded "
        "to a multiple of 8, or resized with --resize (always for fixed-size ONNX models). "
        "--labels DIR adds the seed's 310-inference metric.txt. Unreadable files are reported "
        "and skipped; the exit code is 1 if any were.",
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
    p.add_argument(
        "--backend",
        choices=["auto", "onnx", "openvino", "torch"],
        default="auto",
        help="auto (default): OpenVINO for fp32 ONNX on a CPU when installed, else ONNX "
        "Runtime; PyTorch for checkpoints",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--resize", type=_size, help="run the model at WxH (e.g. 1024x512)")
    p.add_argument("--labels", type=Path, help="gtFine folder: compute the seed's metric.txt")
    p.add_argument("--timing", type=Path, help="timing JSON path (default OUT/timing.json)")
    p.add_argument("--no-pictures", action="store_true", help="only the _pred.png files")
    p.add_argument(
        "--label-ids",
        action="store_true",
        help="also write Cityscapes label-id PNGs at the input's resolution, named for a "
        "benchmark submission (OUT/labelIds/<city>_<seq>_<frame>_leftImg8bit.png)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="checkpoints: torch.compile with BatchNorm folded, PyTorch's fastest fp32 CPU "
        "path after a minute or more of compilation per input size (for folders and videos)",
    )
    p.add_argument(
        "--bf16",
        action="store_true",
        help="fp32 ONNX files on OpenVINO: compute in bf16, on CPUs that do natively (AMX, "
        "AVX512_BF16): no calibration; 1.4-1.8x fp32's speed on AVX512_BF16, int8 faster still",
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_infer)

    p = sub.add_parser(
        "demo",
        help="run the whole pipeline that exists so far on built-in data, on the CPU",
    )
    p.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    p.set_defaults(func=_cmd_demo)
    for command in sub.choices.values():  # --debug after the command works too
        command.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every failure ends as one line ``enet: error: ...`` and a non-zero
    exit code (2: the input or a flag, 1: anything else, 130: interrupted)."""
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("ENET_DEBUG", "") not in ("", "0")
    try:
        with _terminate_as_interrupt():
            return args.func(args)
    except Exception as exc:
        if debug:
            raise
        code, message = _one_line(exc)
        print(f"enet: error: {message}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        if debug:
            raise
        again = "the same command"
        if args.command == "train":
            again = (
                f"enet train --resume {getattr(args, 'resume', None) or args.out or 'runs/train'}"
            )
        print(
            f"enet: error: interrupted (to finish, run {again}: work that was done is kept)",
            file=sys.stderr,
        )
        return 130


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, a scheduler's timeout) ends a command as Ctrl-C does: temporary
    files are removed on the way out instead of left for the next run to clear."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _one_line(exc: Exception) -> tuple[int, str]:
    """Exit code and message for an exception that ends a command."""
    if isinstance(exc, EnetError):
        return 2, " ".join(str(exc).split())
    if isinstance(exc, OSError):
        return 1, describe_os_error(exc)
    if isinstance(exc, MemoryError):
        return 1, "out of memory (use smaller inputs or batches, or a machine with more memory)"
    text = " ".join(str(exc).split())[:300]
    return 1, (
        f"unexpected {type(exc).__name__}: {text} (rerun with --debug for the traceback and "
        "report it)"
    )
