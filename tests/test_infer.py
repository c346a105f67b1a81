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
        outputs=["pred"],
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
    assert (tmp_path / "out" / "odd_overlay.jpg").is_file()
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
    assert "broken.png: not an image (give a PNG, JPEG, BMP, TIFF or WebP file)" in captured.out
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
        args += ["--device", "cpu", "--outputs", "pred", "--no-progress"] + ["--compile"] * compiled
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
        outputs=["pred"],
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


def test_shards_cover_every_input_once_and_answer_as_one_run(tmp_path):
    root = require(DATA / "camvid_sample")
    inputs = tmp_path / "in"
    for i, path in enumerate(sorted(root.glob("*/*.png"))[:7]):
        (inputs / f"cam{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.open(path).resize((96, 72)).save(inputs / f"cam{i % 2}" / f"{i:03d}.png")
    whole = tmp_path / "whole"
    assert main(["infer", str(inputs), "--model", "camvid", "--out", str(whole)]) == 0
    shared = tmp_path / "shards"  # every shard into one folder, as a fleet on shared storage
    for i in range(3):
        args = ["infer", str(inputs), "--model", "camvid", "--out", str(shared)]
        assert main([*args, "--shard", f"{i}/3", "--outputs", "pred", "--no-progress"]) == 0
    preds = sorted(p.relative_to(shared) for p in shared.rglob("*_pred.png"))
    assert preds == sorted(p.relative_to(whole) for p in whole.rglob("*_pred.png"))
    assert len(preds) == 7
    for rel in preds:
        assert np.array_equal(
            np.asarray(Image.open(shared / rel)), np.asarray(Image.open(whole / rel))
        )
    timings = sorted(p.name for p in shared.glob("timing*.json"))
    assert timings == [f"timing-shard-{i}-of-3.json" for i in range(3)]
    counts = [json.loads((shared / t).read_text())["inputs"] for t in timings]
    assert counts == [3, 2, 2]
    assert not list(shared.glob(".enet.lock*"))


def test_outputs_chooses_what_is_written(tmp_path):
    root = require(DATA / "camvid_sample")
    image = next(iter(sorted(root.glob("test/*.png"))))
    out = tmp_path / "o"
    args = ["infer", str(image), "--model", "camvid", "--out", str(out), "--no-progress"]
    assert main([*args, "--outputs", "overlay,color"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        f"{image.stem}_color.png",
        f"{image.stem}_overlay.jpg",
        "timing.json",
    ]
    timing = json.loads((out / "timing.json").read_text())
    assert timing["end_to_end_fps"] > 0 and timing["model_fps"] > 0 and timing["seconds"] > 0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--outputs", "pred,mask"], "--outputs mask: unknown (choose from pred, color, overlay)"),
        (["--outputs", "pred,pred"], "argument --outputs: pred is given twice in 'pred,pred'"),
        (["--timing", "."], ".: is a folder where a file is expected (give a file name)"),
        (["--shard", "3/3"], "argument --shard: expected I/N with 0 <= I < N, got '3/3'"),
        (["--shard", "1"], "argument --shard: expected I/N such as 0/4, got '1'"),
        (["--shard", "5/9"], "--shard 5/9: no inputs fall in it (2 inputs; use fewer shards)"),
        (["--shard", "0/2", "--labels", "."], "--labels scores all the inputs in one run"),
    ],
)
def test_bad_outputs_and_shards_are_one_line(tmp_path, flags, message):
    root = require(DATA / "camvid_sample")
    done = run_enet(
        "infer", str(root / "test"), "--model", "camvid", "--out", str(tmp_path), *flags
    )
    assert done.returncode == 2 and done.stderr.startswith("enet: error: ")
    assert message in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr


def test_overwrite_replaces_a_videos_outputs(tmp_path):
    root = require(DATA / "camvid_sample")
    frames = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(root.glob("test/*.png"))]
    _write_video(tmp_path / "drive.mp4", frames)
    args = ["infer", str(tmp_path / "drive.mp4"), "--model", "camvid", "--out", str(tmp_path / "o")]
    assert main([*args, "--no-progress"]) == 0
    first = (tmp_path / "o" / "drive_pred" / "000000.png").read_bytes()
    assert main([*args, "--no-progress", "--overwrite"]) == 0
    assert (tmp_path / "o" / "drive_pred" / "000000.png").read_bytes() == first
    assert not list((tmp_path / "o").rglob("*enet-tmp*"))


def test_outputs_that_write_nothing_for_a_video_are_refused_before_it_runs(tmp_path):
    frames = [np.zeros((48, 64, 3), np.uint8)] * 2
    _write_video(tmp_path / "drive.mp4", frames)
    done = run_enet("infer", str(tmp_path / "drive.mp4"), "--model", "camvid", "--out",
                    str(tmp_path / "o"), "--outputs", "color")  # fmt: skip
    assert done.returncode == 2 and not (tmp_path / "o").exists()
    assert done.stderr.strip().endswith(
        "drive.mp4: --outputs color writes nothing for a video (add pred or overlay)"
    )
