"""ONNX export of both variants: ONNX Runtime reproduces the reference fixtures after import,
metadata round-trips, and a failed parity check leaves no file."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper
from PIL import Image

from enet.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
from enet.data.classes import class_set
from enet.deploy import export as export_module
from enet.deploy.backends import (
    LOGITS,
    OpenVinoPredictor,
    has_openvino,
    load_predictor,
    openvino_computes_bf16,
)
from enet.deploy.export import ExportError, export_onnx
from enet.deploy.infer import run_inference
from enet.deploy.onnx_meta import onnx_metadata, set_onnx_metadata
from enet.deploy.openvino_graph import (
    INT8_CONVOLUTION_KERNELS,
    INT8_KERNELS,
    X86,
    int8_convolution_kernels,
)
from enet.deploy.quantize import TUNED_INT8_SCHEME, image_batches, quantize_int8
from enet.errors import UsageError
from enet.images import read_rgb
from enet.model import ENet
from enet.runtime import image_to_input

from .conftest import DATA, MINDSPORE, REFERENCE, openvino_kernels, require, run_enet


def _run(path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def test_seed_variant_export_reproduces_mindspore(seed_checkpoint, tmp_path):
    report = export_onnx(seed_checkpoint, tmp_path / "seed.onnx", size=(128, 64))
    assert report["argmax_agreement"] == 1.0 and report["max_abs_diff"] < 1e-4
    io = np.load(MINDSPORE / "mindspore_enet_io.npz")
    np.testing.assert_allclose(_run(tmp_path / "seed.onnx", io["input"]), io["logits"], atol=1e-4)
    # each MindSpore op is one ONNX op: bilinear x2 a Resize, the `same` max-pool and
    # transposed conv their ONNX ops with end pads (no crops, no edge copies); the initial
    # block's concat is a sum
    ops = Counter(n.op_type for n in onnx.load(str(tmp_path / "seed.onnx")).graph.node)
    assert ops["Resize"] == 2 and ops["Slice"] == 0 and ops["Concat"] == 0
    meta = onnx_metadata(tmp_path / "seed.onnx")
    assert meta["enet.variant"] == "seed" and meta["enet.input_size"] == [128, 64]
    assert meta["enet.classes"]["names"][0] == "road" and meta["enet.classes"]["void"] == 19


def test_max_unpool_variant_exports_with_dynamic_batch(pytorch_enet_checkpoint, tmp_path):
    export_onnx(pytorch_enet_checkpoint, tmp_path / "pt.onnx", size=(128, 64), dynamic_batch=True)
    io = torch.load(REFERENCE / "pytorch_enet_io.pt", weights_only=True)
    x = io["input"].numpy()
    got = _run(tmp_path / "pt.onnx", np.concatenate([x, x]))
    assert got.shape == (2, 20, 64, 128)
    ref = io["logits"].numpy()
    assert (got[0].argmax(0) == ref[0].argmax(0)).mean() >= 0.9999
    assert np.quantile(np.abs(got[1] - ref[0]), 0.999) < 1e-5


def test_failed_parity_writes_nothing(seed_checkpoint, tmp_path, monkeypatch):
    ckpt = seed_checkpoint
    bad = {"max_abs_diff": 3.0, "p999_abs_diff": 2.0, "argmax_agreement": 0.5}
    monkeypatch.setattr(export_module, "_parity", lambda *a: bad)
    with pytest.raises(ExportError, match="nothing written"):
        export_onnx(ckpt, tmp_path / "x.onnx", size=(128, 64))
    assert list(tmp_path.iterdir()) == []
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


@pytest.mark.subprocess
@pytest.mark.openvino
def test_int8_export_agrees_with_fp32_on_real_frames(tmp_path):
    camvid = require(DATA / "camvid_sample")
    out = tmp_path / "camvid.onnx"
    calib = tmp_path / "calib"
    calib.mkdir()
    for frame in sorted(camvid.glob("train/*.png")) + sorted(camvid.glob("val/*.png")):
        (calib / frame.name).write_bytes(frame.read_bytes())
    done = run_enet("export", "camvid", "--out", str(out), "--int8", "--calib", str(calib),
                 "--check", str(camvid / "test"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    meta = onnx_metadata(out)
    report = meta["enet.int8"]
    assert report["int8_check_images"] == 2 and not report["int8_check_is_calibration"]
    assert report["int8_calibration_images"] == 4
    assert report["int8_argmax_agreement"] >= 0.99
    assert report["int8_latency_ms"] > 0 and report["fp32_latency_ms"] > 0
    # the shipped model was tuned on its int8 rounding: every convolution and its residual
    # stream go int8, on 7-bit weights
    assert report["int8_residual"] == "int8" and report["int8_fp32_convs"] == 0
    assert meta["enet.precision"] == TUNED_INT8_SCHEME.describe()
    assert meta["enet.classes"]["name"] == "camvid"
    assert onnx_metadata(tmp_path / "camvid.fp32.onnx")["enet.precision"] == "fp32"
    graph = onnx.load(str(out)).graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    produced_by = {o: n for n in graph.node for o in n.output}
    # the image is read as its 8-bit pixels (exact: the input is RGB / 255) ...
    (quantize,) = [n for n in graph.node if "input" in n.input]
    assert quantize.op_type == "QuantizeLinear"
    assert constants[quantize.input[1]] == np.float32(1 / 255) and constants[quantize.input[2]] == 0
    # ... and inside the network the convolutions and the residual stream (the blocks' adds,
    # the downsampling pools) read int8 activations; PReLUs are never rounded
    readers_of_int8 = {
        n.op_type
        for n in graph.node
        for name in n.input
        if name in produced_by
        and produced_by[name].op_type == "DequantizeLinear"
        and produced_by[name].input[0] not in constants
        and produced_by[name].input[0] != quantize.output[0]
    }
    assert readers_of_int8 == {"Conv", "ConvTranspose", "Add", "MaxPool"}
    # the shipped weights lie on their 7-bit grid (enet finetune-int8): int8 keeps them
    # exactly, with BatchNorm folded in
    model = load_checkpoint("camvid")
    checked = 0
    for dq in (n for n in graph.node if n.op_type == "DequantizeLinear"):
        if dq.input[0] not in constants or constants[dq.input[0]].ndim != 4:
            continue
        name = dq.input[0].removesuffix("_quantized").removesuffix(".weight")
        if name == "pad":  # the image conv, zero filters added for the pool's 3 channels
            name = "encoder.initial_block.conv"
        conv = model.get_submodule(name)
        axis = 1 if isinstance(conv, torch.nn.ConvTranspose2d) else 0
        folded = conv.weight.detach().numpy()
        if name == "encoder.initial_block.conv":  # its BatchNorm follows the concat: not folded
            folded = np.pad(folded, ((0, 3), (0, 0), (0, 0), (0, 0)))
        parent, _, index = name.rpartition(".")
        after = f"{parent}.{int(index) + 1}" if index.isdigit() else ""
        if after and isinstance(bn := model.get_submodule(after), torch.nn.BatchNorm2d):
            factor = (bn.weight / (bn.running_var + bn.eps).sqrt()).detach().numpy()
            folded = folded * factor.reshape([-1 if d == axis else 1 for d in range(4)])
        scale = constants[dq.input[1]].reshape([-1 if d == axis else 1 for d in range(4)])
        int8 = constants[dq.input[0]].astype(np.float32) * scale
        np.testing.assert_allclose(int8, folded, rtol=0, atol=1e-6 * np.abs(folded).max())
        checked += 1
    assert checked == 89  # ENet's 89 convolutions

    # ONNX Runtime and (where installed) OpenVINO run the same int8 file alike
    backends = ["onnx"] + ["openvino"] * has_openvino()
    preds = {}
    for backend in backends:
        dest = tmp_path / backend
        done = run_enet("infer", str(camvid / "test"), "--model", str(out), "--out", str(dest),
                     "--backend", backend, "--outputs", "pred", "--no-progress")  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert json.loads((dest / "timing.json").read_text())["backend"].startswith(backend)
        preds[backend] = [np.asarray(Image.open(f)) for f in sorted(dest.glob("*_pred.png"))]
    assert len(preds["onnx"]) == 2
    if "openvino" in preds:
        assert report["backend"].startswith("openvino")
        for a, b in zip(preds["onnx"], preds["openvino"], strict=True):
            assert (a == b).mean() >= 0.99


@pytest.mark.openvino
def test_first_scheme_int8_exports_stay_on_onnx_runtime(tmp_path):
    """OpenVINO crashes on int8 files that quantise PRelu slopes (this project's first int8
    scheme): such files must never reach it."""
    pytest.importorskip("openvino")
    out = tmp_path / "m.onnx"
    export_onnx(save_checkpoint(tmp_path / "m.pt", ENet(12).eval(), class_set("camvid")), out)
    proto = onnx.load(str(out))
    for prop in proto.metadata_props:
        if prop.key == "enet.precision":
            prop.value = '"int8 QDQ, per-channel weights"'
    onnx.save(proto, str(out))
    assert load_predictor(out, device="cpu").name.startswith("onnxruntime")
    with pytest.raises(UsageError, match=r"first scheme.*--backend onnx"):
        load_predictor(out, backend="openvino")


@pytest.mark.subprocess
@pytest.mark.openvino
def test_int8_below_the_agreement_floor_writes_nothing(tmp_path):
    camvid = require(DATA / "camvid_sample")
    torch.manual_seed(0)  # an untrained model: int8 rounding flips some of its near ties
    ckpt = save_checkpoint(tmp_path / "m.pt", ENet(12).eval(), class_set("camvid"))
    done = run_enet("export", str(ckpt), "--out", str(tmp_path / "m.onnx"), "--size", "64x48",
                 "--int8", "--calib", str(camvid / "train"), "--min-agreement", "1")  # fmt: skip
    assert done.returncode == 2 and "below 100.0% (use more" in done.stderr
    assert "nothing written" in done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


@pytest.mark.openvino
def test_openvino_backend_matches_onnx_runtime(tmp_path):
    pytest.importorskip("openvino")
    camvid = require(DATA / "camvid_sample")
    ckpt = tmp_path / "camvid.pt"
    ckpt.write_bytes(resolve_checkpoint("camvid").read_bytes())
    export_onnx(ckpt, tmp_path / "camvid.onnx")
    vino = load_predictor(tmp_path / "camvid.onnx", device="cpu")
    assert vino.name.startswith("openvino") and vino.fixed_size == (480, 360)
    ort_predictor = load_predictor(tmp_path / "camvid.onnx", backend="onnx")
    xs = list(image_batches(sorted(camvid.glob("test/*.png")), (480, 360)))
    got = [vino(x) for x in xs]  # each call's logits outlive the next call
    for x, logits in zip(xs, got, strict=True):
        want = ort_predictor(x)
        assert logits.shape == want.shape == (1, 12, 360, 480)  # N x C x H x W, as exported
        np.testing.assert_allclose(logits, want, atol=1e-3)
        assert (logits.argmax(1) == want.argmax(1)).mean() >= 0.999


@pytest.fixture(scope="module")
def dynamic_export(tmp_path_factory):
    """(model, its ``--dynamic`` export at 64x48) for an encoder-only ENet or a full one."""
    made = {}

    def get(encoder_only: bool):
        if encoder_only not in made:
            tmp = tmp_path_factory.mktemp("dynamic")
            model = ENet(12, encoder_only=encoder_only).eval()
            ckpt = save_checkpoint(tmp / "m.pt", model, class_set("camvid"))
            export_onnx(ckpt, tmp / "m.onnx", size=(64, 48), dynamic=True)
            made[encoder_only] = model, tmp / "m.onnx"
        return made[encoder_only]

    return get


@pytest.mark.parametrize("encoder_only", [False, True])
@pytest.mark.openvino
def test_openvino_runs_dynamic_exports_at_any_size(dynamic_export, encoder_only):
    pytest.importorskip("openvino")
    model, path = dynamic_export(encoder_only)
    vino = load_predictor(path, backend="openvino")
    assert vino.fixed_size is None
    stride = 8 if encoder_only else 1
    calls = []
    for n, h, w in [(1, 48, 64), (2, 40, 96)] * 2:  # a shape's second call: its own graph
        x = np.random.default_rng(h).random((n, 3, h, w), dtype=np.float32)
        with torch.inference_mode():
            want = model(torch.from_numpy(x)).numpy()
        calls.append((vino(x), want))
    assert list(vino.shape_requests) == [(LOGITS, (1, 3, 48, 64)), (LOGITS, (2, 3, 40, 96))]
    for (n, h, w), (got, want) in zip([(1, 48, 64), (2, 40, 96)] * 2, calls, strict=True):
        assert got.shape == want.shape == (n, 12, h // stride, w // stride)
        np.testing.assert_allclose(got, want, atol=1e-4)  # each call's logits outlive the next


@pytest.fixture(scope="module")
def dynamic_int8_export(dynamic_export, tmp_path_factory):
    """The full ENet's ``--dynamic`` export quantised: a ``--dynamic`` file quantises
    (symbolic shape inference fails on it, so quantisation runs without it)."""
    camvid = require(DATA / "camvid_sample")
    _, fp32 = dynamic_export(False)
    out = tmp_path_factory.mktemp("dynamic-int8") / "m.int8.onnx"
    scheme = TUNED_INT8_SCHEME  # 7-bit weights: OpenVINO's AVX2 kernels multiply them exactly
    quantize_int8(fp32, out, sorted(camvid.glob("train/*.png")), (64, 48), scheme)
    set_onnx_metadata(out, onnx_metadata(fp32) | {"enet.precision": scheme.describe()})
    return out


@pytest.mark.openvino
def test_dynamic_int8_export_runs_its_shapes_in_row_bands(dynamic_int8_export, monkeypatch):
    """OpenVINO compiles a repeated shape of a ``--dynamic`` int8 file for itself, where the
    last layer can be split in row bands (here with a bound small enough to split it at
    64x48)."""
    pytest.importorskip("openvino")
    camvid = require(DATA / "camvid_sample")
    out = dynamic_int8_export
    monkeypatch.setattr("enet.deploy.openvino_graph.int8_deconv_bound", lambda: 16 * 16 * 64 * 16)
    vino = load_predictor(out, backend="openvino")
    ort_predictor = load_predictor(out, backend="onnx")
    x = next(image_batches(sorted(camvid.glob("test/*.png")), (64, 48)))
    first, second = vino(x), vino(x)  # the dynamic graph, then the 64x48 one
    want = ort_predictor(x)  # on a random model's near-ties the two engines differ more
    assert first.shape == second.shape == want.shape == (1, 12, 48, 64)
    assert (first.argmax(1) == want.argmax(1)).mean() >= 0.95
    np.testing.assert_allclose(second, first, rtol=0, atol=1e-5 * np.abs(first).max())

    def deconvolutions(request) -> int:
        return len(openvino_kernels(request.get_compiled_model(), "Deconvolution"))

    # the upsampling blocks' two and the last layer's, whole on the dynamic graph
    assert deconvolutions(vino.requests[LOGITS]) == 3
    assert deconvolutions(vino.shape_requests[LOGITS, (1, 3, 48, 64)]) == 3 - 1 + 3


@pytest.mark.parametrize("kernels", ["cpu:jit_sse42", INT8_CONVOLUTION_KERNELS])
@pytest.mark.openvino
def test_int8_kernels_asked_for_run_every_layer_alike(dynamic_int8_export, kernels, monkeypatch):
    """Every int8 (transposed) convolution of ENet runs the kernels the predictor asks for:
    the ones chosen for AVX-512 CPUs (where this CPU is one), and SSE4.2 ones (on
    every x86 CPU, never OpenVINO's own choice); the logits stay those of OpenVINO's own
    kernels, on the dynamic graph and on the graph compiled for a repeated shape."""
    pytest.importorskip("openvino")
    if not X86:
        pytest.skip("OpenVINO's x86 kernels")
    if kernels == INT8_CONVOLUTION_KERNELS and int8_convolution_kernels() != kernels:
        pytest.skip("this CPU keeps OpenVINO's own kernels")
    camvid = require(DATA / "camvid_sample")
    monkeypatch.setattr("enet.deploy.openvino_graph.int8_convolution_kernels", lambda: kernels)
    asked = OpenVinoPredictor(dynamic_int8_export)
    own = OpenVinoPredictor(dynamic_int8_export, skip_rewrites={INT8_KERNELS})
    x = next(image_batches(sorted(camvid.glob("test/*.png")), (64, 48)))
    for _ in range(2):  # the dynamic graph, then the 64x48 one
        np.testing.assert_allclose(asked(x), own(x), rtol=0, atol=1e-5)
    name = kernels.removeprefix("cpu:")
    for request in (asked.requests[LOGITS], asked.shape_requests[LOGITS, (1, 3, 48, 64)]):
        layers = openvino_kernels(request.get_compiled_model(), "Convolution", "Deconvolution")
        assert len(layers) == 89 and all(k.startswith(name) for k in layers), layers
    layers = openvino_kernels(
        own.requests[LOGITS].get_compiled_model(), "Convolution", "Deconvolution"
    )
    assert not any(k.startswith(name) for k in layers), layers


@pytest.mark.subprocess
@pytest.mark.openvino
def test_bf16_runs_fp32_files_on_openvino(tmp_path, dynamic_int8_export):
    """``--bf16``: OpenVINO computes an fp32 file in bf16 where the CPU does natively, close
    to fp32 on real frames; elsewhere, and for int8 files or other backends, a one-line
    error. (bf16 runs in ``enet infer`` processes of their own: the test process crashed
    forking after OpenVINO's bf16 kernels had run in it.)"""
    pytest.importorskip("openvino")
    import openvino as ov

    camvid = require(DATA / "camvid_sample")
    fp32 = tmp_path / "camvid.onnx"
    export_onnx("camvid", fp32, size=(160, 120))
    with pytest.raises(UsageError, match="int8"):
        OpenVinoPredictor(dynamic_int8_export, bf16=True)
    with pytest.raises(UsageError, match="--bf16 runs fp32 ONNX files on OpenVINO"):
        load_predictor("camvid", bf16=True)
    if not openvino_computes_bf16(ov.Core()):
        with pytest.raises(UsageError, match="does not compute bf16 natively"):
            load_predictor(fp32, bf16=True)
        return
    preds = {}
    for flags in ([], ["--bf16"]):
        out = tmp_path / ("bf16" if flags else "fp32")
        done = run_enet("infer", str(camvid / "test"), "--model", str(fp32), "--out", str(out),
                     "--outputs", "pred", "--no-progress", *flags)  # fmt: skip
        assert done.returncode == 0, done.stderr
        backend = json.loads((out / "timing.json").read_text())["backend"]
        assert backend == ("openvino (CPU, bf16)" if flags else "openvino (CPU)")
        preds[bool(flags)] = np.stack(
            [np.asarray(Image.open(f)) for f in sorted(out.glob("*_pred.png"))]
        )
    assert preds[True].shape == preds[False].shape == (2, 360, 480)  # the frames' size
    agreement = (preds[True] == preds[False]).mean()
    assert 0.98 <= agreement < 1  # close to fp32, and computed in bf16 indeed


_OPENCV_RUN = """
import sys, numpy as np, cv2
net = cv2.dnn.readNetFromONNX(sys.argv[1])
net.setInput(np.load(sys.argv[2]))
np.save(sys.argv[3], net.forward())
"""


@pytest.mark.subprocess
def test_opencv_dnn_runs_the_fp32_export_and_refuses_the_int8_one(tmp_path):
    """The runtimes table of docs/deployment.md: OpenCV's DNN module (opencv-python-headless)
    runs the fp32 file with ONNX Runtime's argmax, and fails on the int8 QDQ file in its int8
    pooling layer (ONNX Runtime and OpenVINO run both). Should OpenCV start running it, this
    fails and the table changes. OpenCV runs in a process of its own, as a user's would."""
    camvid = require(DATA / "camvid_sample")
    fp32, int8 = tmp_path / "camvid.onnx", tmp_path / "camvid.int8.onnx"
    export_onnx("camvid", fp32, size=(160, 120))
    # int8 in a process of its own: its check runs OpenVINO, after which this one may not fork
    done = run_enet("export", "camvid", "--out", str(int8), "--size", "160x120", "--int8",
                    "--calib", str(camvid / "train"), "--min-agreement", "0")  # fmt: skip
    assert done.returncode == 0, done.stderr
    onnxruntime = load_predictor(fp32, backend="onnx")
    for i, frame in enumerate(sorted(camvid.glob("test/*.png"))):
        x = image_to_input(read_rgb(frame), (160, 120))
        np.save(tmp_path / f"x{i}.npy", x)
        args = [str(fp32), str(tmp_path / f"x{i}.npy"), str(tmp_path / f"y{i}.npy")]
        done = subprocess.run([sys.executable, "-c", _OPENCV_RUN, *args], capture_output=True)
        assert done.returncode == 0, done.stderr
        got = np.load(tmp_path / f"y{i}.npy")
        assert np.array_equal(got.argmax(1), onnxruntime(x).argmax(1))
    args = [str(int8), str(tmp_path / "x0.npy"), str(tmp_path / "int8.npy")]
    done = subprocess.run([sys.executable, "-c", _OPENCV_RUN, *args], capture_output=True)
    assert done.returncode != 0 and b"pool2_int8_layer" in done.stderr, done.stderr
