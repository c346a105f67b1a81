"""``enet synth`` and ``enet prepare``: the built-in data, and datasets made training-ready."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import args as types

__all__ = ["register"]


def run_synth(args: argparse.Namespace) -> int:
    from ..data.synthetic import synthesize

    out = synthesize(
        args.out,
        train=args.train,
        val=args.val,
        size=args.size,
        seed=args.seed,
        workers=args.workers,
        progress=not args.no_progress,
    )
    print(
        f"{out} holds {args.train} train + {args.val} val synthetic frames ({args.size[0]}x"
        f"{args.size[1]}) in the Cityscapes layout"
    )
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    from ..data.prepare import prepare

    prepare(
        args.dataset,
        args.root,
        args.out,
        splits=tuple(args.split) if args.split else None,
        size=args.size,
        workers=args.workers,
        skip_bad=args.skip_bad,
        enet_c=args.enet_c,
        progress=not args.no_progress,
        images=args.images,
        masks=args.masks,
        classes_file=args.classes,
        ignore=args.ignore,
        val_fraction=args.val_fraction,
        resize_masks=args.resize_masks,
    )
    return 0


def _ignore(text: str) -> int | None:
    """``--ignore``: a mask value in 0..65535, or ``none``."""
    if text.lower() == "none":
        return None
    return types.count(0, 65535)(text)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="draw synthetic street scenes in the Cityscapes layout (the built-in data)",
        description="Procedural street scenes with real Cityscapes label ids, written as "
        "leftImg8bit/ + gtFine/ so that prepare, train and eval treat them like Cityscapes. "
        "Deterministic for a given --seed; rerunning finishes an interrupted run.",
    )
    p.add_argument("--out", type=Path, required=True, help="dataset root to write")
    p.add_argument("--train", type=types.count(0), default=60, help="train frames (default 60)")
    p.add_argument("--val", type=types.count(0), default=20, help="val frames (default 20)")
    p.add_argument("--size", type=types.size, default=(512, 256), help="WxH (default 512x256)")
    p.add_argument("--seed", type=types.SEED, default=0)
    p.add_argument(
        "--workers", type=types.count(1), default=None, help="processes (default: all cores)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_synth)

    p = sub.add_parser(
        "prepare",
        help="decode Cityscapes, CamVid or your own folder of images and masks into a "
        "training-ready set",
        description="Pair images and labels by name, map labels to training classes "
        "(Cityscapes: 19 trainIds + void 19), resize and store them as memory-mappable "
        "arrays with a manifest, class histograms and class weights. --dataset folder: "
        "images/<split>/ beside masks/<split>/ (or --images/--masks), SegNet's <split>/ "
        "beside <split>annot/, or a Pascal VOC tree; class-index or colour masks "
        "(docs/your-data.md). Never writes into --root; an interrupted run leaves no "
        "manifest and is finished by rerunning.",
    )
    p.add_argument("--dataset", choices=["cityscapes", "camvid", "folder"], default="cityscapes")
    p.add_argument("--root", type=Path, required=True, help="the dataset in its own layout")
    p.add_argument("--out", type=Path, required=True, help="folder for the prepared set")
    p.add_argument(
        "--split", action="append", help="split to prepare (repeatable; default: all labelled)"
    )
    p.add_argument(
        "--size",
        type=types.size,
        default=None,
        help="stored WxH (default: Cityscapes 1024x512, CamVid as is)",
    )
    p.add_argument(
        "--workers", type=types.count(1), default=None, help="processes (default: all cores)"
    )
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip unpaired, unreadable or wrongly sized files with a warning instead of failing",
    )
    p.add_argument(
        "--enet-c",
        type=types.number(1, above_low=True),
        default=1.02,
        help="c in ENet's 1/ln(c + p) weights, above 1 (default 1.02)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    folder = p.add_argument_group("--dataset folder")
    folder.add_argument(
        "--images", type=Path, help="the images' folder below --root (default: images)"
    )
    folder.add_argument(
        "--masks", type=Path, help="the masks' folder below --root (default: masks)"
    )
    folder.add_argument(
        "--classes",
        type=Path,
        help="classes file (JSON, YAML or CSV: name, color, id, ignore); without one, classes "
        "are numbered from the mask values",
    )
    folder.add_argument(
        "--ignore",
        type=_ignore,
        default=255,
        help="the mask value that is void (default 255; none: every value is a class)",
    )
    folder.add_argument(
        "--val-fraction",
        type=types.number(0, 0.9),
        default=0.0,
        help="hold out this share of train as the val split where there is none "
        "(by a hash of each name: the same on every run)",
    )
    folder.add_argument(
        "--resize-masks",
        action="store_true",
        help="scale a mask of another size but its image's aspect ratio to the image",
    )
    p.set_defaults(func=run_prepare)
