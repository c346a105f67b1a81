"""Confusion matrix on the device, IoU with erfnet's iouEval semantics (SPEC 5), and the
seed's metrics file.

iouEval, per non-void class c: TP = #(p=c, g=c); FP = #(p=c, g not in {c, void});
FN = #(p!=c, g=c), so predicting void counts as a miss; IoU = TP / (TP + FP + FN + 1e-15);
an absent class scores 0; mIoU is the plain mean over the non-void classes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from .fileio import atomic_write

__all__ = ["ConfusionMatrix", "iou_from_confusion", "write_seed_metrics"]


class ConfusionMatrix:
    """``C x C`` int64 counts (rows: ground truth, columns: prediction), void rows skipped.

    Kept on the predictions' device and updated with one ``bincount`` per batch.
    """

    def __init__(self, num_classes: int, void: int | None, device: str | torch.device = "cpu"):
        self.num_classes = num_classes
        self.void = void
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, pred: Tensor, target: Tensor) -> None:
        """``pred`` and ``target``: integer class maps of the same shape."""
        pred, target = pred.reshape(-1), target.reshape(-1).to(pred.device)
        keep = (target >= 0) & (target < self.num_classes)
        if self.void is not None:
            keep &= target != self.void
        index = target[keep] * self.num_classes + pred[keep]
        counts = torch.bincount(index, minlength=self.num_classes**2)
        self.mat += counts.reshape(self.num_classes, self.num_classes).to(self.mat.device)

    def all_reduce(self) -> None:
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.mat)

    def iou(self) -> np.ndarray:
        return iou_from_confusion(self.mat.cpu().numpy(), self.void)


def iou_from_confusion(mat: np.ndarray, void: int | None) -> np.ndarray:
    """Per-class IoU for every non-void class, in class order (void removed)."""
    mat = np.asarray(mat, dtype=np.float64)
    classes = [c for c in range(mat.shape[0]) if c != void]
    tp = np.diag(mat)[classes]
    fn = mat.sum(1)[classes] - tp
    fp = mat.sum(0)[classes] - tp  # void rows were never counted
    return tp / (tp + fp + fn + 1e-15)


def write_seed_metrics(
    path: str | Path,
    model_path: str,
    iou_class: np.ndarray,
    mean_loss: float,
    class_names: list[str] | None = None,
    protocol: str = "seed",
) -> tuple[Path, Path]:
    """``<path>`` in the seed's 4-line format and ``<path minus .txt>.json`` with class names.

    The text file is what the seed's eval.py writes (``key value``, NumPy's wrapped repr).
    """
    path = Path(path)
    iou = np.asarray(iou_class, dtype=np.float64)
    text = (
        f"model path {model_path}\n"
        f"mean_iou {float(iou.mean())}\n"
        f"mean_loss {float(mean_loss)}\n"
        f"iou_class {iou}\n"
    )
    atomic_write(path, lambda f: f.write(text), text=True)
    names = class_names or [str(i) for i in range(len(iou))]
    summary = {
        "protocol": protocol,
        "model_path": model_path,
        "mean_iou": float(iou.mean()),
        "mean_loss": float(mean_loss),
        "iou_class": dict(zip(names, iou.tolist(), strict=True)),
    }
    json_path = path.with_suffix(".json")
    atomic_write(json_path, lambda f: json.dump(summary, f, indent=1), text=True)
    return path, json_path
