"""enet.Segmenter: any image in (path, PIL, array, any size), class ids out that equal the
model's own argmax; the pictures and shares exact on hand-made cases; lists run in batches
and videos frame by frame with the same answers; enet infer writes what it returns."""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import enet
from enet.checkpoint import load_checkpoint
from enet.data.classes import class_set
from enet.deploy.export import export_onnx
from enet.deploy.infer import run_inference
from enet.deploy.segmenter import Segmentation, Segmenter
from enet.errors import UsageError

from .conftest import DATA, require
from .test_infer import _write_video


@pytest.fixture(scope="module")
def camvid_frames() -> list[np.ndarray]:
    root = require(DATA / "camvid_sample")
    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted(root.glob("test/*.png"))]


@pytest.fixture(scope="module")
def dynamic_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "camvid.onnx"
    export_onnx("camvid", path, size=(160, 120), dynamic=True)
    return path


def _torch_ids(rgb: np.ndarray) -> np.ndarray:
    """The shipped model's argmax, computed here without enet's inference code."""
    model = load_checkpoint("camvid")
    h, w = rgb.shape[:2]
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    x = torch.nn.functional.pad(x, (0, -w % 8, 0, -h % 8), mode="replicate")
    with torch.no_grad():
        return model(x)[0].argmax(0)[:h, :w].numpy()


def test_any_image_kind_and_size_gives_the_models_argmax(camvid_frames, tmp_path):
    crop = np.ascontiguousarray(camvid_frames[0][13:88, 7:108])  # 75 x 101: padded to 80 x 104
    Image.fromarray(crop).save(tmp_path / "crop.png")
    seg = enet.Segmenter("camvid")
    assert seg.classes.name == "camvid" and seg.backend == "pytorch (cpu)"
    expected = _torch_ids(crop)
    for image in (tmp_path / "crop.png", str(tmp_path / "crop.png"), Image.fromarray(crop), crop):
        result = seg(image)
        assert result.ids.dtype == np.uint8 and result.ids.shape == (75, 101)
        assert np.array_equal(result.ids, expected), type(image)
    rgba = np.dstack([crop, np.full(crop.shape[:2], 7, np.uint8)])
    assert np.array_equal(seg(rgba).ids, expected)


def test_pictures_and_shares_on_a_hand_made_result():
    classes = class_set("camvid")
    ids = np.array([[0, 0, 1, 3]], np.uint8)
    image = np.full((1, 4, 3), 100, np.uint8)
    result = Segmentation(image, ids, classes, ids, latency_ms=1.0)
    palette = np.array(classes.palette, np.uint8)
    assert np.array_equal(result.colorize(), palette[ids])
    # alpha 0.5: halfway between 100 and the class colour, rounded half up
    expected = (100 + palette[ids].astype(int) + 1) // 2
    assert np.array_equal(result.overlay(), expected)
    assert np.array_equal(result.overlay(alpha=0), image)
    assert np.array_equal(result.overlay(alpha=1), palette[ids])
    shares = result.shares()
    assert list(shares) == list(classes.names)
    assert shares[classes.names[0]] == 0.5 and shares[classes.names[1]] == 0.25
    assert shares[classes.names[3]] == 0.25 and sum(shares.values()) == 1.0


def test_a_list_runs_in_batches_with_the_answers_of_single_images(camvid_frames, dynamic_onnx):
    seg = Segmenter(dynamic_onnx, backend="onnx", batch_size=2)
    images = [camvid_frames[0], camvid_frames[1], camvid_frames[0][:100, :200], camvid_frames[1]]
    calls = []
    class_ids = seg.predictor.class_ids
    seg.predictor.class_ids = lambda batch: calls.append(batch.shape) or class_ids(batch)
    results = seg(images)
    # consecutive images of one size together, at most batch_size of them
    assert calls == [(2, 360, 480, 3), (1, 104, 200, 3), (1, 360, 480, 3)]
    for image, result in zip(images, results, strict=True):
        assert np.array_equal(result.ids, seg(image).ids)
        assert result.ids.shape == image.shape[:2]


def test_openvino_class_ids_in_graph_equal_the_argmax_of_its_logits(camvid_frames, dynamic_onnx):
    pytest.importorskip("openvino")
    seg = Segmenter(dynamic_onnx, backend="openvino")
    frame = camvid_frames[0]
    ids = seg(frame).ids
    logits = seg.predictor(frame.transpose(2, 0, 1)[None].astype(np.float32) / 255)
    assert np.array_equal(ids, logits[0].argmax(0))
    onnxruntime = Segmenter(dynamic_onnx, backend="onnx")
    assert (onnxruntime(frame).ids == ids).mean() > 0.9999


def test_video_frames_are_segmented_as_images_are(camvid_frames, tmp_path):
    av = pytest.importorskip("av")
    _write_video(tmp_path / "clip.mp4", camvid_frames[:2] * 2)
    with av.open(str(tmp_path / "clip.mp4")) as video:
        decoded = [f.to_ndarray(format="rgb24") for f in video.decode(video=0)]
    seg = Segmenter("camvid")
    results = list(seg.video(tmp_path / "clip.mp4"))
    assert len(results) == len(decoded) == 4
    for frame, result in zip(decoded, results, strict=True):
        assert np.array_equal(result.image, frame)
        assert np.array_equal(result.ids, seg(frame).ids)


