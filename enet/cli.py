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
