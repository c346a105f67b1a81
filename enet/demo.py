"""``enet demo``: the whole pipeline on built-in data, on the CPU, in minutes.

synthetic Cityscapes-layout scenes -> prepare -> the seed's three training stages on a short
schedule at reduced size -> seed-protocol evaluation with pictures -> summary. The schedule
keeps the seed's structure (encoder twice, then the full net; poly LR; weighted CE) but is
shortened, runs at 256x128 with batch 4 and a higher peak LR, weights classes by ENet's
1/ln(1.02 + p) from the synthetic histogram, and uses channel-wise dropout because
element-wise random masks dominate a CPU step (see bench/train_step.py). The demo reports
whether mIoU over the 19 classes on the synthetic val split reaches ``TARGET_MIOU``
(``check=True`` makes a miss an error; the slow test does that).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .config import load_config
from .data.prepare import prepare
from .data.synthetic import synthesize
from .engine import FINAL_NAME, train
from .errors import EnetError
from .evaluate import evaluate_checkpoint

__all__ = ["DEMO_SETTINGS", "TARGET_MIOU", "run_demo"]

TARGET_MIOU = 0.60

#: The demo's data and schedule (everything else is the seed's default recipe).
DEMO_SETTINGS = {
    "size": (256, 128),
    "train_images": 80,
    "val_images": 20,
    "epochs": (8, 6, 55),
    "batch_size": 4,
    "lr": 2e-3,
}


class DemoCheckFailed(EnetError):
    pass


def run_demo(out: Path, settings: dict | None = None, check: bool = False) -> dict:
    s = {**DEMO_SETTINGS, **(settings or {})}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    w, h = s["size"]
    print(f"enet demo -> {out} (torch {torch.__version__}, {torch.get_num_threads()} threads)")

    n_train, n_val = s["train_images"], s["val_images"]
    print(f"[1/4] synthetic street scenes: {n_train} train + {n_val} val at {w}x{h}")
    synth = synthesize(out / "synth", n_train, n_val, (w, h), seed=0)

    print("[2/4] prepare (pair by name, labelIds -> 19 trainIds + void, memory-mapped arrays)")
    prepared = out / "prepared"
    prepare("cityscapes", synth, prepared, size=(w, h))

    e1, e2, e3 = s["epochs"]
    print(f"[3/4] train: stage 1 ({e1} epochs, encoder, labels at 1/8), stage 2 ({e2}), "
          f"stage 3 ({e3}, full ENet)")  # fmt: skip
    cfg = load_config(
        None,
        data=str(prepared),
        out=str(out / "run"),
        size=(w, h),
        batch_size=s["batch_size"],
        lr=s["lr"],
        workers=1,
        channels_last=True,
        compile=s.get("compile", False),
        dropout_kind="channel",
        save_every=1000,
        **{"stage1.weights": "enet", "stage2.weights": "enet", "stage3.weights": "enet"},
        **{"stage1.epochs": e1, "stage2.epochs": e2, "stage3.epochs": e3,
           "stage1.curve_epochs": e1 + e2, "stage2.curve_epochs": e1 + e2,
           "stage2.curve_start": e1, "stage3.curve_epochs": e3},
    )  # fmt: skip
    run = train(cfg, "all", progress=True)
    model_path = run / FINAL_NAME[3]

    print("[4/4] evaluate the final model on the synthetic val split (seed protocol)")
    result = evaluate_checkpoint(model_path, prepared, "val", workers=1, save_images=4)
    seconds = time.perf_counter() - start
    passed = result["mean_iou"] >= TARGET_MIOU
    summary = {
        "mean_iou": result["mean_iou"],
        "target": TARGET_MIOU,
        "passed": passed,
        "seconds": round(seconds, 1),
        "model": str(model_path),
        "metrics": result["metric_file"],
        "predictions": str(model_path.parent / f"{model_path.stem}_predictions"),
        "curves": str(run / "curves.png"),
        "log": str(run / "log.jsonl"),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"\nDone in {seconds / 60:.1f} min.")
    print(f"  val mIoU (seed protocol, 19 classes): {result['mean_iou']:.4f} "
          f"(target {TARGET_MIOU}: {'PASS' if passed else 'FAIL'})")  # fmt: skip
    for key in ("model", "metrics", "predictions", "curves", "log"):
        print(f"  {key:12s} {summary[key]}")
    print("  (ONNX export and deployment inference join the demo with their issue.)")
    if check and not passed:
        raise DemoCheckFailed(f"demo mIoU {result['mean_iou']:.4f} is below {TARGET_MIOU}")
    return summary
