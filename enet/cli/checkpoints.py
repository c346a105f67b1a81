"""``enet convert`` and ``enet info``: checkpoints of other projects in, ours described."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..data.classes import CLASS_SETS

__all__ = ["register"]


def run_convert(args: argparse.Namespace) -> int:
    from ..convert import convert_checkpoint

    model = convert_checkpoint(
        args.src, args.dst, args.source, classes=args.classes, overwrite=args.overwrite
    )
    kind = "encoder + head" if model.encoder_only else "full ENet"
    print(
        f"converted {args.src} ({args.source}) -> {args.dst}: {model.variant} {kind}, "
        f"{model.num_classes} classes ({model.classes.name}), "
        f"{sum(p.numel() for p in model.parameters()):,} parameters"
    )
    return 0


def run_info(args: argparse.Namespace) -> int:
    from ..checkpoint import model_from_checkpoint, read_checkpoint

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


def register(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--overwrite", action="store_true", help="replace DST if it exists (never SRC)")
    p.add_argument(
        "--classes",
        choices=sorted(CLASS_SETS),
        help="class set of the outputs (default: cityscapes for 20-class MindSpore files, "
        "cityscapes-pytorch-enet / camvid for 20 / 12-class PyTorch-ENet files)",
    )
    p.set_defaults(func=run_convert)

    p = sub.add_parser("info", help="describe an enet checkpoint")
    p.add_argument("checkpoint", type=Path)
    p.set_defaults(func=run_info)
