"""``enet eval``, the seed's protocol, on one checkpoint or on every checkpoint of a run.

Inputs resized to the training size, labels by nearest with void as its own class, argmax
over all outputs, erfnet's iouEval (absent class = 0), mIoU over the non-void classes,
mean_loss the plain mean of the per-batch weighted CEs with the stage's weights (SPEC 5).
Results go to ``<checkpoint>.metric.txt`` (the seed's format) and ``.metric.json``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from ..checkpoint import EvaluationFiles, model_from_checkpoint, read_checkpoint
from ..data.classes import ClassSet, check_same_classes
from ..data.dataset import PreparedDataset, open_dataset
from ..data.transforms import eval_transform
from ..errors import OutputError, UsageError
from ..fileio import clear_stale_temps, write_bytes_atomic
from ..folders import check_not_in_use
from ..images import png_bytes
from ..losses import (
    SEED_DECODER_WEIGHTS,
    SEED_ENCODER_WEIGHTS,
    class_weights,
    weighted_cross_entropy,
)
from ..metrics import ConfusionMatrix, write_seed_metrics
from ..runtime import autocast, batch_to_input, init_runtime, torchrun_ranks
from ..visualize import colorize, legend, overlay, plot_confusion

__all__ = ["evaluate_checkpoint", "evaluate_model", "evaluate_path", "metric_path"]


def metric_path(checkpoint: Path) -> Path:
    """``X.pt`` -> ``X.metric.txt`` (the seed writes ``<ckpt>.metric.txt``)."""
    return EvaluationFiles.of(checkpoint).metric_txt


@torch.inference_mode()
def evaluate_model(
    model: nn.Module,
    loader: DataLoader,
    weight: torch.Tensor,
    classes: ClassSet,
    device: torch.device,
    *,
    amp: str = "off",
    channels_last: bool = False,
) -> dict:
    """The seed's protocol on whatever the loader yields (training validates with it too):
    mean IoU, per-class IoU, mean loss and the confusion matrix."""
    model.eval()
    cm = ConfusionMatrix(classes.num_classes, classes.void, device)
    losses = []
    for images, labels in loader:
        x = batch_to_input(images, device, channels_last=channels_last)
        y = labels.to(device)
        with autocast(device, amp):
            logits = model(x)
        losses.append(weighted_cross_entropy(logits, y, weight.to(device)).item())
        cm.update(logits.argmax(1), y)
    iou = cm.iou()
    return {
        "mean_iou": float(iou.mean()),
        "iou_class": iou.tolist(),
        "mean_loss": float(np.mean(losses)),
        "confusion": cm.mat.cpu(),
    }


def _weights(dataset, encoder_only: bool, classes: ClassSet) -> torch.Tensor:
    """The stage's class weights for mean_loss: the prepared set's, else the seed's tables for
    Cityscapes classes, else uniform."""
    table = dataset.manifest.get("weights", {}) if isinstance(dataset, PreparedDataset) else {}
    if not table and classes.name == "cityscapes":
        table = {"seed_encoder": SEED_ENCODER_WEIGHTS, "seed_decoder": SEED_DECODER_WEIGHTS}
    return class_weights(
        table,
        "auto" if table else "uniform",
        stage=1 if encoder_only else 3,
        num_classes=classes.num_classes,
        void=classes.void,
    )


def _save_pictures(model, dataset, classes: ClassSet, folder: Path, count: int, device) -> None:
    """Colourised prediction, ground truth and overlay for the first ``count`` samples."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(min(count, len(dataset))):
        image, label = dataset[i]
        with torch.inference_mode():
            pred = model(image[None].to(device).float().div(255)).argmax(1)[0].cpu().numpy()
        rgb = image.permute(1, 2, 0).numpy()
        pred_rgb = colorize(pred, classes.palette)
        if pred.shape != rgb.shape[:2]:  # encoder checkpoints predict at 1/8
            pred_rgb = np.asarray(Image.fromarray(pred_rgb).resize(rgb.shape[1::-1], Image.NEAREST))
        truth = colorize(label.numpy(), classes.palette)
        if truth.shape[:2] != rgb.shape[:2]:
            truth = np.asarray(Image.fromarray(truth).resize(rgb.shape[1::-1], Image.NEAREST))
        sheet = np.concatenate([rgb, overlay(rgb, pred_rgb), pred_rgb, truth], axis=1)
        sheet = np.concatenate([sheet, legend(classes.names, classes.palette, sheet.shape[1])])
        key = dataset.keys[i]
        write_bytes_atomic(folder / f"{key}_sheet.png", png_bytes(sheet))


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str | Path,
    *,
    split: str = "val",
    batch_size: int = 6,
    device: str = "auto",
    workers: int = 2,
    save_images: int = 0,
    overwrite: bool = False,
) -> dict:
    """Evaluate one enet checkpoint; writes ``<checkpoint>.metric.txt`` / ``.metric.json``
    and ``.confusion.png`` beside it, replacing earlier ones only with ``overwrite``."""
    checkpoint = Path(checkpoint)
    folder = checkpoint.parent
    check_not_in_use(folder.parent if folder.name == "checkpoints" else folder, "eval")
    files = EvaluationFiles.of(checkpoint)
    for path in files.all() if save_images else files.all()[:-1]:
        if path.exists() and not overwrite:
            raise OutputError(
                f"{path}: already exists: {checkpoint} was evaluated before (pass --overwrite "
                "to evaluate it again)"
            )
    clear_stale_temps(checkpoint.parent, recursive=False)
    ckpt = read_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt, checkpoint)
    classes: ClassSet = model.classes
    size = tuple(ckpt.get("config", {}).get("size", ()) or ())
    dataset = open_dataset(data, split)
    if not size:
        size = getattr(dataset, "size", None) or (1024, 512)
    check_same_classes(classes, dataset.classes, checkpoint, data)
    dataset.transform = eval_transform(size, model.encoder_only)
    rt = init_runtime(device)
    model.to(rt.device)
    loader = DataLoader(dataset, batch_size, shuffle=False, num_workers=workers)
    result = evaluate_model(
        model, loader, _weights(dataset, model.encoder_only, classes), classes, rt.device
    )
    names = [n for i, n in enumerate(classes.names) if i != classes.void]
    text, json_path = write_seed_metrics(
        files.metric_txt,
        str(checkpoint),
        np.array(result["iou_class"]),
        result["mean_loss"],
        names,
    )
    heatmap = files.confusion_png
    plot_confusion(result["confusion"].numpy(), classes.names, heatmap, f"{checkpoint.name}")
    if save_images:
        _save_pictures(model, dataset, classes, files.pictures, save_images, rt.device)
    result.update(
        metric_file=str(text),
        json_file=str(json_path),
        class_names=names,
        confusion_png=str(heatmap),
    )
    return result


