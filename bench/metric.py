"""Seed-protocol metric accumulation: our bincount confusion matrix vs erfnet's per-class loop.

    python bench/metric.py [--pairs 500] [--device cpu]

Both consume the same random 512x1024 prediction/label pairs (20 classes, void = 19) and
must agree exactly; prints the time of each and the speed-up (target >= 10x).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

from enet.metrics import ConfusionMatrix

C, VOID = 20, 19


def erfnet_loop(preds: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """erfnet iouEval's arithmetic, one class at a time (its addBatch + getIoU)."""
    tp = torch.zeros(C - 1, dtype=torch.float64)
    fp, fn = tp.clone(), tp.clone()
    for pred, label in zip(preds, labels, strict=True):
        pred, label = pred.long(), label.long()
        valid = label != VOID
        for c in range(C - 1):
            p, g = pred == c, label == c
            tp[c] += (p & g).sum()
            fp[c] += (p & ~g & valid).sum()
            fn[c] += (~p & g).sum()
    return (tp / (tp + fp + fn + 1e-15)).numpy()


def ours(preds: torch.Tensor, labels: torch.Tensor, device: str) -> np.ndarray:
    cm = ConfusionMatrix(C, VOID, device)
    for i in range(0, len(preds), 6):  # batches of 6, as the seed evaluates
        cm.update(preds[i : i + 6].to(device).long(), labels[i : i + 6].to(device).long())
    return cm.iou()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, C, (args.pairs, 512, 1024), generator=g, dtype=torch.uint8)
    preds = torch.randint(0, C, (args.pairs, 512, 1024), generator=g, dtype=torch.uint8)
    start = time.perf_counter()
    a = ours(preds, labels, args.device)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    b = erfnet_loop(preds, labels)
    t_loop = time.perf_counter() - start
    assert np.allclose(a, b, rtol=0, atol=1e-12), "the two formulations disagree"
    print(
        json.dumps(
            {
                "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                f"device {args.device}",
                "pairs": args.pairs,
                "bincount_s": round(t_ours, 2),
                "per_class_loop_s": round(t_loop, 2),
                "speedup": round(t_loop / t_ours, 1),
            },
            indent=1,
        )
    )
    print(f"bincount {t_ours:.2f} s vs per-class loop {t_loop:.2f} s: {t_loop / t_ours:.1f}x")


if __name__ == "__main__":
    main()
