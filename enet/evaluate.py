"""``enet eval``: the seed's protocol on one checkpoint or on every checkpoint of a run.

Seed protocol (SPEC 5): inputs resized to the training size, labels by nearest with void as
its own class, argmax over all outputs, erfnet's iouEval (absent class = 0), mIoU over the
non-void classes, mean_loss = plain mean of the per-batch weighted CEs with the stage's
weights. Results go to ``<checkpoint>.metric.txt`` (the seed's format) and ``.metric.json``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from .checkpoint import EvaluationFiles, model_from_checkpoint, read_checkpoint
from .data import cityscapes
from .data.cityscapes import frame_key
from .data.classes import ClassSet, check_same_classes
from .data.dataset import PreparedDataset, open_dataset
from .data.source import check_label_values
from .engine import evaluate_model, init_runtime, stage_weights
from .errors import DataError, OutputError, UsageError
from .fileio import check_not_input, clear_stale_temps, write_png_atomic
from .folders import check_not_in_use
from .images import read_label, read_rgb
from .losses import SEED_DECODER_WEIGHTS, SEED_ENCODER_WEIGHTS
from .metrics import write_seed_metrics
from .transforms import eval_transform, model_input
from .visualize import colorize, legend, overlay, plot_confusion

__all__ = ["evaluate_checkpoint", "evaluate_cityscapes", "evaluate_path", "metric_path"]


def metric_path(checkpoint: Path) -> Path:
    """``X.pt`` -> ``X.metric.txt`` (the seed writes ``<ckpt>.metric.txt``)."""
    return EvaluationFiles.of(checkpoint).metric_txt


def _weights(dataset, encoder_only: bool, classes: ClassSet) -> torch.Tensor:
    """The stage's class weights for mean_loss: the prepared set's, else the seed's tables for
    Cityscapes classes, else uniform."""
    table = dataset.manifest.get("weights", {}) if isinstance(dataset, PreparedDataset) else {}
    if not table and classes.name == "cityscapes":
        table = {"seed_encoder": SEED_ENCODER_WEIGHTS, "seed_decoder": SEED_DECODER_WEIGHTS}
    table = {k: list(v) for k, v in table.items() if isinstance(v, (list, tuple))}
    return stage_weights(
        {"weights": table}, "auto" if table else "uniform", 1 if encoder_only else 3, classes
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
        write_png_atomic(folder / f"{key}_sheet.png", sheet)


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str | Path,
    split: str = "val",
    batch_size: int = 6,
    device: str = "auto",
    workers: int = 2,
    save_images: int = 0,
    *,
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
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    results = []
    for ckpt in todo[rank::world]:
        results.append(evaluate_checkpoint(ckpt, data, **kwargs))
        print(f"{ckpt}: mean_iou {results[-1]['mean_iou']:.4f} -> {metric_path(ckpt)}")
    if not todo:
        print(f"{path}: every checkpoint already has a metrics file")
    return results


# --- the official Cityscapes protocol --------------------------------------------------------


def class_to_label_id(classes: ClassSet) -> np.ndarray:
    """Output channel -> Cityscapes label id, by class name (void/unlabeled -> 0)."""
    from .data.cityscapes import LABELS

    by_name = {lb.name: lb.id for lb in LABELS if lb.id >= 0}
    lut = np.zeros(256, dtype=np.uint8)
    for i, name in enumerate(classes.names):
        if i != classes.void and name not in by_name:
            raise UsageError(
                f"class {name!r} is not a Cityscapes label: Cityscapes label ids (--protocol "
                "cityscapes, --label-ids) need a model trained on Cityscapes classes"
            )
        lut[i] = by_name.get(name, 0) if i != classes.void else 0
    return lut


def _ground_truth(root: Path, split: str) -> list[Path]:
    files = sorted((Path(root) / "gtFine" / split).glob("*/*_gtFine_labelIds.png"))
    if not files:
        raise UsageError(f"{root}: no gtFine/{split}/<city>/*_gtFine_labelIds.png found")
    return files


def _add_to(evaluator, pred_ids: np.ndarray, gt_file: Path, pred_file: Path | None = None) -> None:
    """One frame into the official evaluator; any problem names the file it comes from."""
    gt = read_label(gt_file)
    check_label_values(gt, cityscapes, gt_file)
    inst_file = Path(str(gt_file).replace("_labelIds.png", "_instanceIds.png"))
    inst = read_label(inst_file) if inst_file.is_file() else None
    where = pred_file or gt_file
    if pred_ids.shape != gt.shape:
        raise DataError(
            f"{where}: prediction is {pred_ids.shape[1]}x{pred_ids.shape[0]}, its ground "
            f"truth {gt_file.name} {gt.shape[1]}x{gt.shape[0]} (predict at full resolution)"
        )
    if inst is not None and inst.shape != gt.shape:
        raise DataError(f"{inst_file}: not the size of {gt_file.name}")
    evaluator.add(pred_ids, gt, inst)


#: Label ids no Cityscapes model predicts (void and ignored classes but 0), all below 19: a
#: map whose values stay below 19 and include one of them holds trainIds.
_NEVER_PREDICTED = {lb.id for lb in cityscapes.LABELS if lb.ignore_in_eval and 0 < lb.id < 19}


def _check_prediction(ids: np.ndarray, path: Path) -> None:
    """Refuse a prediction that is not a map of label ids: values past the table, or trainIds
    (0-18, 255), which would score near zero without a word."""
    values = np.unique(ids)
    outside = [int(v) for v in values if int(v) not in cityscapes.LABEL_VALUES]
    ids_never_predicted = set(values.tolist()) & _NEVER_PREDICTED
    if outside == [255] or (values[values != 255].max() <= 18 and ids_never_predicted):
        raise DataError(
            f"{path}: looks like trainIds (0-18, 255), not the labelIds the benchmark "
            "scores (map them with cityscapesscripts' trainId -> id table, or write them "
            "with enet infer --label-ids)"
        )
    if outside:
        raise DataError(
            f"{path}: values {outside[:6]} are not Cityscapes label ids (0-33) (is it a "
            "label-id prediction?)"
        )


def evaluate_cityscapes(
    root: str | Path,
    split: str = "val",
    predictions: str | Path | None = None,
    checkpoint: str | Path | None = None,
    save_predictions: str | Path | None = None,
    device: str = "auto",
    *,
    overwrite: bool = False,
) -> dict:
    """Official protocol on a Cityscapes tree, from ready-made labelId PNGs (``predictions``,
    matched as the benchmark does: ``<city>_<seq>_<frame>*.png`` anywhere below the folder) or
    from a model (``checkpoint``: logits upsampled bilinearly to full resolution, argmax,
    channel -> label id; ``save_predictions`` writes them in the submission naming)."""
    from .cityscapes_eval import CityscapesEvaluator

    gts = _ground_truth(Path(root), split)
    evaluator = CityscapesEvaluator()
    if predictions is not None:
        found: dict[str, list[Path]] = {}
        for p in Path(predictions).rglob("*.png"):
            found.setdefault(frame_key(p.name), []).append(p)
        keys = [frame_key(g.name) for g in gts]
        missing = [k for k in keys if k not in found]
        double = [k for k in keys if len(found.get(k, [])) > 1]
        if missing or double:
            raise UsageError(
                f"{predictions}: {len(missing)} ground-truth frames without a "
                f"prediction (e.g. {missing[:3]}), {len(double)} with several "
                f"(e.g. {double[:3]})"
            )
        for gt_file, key in zip(gts, keys, strict=True):
            pred_file = found[key][0]
            pred = read_label(pred_file)
            _check_prediction(pred, pred_file)
            _add_to(evaluator, pred, gt_file, pred_file)
        return evaluator.results()

    if checkpoint is None:
        raise UsageError("--protocol cityscapes needs a checkpoint or --predictions DIR")
    ckpt = read_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt, checkpoint)
    if model.encoder_only:
        raise UsageError(f"{checkpoint}: the official protocol needs a full ENet, not an encoder")
    lut = class_to_label_id(model.classes)
    w, h = tuple(ckpt.get("config", {}).get("size", ()) or (1024, 512))
    rt = init_runtime(device)
    model.to(rt.device).eval()
    out_dir = Path(save_predictions) if save_predictions else None
    if out_dir is not None:
        check_not_input(out_dir, [p for p in (root, checkpoint) if p is not None])
    if out_dir is not None and not overwrite:
        for gt_file in gts:
            name = out_dir / gt_file.parent.name / f"{frame_key(gt_file.name)}_leftImg8bit.png"
            if name.exists():
                raise OutputError(
                    f"{name}: already exists (pass --overwrite to replace the predictions in "
                    f"{out_dir}, or choose another folder)"
                )
    for gt_file in gts:
        key = frame_key(gt_file.name)
        city = gt_file.parent.name
        image_file = Path(root) / "leftImg8bit" / split / city / f"{key}_leftImg8bit.png"
        full = read_rgb(image_file)
        x = torch.from_numpy(model_input(full, (w, h))).to(rt.device)
        with torch.inference_mode():
            logits = model(x)
            logits = torch.nn.functional.interpolate(
                logits, size=full.shape[:2], mode="bilinear", align_corners=False
            )
            pred = lut[logits.argmax(1)[0].cpu().numpy().astype(np.uint8)]
        _add_to(evaluator, pred, gt_file)
        if out_dir is not None:
            name = out_dir / city / f"{key}_leftImg8bit.png"
            write_png_atomic(name, pred, replace=overwrite)
    return evaluator.results()
