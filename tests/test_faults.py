"""Faults a user causes or meets, through the CLI as users run it: nothing a user owns is
destroyed, every failure is one line, nothing half-written stays, interrupted work finishes.
docs/reliability.md lists what is guaranteed; every case here is one row of its table."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from enet.checkpoint import read_checkpoint
from enet.cli import main
from enet.data.synthetic import synthesize

from .conftest import DATA, one_line_error, require, run_enet

TRAIN = ["--size", "64x32", "--batch-size", "4", "--workers", "0", "--no-progress"]


def _state(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` and a hash of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if "enet-tmp" in p.name]


def _cli(capsys, *args: str) -> tuple[int, str]:
    """``enet ARGS`` in this process: the exit code and the one error line."""
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse
        code = exc.code
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("enet: error")]
    assert len(err) == (code != 0), err
    return code, err[0] if err else ""


@pytest.fixture(scope="module")
def model(tiny_run) -> Path:
    return tiny_run / "ENet_stage3.pt"


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    """Six real CamVid frames, at 128x96 (the tests are about files, not pixels)."""
    folder = tmp_path_factory.mktemp("frames")
    for f in sorted(require(DATA / "camvid_sample").glob("*/*.png")):
        if "annot" not in f.parent.name:
            Image.open(f).convert("RGB").resize((128, 96)).save(folder / f.name)
    return folder


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory) -> Path:
    from enet.deploy.export import export_onnx

    return Path(export_onnx(model, tmp_path_factory.mktemp("onnx") / "m.onnx")["path"])


# --- nothing a user owns is destroyed ----------------------------------------------------------


def test_prepare_refuses_a_folder_it_did_not_make(tmp_path, capsys):
    theirs = tmp_path / "camvid"
    shutil.copytree(require(DATA / "camvid_sample"), theirs)
    before = _state(theirs)
    code, err = _cli(
        capsys,
        "prepare",
        "--dataset",
        "camvid",
        "--root",
        str(DATA / "camvid_sample"),
        "--out",
        str(theirs),
        "--no-progress",
    )
    assert code == 2 and "was not made by enet prepare" in err and "--out" in err
    assert _state(theirs) == before


def test_train_never_replaces_a_run_unless_asked(tiny_data, tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    for name in ("notes.txt", "best_stage1.notes.txt", "ENet_stage3.onnx"):  # the user's
        (run / name).write_text("mine")
    before = _state(run)
    args = ["train", "--data", str(tiny_data), "--out", str(run), *TRAIN, "--epochs", "1,1,1"]
    code, err = _cli(capsys, *args)
    assert code == 2 and "holds a training run (stage 3, epoch 1)" in err and "--resume" in err
    assert _state(run) == before
    code, err = _cli(capsys, *args, "--resume", str(run), "--overwrite")  # not both
    assert code == 2 and "give one" in err
    code, err = _cli(capsys, "train", "--resume", str(run), "--epochs", "1,1,2")
    assert code == 2 and "--epochs cannot change it (only --workers and --device can" in err
    assert _state(run) == before
    # --overwrite: the old run's files go (its stage-3 epoch checkpoint too), the user's stay
    assert (
        main(
            [
                *args[:-2],
                "--epochs",
                "1,1,2",
                "--stage",
                "3",
                "--init",
                str(tiny_run / "Encoder_stage2.pt"),
                "--overwrite",
            ]
        )
        == 0
    )
    for name in ("notes.txt", "best_stage1.notes.txt", "ENet_stage3.onnx"):
        assert (run / name).read_text() == "mine", name
    assert not (run / "Encoder_stage1.pt").exists() and (run / "ENet_stage3.pt").is_file()
    assert [json.loads(r)["stage"] for r in (run / "log.jsonl").read_text().splitlines()] == [3, 3]


def test_train_adds_a_later_stage_to_a_run(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    common = ["train", "--data", str(tiny_data), "--out", str(run), *TRAIN, "--epochs", "1,1,1"]
    assert main([*common, "--stage", "1"]) == 0
    assert main([*common, "--stage", "2"]) == 0
    assert "adding stage(s) 2 to the run (stage 1 finished)" in capsys.readouterr().out
    assert [json.loads(r)["stage"] for r in (run / "log.jsonl").read_text().splitlines()] == [1, 2]
    code, err = _cli(capsys, *common, "--stage", "2")  # again: it would overwrite stage 2
    assert code == 2 and "holds a training run (stage 2, epoch 1)" in err


@pytest.mark.subprocess
def test_one_writer_per_run_folder_and_a_dead_ones_lock_is_taken_over(tiny_data, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--data", str(tiny_data), "--out", str(run), *TRAIN, "--epochs", "2,2,30"]
    first = subprocess.Popen(
        [sys.executable, "-m", "enet", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.time() + 120
        while not (run / "last.pt").is_file() and time.time() < deadline:
            time.sleep(0.02)
        second = run_enet(*args)
        one_line_error(second, f"{run}: in use by enet train (pid {first.pid}")
        evaluation = run_enet("eval", str(run), "--data", str(tiny_data), "--workers", "0")
        one_line_error(evaluation, f"{run}: in use by enet train (pid {first.pid})")
        assert first.poll() is None, "the first run ended before the others tried"
        # killed while it held the lock, with a checkpoint being written
        (run / f".last.pt.{_dead_pid()}-abcdefgh.enet-tmp").write_bytes(b"half a checkpoint")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    resumed = run_enet("train", "--resume", str(run), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert f"enet train (pid {first.pid}) stopped without finishing; taking over" in resumed.stderr
    assert "removing its 1 temporary file(s)" in resumed.stderr
    assert _temps(run) == [] and not (run / ".enet.lock").exists()
    assert (run / "ENet_stage3.pt").is_file()


@pytest.mark.subprocess
def test_sigterm_ends_a_run_as_ctrl_c_does(tiny_data, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--data", str(tiny_data), "--out", str(run), *TRAIN, "--epochs", "1,1,60"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "enet", *args], stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 120
    while not (run / "last.pt").is_file() and time.time() < deadline:
        time.sleep(0.02)
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err
    assert f"enet: error: interrupted (to finish, run enet train --resume {run}" in err
    assert not _temps(run) and not (run / ".enet.lock").exists()


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def test_export_and_convert_never_replace_their_input_or_an_existing_file(model, tmp_path):
    before = model.read_bytes()
    one_line_error(_run_main(["export", str(model), "--out", str(model)]), "is also the input")
    assert model.read_bytes() == before
    pth = require(DATA.parent / "reference" / "pytorch_enet_checkpoint.pth")
    copy = tmp_path / "enet.pth"
    shutil.copy(pth, copy)
    result = _run_main(["convert", "--from", "pytorch-enet", str(copy), str(copy), "--overwrite"])
    one_line_error(result, "is also the input")
    assert copy.read_bytes() == pth.read_bytes()
    out = tmp_path / "m.onnx"
    old = os.umask(0o027)
    try:
        assert main(["export", str(model), "--out", str(out)]) == 0
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o640  # the umask's, not mkstemp's 0600
    stamp = out.read_bytes()
    result = _run_main(["export", str(model), "--out", str(out)])
    one_line_error(result, f"{out}: already exists (pass --overwrite")
    assert out.read_bytes() == stamp
    assert main(["export", str(model), "--out", str(out), "--overwrite"]) == 0


def test_infer_outputs_never_collide_and_outputs_are_never_inputs(model, frames, tmp_path, capsys):
    src = tmp_path / "in"
    for cam in ("cam1", "cam2"):
        (src / cam).mkdir(parents=True)
        shutil.copy(next(frames.glob("*.png")), src / cam / "000001.png")
    Image.open(next(frames.glob("*.png"))).save(src / "cam2" / "x.jpg")
    shutil.copy(next(frames.glob("*.png")), src / "cam2" / "x.png")
    out = src / "predictions"  # inside the input folder
    args = ["infer", str(src), "--model", str(model), "--out", str(out), "--no-progress"]
    assert main(args) == 0
    preds = sorted(str(p.relative_to(out)) for p in out.rglob("*_pred.png"))
    assert preds == [
        "cam1/000001_pred.png",
        "cam2/000001_pred.png",
        "cam2/x_jpg_pred.png",
        "cam2/x_png_pred.png",
    ]
    assert "4 input(s)" in capsys.readouterr().out
    code, err = _cli(capsys, *args)
    assert code == 2 and "already exists, and 12 more of this run's outputs" in err
    assert main([*args, "--overwrite"]) == 0
    assert "4 input(s)" in capsys.readouterr().out  # its own outputs were not read
    code, err = _cli(capsys, "infer", str(src), "--model", str(model), "--out", str(src))
    assert code == 2 and "holds the input folder" in err
    image = src / "cam1" / "000001.png"
    for timing in (image, model):
        before = timing.read_bytes()
        code, err = _cli(capsys, *args, "--overwrite", "--timing", str(timing))
        assert code == 2 and ("lies in the input folder" in err or "is also the input" in err)
        assert timing.read_bytes() == before
    code, err = _cli(capsys, *args, "--overwrite", "--labels", str(tmp_path / "nope"))
    assert code == 2 and "nope: no such folder (--labels takes a folder of labels)" in err


def test_eval_never_replaces_metrics_unless_asked(model, tiny_data, tmp_path, capsys):
    ckpt = tmp_path / "m.pt"
    shutil.copy(model, ckpt)
    args = ["eval", str(ckpt), "--data", str(tiny_data), "--workers", "0"]
    assert main(args) == 0
    metric = (tmp_path / "m.metric.txt").read_text()
    code, err = _cli(capsys, *args)
    assert code == 2 and "was evaluated before (pass --overwrite" in err
    assert main([*args, "--overwrite"]) == 0 and (tmp_path / "m.metric.txt").read_text() == metric
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = _cli(capsys, "eval", str(empty), "--data", str(tiny_data))
    assert code == 2 and "no checkpoints (*.pt) in it" in err
    # the same 20 outputs in PyTorch-ENet's Cityscapes order: not the data's classes
    from enet.checkpoint import save_checkpoint
    from enet.data.classes import class_set
    from enet.model import ENet

    other = save_checkpoint(tmp_path / "o.pt", ENet(20), class_set("cityscapes-pytorch-enet"))
    code, err = _cli(capsys, "eval", str(other), "--data", str(tiny_data))
    assert code == 2 and "output 0 is 'unlabeled' in the model, 'road' in the data" in err


def test_the_official_evaluation_never_writes_onto_its_inputs(model, tmp_path, capsys):
    root = tmp_path / "cs"
    shutil.copytree(require(DATA / "cityscapes_tiny"), root)
    before, stamp = _state(root), model.read_bytes()
    args = ["eval", "--protocol", "cityscapes", "--data", str(root), "--overwrite"]
    label = next(root.glob("gtFine/val/*/*_labelIds.png"))
    code, err = _cli(capsys, *args, "--predictions", str(root / "gtFine"), "--json", str(label))
    assert code == 2 and "lies in the input folder" in err
    code, err = _cli(capsys, *args, str(model), "--json", str(model))
    assert code == 2 and "is also the input" in err
    code, err = _cli(capsys, *args, str(model), "--save-predictions", str(root / "leftImg8bit"))
    assert code == 2 and "lies in the input folder" in err
    assert _state(root) == before and model.read_bytes() == stamp


def test_synth_refuses_to_mix_two_sets(tmp_path, capsys):
    out = tmp_path / "s"
    synthesize(out, train=1, val=0, size=(64, 32), progress=False)
    code, err = _cli(capsys, "synth", "--out", str(out), "--size", "128x64", "--no-progress")
    assert code == 2 and "holds frames drawn with seed 0 at 64x32" in err
    code, err = _cli(capsys, "synth", "--out", str(out), "--size", "64x32", "--train", "0")
    assert code == 2 and "holds 1 train frames, more than the 0 asked for" in err


# --- a full disk, unwritable targets, files where folders belong --------------------------------


def _broken_cityscapes(root: Path) -> Path:
    return synthesize(root, train=6, val=2, size=(64, 32), seed=1, progress=False)


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.subprocess
def test_prepare_on_a_full_disk(full_disk, tmp_path, workers):
    source = _broken_cityscapes(tmp_path / "src")
    out = full_disk.path / "prepared"
    result = run_enet(
        "prepare",
        "--root",
        str(source),
        "--out",
        str(out),
        "--workers",
        workers,
        "--no-progress",
        disk_full=full_disk.injected,
        timeout=120,
    )
    one_line_error(result, "no space left on the device (free some space or write elsewhere)")
    assert result.returncode == 2 and not (out / "manifest.json").exists() and not _temps(out)


@pytest.mark.subprocess
def test_train_on_a_full_disk_then_rerun(tiny_data, full_disk, tmp_path):
    run = full_disk.path / "run"
    args = ["train", "--data", str(tiny_data), "--out", str(run), *TRAIN, "--epochs", "1,1,1"]
    result = run_enet(*args, disk_full=full_disk.injected, timeout=300)
    one_line_error(result, "no space left on the device")
    assert not _temps(run)
    again = run_enet(*args, disk_full=full_disk.free())  # the same command, with room
    assert again.returncode == 0, again.stderr
    assert "stopped before its first checkpoint; starting it anew" in again.stdout
    assert (run / "ENet_stage3.pt").is_file()


@pytest.mark.subprocess
def test_export_infer_convert_on_a_full_disk(model, frames, full_disk):
    out = full_disk.path
    inject = full_disk.injected
    one_line_error(
        run_enet("export", str(model), "--out", str(out / "m.onnx"), disk_full=inject),
        "m.onnx: no space left on the device",
    )
    infer = run_enet(
        "infer",
        str(frames),
        "--model",
        str(model),
        "--out",
        str(out / "pred"),
        "--no-progress",
        disk_full=inject,
    )
    one_line_error(infer, "no space left on the device")
    pth = require(DATA.parent / "reference" / "pytorch_enet_checkpoint.pth")
    convert = run_enet(
        "convert", "--from", "pytorch-enet", str(pth), str(out / "c.pt"), disk_full=inject
    )
    one_line_error(convert, "c.pt: no space left on the device")
    assert not _temps(out) and not (out / "m.onnx").exists() and not (out / "c.pt").exists()


@pytest.mark.subprocess
def test_unwritable_targets_and_files_where_folders_belong(model, frames, read_only_disk, tmp_path):
    one_line_error(
        run_enet("export", str(model), "--out", str(read_only_disk / "m.onnx")),
        str(read_only_disk / "m.onnx"),
        "(choose a location you can write to)" if os.geteuid() else "read-only file system",
    )
    a_file = tmp_path / "file"
    a_file.write_text("mine")
    one_line_error(
        run_enet("export", str(model), "--out", str(tmp_path)), "is a folder where a file"
    )
    one_line_error(
        run_enet("export", str(model), "--out", str(a_file / "m.onnx")),
        f"{a_file}: is a file where a folder is expected",
    )
    one_line_error(
        run_enet("infer", str(frames), "--model", str(model), "--out", str(a_file)),
        "is a file where a folder is expected",
    )
    one_line_error(
        run_enet("prepare", "--root", str(frames), "--out", str(a_file)),
        "is a file where a folder is expected",
    )
    assert a_file.read_text() == "mine"


# --- inputs that would give silently wrong results ----------------------------------------------


def test_16_bit_images_are_scaled_not_clipped(model, frames, tmp_path, capsys):
    rgb = np.asarray(Image.open(next(frames.glob("*.png"))).convert("L"))
    (tmp_path / "a").mkdir()
    Image.fromarray(rgb).save(tmp_path / "a" / "grey8.png")
    Image.fromarray(rgb.astype(np.uint16) * 257).save(tmp_path / "a" / "grey16.png")
    assert Image.open(tmp_path / "a" / "grey16.png").mode == "I;16"
    assert (
        main(
            [
                "infer",
                str(tmp_path / "a"),
                "--model",
                str(model),
                "--out",
                str(tmp_path / "o"),
                "--no-progress",
            ]
        )
        == 0
    )
    eight, sixteen = (
        np.asarray(Image.open(tmp_path / "o" / f"{n}_pred.png")) for n in ("grey8", "grey16")
    )
    assert np.array_equal(eight, sixteen)


def test_label_values_outside_the_table_are_named(tmp_path, capsys):
    root = _broken_cityscapes(tmp_path / "src")
    labels = sorted((root / "gtFine" / "train").glob("*/*_labelIds.png"))
    ids = np.asarray(Image.open(labels[0])).copy()
    ids[:2, :3] = 40  # not a Cityscapes label id
    Image.fromarray(ids).save(labels[0])
    Image.open(labels[1]).convert("RGB").save(labels[1])  # a colour image under the name
    Image.open(labels[2]).convert("RGB").quantize(16).save(labels[2])  # ... with a palette
    out = tmp_path / "p"
    args = ["prepare", "--root", str(root), "--out", str(out), "--split", "train", "--no-progress"]
    code, err = _cli(capsys, *args)
    assert code == 2 and "3 bad file(s) in the train split" in err
    assert f"{labels[0]}: values not in the Cityscapes labelIds table: 40 (6 px)" in err
    assert f"{labels[1]}: a colour (RGB) image" in err
    assert f"{labels[2]}: a palette (P) image" in err
    assert main([*args, "--skip-bad"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["splits"]["train"]["count"] == 3
    assert [s.split(":")[0] for s in manifest["splits"]["train"]["skipped"]] == [
        str(labels[0]),
        str(labels[1]),
        str(labels[2]),
    ]


def test_trainid_predictions_are_named_in_the_official_evaluation(tmp_path, capsys):
    root = require(DATA / "cityscapes_tiny")
    from enet.data.cityscapes import to_train_ids

    gt = next((root / "gtFine" / "val").glob("*/*_labelIds.png"))
    (tmp_path / "ids").mkdir()
    (tmp_path / "train").mkdir()
    shutil.copy(gt, tmp_path / "ids" / gt.name)
    Image.fromarray(to_train_ids(np.asarray(Image.open(gt)))).save(tmp_path / "train" / gt.name)
    args = ["eval", "--protocol", "cityscapes", "--data", str(root), "--predictions"]
    assert main([*args, str(tmp_path / "ids")]) == 0
    assert "mIoU 1.0000" in capsys.readouterr().out  # the ground truth scores itself perfectly
    code, err = _cli(capsys, *args, str(tmp_path / "train"))
    assert code == 2 and "looks like trainIds (0-18, 255), not the labelIds" in err


@pytest.mark.parametrize(
    ("epochs", "message"),
    [
        ("1.5,1,1", "three whole numbers"),
        ("1,2", "three whole numbers"),
        ("0,0,0", "'stage1.epochs': 0 must be at least 1"),
    ],
)
def test_epochs_are_whole_numbers_one_per_stage(tiny_data, tmp_path, capsys, epochs, message):
    code, err = _cli(
        capsys, "train", "--data", str(tiny_data), "--out", str(tmp_path / "r"), "--epochs", epochs
    )
    assert code == 2 and message in err and not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--device", "tpu"], "--device 'tpu': not a device enet runs on"),
        (["train", "--seed", "99999999999999999999"], "argument --seed: must be from 0 to"),
        (["prepare", "--root", ".", "--out", "p", "--enet-c", "inf"], "must be a finite number"),
        (["export", "m.pt", "--out", "m.onnx", "--min-agreement", "2"], "at most 1"),
        (["export", "m.pt", "--out", "m.onnx", "--opset", "5"], "must be from 18 to 23"),
        (["finetune-int8", "m.pt", "--data", "d", "--out", "o", "--lr", "nan"], "finite"),
    ],
)
def test_flag_values_that_cannot_work_are_one_line(tiny_data, tmp_path, capsys, args, message):
    if args[0] == "train":
        args = [*args, "--data", str(tiny_data), "--out", str(tmp_path / "r")]
    code, err = _cli(capsys, *args)
    assert code == 2 and message in err and not (tmp_path / "r").exists()


def test_a_config_file_epoch_must_be_whole(tiny_data, tmp_path, capsys):
    (tmp_path / "c.toml").write_text("[stage3]\nepochs = 1.5\n")
    code, err = _cli(
        capsys, "train", "--data", str(tiny_data), "--config", str(tmp_path / "c.toml")
    )
    assert code == 2 and "'stage3.epochs': cannot use 1.5" in err


# --- files that are not what they claim -----------------------------------------------------------


class _Code:  # a pickled object: loading it could run code
    pass


def _bad_checkpoints(tmp_path: Path, model: Path) -> dict[str, tuple[Path, str]]:
    ckpt = read_checkpoint(model)
    made = {}

    def bad(name: str, obj, message: str) -> None:
        torch.save(obj, tmp_path / f"{name}.pt")
        made[name] = (tmp_path / f"{name}.pt", message)

    bad("variant", {**ckpt, "model": {**ckpt["model"], "variant": "x"}}, "unknown variant 'x'")
    bad("no-classes", {k: v for k, v in ckpt.items() if k != "classes"}, "'classes' entry is")
    bad(
        "palette",
        {**ckpt, "classes": {**ckpt["classes"], "palette": [[0, 0]] * 20}},
        "palette colour [0, 0] is not three integers",
    )
    bad("pickle", {"format": "enet-checkpoint", "x": _Code()}, "never loads since loading them")
    (tmp_path / "text.pt").write_text("hello\n")
    made["text"] = (tmp_path / "text.pt", "not a PyTorch checkpoint (an empty, text or other file)")
    made["folder"] = (tmp_path, "is a folder, not a checkpoint file")
    return made


def test_bad_checkpoints_are_one_line_and_never_suggest_running_their_code(model, tmp_path):
    for name, (path, message) in _bad_checkpoints(tmp_path, model).items():
        for command in (
            ["info", str(path)],
            ["export", str(path), "--out", str(tmp_path.parent / "x.onnx")],
        ):
            line = one_line_error(_run_main(command), message)
            assert "weights_only" not in line, name


def _run_main(args: list[str]) -> subprocess.CompletedProcess:
    """``main`` in this process, with the result of a subprocess (faster: no torch import)."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(args)
    return subprocess.CompletedProcess(args, code, "", err.getvalue())