def _checkpoints_in(run: Path) -> list[Path]:
    found = []
    for folder in (run, run / "checkpoints"):
        found += [p for p in sorted(folder.glob("*.pt")) if p.name != "last.pt"]
    return found


def evaluate_path(path: str | Path, data: str | Path, **kwargs) -> list[dict]:
    """One checkpoint, or every checkpoint of a run folder without a metrics file yet.

    Under torchrun the run's checkpoints are split across ranks.
    """
    path = Path(path)
    if path.is_file():
        return [evaluate_checkpoint(path, data, **kwargs)]
    if not path.is_dir():
        raise UsageError(f"{path}: no such checkpoint or run folder")
    check_not_in_use(path, "eval")
    found = _checkpoints_in(path)
    if not found:
        raise UsageError(
            f"{path}: no checkpoints (*.pt) in it or in its checkpoints/ folder (give a "
            "checkpoint file or a run folder of enet train)"
        )
    overwrite = kwargs.get("overwrite", False)
    todo = [p for p in found if overwrite or not metric_path(p).exists()]
    rank, world, _ = torchrun_ranks()
    results = []
    for ckpt in todo[rank::world]:
        results.append(evaluate_checkpoint(ckpt, data, **kwargs))
        print(f"{ckpt}: mean_iou {results[-1]['mean_iou']:.4f} -> {metric_path(ckpt)}")
    if not todo:
        print(f"{path}: every checkpoint already has a metrics file")
    return results
