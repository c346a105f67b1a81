"""Seed-protocol metric: exact values on hand-made cases, the metrics file, and `enet eval`."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from enet.metrics import ConfusionMatrix, iou_from_confusion, write_seed_metrics


def _iou(pred, target, num_classes=4, void=3):
    cm = ConfusionMatrix(num_classes, void)
    cm.update(torch.tensor(pred), torch.tensor(target))
    return cm.iou()


def test_hand_made_case():
    # classes 0..2 scored, 3 is void.
    target = [0, 0, 0, 1, 1, 2, 3, 3]
    pred = [0, 0, 1, 1, 3, 0, 0, 2]
    iou = _iou(pred, target)
    # class 0: TP 2, FP 1 (pixel 5; pixel 6 has void gt: not counted), FN 1 -> 2/4
    # class 1: TP 1, FP 1, FN 1 (predicted void counts as a miss) -> 1/3
    # class 2: TP 0, FP 0 (void gt), FN 1 -> 0
    np.testing.assert_allclose(iou, [0.5, 1 / 3, 0.0])
    assert iou.mean() == pytest.approx((0.5 + 1 / 3) / 3)


def test_absent_class_scores_zero_and_all_void_scores_nothing():
    iou = _iou([0, 0, 1], [0, 0, 1])
    np.testing.assert_allclose(iou, [1.0, 1.0, 0.0])  # class 2 absent: 0, not NaN (erfnet)
    cm = ConfusionMatrix(4, 3)
    cm.update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    before = cm.iou()
    cm.update(torch.tensor([0, 1, 2]), torch.tensor([3, 3, 3]))  # an all-ignore image
    np.testing.assert_array_equal(cm.iou(), before)  # changes nothing
    np.testing.assert_allclose(before, [1.0, 1.0, 0.0])


def test_accumulates_over_batches_like_one_pass():
    rng = np.random.default_rng(0)
    pred, target = rng.integers(0, 20, (2, 6, 32, 64))
    whole = ConfusionMatrix(20, 19)
    whole.update(torch.tensor(pred), torch.tensor(target))
    parts = ConfusionMatrix(20, 19)
    for i in range(6):
        parts.update(torch.tensor(pred[i]), torch.tensor(target[i]))
    assert torch.equal(whole.mat, parts.mat)
    # erfnet's per-class loop formulation on the same data
    for c in range(19):
        tp = np.sum((pred == c) & (target == c))
        fp = np.sum((pred == c) & (target != c) & (target != 19))
        fn = np.sum((pred != c) & (target == c))
        assert whole.iou()[c] == pytest.approx(tp / (tp + fp + fn + 1e-15))


def test_seed_metrics_file_round_trip(tmp_path):
    iou = np.linspace(0.1, 0.9, 19)
    txt, js = write_seed_metrics(
        tmp_path / "ENet-100_496.metric.txt",
        "./ENet-100_496.ckpt",
        iou,
        0.3161865407142856,
        [f"c{i}" for i in range(19)],
    )
    text = txt.read_text()
    lines = text.splitlines()
    assert lines[0] == "model path ./ENet-100_496.ckpt"
    assert float(lines[1].split()[1]) == pytest.approx(iou.mean())
    assert lines[2] == "mean_loss 0.3161865407142856"
    values = re.search(r"iou_class \[(.*)\]", text, re.S).group(1).split()
    np.testing.assert_allclose([float(v) for v in values], iou, atol=1e-8)
    assert json.loads(js.read_text())["iou_class"]["c18"] == pytest.approx(0.9)
    np.testing.assert_allclose(iou_from_confusion(np.eye(3) * 5, None), [1.0, 1.0, 1.0])
