"""Inference: the seed's 310 metric equals `enet eval` on the real frames, any input size
round-trips, unreadable files are skipped with a failing exit code."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from enet.checkpoint import load_checkpoint
from enet.cli import main
from enet.deploy.infer import run_inference
from enet.errors import UsageError
from enet.evaluate.cityscapes import evaluate_cityscapes
from enet.evaluate.seed import evaluate_checkpoint

from .conftest import DATA, cityscapesscripts_scores, require, run_enet


def test_310_metric_equals_enet_eval(seed_checkpoint, tmp_path):
    root = require(DATA / "cityscapes_sample")
    report = run_inference(
        seed_checkpoint,
        [root / "leftImg8bit" / "train"],
        tmp_path / "out",
        device="cpu",  # the same device as eval's below: GPU numerics flip a few pixels
        resize=(1024, 512),
        labels=root / "gtFine",
        pictures=False,
        progress=False,
    )
    assert report.processed == 4 and not report.failed
    expected = evaluate_checkpoint(seed_checkpoint, root, split="train", device="cpu", workers=0)
    assert report.metric["mean_iou"] == pytest.approx(expected["mean_iou"], abs=1e-12)
    text = (tmp_path / "out" / "metric.txt").read_text()
    assert text.startswith("mean_iou:  ") and "iou_class:  [" in text
    timing = __import__("json").loads((tmp_path / "out" / "timing.json").read_text())
    assert set(timing["latency_ms"]) == {"mean", "p50", "p90"} and timing["frames"] == 4


def test_any_size_is_padded_and_cropped_back(seed_checkpoint, tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (75, 101, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "odd.png")
    run_inference(
        seed_checkpoint, [tmp_path / "odd.png"], tmp_path / "out", device="cpu", progress=False
    )
    pred = np.asarray(Image.open(tmp_path / "out" / "odd_pred.png"))
    assert pred.shape == (75, 101)
    assert (tmp_path / "out" / "odd_color.png").is_file()
    assert (tmp_path / "out" / "odd_overlay.png").is_file()
    model = load_checkpoint(seed_checkpoint)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    x = torch.nn.functional.pad(x, (0, 3, 0, 5), mode="replicate")  # to 80 x 104
    with torch.no_grad():
        expected = model(x)[0].argmax(0)[:75, :101].numpy()
    assert np.array_equal(pred, expected)


def test_unreadable_image_is_skipped_and_reported(seed_checkpoint, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.zeros((32, 64, 3), np.uint8)).save(src / "good.png")
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    code = main(
        [
            "infer",
            str(src),
            "--model",
            str(seed_checkpoint),
            "--out",
            str(tmp_path / "o"),
            "--no-progress",
        ]
    )
    assert code == 1
    captured = capsys.readouterr()
    assert "broken.png: unreadable image (cannot identify image file" in captured.out
    assert captured.err.splitlines() == [
        f"enet: error: 1 of 2 inputs could not be read: {src / 'broken.png'} (see the "
        "warnings above)"
    ]
    assert (tmp_path / "o" / "good_pred.png").is_file()
    assert not (tmp_path / "o" / "broken_pred.png").exists()


def test_bundled_camvid_model_segments_real_test_frames(tmp_path):
    """The shipped model (results/camvid/) by name, on CamVid test frames it never saw."""
    root = require(DATA / "camvid_sample")
    model = load_checkpoint("camvid")
    assert model.classes.name == "camvid" and not model.encoder_only
    assert main(["infer", "--model", "camvid", str(root / "test"), "--out", str(tmp_path)]) == 0
    for label_path in sorted((root / "testannot").glob("*.png")):
        label = np.asarray(Image.open(label_path))
        pred = np.asarray(Image.open(tmp_path / f"{label_path.stem}_pred.png"))
        known = label < 11
        assert (pred[known] == label[known]).mean() > 0.8, label_path.name


@pytest.mark.subprocess
@pytest.mark.compile
def test_compiled_pytorch_path_predicts_what_eager_does(tmp_path):
    """--compile (BatchNorm folded into the convolutions) changes the speed, not the answer."""
    root = require(DATA / "camvid_sample")
    preds = {}
    for compiled in (False, True):
        out = tmp_path / str(compiled)
        args = ["infer", str(root / "test"), "--model", "camvid", "--out", str(out)]
        args += ["--device", "cpu", "--no-pictures", "--no-progress"] + ["--compile"] * compiled
        done = run_enet(*args)
        assert done.returncode == 0, done.stderr
        timing = json.loads((out / "timing.json").read_text())
        assert timing["backend"] == f"pytorch{' compiled' if compiled else ''} (cpu)"
        preds[compiled] = [np.asarray(Image.open(p)) for p in sorted(out.glob("*_pred.png"))]
    assert len(preds[True]) == 2
    for eager, fast in zip(preds[False], preds[True], strict=True):
        assert (eager == fast).mean() > 0.999
    onnx_model = tmp_path / "x.onnx"
    onnx_model.write_bytes(b"")
    with pytest.raises(UsageError, match="--compile is for checkpoints"):
        run_inference(onnx_model, [root / "test"], tmp_path / "o", compile=True)


def _write_video(path, frames: list[np.ndarray]) -> None:
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as sink:
        stream = sink.add_stream("libx264", rate=5)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for rgb in frames:
            sink.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        sink.mux(stream.encode())


_FAULTS_PER_CALL = """
import resource, statistics, sys, numpy as np, torch
from enet.checkpoint import load_checkpoint
from enet.deploy.backends import keep_freed_memory
torch.set_num_threads(2)  # the CPU deployments this is for; many threads, many arenas
if sys.argv[1] == "keep":
    keep_freed_memory()