def test_enet_infer_writes_what_the_segmenter_returns(camvid_frames, tmp_path):
    Image.fromarray(camvid_frames[0]).save(tmp_path / "frame.png")
    run_inference("camvid", [tmp_path / "frame.png"], tmp_path / "out", progress=False)
    result = Segmenter("camvid")(tmp_path / "frame.png")
    pred = Image.open(tmp_path / "out" / "frame_pred.png")
    assert pred.mode == "L" and np.array_equal(np.asarray(pred), result.ids)
    color = Image.open(tmp_path / "out" / "frame_color.png")
    assert color.mode == "P" and np.array_equal(np.asarray(color), result.ids)
    assert np.array_equal(np.asarray(color.convert("RGB")), result.colorize())
    overlay = np.asarray(Image.open(tmp_path / "out" / "frame_overlay.jpg")).astype(int)
    assert np.abs(overlay - result.overlay()).mean() < 3  # JPEG: close, not exact


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((4, 4, 3), np.float32), "must be H x W x 3 uint8 RGB, not 4 x 4 x 3 float32"),
        (np.zeros((4, 4, 2), np.uint8), "must be H x W x 3 uint8 RGB, not 4 x 4 x 2 uint8"),
        (b"\x89PNG", "cannot segment a bytes (give a path, a PIL image or an array)"),
    ],
)
def test_what_cannot_be_segmented_is_named(image, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Segmenter("camvid")(image)


def test_a_missing_image_is_one_line(tmp_path):
    with pytest.raises(enet.EnetError, match=r"nope\.png: no such file"):
        Segmenter("camvid")(tmp_path / "nope.png")


def test_the_readme_example_runs_as_written(camvid_frames, tmp_path, monkeypatch, capsys):
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    example = readme.split("## In Python\n\n```python\n", 1)[1].split("```", 1)[0]
    Image.fromarray(camvid_frames[0]).save(tmp_path / "street.jpg")
    _write_video(tmp_path / "drive.mp4", camvid_frames[:2])
    monkeypatch.chdir(tmp_path)
    exec(example, {})
    shares = [float(line) for line in capsys.readouterr().out.split()]
    assert len(shares) == 2 and all(0 < s < 1 for s in shares)


def test_bad_videos_options_and_empty_images_are_one_line_errors(tmp_path, dynamic_onnx):
    seg = Segmenter("camvid")
    (tmp_path / "text.mp4").write_text("not a video")
    cases = {
        tmp_path / "missing.mp4": "missing.mp4: no such file",
        tmp_path: "is a folder",
        tmp_path / "text.mp4": "text.mp4: unreadable video (Invalid data found",
    }
    for path, message in cases.items():
        with pytest.raises(enet.EnetError, match=re.escape(message)):
            list(seg.video(path))
    with pytest.raises(UsageError, match="an image array of 0x0 pixels is empty"):
        seg(np.zeros((0, 0, 3), np.uint8))
    result = seg(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(UsageError, match=r"overlay alpha 1\.5: give a number from 0 to 1"):
        result.overlay(1.5)
    with pytest.raises(UsageError, match=r"resize '480x360': give \(width, height\) in pixels"):
        Segmenter("camvid", resize="480x360")
    with pytest.raises(UsageError, match="batch_size 0: give a whole number, 1 or more"):
        Segmenter("camvid", batch_size=0)
    with pytest.raises(UsageError, match="backend 'bogus': unknown"):
        Segmenter("camvid", backend="bogus")


def test_a_fixed_size_model_refuses_another_size(tmp_path):
    fixed = tmp_path / "fixed.onnx"
    export_onnx("camvid", fixed, size=(64, 48))
    assert Segmenter(fixed, backend="onnx").input_size == (64, 48)
    assert Segmenter(fixed, backend="onnx", resize=(64, 48)).input_size == (64, 48)
    with pytest.raises(UsageError, match=r"fixed\.onnx: runs at 64x48 only, not 32x24"):
        Segmenter(fixed, backend="onnx", resize=(32, 24))


def test_parallel_runs_give_the_answers_of_one_at_a_time(camvid_frames, tmp_path):
    pytest.importorskip("openvino")
    fixed = tmp_path / "fixed.onnx"
    export_onnx("camvid", fixed, size=(480, 360))
    serial = Segmenter(fixed, backend="openvino")
    parallel = Segmenter(fixed, backend="openvino", parallel=True)
    assert serial.parallel == 1
    assert parallel.parallel >= (2 if (os.cpu_count() or 1) >= 2 else 1)
    frames = [camvid_frames[0], camvid_frames[1], camvid_frames[0][:, ::-1]] * 2
    expected = [serial(f).ids for f in frames]
    mapped = list(parallel.map(frames))  # in order
    with ThreadPoolExecutor(4) as pool:  # and from several threads at once
        threaded = list(pool.map(parallel, frames))
    for ids, one, other in zip(expected, mapped, threaded, strict=True):
        assert np.array_equal(one.ids, ids) and np.array_equal(other.ids, ids)
    assert not np.array_equal(expected[0], expected[2])  # the frames differ
