"""Shared fixtures: where the read-only reference data lives (../shared beside the clone)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ENET_SHARED", ROOT.parent / "shared"))
REFERENCE = SHARED / "reference"
MINDSPORE = REFERENCE / "mindspore"
DATA = SHARED / "data"


def require(path: Path) -> Path:
    """Skip (with the reason) when the shared reference data is not beside the checkout."""
    if not path.exists():
        pytest.skip(f"reference data not found: {path} (set ENET_SHARED)")
    return path


def run_enet(*args: str) -> subprocess.CompletedProcess:
    """The CLI in a fresh process, as users run it. int8 files run on OpenVINO go through it:
    a process that has run OpenVINO's int8 kernels segfaulted when it later forked."""
    run = [sys.executable, "-m", "enet", *args]
    return subprocess.run(run, capture_output=True, text=True, timeout=600)


def openvino_kernels(compiled, *layers: str) -> list[str]:
    """The kernel OpenVINO picked for each layer of a compiled model of the given types
    (its own names: ``Convolution``, ``Deconvolution`` for transposed convolutions)."""
    return [
        op.get_rt_info()["primitiveType"].astype(str)
        for op in compiled.get_runtime_model().get_ordered_ops()
        if op.get_rt_info()["layerType"].astype(str) in layers
    ]
