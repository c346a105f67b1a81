"""ONNX export of both variants: ONNX Runtime reproduces the reference fixtures after import,
metadata round-trips, and a failed parity check leaves no file."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from enet import export as export_module
from enet.checkpoint import resolve_checkpoint, save_checkpoint
from enet.convert import convert_checkpoint
from enet.data.classes import class_set
from enet.export import ExportError, export_onnx, onnx_metadata
from enet.infer import load_predictor, run_inference
from enet.model import ENet
from enet.quantize import image_batches

from .conftest import DATA, MINDSPORE, REFERENCE, require


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


def test_dynamic_height_and_width(tmp_path):
    # pytorch-enet: max-unpool's indices and output size follow the input's (the seed
    # variant exports the same way; one variant keeps the suite short)
    for variant in ("pytorch-enet",):
        torch.manual_seed(0)
        model = ENet(12, variant).eval()
        ckpt = save_checkpoint(tmp_path / f"{variant}.pt", model, class_set("camvid"))
        path = tmp_path / f"{variant}.onnx"
        export_onnx(ckpt, path, size=(96, 64), dynamic=True)
        assert onnx_metadata(path)["enet.dynamic"] == "batch, height, width"
        x = torch.rand(2, 3, 48, 136)
        with torch.inference_mode():
            want = model(x).numpy()
        got = _run(path, x.numpy())
        assert got.shape == (2, 12, 48, 136)
        assert (got.argmax(1) == want.argmax(1)).mean() >= 0.9999
    # inference on an odd size runs the dynamic graph at the padded size, no resizing
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)).save(tmp_path / "o.png")
    report = run_inference(
        path, [tmp_path / "o.png"], tmp_path / "out", backend="onnx", progress=False
    )
    assert report.processed == 1
    assert np.asarray(Image.open(tmp_path / "out" / "o_pred.png")).shape == (45, 70)


def test_int8_export_agrees_with_fp32_on_real_frames(tmp_path):
    camvid = require(DATA / "camvid_sample")
    calibration = sorted(camvid.glob("train/*.png")) + sorted(camvid.glob("val/*.png"))
    check = sorted(camvid.glob("test/*.png"))
    ckpt = tmp_path / "camvid.pt"
    ckpt.write_bytes(resolve_checkpoint("camvid").read_bytes())
    out = tmp_path / "camvid.onnx"
    report = export_onnx(ckpt, out, int8_calibration=calibration, int8_check=check)
    assert report["int8_check_images"] == 2 and not report["int8_check_is_calibration"]
    assert report["int8_argmax_agreement"] >= 0.95
    assert report["int8_latency_ms"] > 0 and report["fp32_latency_ms"] > 0
    meta = onnx_metadata(out)
    assert meta["enet.precision"].startswith("int8") and meta["enet.classes"]["name"] == "camvid"
    assert onnx_metadata(tmp_path / "camvid.fp32.onnx")["enet.precision"] == "fp32"
    quantized_ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= quantized_ops
    # inference picks ONNX Runtime for the int8 file, OpenVINO (if there) for fp32
    assert load_predictor(out).name.startswith("onnxruntime")


def test_int8_below_the_agreement_floor_writes_nothing(tmp_path):
    camvid = require(DATA / "camvid_sample")
    ckpt = save_checkpoint(tmp_path / "m.pt", ENet(12).eval(), class_set("camvid"))
    with pytest.raises(ExportError, match="nothing written"):
        export_onnx(
            ckpt,
            tmp_path / "m.onnx",
            size=(64, 48),
            int8_calibration=sorted(camvid.glob("train/*.png")),
            min_agreement=1.01,
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_openvino_backend_matches_onnx_runtime(tmp_path):
    pytest.importorskip("openvino")
    camvid = require(DATA / "camvid_sample")
    ckpt = tmp_path / "camvid.pt"
    ckpt.write_bytes(resolve_checkpoint("camvid").read_bytes())
    export_onnx(ckpt, tmp_path / "camvid.onnx")
    vino = load_predictor(tmp_path / "camvid.onnx", device="cpu")
    assert vino.name.startswith("openvino") and vino.fixed_size == (480, 360)
    ort_predictor = load_predictor(tmp_path / "camvid.onnx", backend="onnx")
    for x in image_batches(sorted(camvid.glob("test/*.png")), (480, 360)):
        same = (vino(x).argmax(1) == ort_predictor(x).argmax(1)).mean()
        assert same >= 0.999
