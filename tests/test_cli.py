"""The command line end to end: help, info and the demo the README's quick start runs."""

from __future__ import annotations

import json
import subprocess
import sys

from enet.checkpoint import save_checkpoint
from enet.cli import main
from enet.data.classes import class_set
from enet.model import ENet


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
    assert err == [f"enet: error: {tmp_path / 'nope.pt'}: no such checkpoint file"]


def test_demo_runs_and_checks_itself(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count(" ok") == 3 and "MISMATCH" not in out
    assert "identical logits: True" in out
    assert (tmp_path / "enet_seed_init.pt").is_file()
