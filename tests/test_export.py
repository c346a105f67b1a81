"""ONNX export of both variants: ONNX Runtime reproduces the reference fixtures after import,
metadata round-trips, and a failed parity check leaves no file."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from enet import export as export_module
from enet.convert import convert_checkpoint
from enet.export import ExportError, export_onnx, onnx_metadata

from .conftest import MINDSPORE, REFERENCE, require


def _run(path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def test_seed_variant_export_reproduces_mindspore(tmp_path):
    ckpt = tmp_path / "seed.pt"
    convert_checkpoint(require(MINDSPORE / "mindspore_enet.ckpt"), ckpt, "mindspore")
    report = export_onnx(ckpt, tmp_path / "seed.onnx", size=(128, 64))
    assert report["argmax_agreement"] == 1.0 and report["max_abs_diff"] < 1e-4
    io = np.load(MINDSPORE / "mindspore_enet_io.npz")
    np.testing.assert_allclose(_run(tmp_path / "seed.onnx", io["input"]), io["logits"], atol=1e-4)
    meta = onnx_metadata(tmp_path / "seed.onnx")
    assert meta["enet.variant"] == "seed" and meta["enet.input_size"] == [128, 64]
    assert meta["enet.classes"]["names"][0] == "road" and meta["enet.classes"]["void"] == 19


def test_max_unpool_variant_exports_with_dynamic_batch(tmp_path):
    ckpt = tmp_path / "pt.pt"
    convert_checkpoint(require(REFERENCE / "pytorch_enet_checkpoint.pth"), ckpt, "pytorch-enet")
    export_onnx(ckpt, tmp_path / "pt.onnx", size=(128, 64), dynamic_batch=True)
    io = torch.load(REFERENCE / "pytorch_enet_io.pt", weights_only=True)
    x = io["input"].numpy()
    got = _run(tmp_path / "pt.onnx", np.concatenate([x, x]))
    assert got.shape == (2, 20, 64, 128)
    ref = io["logits"].numpy()
    assert (got[0].argmax(0) == ref[0].argmax(0)).mean() >= 0.9999
    assert np.quantile(np.abs(got[1] - ref[0]), 0.999) < 1e-5


def test_failed_parity_writes_nothing(tmp_path, monkeypatch):
    ckpt = tmp_path / "seed.pt"
    convert_checkpoint(require(MINDSPORE / "mindspore_enet.ckpt"), ckpt, "mindspore")
    bad = {"max_abs_diff": 3.0, "p999_abs_diff": 2.0, "argmax_agreement": 0.5}
    monkeypatch.setattr(export_module, "_parity", lambda *a: bad)
    with pytest.raises(ExportError, match="nothing written"):
        export_onnx(ckpt, tmp_path / "x.onnx", size=(128, 64))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed.pt"]
    with pytest.raises(ExportError, match="divisible by 8"):
        export_onnx(ckpt, tmp_path / "x.onnx", size=(130, 64))
