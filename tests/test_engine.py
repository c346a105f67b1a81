"""Training: schedule maths, parameter groups, a loss that falls, checkpoints and resume after
SIGKILL (bit-exact in deterministic mode), 2-process DDP equal to 1 process, config files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from enet.checkpoint import read_checkpoint
from enet.errors import UsageError
from enet.model import ENet
from enet.runtime import init_runtime
from enet.train.config import TrainConfig, apply_overrides, load_config
from enet.train.engine import param_groups, poly_lr, train

from .conftest import TINY


def tiny_config(data, out, epochs=(2, 2, 2), **extra) -> TrainConfig:
    values = {**TINY, "data": str(data), "out": str(out), **extra}
    for n, e in enumerate(epochs, 1):
        values[f"stage{n}.epochs"] = e
    return load_config(None, **values)


def test_poly_lr_matches_the_seed_table():
    # SPEC 4.2: stage 1 5.00e-4 -> 3.03e-4, stage 2 3.00e-4 -> 5.50e-6, stage 3 -> 7.92e-6.
    assert poly_lr(5e-4, 0, 150) == 5e-4
    assert poly_lr(5e-4, 64, 150) == pytest.approx(3.03e-4, rel=2e-3)
    assert poly_lr(5e-4, 65, 150) == pytest.approx(3.00e-4, rel=2e-3)
    assert poly_lr(5e-4, 149, 150) == pytest.approx(5.50e-6, rel=2e-3)
    assert poly_lr(5e-4, 99, 100) == pytest.approx(7.92e-6, rel=2e-3)


def test_weight_decay_exempts_only_batchnorm():
    model = ENet(20, encoder_only=True)
    decayed, exempt = param_groups(model, 1e-4)
    n_bn = sum(
        p.numel()
        for m in model.modules()
        if isinstance(m, torch.nn.BatchNorm2d)
        for p in m.parameters()
    )
    assert sum(p.numel() for p in exempt["params"]) == n_bn > 0
    assert exempt["weight_decay"] == 0.0 and decayed["weight_decay"] == 1e-4
    assert any(p is model.pred.bias for p in decayed["params"])
    prelu = model.encoder.initial_block.out_activation.weight
    assert any(p is prelu for p in decayed["params"])
    total = sum(p.numel() for g in (decayed, exempt) for p in g["params"])
    assert total == sum(p.numel() for p in model.parameters())


def test_three_stages_train_and_chain(tiny_data, tmp_path):
    run = train(tiny_config(tiny_data, tmp_path / "run", epochs=(3, 2, 4)), progress=False)
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["epoch"]) for r in rows][:3] == [(1, 1), (1, 2), (1, 3)]
    assert rows[-1]["run_epoch"] == 9 and "val_miou" in rows[-1]
    stage1 = [r["loss"] for r in rows if r["stage"] == 1]
    stage3 = [r["loss"] for r in rows if r["stage"] == 3]
    assert stage1[-1] < stage1[0] and stage3[-1] < stage3[0]
    for name in (
        "Encoder_stage1.pt",
        "Encoder_stage2.pt",
        "ENet_stage3.pt",
        "curves.png",
        "config.json",
        "checkpoints/Encoder-3_4.pt",
        "checkpoints/Encoder_1-2_4.pt",
        "checkpoints/ENet-4_4.pt",
    ):
        assert (run / name).is_file(), name
    s2 = read_checkpoint(run / "Encoder_stage2.pt")["state_dict"]
    s3 = read_checkpoint(run / "checkpoints/ENet-4_4.pt")
    assert s3["stage"] == 3 and "optimizer" in s3 and s3["model"]["encoder_only"] is False
    # Stage 3 started from stage 2's encoder: BN running statistics carried over, then moved.
    assert not torch.equal(s2["encoder.initial_block.batch_norm.running_mean"], torch.zeros(16))
    assert json.loads((run / "config.json").read_text())["stage1"]["epochs"] == 3

    # enet eval over the run: every checkpoint gets a metrics file; the final model's mIoU
    # is the one validation logged (same protocol), encoder checkpoints are scored at 1/8.
    from enet.evaluate.seed import evaluate_path, metric_path

    results = evaluate_path(run, tiny_data, workers=0)
    names = {Path(r["metric_file"]).name for r in results}
    assert {
        "ENet_stage3.metric.txt",
        "Encoder_stage1.metric.txt",
        "Encoder-3_4.metric.txt",
    } <= names
    final = next(r for r in results if r["metric_file"].endswith("ENet_stage3.metric.txt"))
    assert final["mean_iou"] == pytest.approx(rows[-1]["val_miou"], abs=1e-12)
    assert all(metric_path(p).exists() for p in (run / "checkpoints").glob("*.pt"))
    assert evaluate_path(run, tiny_data, workers=0) == []  # nothing left to do


def _launch(args, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "enet", "train", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _run_args(data, out):
    return [
        "--data",
        str(data),
        "--out",
        str(out),
        "--size",
        "64x32",
        "--batch-size",
        "4",
        "--workers",
        "0",
        "--lr",
        "2e-3",
        "--epochs",
        "3,2,6",
        "--save-every",
        "1",
        "--deterministic",
        "--no-progress",
    ]


@pytest.mark.subprocess
def test_sigkill_then_resume_equals_an_uninterrupted_run(tiny_data, tmp_path):
    killed = tmp_path / "killed"
    proc = _launch(_run_args(tiny_data, killed))
    deadline = time.time() + 120
    while time.time() < deadline:  # kill inside stage 3, a few epochs in
        last = killed / "last.pt"
        if last.is_file():
            try:
                ckpt = torch.load(last, weights_only=True)
            except Exception:
                ckpt = None
            if ckpt and ckpt["stage"] == 3 and ckpt["epoch"] >= 2:
                break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "ENet_stage3.pt").exists(), "the run finished before it was killed"
    resumed = subprocess.run(
        [sys.executable, "-m", "enet", "train", "--resume", str(killed), "--no-progress"],
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    straight = tmp_path / "straight"
    assert _launch(_run_args(tiny_data, straight)).wait() == 0
    a = read_checkpoint(killed / "ENet_stage3.pt")["state_dict"]
    b = read_checkpoint(straight / "ENet_stage3.pt")["state_dict"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    rows_a = (killed / "log.jsonl").read_text().splitlines()
    rows_b = (straight / "log.jsonl").read_text().splitlines()
    losses = [[json.loads(r)["loss"] for r in rows] for rows in (rows_a, rows_b)]
    assert losses[0] == losses[1]


def test_more_processes_than_gpus_is_a_clear_error(monkeypatch):
    """torchrun --nproc_per_node 2 on a one-GPU machine: process 1 has no GPU to take."""
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(UsageError, match=r"process 1 of this node has no GPU.*--nproc_per_node 1"):
        init_runtime("auto")


def _train_stage1(data: Path, out: Path, *, processes: int, batch: int, extra=()) -> dict:
    """Stage 1 for two epochs on gloo (also where there are fewer GPUs than processes), in
    ``processes`` torchrun processes of ``batch`` samples each; the final weights."""
    args = ["train", "--data", str(data), "--out", str(out), "--size", "64x32", "--workers",
            "0", "--device", "cpu", "--lr", "1e-3", "--epochs", "2,1,1", "--stage", "1",
            "--no-progress", "--deterministic", "--batch-size", str(batch), *extra]  # fmt: skip
    launch = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    done = subprocess.run(
        [sys.executable, *(launch if processes > 1 else []), "-m", "enet", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return read_checkpoint(out / "Encoder_stage1.pt")["state_dict"]


@pytest.mark.subprocess
@pytest.mark.torchrun
def test_two_processes_equal_one_on_the_same_global_batch(tiny_data, tmp_path):
    """With BatchNorm's statistics frozen and dropout off, the update is the global batch's:
    the weighted loss is normalised by the weight summed over all ranks."""
    frozen = ["--set", "freeze_bn=true", "--set", "dropout=0,0"]
    a = _train_stage1(tiny_data, tmp_path / "one", processes=1, batch=4, extra=frozen)
    b = _train_stage1(tiny_data, tmp_path / "two", processes=2, batch=2, extra=frozen)
    start = ENet(20, encoder_only=True).state_dict()
    moved = 0
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=2e-5, rtol=1e-4, msg=key)
        moved += not torch.equal(a[key], start[key]) if a[key].is_floating_point() else 0
    assert moved > 100  # the weights really trained


@pytest.mark.subprocess
@pytest.mark.torchrun
def test_two_processes_with_batchnorm_training_and_dropout_are_reproducible(tiny_data, tmp_path):
    """The default recipe (BatchNorm in training mode, dropout on) under DDP: each rank
    normalises its own share of the batch and draws its own dropout masks, so the run is
    not the one-process run; it is the same run every time."""
    a = _train_stage1(tiny_data, tmp_path / "a", processes=2, batch=2)
    b = _train_stage1(tiny_data, tmp_path / "b", processes=2, batch=2)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    one = _train_stage1(tiny_data, tmp_path / "one", processes=1, batch=4)
    differ = [k for k in one if one[k].is_floating_point() and not torch.equal(one[k], a[k])]
    assert differ  # what docs/training.md says does not hold


def test_config_file_and_unknown_keys(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('lr = 1e-3\nsize = [512, 256]\n[stage3]\nepochs = 7\nweights = "enet"\n')
    cfg = load_config(toml, batch_size=3)
    assert (cfg.lr, cfg.size, cfg.stage3.epochs, cfg.stage3.weights, cfg.batch_size) == (
        1e-3,
        (512, 256),
        7,
        "enet",
        3,
    )
    assert cfg.stage1.epochs == 65 and cfg.stage2.curve_start == 65  # seed defaults kept
    toml.write_text("learning_rate = 1\n")
    with pytest.raises(UsageError, match="unknown config key 'learning_rate'"):
        load_config(toml)
    with pytest.raises(UsageError, match=r"stage3\.epochz"):
        load_config(None, **{"stage3.epochz": 3})


@pytest.mark.subprocess
def test_stage3_alone_needs_stage2_weights(tiny_data, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "enet",
            "train",
            "--data",
            str(tiny_data),
            "--out",
            str(tmp_path / "r"),
            "--stage",
            "3",
            "--workers",
            "0",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"enet: error: stage 3 starts from {tmp_path / 'r' / 'Encoder_stage2.pt'}, which does "
        "not exist; run the earlier stage first or give init = CHECKPOINT (or random)"
    ]


def test_camvid_preset_trains_the_full_net_from_scratch(tiny_data, tmp_path):
    cfg = load_config("camvid")
    assert (cfg.stages, cfg.init, cfg.size, cfg.batch_size, cfg.stage3.epochs) == (
        "3",
        "random",
        (480, 360),
        10,
        110,
    )
    # The preset's stage choice and random start, on tiny data: only stage 3 runs.
    small = {**TINY, "data": str(tiny_data), "out": str(tmp_path / "r"), "stage3.epochs": 1}
    run = train(apply_overrides(cfg, small), progress=False)
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows] == [3]
    assert not (run / "Encoder_stage2.pt").exists() and (run / "ENet_stage3.pt").is_file()


@pytest.mark.compile
def test_compile_applies_to_the_stages_that_ask_for_it(tiny_data, tmp_path, monkeypatch):
    """The demo compiles stage 3 only: compiling costs minutes that short stages never repay."""
    compiled = []

    def fake_compile(module, **kwargs):
        compiled.append(module.encoder_only)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    cfg = tiny_config(
        tiny_data, tmp_path / "r", (1, 1, 1), compile=True, **{"stage2.compile": False}
    )
    train(cfg, stage="all", progress=False)
    assert compiled == [True, False]  # stage 1 (encoder) and stage 3 (full), not stage 2
    assert load_config(None, **{"stage1.compile": "false"}).stage1.compile is False
