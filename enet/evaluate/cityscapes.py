"""``enet eval --protocol cityscapes``: the official benchmark's pixel-level scores from a
checkpoint or from ready-made predictions, on a Cityscapes tree at full resolution.

Predictions are label-id maps (not trainIds), matched to the ground truth as the benchmark
matches them (``<city>_<seq>_<frame>*.png`` anywhere below the folder); a model's logits are
upsampled bilinearly to 2048x1024 and mapped from its channels to label ids by name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..checkpoint import model_from_checkpoint, read_checkpoint
from ..data import cityscapes
from ..data.cityscapes import frame_key, label_id_table
from ..data.source import check_label_values
from ..errors import DataError, OutputError, UsageError
from ..fileio import check_not_input, write_bytes_atomic
from ..images import png_bytes, read_label, read_rgb
from ..runtime import image_to_input, resolve_device
from .official import CityscapesEvaluator

__all__ = ["evaluate_cityscapes"]


def _ground_truth(root: Path, split: str) -> list[Path]:
    files = sorted((Path(root) / "gtFine" / split).glob("*/*_gtFine_labelIds.png"))
    if not files:
        raise UsageError(f"{root}: no gtFine/{split}/<city>/*_gtFine_labelIds.png found")
    return files


def _add_to(evaluator, pred_ids: np.ndarray, gt_file: Path, pred_file: Path | None = None) -> None:
    """One frame into the official evaluator; any problem names the file it comes from."""
    gt = read_label(gt_file)
    check_label_values(gt, gt_file, values=cityscapes.LABEL_VALUES, kind=cityscapes.LABEL_KIND)
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
    *,
    split: str = "val",
    predictions: str | Path | None = None,
    checkpoint: str | Path | None = None,
    save_predictions: str | Path | None = None,
    device: str = "auto",
    overwrite: bool = False,
) -> dict:
    """Official protocol on a Cityscapes tree, from ready-made labelId PNGs (``predictions``,
    matched as the benchmark does: ``<city>_<seq>_<frame>*.png`` anywhere below the folder) or
    from a model (``checkpoint``: logits upsampled bilinearly to full resolution, argmax,
    channel -> label id; ``save_predictions`` writes them in the submission naming)."""
    gts = _ground_truth(Path(root), split)
    evaluator = CityscapesEvaluator()
    if predictions is not None:
        _score_predictions(evaluator, Path(predictions), gts)
    elif checkpoint is not None:
        out_dir = Path(save_predictions) if save_predictions else None
        if out_dir is not None:
            check_not_input(out_dir, [root, checkpoint])
            _check_free(out_dir, gts, overwrite)
        _score_model(evaluator, Path(checkpoint), Path(root), split, gts, device, out_dir)
    else:
        raise UsageError("--protocol cityscapes needs a checkpoint or --predictions DIR")
    return evaluator.results()


def _score_predictions(evaluator: CityscapesEvaluator, folder: Path, gts: list[Path]) -> None:
    found: dict[str, list[Path]] = {}
    for p in folder.rglob("*.png"):
        found.setdefault(frame_key(p.name), []).append(p)
    keys = [frame_key(g.name) for g in gts]
    missing = [k for k in keys if k not in found]
    double = [k for k in keys if len(found.get(k, [])) > 1]
    if missing or double:
        raise UsageError(
            f"{folder}: {len(missing)} ground-truth frames without a prediction (e.g. "
            f"{missing[:3]}), {len(double)} with several (e.g. {double[:3]})"
        )
    for gt_file, key in zip(gts, keys, strict=True):
        pred_file = found[key][0]
        pred = read_label(pred_file)
        _check_prediction(pred, pred_file)
        _add_to(evaluator, pred, gt_file, pred_file)


def _submission_name(folder: Path, gt_file: Path) -> Path:
    return folder / gt_file.parent.name / f"{frame_key(gt_file.name)}_leftImg8bit.png"


def _check_free(folder: Path, gts: list[Path], overwrite: bool) -> None:
    existing = [p for p in (_submission_name(folder, g) for g in gts) if p.exists()]
    if existing and not overwrite:
        raise OutputError(
            f"{existing[0]}: already exists (pass --overwrite to replace the predictions in "
            f"{folder}, or choose another folder)"
        )


def _score_model(
    evaluator: CityscapesEvaluator,
    checkpoint: Path,
    root: Path,
    split: str,
    gts: list[Path],
    device: str,
    out_dir: Path | None,
) -> None:
    ckpt = read_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt, checkpoint)
    if model.encoder_only:
        raise UsageError(f"{checkpoint}: the official protocol needs a full ENet, not an encoder")
    lut = label_id_table(model.classes)
    w, h = tuple(ckpt.get("config", {}).get("size", ()) or (1024, 512))
    dev = resolve_device(device)
    model.to(dev).eval()
    for gt_file in gts:
        key = frame_key(gt_file.name)
        image_file = root / "leftImg8bit" / split / gt_file.parent.name / f"{key}_leftImg8bit.png"
        full = read_rgb(image_file)
        x = torch.from_numpy(image_to_input(full, (w, h))).to(dev)
        with torch.inference_mode():
            logits = model(x)
            logits = torch.nn.functional.interpolate(
                logits, size=full.shape[:2], mode="bilinear", align_corners=False
            )
            pred = lut[logits.argmax(1)[0].cpu().numpy().astype(np.uint8)]
        _add_to(evaluator, pred, gt_file)
        if out_dir is not None:
            write_bytes_atomic(_submission_name(out_dir, gt_file), png_bytes(pred))