@pytest.mark.parametrize("backend", ["openvino", "onnx", "auto"])
@pytest.mark.openvino
def test_corrupt_onnx_files_are_one_line(exported, frames, tmp_path, backend):
    data = exported.read_bytes()
    for name, content in (("cut.onnx", data[: len(data) // 3]), ("noise.onnx", os.urandom(999))):
        (tmp_path / name).write_bytes(content)
        result = _run_main(
            [
                "infer",
                str(frames),
                "--model",
                str(tmp_path / name),
                "--backend",
                backend,
                "--out",
                str(tmp_path / "o"),
                "--no-progress",
            ]
        )
        one_line_error(result, f"{tmp_path / name}: not a readable ONNX file")
    assert not (tmp_path / "o").exists()


def test_prepare_names_every_bad_file_in_one_message(tmp_path, capsys):
    root = _broken_cityscapes(tmp_path / "src")
    images = sorted((root / "leftImg8bit" / "train").glob("*/*.png"))
    labels = sorted((root / "gtFine" / "train").glob("*/*.png"))
    labels[0].unlink()  # unpaired
    images[1].write_bytes(images[1].read_bytes()[:300])  # truncated
    Image.new("L", (10, 10)).save(labels[2])  # wrong size
    code, err = _cli(
        capsys,
        "prepare",
        "--root",
        str(root),
        "--out",
        str(tmp_path / "p"),
        "--split",
        "train",
        "--no-progress",
    )
    assert code == 2 and "3 bad file(s)" in err
    assert f"{images[0]}: image without a label" in err
    assert f"{images[1]}: unreadable image" in err and f"{labels[2]}: label is 10x10" in err


def test_official_evaluation_names_a_bad_ground_truth_file(tmp_path, capsys):
    root = tmp_path / "cs"
    shutil.copytree(require(DATA / "cityscapes_tiny"), root)
    gt = next(root.glob("gtFine/val/*/*_labelIds.png"))
    pred = tmp_path / "pred"
    pred.mkdir()
    shutil.copy(gt, pred / gt.name)
    gt.write_bytes(gt.read_bytes()[:100])
    code, err = _cli(
        capsys, "eval", "--protocol", "cityscapes", "--data", str(root), "--predictions", str(pred)
    )
    assert code == 2 and f"{gt}: unreadable label" in err


def test_a_truncated_video_leaves_nothing(frames, tmp_path, capsys):
    av = pytest.importorskip("av")
    video = tmp_path / "in" / "drive.mp4"
    video.parent.mkdir()
    rgb = np.asarray(Image.open(next(frames.glob("*.png"))).convert("RGB"))
    with av.open(str(video), "w", options={"movflags": "faststart"}) as sink:
        stream = sink.add_stream("libx264", rate=5)
        stream.height, stream.width = rgb.shape[:2]
        stream.pix_fmt = "yuv420p"
        for i in range(30):
            frame = np.roll(rgb, 8 * i, axis=1)
            sink.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        sink.mux(stream.encode())
    video.write_bytes(video.read_bytes()[: video.stat().st_size * 9 // 10])  # ~17 frames decode
    shutil.copy(next(frames.glob("*.png")), tmp_path / "in" / "still.png")
    code = main(
        [
            "infer",
            str(tmp_path / "in"),
            "--model",
            "camvid",
            "--out",
            str(tmp_path / "o"),
            "--no-progress",
        ]
    )
    out = capsys.readouterr().out
    assert code == 1 and "drive.mp4: unreadable video" in out and "nothing written for it" in out
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "still_color.png",
        "still_overlay.jpg",
        "still_pred.png",
        "timing.json",
    ]


# --- kill -9 at any moment, then run again --------------------------------------------------------


def _kill_when(args: list[str], started: callable, delay: float) -> None:
    """Run ``enet ARGS``; once ``started()`` is true, wait ``delay`` seconds and kill -9 it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "enet", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while not started() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.subprocess
def test_prepare_killed_at_random_moments_then_rerun_equals_one_run(tmp_path):
    source = synthesize(tmp_path / "src", train=60, val=8, size=(512, 256), seed=2, progress=False)
    straight = tmp_path / "straight"
    args = ["prepare", "--root", str(source), "--no-progress"]
    assert run_enet(*args, "--out", str(straight), "--workers", "1").returncode == 0
    killed = tmp_path / "killed"
    work = killed / ".partial"
    for delay, workers in zip(np.random.default_rng(0).uniform(0.0, 0.4, 4), "1212", strict=True):
        started = lambda: any(work.glob("*/plan.json"))  # noqa: E731
        _kill_when([*args, "--out", str(killed), "--workers", workers], started, delay)
    assert run_enet(*args, "--out", str(killed)).returncode == 0
    assert not _temps(killed) and not work.exists() and not (killed / ".enet.lock").exists()
    for split in ("train", "val"):
        for name in ("images.npy", "labels.npy", "histograms.npy"):
            assert np.array_equal(np.load(killed / split / name), np.load(straight / split / name))
    a, b = (json.loads((p / "manifest.json").read_text()) for p in (killed, straight))
    assert a["splits"] == b["splits"] and a["weights"] == b["weights"]


@pytest.mark.subprocess
def test_export_killed_at_random_moments_then_rerun_equals_one_run(model, tmp_path):
    straight, killed = tmp_path / "a" / "m.onnx", tmp_path / "b" / "m.onnx"
    assert run_enet("export", str(model), "--out", str(straight)).returncode == 0
    killed.parent.mkdir()
    for delay in np.random.default_rng(1).uniform(0.0, 2.0, 3):
        _kill_when(
            ["export", str(model), "--out", str(killed)], lambda: _temps(killed.parent), delay
        )
        assert not killed.exists(), "finished before it was killed"
    assert _temps(killed.parent)  # what the kills left ...
    assert run_enet("export", str(model), "--out", str(killed)).returncode == 0
    assert not _temps(killed.parent)  # ... the next export cleared
    assert killed.read_bytes() == straight.read_bytes()


@pytest.mark.subprocess
def test_the_reliability_page_and_readme_count_what_ci_runs():
    from .test_fuzz import EXAMPLES

    page = " ".join((Path(__file__).parents[1] / "docs" / "reliability.md").read_text().split())
    listed = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", __file__],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cases = [
        line for line in listed.splitlines() if "::" in line and "count_what_ci_runs" not in line
    ]
    assert f"**{len(cases)} fault cases**" in page
    assert f"**{sum(EXAMPLES.values()):,} hypothesis examples**" in page
    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text().split())
    assert f"({len(cases)} fault cases, {sum(EXAMPLES.values()):,} fuzzed files)" in readme
    for reader, count in EXAMPLES.items():
        assert f"{reader} ({count}" in page, reader
