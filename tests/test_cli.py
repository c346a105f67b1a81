"""The command line end to end: help, info and the demo the README's quick start runs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from enet.checkpoint import save_checkpoint
from enet.cli import main
from enet.data.classes import class_set
from enet.model import ENet

from .conftest import run_enet


@pytest.mark.subprocess
def test_module_entry_point_prints_help():
    result = subprocess.run(
        [sys.executable, "-m", "enet", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("convert", "info", "demo"):
        assert command in result.stdout


def test_info_describes_a_checkpoint(tmp_path, capsys):
    path = save_checkpoint(
        tmp_path / "m.pt", ENet(12, "pytorch-enet"), class_set("camvid"), {"note": "test"}
    )
    assert main(["info", str(path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["variant"] == "pytorch-enet" and info["num_classes"] == 12
    assert info["class_names"][-1] == "unlabeled" and info["void"] == 11
    assert info["provenance"] == {"note": "test"}


def test_info_on_a_missing_file_is_one_line(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nope.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"enet: error: {tmp_path / 'nope.pt'}: no such checkpoint file (bundled models: camvid)"
    ]


def test_demo_pipeline_runs_end_to_end(tmp_path):
    from enet.demo import run_demo

    tiny = {
        "size": (64, 32),
        "train_images": 8,
        "val_images": 4,
        "epochs": (1, 1, 2),
        "batch_size": 4,
        "compile": False,  # compiling takes minutes; tests/test_engine.py covers the switch
    }
    summary = run_demo(tmp_path, tiny, check=False)
    metric = Path(summary["metrics"]).read_text().splitlines()
    assert metric[0].startswith("model path ") and metric[1].startswith("mean_iou ")
    assert metric[2].startswith("mean_loss ") and metric[3].startswith("iou_class [")
    assert float(metric[1].split()[1]) == pytest.approx(summary["mean_iou"])
    assert Path(summary["model"]).is_file() and Path(summary["curves"]).is_file()
    assert len(list(Path(summary["predictions"]).glob("*_sheet.png"))) == 4
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["mean_iou"] == summary["mean_iou"]
    assert saved["passed"] == (saved["mean_iou"] >= saved["target"])
    assert saved["onnx_argmax_agreement"] >= 0.9999
    assert len(list((tmp_path / "inference" / "synthcity").glob("*_pred.png"))) == 4


@pytest.mark.slow
@pytest.mark.subprocess
def test_demo_reaches_its_target(tmp_path):
    """The README's first command as users run it (the install before it aside): at least
    0.60 mIoU on the synthetic val split, within 10 minutes of wall time."""
    from enet.demo import TARGET_MIOU

    start = time.perf_counter()
    done = run_enet("demo", "--out", str(tmp_path / "demo"), timeout=1200)
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["mean_iou"] >= TARGET_MIOU and seconds < 600, (summary, seconds)
