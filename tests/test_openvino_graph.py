"""Rewrites of OpenVINO models: row bands of transposed convolutions (the same outputs, and
int8 kernels where OpenVINO's CPU plugin would fall back to fp32), the kernels asked for, and
the image's max-pool channel by channel."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from enet.data.classes import class_set
from enet.deploy.backends import LOGITS, OpenVinoPredictor
from enet.deploy.onnx_meta import set_onnx_metadata
from enet.deploy.openvino_graph import (
    INT8_DECONV_BOUND,
    INT8_KERNELS,
    ROW_BANDS,
    X86,
    int8_deconv_bound,
    prefer_kernels,
    rewrite_for_this_cpu,
    split_wide_transposed_convolutions,
)
from enet.deploy.quantize import REDUCED_WEIGHT_MAX

from .conftest import openvino_kernels

pytestmark = pytest.mark.openvino

ov = pytest.importorskip("openvino")


def _deconv_file(path, in_shape, out_channels, kernel, pads, output_padding, int8, image=False):
    """One ConvTranspose (stride 2) on the input; with ``int8``, in QDQ form as
    ``enet export --int8`` writes it (uint8 input, per-channel 7-bit weights). With ``image``,
    the input is an image at the output's size, which a 1x1 stride 2 convolution reduces to
    ``in_shape``."""
    rng = np.random.default_rng(0)
    lim = REDUCED_WEIGHT_MAX
    weight = rng.integers(-lim, lim, (in_shape[1], out_channels, kernel, kernel), np.int8)
    scale = rng.uniform(0.001, 0.01, out_channels).astype(np.float32)
    inits = [
        numpy_helper.from_array(weight, "w_q"),
        numpy_helper.from_array(scale, "w_scale"),
        numpy_helper.from_array(np.zeros(out_channels, np.int8), "w_zero"),
        numpy_helper.from_array(np.array(1 / 255, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(0, np.uint8), "x_zero"),
    ]
    nodes = [helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], axis=1)]
    x = "input"
    if image:
        front = rng.uniform(0, 1 / 3, (in_shape[1], 3, 1, 1)).astype(np.float32)
        inits.append(numpy_helper.from_array(front, "front"))
        nodes.append(helper.make_node("Conv", ["input", "front"], ["reduced"], strides=[2, 2]))
        x = "reduced"
        in_shape = [in_shape[0], 3, in_shape[2] * 2, in_shape[3] * 2]
    if int8:
        nodes += [
            helper.make_node("QuantizeLinear", [x, "x_scale", "x_zero"], ["x_q"]),
            helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zero"], ["x"]),
        ]
        x = "x"
    nodes.append(
        helper.make_node(
            "ConvTranspose",
            [x, "w"],
            ["logits"],
            strides=[2, 2],
            kernel_shape=[kernel] * 2,
            pads=pads,
            output_padding=output_padding,
        )
    )
    graph = helper.make_graph(
        nodes, "deconv",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)], inits,
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)


def _compile(path, bound=None):
    core = ov.Core()
    model = core.read_model(str(path))
    replaced = split_wide_transposed_convolutions(model, bound) if bound else 0
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return compiled, replaced, openvino_kernels(compiled, "Deconvolution")


@pytest.mark.parametrize(
    "kernel, pads, output_padding",
    [
        (3, [0, 0, 1, 1], [0, 0]),  # the seed's last layer (enet.model)
        (3, [1, 1, 1, 1], [1, 1]),  # PyTorch-ENet's, given an output size
        (2, [0, 0, 0, 0], [0, 0]),  # the upsampling blocks'
    ],
)
def test_row_bands_compute_what_the_layer_does(tmp_path, kernel, pads, output_padding):
    path = tmp_path / "m.onnx"
    _deconv_file(path, [1, 16, 23, 20], 12, kernel, pads, output_padding, int8=False)
    whole, _, kernels = _compile(path)
    out_h, out_w = whole.output(0).get_shape()[2:]
    bound = 16 * 16 * out_w * (out_h // 4)  # 4 or 5 bands
    banded, replaced, banded_kernels = _compile(path, bound)
    assert replaced == 1 and len(kernels) == 1 and len(banded_kernels) in (4, 5)
    assert banded.output(0).get_shape() == whole.output(0).get_shape()
    x = np.random.default_rng(1).standard_normal((1, 16, 23, 20)).astype(np.float32)
    want = whole.create_infer_request().infer({0: x})[0]
    got = banded.create_infer_request().infer({0: x})[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


def test_enet_last_layer_runs_int8_in_row_bands(tmp_path):
    """ENet's last layer at 1024x512 is twice OpenVINO's bound: whole, it runs in fp32 on a
    CPU without AVX-512; in bands, every band runs an int8 kernel, with the same logits."""
    path = tmp_path / "m.onnx"
    _deconv_file(path, [1, 16, 256, 512], 12, 3, [0, 0, 1, 1], [0, 0], int8=True)
    whole, _, kernels = _compile(path)
    banded, replaced, banded_kernels = _compile(path, INT8_DECONV_BOUND)
    assert replaced == 1 and len(banded_kernels) == 2
    assert all("I8" in k for k in banded_kernels), banded_kernels
    if int8_deconv_bound():  # what the bands are for
        assert kernels == [k for k in kernels if "I8" not in k], kernels
    x = np.random.default_rng(2).random((1, 16, 256, 512), np.float32)
    want = whole.create_infer_request().infer({0: x})[0]
    got = banded.create_infer_request().infer({0: x})[0]
    assert got.shape == want.shape == (1, 12, 512, 1024)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.abs(want).max())


def test_predictor_rewrites_int8_files_only(tmp_path, monkeypatch):
    """``enet infer`` splits int8 files where the CPU has the bound and asks for the int8
    kernels chosen for the CPU (SSE4.2 ones here: on every x86 CPU, never OpenVINO's own
    choice), and leaves fp32 files (whose transposed convolutions run in fp32 anyway) as
    exported."""
    if not X86:
        pytest.skip("OpenVINO's SSE4.2 kernels are x86's")
    monkeypatch.setattr("enet.deploy.openvino_graph.int8_deconv_bound", lambda: 16 * 16 * 40 * 10)
    monkeypatch.setattr(
        "enet.deploy.openvino_graph.int8_convolution_kernels", lambda: "cpu:jit_sse42"
    )
    path = tmp_path / "m.onnx"
    x = np.random.default_rng(3).random((1, 3, 46, 40), np.float32)
    layers, logits = {}, {}
    for precision in ("fp32", "int8 QDQ"):
        _deconv_file(path, [1, 16, 23, 20], 12, 3, [0, 0, 1, 1], [0, 0], int8=True, image=True)
        set_onnx_metadata(
            path, {"enet.classes": class_set("camvid").to_dict(), "enet.precision": precision}
        )
        predictor = OpenVinoPredictor(path)
        layers[precision] = openvino_kernels(
            predictor.requests[LOGITS].get_compiled_model(), "Deconvolution"
        )
        logits[precision] = predictor(x)
    assert len(layers["fp32"]) == 1 and not layers["fp32"][0].startswith("jit_sse42")
    assert layers["int8 QDQ"] == ["jit_sse42_I8"] * 5
    np.testing.assert_allclose(logits["int8 QDQ"], logits["fp32"], rtol=0, atol=1e-4)


def test_kernels_asked_for_are_the_kernels_run(tmp_path):
    """``prefer_kernels``'s request reaches OpenVINO's CPU plugin through its own rewrites
    (the int8 layer here is assembled from quantise/dequantise pairs) and leaves outputs as
    they were."""
    if not X86:
        pytest.skip("OpenVINO's SSE4.2 kernels are x86's")
    path = tmp_path / "m.onnx"
    _deconv_file(path, [1, 16, 23, 20], 12, 3, [0, 0, 1, 1], [0, 0], int8=True, image=True)
    core = ov.Core()
    x = np.random.default_rng(4).random((1, 3, 46, 40), np.float32)
    outputs, kernels = [], []
    for ask in (False, True):
        model = core.read_model(str(path))
        if ask:
            model = prefer_kernels(model, "cpu:jit_sse42", core)
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        kernels.append(openvino_kernels(compiled, "Deconvolution"))
        outputs.append(compiled.create_infer_request().infer({0: x})[0])
    assert kernels[1] == ["jit_sse42_I8"] and kernels[0] != kernels[1]
    np.testing.assert_array_equal(outputs[1], outputs[0])


def test_image_pool_runs_channels_apart_in_fp32_files_only(tmp_path):
    """An fp32 file's max-pool of the image becomes a pool of a batch of 1-channel images,
    with the same outputs at any input shape; an int8 file's stays as it is."""
    path = tmp_path / "m.onnx"
    pool = helper.make_node(
        "MaxPool", ["input"], ["pooled"], kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1]
    )
    graph = helper.make_graph(
        [pool], "pool",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, None)],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    core = ov.Core()
    exported = core.compile_model(str(path), "CPU")
    skip = {ROW_BANDS, INT8_KERNELS}
    for int8, channels in ((False, 1), (True, 3)):
        model = rewrite_for_this_cpu(core.read_model(str(path)), int8, core, skip)
        (pooling,) = [op for op in model.get_ordered_ops() if op.get_type_name() == "MaxPool"]
        assert pooling.get_input_partial_shape(0)[1].get_length() == channels
        compiled = core.compile_model(model, "CPU")
        for shape in ((1, 3, 46, 40), (2, 3, 31, 64)):
            x = np.random.default_rng(sum(shape)).random(shape, np.float32)
            got, want = compiled(x)[0], exported(x)[0]
            assert got.shape == want.shape == (*shape[:2], shape[2] // 2, shape[3] // 2)
            np.testing.assert_array_equal(got, want)
