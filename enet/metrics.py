"""Confusion matrix on the device, IoU with erfnet's iouEval semantics (SPEC 5), and the
seed's metrics file.

iouEval, per non-void class c: TP = #(p=c, g=c); FP = #(p=c, g not in {c, void});
FN = #(p!=c, g=c), so predicting void counts as a miss; IoU = TP / (TP + FP + FN + 1e-15);
an absent class scores 0; mIoU is the plain mean over the non-void classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from .fileio import write_json_atomic, write_text_atomic

__all__ = [
    "ConfusionMatrix",
    "iou_from_confusion",
    "same_class_pixels",
    "write_310_metric",
    "write_metric_json",
    "write_seed_metrics",
]


class ConfusionMatrix:
    """``C x C`` int64 counts (rows: ground truth, columns: prediction).

    Kept on the predictions' device and updated with one ``bincount`` per batch over all
    pixels; the void row is counted like any other and left out when scoring, which avoids
    compacting the batch through a mask (the slow part of a masked update).
    """

    def __init__(self, num_classes: int, void: int | None, device: str | torch.device = "cpu"):
        self.num_classes = num_classes
        self.void = void
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, pred: Tensor, target: Tensor) -> None:
        """``pred`` and ``target``: integer class maps of the same shape, values < C."""
        n = self.num_classes
        target = target.to(pred.device)
        index = target.reshape(-1).to(torch.int32) * n + pred.reshape(-1).to(torch.int32)
        counts = torch.bincount(index, minlength=n * n)
        if counts.numel() > n * n:
            raise ValueError(f"class indices must lie in 0..{n - 1}")
        self.mat += counts.reshape(n, n).to(self.mat.device)

    def all_reduce(self) -> None:
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.mat)

    def iou(self) -> np.ndarray:
        return iou_from_confusion(self.mat.cpu().numpy(), self.void)


def same_class_pixels(a, b) -> tuple[int, int]:
    """(pixels where two N x C x H x W logits, arrays or tensors, pick the same class, all
    pixels): how two versions of a model (fp32 and int8, PyTorch and ONNX) are compared."""
    pa, pb = a.argmax(1), b.argmax(1)
    return int((pa == pb).sum()), int(np.prod(pa.shape))


def iou_from_confusion(mat: np.ndarray, void: int | None) -> np.ndarray:
    """Per-class IoU for every non-void class, in class order (void removed).

    Ground-truth void pixels never count: their row is dropped before FP is summed.
    """
    mat = np.asarray(mat, dtype=np.float64)
    classes = [c for c in range(mat.shape[0]) if c != void]
    scored = mat[classes]  # rows with a scored ground truth
    tp = scored[np.arange(len(classes)), classes]
    fn = scored.sum(1) - tp
    fp = scored[:, classes].sum(0) - tp
    return tp / (tp + fp + fn + 1e-15)


def write_310_metric(path: str | Path, iou_class: np.ndarray, *, replace: bool = True) -> Path:
    """``metric.txt`` as the seed's Ascend-310 inference (``eval310.py``) writes it."""
    iou = np.asarray(iou_class, dtype=np.float64)
    text = f"mean_iou:  {float(iou.mean())}\niou_class:  {iou}\n"
    return write_text_atomic(path, text, replace=replace)


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
    write_text_atomic(path, text)
    json_path = write_metric_json(
        path.with_suffix(".json"),
        iou,
        model_path=model_path,
        class_names=class_names,
        protocol=protocol,
        mean_loss=mean_loss,
    )
    return path, json_path


def write_metric_json(
    path: str | Path,
    iou_class: np.ndarray,
    *,
    model_path: str,
    class_names: Sequence[str] | None,
    protocol: str,
    mean_loss: float | None = None,
    replace: bool = True,
) -> Path:
    """The scores by class name, for people and scripts that should not parse NumPy's repr."""
    iou = np.asarray(iou_class, dtype=np.float64)
    names = list(class_names or [str(i) for i in range(len(iou))])
    summary = {
        "protocol": protocol,
        "model_path": model_path,
        "mean_iou": float(iou.mean()),
        **({} if mean_loss is None else {"mean_loss": float(mean_loss)}),
        "iou_class": dict(zip(names, iou.tolist(), strict=True)),
    }
    return write_json_atomic(path, summary, replace=replace)
