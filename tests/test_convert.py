"""Checkpoint import: the fixtures made by PyTorch-ENet's and the seed's own code must be
reproduced, and bad files must give one-line errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from enet import load_checkpoint
from enet.checkpoint import read_checkpoint, save_checkpoint
from enet.convert import convert_checkpoint, import_checkpoint
from enet.data.classes import class_set
from enet.errors import CheckpointError
from enet.mindspore_ckpt import read_mindspore_checkpoint
from enet.model import ENet

from .conftest import MINDSPORE, REFERENCE, require

ENET_FILES = ["mindspore_enet.ckpt", "mindspore_enet_crc.ckpt", "mindspore_enet_trainstate.ckpt"]
ENCODER_FILES = ["mindspore_encoder_pred.ckpt", "mindspore_encoder_pred_trainstate.ckpt"]


def _logits(model: ENet, x: np.ndarray | torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(torch.as_tensor(x)).numpy()


def test_pytorch_enet_fixture_is_reproduced():
    model, info = import_checkpoint(
        require(REFERENCE / "pytorch_enet_checkpoint.pth"), "pytorch-enet"
    )
    io = torch.load(REFERENCE / "pytorch_enet_io.pt", weights_only=True)
    assert (model.variant, model.num_classes, model.encoder_only) == ("pytorch-enet", 20, False)
    assert sum(p.numel() for p in model.parameters()) == 351_804
    assert info["epoch"] == 7
    np.testing.assert_allclose(_logits(model, io["input"]), io["logits"].numpy(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ENET_FILES)
def test_mindspore_enet_fixture_is_reproduced(name):
    model, _ = import_checkpoint(require(MINDSPORE / name), "mindspore")
    io = np.load(MINDSPORE / "mindspore_enet_io.npz")
    assert (model.variant, model.num_classes, model.encoder_only) == ("seed", 20, False)
    np.testing.assert_allclose(_logits(model, io["input"]), io["logits"], atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ENCODER_FILES)
def test_mindspore_encoder_pred_fixture_is_reproduced(name):
    model, _ = import_checkpoint(require(MINDSPORE / name), "mindspore")
    io = np.load(MINDSPORE / "mindspore_encoder_pred_io.npz")
    assert model.encoder_only and model.num_classes == 20
    assert sum(p.numel() for p in model.parameters()) == 326_059
    np.testing.assert_allclose(_logits(model, io["input"]), io["logits"], atol=1e-4, rtol=0)
    features, _ = model.encoder(torch.from_numpy(io["input"]))
    np.testing.assert_allclose(features.detach().numpy(), io["inter_encoder"], atol=1e-4, rtol=0)


def test_mindspore_block_outputs_match_one_by_one():
    """Every intermediate block output the seed recorded, so a mismatch names its block."""
    model, _ = import_checkpoint(require(MINDSPORE / "mindspore_enet.ckpt"), "mindspore")
    io = np.load(MINDSPORE / "mindspore_enet_io.npz")
    seen: dict[str, np.ndarray] = {}
    modules = dict(model.named_modules())
    for key in io.files:
        if key.startswith("inter_") and key not in ("inter_encoder", "inter_fullconv"):
            block = key.removeprefix("inter_")
            path = f"encoder.{block}" if f"encoder.{block}" in modules else f"decoder.{block}"

            def hook(_m, _i, out, block=block):
                seen[block] = (out[0] if isinstance(out, tuple) else out).detach().numpy()

            modules[path].register_forward_hook(hook)
    logits = _logits(model, io["input"])
    assert len(seen) == 10
    for block, value in seen.items():
        np.testing.assert_allclose(value, io[f"inter_{block}"], atol=1e-4, rtol=0, err_msg=block)
    np.testing.assert_allclose(logits, io["inter_fullconv"], atol=1e-4, rtol=0)


def test_mindspore_reader_is_bit_exact_and_keeps_training_state():
    entries = read_mindspore_checkpoint(require(MINDSPORE / "mindspore_enet_trainstate.ckpt"))
    params = np.load(MINDSPORE / "mindspore_enet_params.npz")
    for key in params.files:
        assert np.array_equal(entries[key], params[key]), key
    assert entries["learning_rate"].shape == (50_096,)
    assert entries["beta1_power"].shape == ()
    names = (MINDSPORE / "mindspore_enet_trainstate_ckpt_names.txt").read_text().splitlines()[1:]
    assert list(entries) == [line.split("\t")[0] for line in names]


@pytest.mark.subprocess
def test_convert_cli_round_trip(tmp_path):
    src = require(MINDSPORE / "mindspore_enet_trainstate.ckpt")
    dst = tmp_path / "seed.pt"
    result = subprocess.run(
        [sys.executable, "-m", "enet", "convert", "--from", "mindspore", str(src), str(dst)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "358,039 parameters" in result.stdout
    raw = torch.load(dst, weights_only=True)  # our files need no pickle trust
    assert raw["model"] == {"variant": "seed", "num_classes": 20, "encoder_only": False}
    assert raw["classes"]["names"][0] == "road" and raw["classes"]["void"] == 19
    assert raw["provenance"]["source_format"] == "mindspore"
    model = load_checkpoint(dst)
    assert not model.training and model.classes.name == "cityscapes"
    io = np.load(MINDSPORE / "mindspore_enet_io.npz")
    np.testing.assert_allclose(_logits(model, io["input"]), io["logits"], atol=1e-4, rtol=0)


def test_pytorch_enet_conversion_names_its_classes(tmp_path):
    model = convert_checkpoint(
        require(REFERENCE / "pytorch_enet_checkpoint.pth"), tmp_path / "pt.pt", "pytorch-enet"
    )
    assert model.classes.name == "cityscapes-pytorch-enet"
    assert model.classes.names[:2] == ("unlabeled", "road") and model.classes.void == 0
    with pytest.raises(CheckpointError, match="12"):
        convert_checkpoint(
            REFERENCE / "pytorch_enet_checkpoint.pth",
            tmp_path / "x.pt",
            "pytorch-enet",
            classes="camvid",
        )


# --- bad input: one line, the file named, nothing half-written ----------------------------


def _truncate(src, dst, fraction=0.5):
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


@pytest.mark.parametrize(
    ("make", "source", "message"),
    [
        (
            lambda d: _truncate(REFERENCE / "pytorch_enet_checkpoint.pth", d / "t.pth"),
            "pytorch-enet",
            "truncated or corrupt checkpoint",
        ),
        (
            lambda d: _truncate(MINDSPORE / "mindspore_enet.ckpt", d / "t.ckpt"),
            "mindspore",
            "MindSpore checkpoint",
        ),
        (
            lambda d: _truncate(MINDSPORE / "mindspore_enet.ckpt", d / "t.ckpt", 0.9996),
            "mindspore",
            "MindSpore checkpoint",
        ),
        (
            lambda d: MINDSPORE / "mindspore_enet.ckpt",
            "pytorch-enet",
            "not a PyTorch checkpoint (a MindSpore checkpoint? enet convert --from mindspore",
        ),
        (lambda d: REFERENCE / "pytorch_enet_checkpoint.pth", "mindspore", "MindSpore checkpoint"),
        (lambda d: d / "missing.pth", "pytorch-enet", "no such checkpoint file"),
    ],
    ids=[
        "truncated-pth",
        "truncated-ckpt",
        "ckpt-cut-in-last-tensor",
        "ckpt-as-pth",
        "pth-as-ckpt",
        "missing",
    ],
)
@pytest.mark.subprocess
def test_bad_checkpoints_give_one_line_errors(tmp_path, make, source, message):
    require(MINDSPORE)
    src = make(tmp_path)
    dst = tmp_path / "out.pt"
    result = subprocess.run(
        [sys.executable, "-m", "enet", "convert", "--from", source, str(src), str(dst)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("enet: error: "), result.stderr
    assert str(src) in lines[0] and message in lines[0]
    assert not dst.exists() and list(tmp_path.glob("*enet-tmp*")) == []


def test_mindspore_crc_mismatch_is_detected(tmp_path):
    data = bytearray(require(MINDSPORE / "mindspore_enet_crc.ckpt").read_bytes())
    data[1000] ^= 0xFF
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="CRC check failed"):
        read_mindspore_checkpoint(bad)


def test_mindspore_file_missing_a_block_names_it(tmp_path):
    """A checkpoint cut exactly between entries parses, but the mapping sees what is missing."""
    data = require(MINDSPORE / "mindspore_enet.ckpt").read_bytes()
    # Entries are concatenated one-element messages: keep whole ones only.
    pos, ends = 0, []
    while pos < len(data):
        length, shift, p = 0, 0, pos + 1
        while True:
            byte = data[p]
            p += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        pos = p + length
        ends.append(pos)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(data[: ends[-2]])
    assert read_mindspore_checkpoint(cut)  # still parses
    with pytest.raises(CheckpointError, match=r"decoder\.fullconv\.weight is missing"):
        import_checkpoint(cut, "mindspore")
    cut.write_bytes(data[: ends[-40]] + data[ends[-2] :])  # middle entries gone, head kept
    with pytest.raises(CheckpointError, match=r"38 missing \(e\.g\. decoder\.regular4_2\."):
        import_checkpoint(cut, "mindspore")


def test_load_checkpoint_refuses_foreign_files_with_a_hint(tmp_path):
    with pytest.raises(CheckpointError, match="convert --from pytorch-enet"):
        load_checkpoint(require(REFERENCE / "pytorch_enet_checkpoint.pth"))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"junk\.pt: not a PyTorch checkpoint \(an empty"):
        load_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match="not an enet checkpoint"):
        load_checkpoint(other)


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    model = ENet(20)
    path = save_checkpoint(tmp_path / "m.pt", model, class_set("cityscapes"))
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, ENet(20), class_set("cityscapes"))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]
    assert read_checkpoint(path)["model"]["num_classes"] == 20


def test_class_set_must_fit_the_model(tmp_path):
    with pytest.raises(CheckpointError, match="12 classes but the model outputs 20"):
        save_checkpoint(tmp_path / "m.pt", ENet(20), class_set("camvid"))
