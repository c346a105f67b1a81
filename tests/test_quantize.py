"""Weights on the int8 grid (`enet snap`): the grid is ONNX Runtime's own, the fp32
convolutions are left alone, and the command writes a checkpoint that no longer claims the
old weights' metrics. OpenVINO multiplies 7-bit weights exactly; the blocks' adds read what
the scheme says is rounded."""

from __future__ import annotations

import sys

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto
from onnxruntime.quantization.quant_utils import quantize_data

from enet.checkpoint import read_checkpoint, save_checkpoint
from enet.cli import main
from enet.data.classes import class_set
from enet.deploy.export import export_onnx
from enet.deploy.quantize import (
    REDUCED_WEIGHT_MAX,
    TUNED_INT8_SCHEME,
    QuantizationError,
    output_axis,
    quantize_int8,
    snap_to_int8_grid,
)
from enet.model import ENet

from .conftest import DATA, ROOT, require

sys.path.insert(0, str(ROOT / "bench"))
from int8_overflow import openvino_error_steps


def _convs(model: ENet) -> dict[str, torch.Tensor]:
    return {
        name: m.weight.detach().clone()
        for name, m in model.named_modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))
    }


def test_snapped_weights_are_what_onnx_runtime_quantises_them_to():
    torch.manual_seed(0)
    model = ENet(12)
    before = _convs(model)
    names = snap_to_int8_grid(model)
    after = _convs(model)
    # the four convolutions int8 export keeps in fp32 (initial block, first downsampling)
    leading = [
        "encoder.initial_block.conv",
        "encoder.downsample1_0.ext_conv1.0",
        "encoder.downsample1_0.ext_conv2.0",
        "encoder.downsample1_0.ext_conv3.0",
    ]
    assert sorted(set(before) - set(names)) == sorted(leading)
    for name in leading:
        assert torch.equal(before[name], after[name])
    for name in names:
        weight = after[name]
        axis = 1 if isinstance(model.get_submodule(name), torch.nn.ConvTranspose2d) else 0
        assert not torch.equal(weight, before[name]), name
        for channel in weight.unbind(axis):
            data = channel.flatten().numpy()
            zero, scale, q = quantize_data(data, TensorProto.INT8, symmetric=True)
            restored = (np.asarray(q, np.float32) - zero) * scale
            np.testing.assert_allclose(restored, data, rtol=0, atol=1e-6 * np.abs(data).max())
    snap_to_int8_grid(model)  # a second rounding changes nothing
    for name, weight in _convs(model).items():
        assert torch.equal(weight, after[name]), name


def test_the_tuned_scheme_snaps_every_convolution_to_onnx_runtimes_7_bit_grid():
    """``reduce_range``: weights in [-64, 64], which CPUs without VNNI multiply exactly."""
    torch.manual_seed(0)
    model = ENet(12)
    names = snap_to_int8_grid(model, TUNED_INT8_SCHEME)
    assert sorted(names) == sorted(_convs(model))  # all 89, the image's conv included
    for name in names:
        conv = model.get_submodule(name)
        for channel in conv.weight.detach().unbind(output_axis(conv)):
            data = channel.flatten().numpy()
            zero, scale, q = quantize_data(data, TensorProto.INT8, True, reduce_range=True)
            assert np.abs(q).max() == 64
            restored = (np.asarray(q, np.float32) - zero) * scale
            np.testing.assert_allclose(restored, data, rtol=0, atol=1e-6 * np.abs(data).max())


def test_enet_snap_writes_a_checkpoint_without_the_old_metrics(tmp_path, capsys):
    model = ENet(12, "pytorch-enet").eval()
    src = save_checkpoint(
        tmp_path / "trained.pt",
        model,
        class_set("camvid"),
        {"trained_by": "a test", "test_miou": 0.5},
        best_miou=0.6,
        metrics={"val_miou": 0.6},
    )
    assert main(["snap", str(src), "--out", str(tmp_path / "snapped.pt")]) == 0
    assert "weights of 85 convolutions on the int8 grid" in capsys.readouterr().out
    snapped = read_checkpoint(tmp_path / "snapped.pt")
    assert snapped["model"] == read_checkpoint(src)["model"]
    assert "best_miou" not in snapped and "metrics" not in snapped
    assert snapped["provenance"] == {
        "trained_by": "a test",
        "int8_grid": f"85 convolutions of {src}",
    }
    key = "decoder.fullconv.weight"
    assert not torch.equal(snapped["state_dict"][key], model.state_dict()[key])

    assert main(["snap", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("nope.pt: no such checkpoint file (bundled models: camvid)")
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.openvino
def test_openvino_multiplies_7_bit_weights_by_full_range_8_bit_inputs_exactly(tmp_path):
    """What the tuned scheme's 7-bit weights are for: int8 kernels without VNNI (AVX2) add
    pairs of uint8 x int8 products in int16, which 8-bit weights overflow (bench/
    int8_overflow.py prints by how much); with 7-bit ones OpenVINO equals ONNX Runtime
    (exact integer sums) on any CPU."""
    pytest.importorskip("openvino")
    error, largest = openvino_error_steps(REDUCED_WEIGHT_MAX, tmp_path)
    assert error < 0.5  # steps of the integer sum
    assert largest > 1000  # large sums: the case that overflows


def test_int8_branches_round_each_blocks_branch_and_leave_its_shortcut_as_the_stream_has_it(
    tmp_path,
):
    """``branches="int8"`` on the max-unpool variant: every bottleneck's add reads its branch
    rounded; the shortcut is the rounded residual stream in a regular block (the copy its
    first convolution reads) and fp32 beside a downsampling's pool or an upsampling; the
    unpool's index arithmetic and the initial block's add are left alone. (The seed variant:
    tests/test_int8_finetune.py.)"""
    torch.manual_seed(0)
    model = ENet(12, "pytorch-enet").eval()
    ckpt = save_checkpoint(tmp_path / "m.pt", model, class_set("camvid"), {})
    fp32 = tmp_path / "m.onnx"
    export_onnx(ckpt, fp32, size=(64, 48))
    frames = sorted(require(DATA / "camvid_sample").glob("train/*.png"))
    quantize_int8(fp32, tmp_path / "m.int8.onnx", frames, (64, 48), TUNED_INT8_SCHEME)
    graph = onnx.load(str(tmp_path / "m.int8.onnx")).graph
    producer = {o: n for n in graph.node for o in n.output}
    dequantised = {o for o, n in producer.items() if n.op_type == "DequantizeLinear"}
    rounded = [[i in dequantised for i in n.input] for n in graph.node if n.op_type == "Add"]
    # the bottlenecks' adds are `main + ext`: the branch is the second input; 23 regular
    # blocks read the rounded shortcut, 2 downsampling and 2 upsampling ones an fp32 one
    assert sum(r == [True, True] for r in rounded) == 23
    assert sum(r == [False, True] for r in rounded) == 4
    assert not any(r[0] and not r[1] for r in rounded)
    # a graph without the exporter's module records cannot say which input is the branch
    bare = onnx.load(str(fp32))
    for node in bare.graph.node:
        del node.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(QuantizationError, match="no block adds found"):
        quantize_int8(
            tmp_path / "bare.onnx", tmp_path / "no.onnx", frames, (64, 48), TUNED_INT8_SCHEME
        )
