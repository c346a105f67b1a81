"""The official Cityscapes pixel-level protocol (cityscapesScripts
``evalPixelLevelSemanticLabeling``), reimplemented with one bincount per image.

Predictions and ground truth are full-resolution *label id* maps (not trainIds). The
confusion matrix counts every pixel; a class's false positives skip ground-truth pixels of
ignored labels; a class with a zero denominator is NaN and left out of the averages, unlike
the seed's metric, where an absent class scores 0 (SPEC 5, 8.13). Instance-level iIoU
weights each ground-truth instance's TP/FN by the class's average instance size over its own.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from ..data.cityscapes import LABELS

__all__ = ["AVERAGE_INSTANCE_SIZE", "CityscapesEvaluator"]

# cityscapesScripts' args.avgClassSize: mean instance size per class over the train set.
AVERAGE_INSTANCE_SIZE = {
    "bicycle": 4672.3249222261,
    "caravan": 36771.8241758242,
    "motorcycle": 6298.7200839748,
    "rider": 3930.4788056518,
    "bus": 35732.1511111111,
    "train": 67583.7075812274,
    "car": 12794.0202738185,
    "person": 3462.4756337644,
    "truck": 27855.1264367816,
    "trailer": 16926.9763313609,
}

_IDS = [lb for lb in LABELS if lb.id >= 0]
_N = max(lb.id for lb in _IDS) + 1  # 34
_BY_ID = {lb.id: lb for lb in _IDS}
_EVALUATED = [lb.id for lb in _IDS if not lb.ignore_in_eval]
_CATEGORIES: dict[str, list[int]] = defaultdict(list)
for _lb in _IDS:
    _CATEGORIES[_lb.category].append(_lb.id)
# Categories whose every (non-negative) label has instances get an instance-level score.
_INSTANCE_CATEGORIES = {
    cat: ids for cat, ids in _CATEGORIES.items() if all(_BY_ID[i].has_instances for i in ids)
}


def _nanmean(values) -> float:
    valid = [v for v in values if not math.isnan(v)]
    return float(np.mean(valid)) if valid else float("nan")


class CityscapesEvaluator:
    """Accumulate images with :meth:`add`, then read :meth:`results`."""

    def __init__(self) -> None:
        self.confusion = np.zeros((_N, _N), dtype=np.int64)
        stats = ("tp", "fn", "tp_weighted", "fn_weighted")
        self.instances = {
            lb.name: dict.fromkeys(stats, 0.0)
            for lb in _IDS
            if lb.has_instances and not lb.ignore_in_eval
        }
        self.category_instances = {c: dict.fromkeys(stats, 0.0) for c in _INSTANCE_CATEGORIES}

    def add(
        self, prediction: np.ndarray, ground_truth: np.ndarray, instances: np.ndarray | None = None
    ) -> None:
        """One image: H x W label ids (prediction and gtFine labelIds), optional instanceIds."""
        pred = np.asarray(prediction, dtype=np.int64)
        gt = np.asarray(ground_truth, dtype=np.int64)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
        if pred.min() < 0 or pred.max() >= _N or gt.min() < 0 or gt.max() >= _N:
            raise ValueError(f"label ids must lie in 0..{_N - 1}")
        self.confusion += np.bincount((gt * _N + pred).ravel(), minlength=_N * _N).reshape(_N, _N)
        if instances is None:
            return
        inst = np.asarray(instances, dtype=np.int64)
        category_masks = {c: np.isin(pred, ids) for c, ids in _INSTANCE_CATEGORIES.items()}
        for inst_id in np.unique(inst[inst > 1000]):
            label = _BY_ID[int(inst_id // 1000)]
            if label.ignore_in_eval:
                continue
            mask = inst == inst_id
            size = int(mask.sum())
            tp = int((pred[mask] == label.id).sum())
            weight = AVERAGE_INSTANCE_SIZE[label.name] / size
            s = self.instances[label.name]
            s["tp"] += tp
            s["fn"] += size - tp
            s["tp_weighted"] += tp * weight
            s["fn_weighted"] += (size - tp) * weight
            if label.category in category_masks:
                cat_tp = int((mask & category_masks[label.category]).sum())
                c = self.category_instances[label.category]
                c["tp"] += cat_tp
                c["fn"] += size - cat_tp
                c["tp_weighted"] += cat_tp * weight
                c["fn_weighted"] += (size - cat_tp) * weight

    def _fp(self, columns: list[int], skip_rows: set[int]) -> int:
        rows = [i for i in _EVALUATED if i not in skip_rows]
        return int(self.confusion[np.ix_(rows, columns)].sum())

    def class_iou(self, label_id: int) -> float:
        if _BY_ID[label_id].ignore_in_eval:
            return float("nan")
        tp = int(self.confusion[label_id, label_id])
        fn = int(self.confusion[label_id].sum()) - tp
        denom = tp + fn + self._fp([label_id], {label_id})
        return tp / denom if denom else float("nan")

    def class_iiou(self, label_id: int) -> float:
        label = _BY_ID[label_id]
        if label.ignore_in_eval or label.name not in self.instances:
            return float("nan")
        s = self.instances[label.name]
        denom = s["tp_weighted"] + s["fn_weighted"] + self._fp([label_id], {label_id})
        return s["tp_weighted"] / denom if denom else float("nan")

    def category_iou(self, category: str) -> float:
        ids = [i for i in _CATEGORIES[category] if not _BY_ID[i].ignore_in_eval]
        if not ids:
            return float("nan")
        tp = int(self.confusion[np.ix_(ids, ids)].sum())
        fn = int(self.confusion[ids].sum()) - tp
        denom = tp + fn + self._fp(ids, set(_CATEGORIES[category]))
        return tp / denom if denom else float("nan")

    def category_iiou(self, category: str) -> float:
        if category not in self.category_instances:
            return float("nan")
        s = self.category_instances[category]
        ids = _INSTANCE_CATEGORIES[category]
        denom = s["tp_weighted"] + s["fn_weighted"] + self._fp(ids, set(_CATEGORIES[category]))
        return s["tp_weighted"] / denom if denom else float("nan")

    def results(self) -> dict:
        """Scores as fractions; NaN where the benchmark has no score (JSON: null)."""
        iou = {_BY_ID[i].name: self.class_iou(i) for i in _EVALUATED}
        iiou = {
            _BY_ID[i].name: self.class_iiou(i)
            for i in _EVALUATED
            if _BY_ID[i].name in self.instances
        }
        cat = {c: self.category_iou(c) for c in _CATEGORIES}
        cat_i = {c: self.category_iiou(c) for c in _INSTANCE_CATEGORIES}
        return {
            "protocol": "cityscapes",
            "mean_iou": _nanmean(iou.values()),
            "iou_class": iou,
            "mean_iiou": _nanmean(iiou.values()),
            "iiou_class": iiou,
            "mean_category_iou": _nanmean(cat.values()),
            "category_iou": cat,
            "mean_category_iiou": _nanmean(cat_i.values()),
            "category_iiou": cat_i,
        }