model, x = load_checkpoint("camvid"), torch.rand(1, 3, 512, 1024)
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
per_call = []
with torch.inference_mode():
    model(x), model(x)
    for _ in range(5):  # the median call: a one-off growth of the heap is not the steady state
        before = faults()
        model(x)
        per_call.append(faults() - before)
print(int(statistics.median(per_call)))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
@pytest.mark.subprocess
def test_eager_inference_stops_page_faulting_its_activations_in():
    def faults(mode: str) -> int:
        run = [sys.executable, "-c", _FAULTS_PER_CALL, mode]
        return int(subprocess.run(run, capture_output=True, text=True, check=True).stdout)

    default, kept = faults("default"), faults("keep")
    assert default > 5000 and kept < default / 20, (default, kept)


def test_video_in_class_maps_and_overlay_video_out(tmp_path, capsys):
    av = pytest.importorskip("av")
    root = require(DATA / "camvid_sample")
    frames = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(root.glob("*/*.png"))[:3]]
    _write_video(tmp_path / "drive.mp4", frames)
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video at all")
    out = tmp_path / "out"
    code = main(["infer", "--model", "camvid", str(tmp_path), "--out", str(out), "--no-progress"])
    assert code == 1  # one input failed; the run went on
    assert "broken.mp4: unreadable video (Invalid data found" in capsys.readouterr().out
    preds = sorted((out / "drive_pred").glob("*.png"))
    assert [p.name for p in preds] == ["000000.png", "000001.png", "000002.png"]
    first = np.asarray(Image.open(preds[0]))
    assert first.shape == (360, 480) and first.max() <= 11
    with av.open(str(out / "drive_overlay.mp4")) as video:
        decoded = [f.to_ndarray(format="rgb24") for f in video.decode(video=0)]
    assert len(decoded) == 3 and decoded[0].shape == (360, 480, 3)
    assert not list(out.rglob("*enet-tmp*"))  # no half-written video left behind
    timing = __import__("json").loads((out / "timing.json").read_text())
    assert timing["frames"] == 3 and timing["inputs"] == 1


def test_label_id_pngs_in_submission_naming_score_with_the_official_protocol(
    seed_checkpoint, tmp_path
):
    root = require(DATA / "cityscapes_sample")
    out = tmp_path / "out"
    report = run_inference(
        seed_checkpoint,
        [root / "leftImg8bit" / "val"],
        out,
        resize=(1024, 512),
        pictures=False,
        progress=False,
        label_ids=True,
    )
    assert report.processed == 1
    files = list((out / "labelIds").glob("*.png"))
    assert [f.name for f in files] == ["frankfurt_000000_000576_leftImg8bit.png"]
    ids = np.asarray(Image.open(files[0]))
    assert ids.shape == (1024, 2048)
    train_label_ids = {7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33}
    assert set(np.unique(ids)) <= train_label_ids | {0}
    result = evaluate_cityscapes(root, split="val", predictions=out / "labelIds")
    gt = sorted(root.glob("gtFine/val/*/*_gtFine_labelIds.png"))
    theirs = cityscapesscripts_scores(files, gt)
    assert result["mean_iou"] == pytest.approx(theirs["averageScoreClasses"], abs=1e-12)
