"""The official protocol must equal cityscapesScripts' evalPixelLevelSemanticLabeling on the
real frames, for predictions built to be perfect, shifted, noisy and missing classes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from enet.evaluate.official import CityscapesEvaluator

from .conftest import DATA, cityscapesscripts_scores, require


def _predictions(gt: np.ndarray, how: str, rng: np.random.Generator) -> np.ndarray:
    if how == "perfect":
        return gt.copy()
    if how == "shifted":
        return np.roll(gt, (7, -11), axis=(0, 1))
    if how == "noisy":
        pred = gt.copy()
        noise = rng.random(gt.shape) < 0.2
        pred[noise] = rng.choice([7, 8, 11, 21, 23, 24, 26, 0], size=int(noise.sum()))
        return pred
    if how == "missing":  # no car, no person, no sign predicted
        pred = gt.copy()
        pred[np.isin(pred, [26, 24, 20])] = 7
        return pred
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["perfect", "shifted", "noisy", "missing"])
def test_equals_cityscapesscripts(tmp_path, how):
    root = require(DATA / "cityscapes_sample")
    gts = sorted(root.glob("gtFine/*/*/*_gtFine_labelIds.png"))
    rng = np.random.default_rng(0)
    ours = CityscapesEvaluator()
    preds = []
    for gt_file in gts:
        gt = np.asarray(Image.open(gt_file))
        inst = np.asarray(Image.open(str(gt_file).replace("labelIds", "instanceIds")))
        pred = _predictions(gt, how, rng).astype(np.uint8)
        path = tmp_path / gt_file.name.replace("_gtFine_labelIds", "_pred")
        Image.fromarray(pred).save(path)
        preds.append(path)
        ours.add(pred, gt, inst)
    theirs = cityscapesscripts_scores(preds, gts)
    mine = ours.results()

    def same(a, b):
        return (math.isnan(a) and math.isnan(b)) or abs(a - b) < 1e-12

    for name, value in theirs["classScores"].items():
        if name in mine["iou_class"]:
            assert same(mine["iou_class"][name], value), name
        else:
            assert math.isnan(value), name
    for name, value in theirs["classInstScores"].items():
        assert same(mine["iiou_class"].get(name, float("nan")), value), name
    for name, value in theirs["categoryScores"].items():
        assert same(mine["category_iou"][name], value), name
    for name, value in theirs["categoryInstScores"].items():
        assert same(mine["category_iiou"].get(name, float("nan")), value), name
    assert same(mine["mean_iou"], theirs["averageScoreClasses"])
    assert same(mine["mean_iiou"], theirs["averageScoreInstClasses"])
    assert same(mine["mean_category_iou"], theirs["averageScoreCategories"])
    if how == "perfect":
        assert mine["mean_iou"] == 1.0
    else:
        assert mine["mean_iou"] < 1.0


def test_absent_classes_are_nan_not_zero():
    ev = CityscapesEvaluator()
    gt = np.full((4, 4), 7)
    gt[0, 0] = 0  # an ignored pixel predicted as car: no false positive for car
    pred = np.full((4, 4), 7)
    pred[0, 0] = 26
    ev.add(pred, gt)
    res = ev.results()
    assert res["iou_class"]["road"] == 1.0
    assert math.isnan(res["iou_class"]["car"]) and res["mean_iou"] == 1.0


def test_model_predictions_round_trip_through_the_submission_folder(seed_checkpoint, tmp_path):
    """A checkpoint scored directly equals its saved submission PNGs scored as a folder."""
    from enet.evaluate.cityscapes import evaluate_cityscapes

    ckpt = seed_checkpoint
    root = require(DATA / "cityscapes_tiny")
    direct = evaluate_cityscapes(
        root, split="val", checkpoint=ckpt, save_predictions=tmp_path / "sub"
    )
    saved = sorted((tmp_path / "sub").rglob("*.png"))
    assert [p.name for p in saved] == ["frankfurt_000000_000294_leftImg8bit.png"]
    pred = np.asarray(Image.open(saved[0]))
    assert pred.shape == (128, 256) and set(np.unique(pred)) <= {0, *range(7, 34)}
    scored = evaluate_cityscapes(root, split="val", predictions=tmp_path / "sub")
    assert json_equal(direct, scored)

    from enet.cli import main

    out = tmp_path / "official.json"
    args = [
        "eval",
        "--protocol",
        "cityscapes",
        "--predictions",
        str(tmp_path / "sub"),
        "--data",
        str(root),
        "--split",
        "val",
        "--json",
        str(out),
    ]
    assert main(args) == 0
    written = __import__("json").loads(out.read_text())
    assert {"mean_iou", "iou_class", "category_iou", "mean_iiou"} <= written.keys()
    assert written["mean_iou"] == pytest.approx(direct["mean_iou"])
    assert written["iou_class"]["road"] == pytest.approx(direct["iou_class"]["road"])


def json_equal(a: dict, b: dict) -> bool:
    import json

    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
