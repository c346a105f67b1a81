"""`enet finetune-int8`: the emulation rounds what the int8 export rounds, the result is a
snapped checkpoint, and exporting it keeps the residual stream in int8."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from enet.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from enet.cli import main
from enet.data.classes import class_set
from enet.data.prepare import prepare
from enet.deploy.int8_finetune import Int8Emulation
from enet.deploy.onnx_meta import onnx_metadata
from enet.deploy.quantize import (
    TUNED_INT8_SCHEME,
    Int8Scheme,
    int8_convolutions,
    output_axis,
    quantize_int8,
    snap_to_int8_grid,
)
from enet.model import ENet

from .conftest import SHARED, require, run_enet

CAMVID = SHARED / "data" / "camvid_sample"


def _calibrated(model: ENet, x: torch.Tensor, scheme: Int8Scheme) -> Int8Emulation:
    emulation = Int8Emulation(model, scheme)
    emulation.calibrate([x])
    return emulation


def test_emulation_rounds_the_int8_convolutions_inputs_and_nothing_in_fp32():
    torch.manual_seed(0)
    model = ENet(12).eval()
    reference = copy.deepcopy(model)
    snap_to_int8_grid(reference)
    x = torch.rand(2, 3, 64, 96)
    emulation = _calibrated(
        model, x, Int8Scheme(residual="int8")
    )  # the untuned layout: 4 fp32 convs
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        model.get_submodule(name).register_forward_pre_hook(
            lambda _m, args, name=name: seen.__setitem__(name, args[0].detach())
        )
        for name in ("encoder.initial_block", "encoder.regular1_1.ext_conv2.0", "decoder.fullconv")
    ]
    with torch.no_grad():
        plain = model(x)
        # without rounding it is the snapped model: the weights are on the same grid
        assert torch.allclose(plain, reference(x), atol=1e-5, rtol=0)
        emulation.rounding = True
        rounded = model(x)
    for hook in hooks:
        hook.remove()
    assert not torch.allclose(plain, rounded)
    # int8 convolutions read at most 256 levels, the fp32 initial block reads the image as is
    for name in ("encoder.regular1_1.ext_conv2.0", "decoder.fullconv"):
        assert seen[name].unique().numel() <= 256, name
    assert seen["encoder.initial_block"].unique().numel() > 256
    # a rounded point per int8 convolution (85) and per block after the first downsampling
    # (stage 1: 4, stage 2: 9, stage 3: 8, decoder: 5), whose shortcut reads it rounded
    assert len(int8_convolutions(model)) == 85 and len(emulation.ranges) == 85 + 26
    emulation.finish()
    after = {n: p.detach().clone() for n, p in model.state_dict().items()}
    snap_to_int8_grid(model)  # already there: nothing moves
    assert all(torch.equal(after[n], p) for n, p in model.state_dict().items())

    # the tuned layout, all convolutions int8: the image conv reads the 8-bit image as it is
    # (no rounding point), the first downsampling's shortcut reads its input rounded, and
    # each of the 27 blocks' branches is rounded before its add; the weights end on the
    # 7-bit grid: per output channel, integers times max|w| / 64
    model = ENet(12).eval()
    all_int8 = _calibrated(model, x, TUNED_INT8_SCHEME)
    image_conv = "encoder.initial_block.conv"
    assert len(all_int8.convolutions) == 89 and image_conv in all_int8.convolutions
    assert len(all_int8.ranges) == 88 + 27 + 27 and image_conv not in all_int8.ranges
    branch: list[torch.Tensor] = []  # a block's branch as its add reads it (hooks chain)
    hook = model.encoder.dilated3_1.ext_regul.register_forward_hook(
        lambda _m, _args, out: branch.append(out)
    )
    with torch.no_grad():
        model(x)
        all_int8.rounding = True
        model(x)
    hook.remove()
    assert branch[0].unique().numel() > 256 >= branch[1].unique().numel()
    all_int8.finish()
    for name in all_int8.convolutions:
        conv = model.get_submodule(name)
        weight = conv.weight.detach().movedim(output_axis(conv), 0).flatten(1)
        steps = weight / (weight.abs().amax(1, keepdim=True) / 64)
        assert torch.allclose(steps, steps.round(), atol=1e-3), name


@pytest.fixture(scope="module")
def tiny_camvid(tmp_path_factory):
    out = tmp_path_factory.mktemp("camvid") / "prepared"
    prepare("camvid", require(CAMVID), out, size=(96, 72), progress=False)
    return out


@pytest.mark.subprocess
@pytest.mark.openvino
def test_finetune_int8_writes_a_snapped_checkpoint_that_exports_an_int8_residual_stream(
    tiny_camvid, tmp_path, capsys
):
    torch.manual_seed(0)
    src = save_checkpoint(
        tmp_path / "trained.pt",
        ENet(12).eval(),
        class_set("camvid"),
        {"trained_by": "a test", "test_miou": 0.5},
        best_miou=0.6,
    )
    out = tmp_path / "tuned.pt"
    args = ["finetune-int8", str(src), "--data", str(tiny_camvid), "--out", str(out)]
    assert main([*args, "--epochs", "2", "--batch-size", "2", "--lr", "1e-3"]) == 0
    printed = capsys.readouterr().out
    assert "epoch 2: emulated int8 agreement" in printed
    tuned = read_checkpoint(out)
    assert "best_miou" not in tuned and "test_miou" not in tuned["provenance"]
    assert tuned["provenance"]["int8_finetune"].startswith("enet finetune-int8 trained.pt")
    assert tuned["provenance"]["int8_fp32_convs"] == "0"
    assert tuned["provenance"]["int8_weight_max"] == "64"
    assert tuned["provenance"]["int8_branches"] == "int8"
    model = load_checkpoint(out)
    before = read_checkpoint(src)["state_dict"]
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    snap_to_int8_grid(model, TUNED_INT8_SCHEME)  # every convolution is on its 7-bit grid
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())

    # exported: the tuned checkpoint's residual stream goes int8 unless asked otherwise, and
    # its convolutions are int8 from the first, which reads the image's 8 bits unrounded
    onnx_file = tmp_path / "tuned.int8.onnx"
    int8 = ["--int8", "--calib", str(CAMVID / "train"), "--min-agreement", "0"]
    done = run_enet("export", str(out), "--out", str(onnx_file), "--size=96x72", *int8)
    assert done.returncode == 0, done.stderr
    meta = onnx_metadata(onnx_file)
    assert meta["enet.int8"]["int8_residual"] == "int8"
    report = meta["enet.int8"]
    assert report["int8_fp32_convs"] == 0 and report["int8_weight_bits"] == 7
    assert report["int8_branches"] == "int8"
    assert meta["enet.precision"] == TUNED_INT8_SCHEME.describe()
    graph = onnx.load(str(onnx_file)).graph
    first = next(n for n in graph.node if n.op_type == "Conv")
    weight_from = {o: n for n in graph.node for o in n.output}[first.input[1]]
    assert first.input[0] == "input_8bit" and weight_from.op_type == "DequantizeLinear"
    assert [n.op_type for n in graph.node if "input" in n.input] == ["QuantizeLinear"]
    int8 = [
        numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8
    ]
    convs = [w for w in int8 if w.ndim == 4]
    assert len(convs) == 89 and max(int(np.abs(w).max()) for w in convs) == 64
    fp32_stream = tmp_path / "fp32-stream.onnx"
    frames = sorted(CAMVID.glob("train/*.png"))
    fp32_residual = replace(TUNED_INT8_SCHEME, residual="fp32")
    quantize_int8(tmp_path / "tuned.int8.fp32.onnx", fp32_stream, frames, (96, 72), fp32_residual)
    for path, residual in ((onnx_file, "int8"), (fp32_stream, "fp32")):
        graph = onnx.load(str(path)).graph
        producer = {o: n.op_type for n in graph.node for o in n.output}
        adds = [n for n in graph.node if n.op_type == "Add"]
        rounded = sum(producer.get(i) == "DequantizeLinear" for n in adds for i in n.input)
        # the 27 block adds read their branch rounded; with the int8 stream the 23 regular
        # blocks' the rounded shortcut too, with the fp32 one none
        assert rounded == (27 + 23 if residual == "int8" else 27)

    assert main(["finetune-int8", str(src), "--data", str(tmp_path), "--out", str(out)]) == 2
    assert "enet: error:" in capsys.readouterr().err
