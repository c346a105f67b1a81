"""The ``enet`` command: each subcommand parses its flags and calls one library function."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .data.classes import CLASS_SETS
from .errors import EnetError

__all__ = ["build_parser", "main"]


def _cmd_convert(args: argparse.Namespace) -> int:
    from .convert import convert_checkpoint

    model = convert_checkpoint(args.src, args.dst, args.source, args.classes)
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

    out = synthesize(args.out, args.train, args.val, args.size, args.seed, args.workers)
    print(
        f"wrote {args.train} train + {args.val} val synthetic frames ({args.size[0]}x"
        f"{args.size[1]}) in the Cityscapes layout under {out}"
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
    )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(Path(args.out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="enet",
        description="ENet semantic segmentation: train, evaluate, convert, export, deploy.",
    )
    parser.add_argument("--version", action="version", version=f"enet {__version__}")
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
    p.add_argument("--train", type=int, default=60, help="train frames (default 60)")
    p.add_argument("--val", type=int, default=20, help="val frames (default 20)")
    p.add_argument("--size", type=_size, default=(512, 256), help="WxH (default 512x256)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
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
        "--size", type=_size, default=None,
        help="stored WxH (default: Cityscapes 1024x512, CamVid as is)",
    )  # fmt: skip
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument(
        "--skip-bad", action="store_true",
        help="skip unpaired, unreadable or wrongly sized files with a warning instead of failing",
    )  # fmt: skip
    p.add_argument(
        "--enet-c", type=float, default=1.02, help="c in ENet's 1/ln(c + p) weights (default 1.02)"
    )
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser(
        "demo",
        help="run the whole pipeline that exists so far on built-in data, on the CPU",
    )
    p.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except EnetError as exc:
        print(f"enet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("enet: interrupted", file=sys.stderr)
        return 130
