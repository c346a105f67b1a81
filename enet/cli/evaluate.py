"""``enet eval``: the seed's protocol on a checkpoint or a run, or the official Cityscapes
benchmark on a checkpoint or ready-made predictions."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import UsageError
from . import args as types

__all__ = ["register"]


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


def _run_official(args: argparse.Namespace) -> int:
    from ..evaluate.cityscapes import evaluate_cityscapes
    from ..fileio import check_output_file, write_json_atomic

    if args.target is None and args.predictions is None:
        raise UsageError("give a CHECKPOINT or --predictions DIR")
    if args.json:
        inputs = [p for p in (args.data, args.predictions, args.target) if p is not None]
        check_output_file(args.json, overwrite=args.overwrite, inputs=inputs)
    res = evaluate_cityscapes(
        args.data,
        split=args.split,
        predictions=args.predictions,
        checkpoint=args.target,
        save_predictions=args.save_predictions,
        device=args.device,
        overwrite=args.overwrite,
    )
    _print_official(res)
    if args.json:
        clean = json.loads(json.dumps(res).replace("NaN", "null"))
        write_json_atomic(args.json, clean)
        print(f"wrote {args.json}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from ..evaluate.seed import evaluate_path

    if args.protocol == "cityscapes":
        return _run_official(args)
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


def register(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--batch-size", type=types.count(1), default=6)
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--workers", type=types.count(0), default=2)
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="evaluate checkpoints that have metrics files again, replacing those files",
    )
    p.add_argument(
        "--save-images",
        type=types.count(0),
        default=0,
        metavar="N",
        help="write image | overlay | prediction | ground-truth sheets for the first N samples",
    )
    p.set_defaults(func=run_eval)
