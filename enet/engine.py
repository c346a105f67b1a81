"""Training: the seed's three stages (SPEC 4), resumable, on one device or many (torchrun).

Read top to bottom: set-up (devices, seeds, data), one epoch, validation, one stage, the run.

Determinism: each epoch's randomness is a pure function of (seed, stage, epoch): the
sampler's permutation, each sample's augmentation (seeded per sample, so the number of
loader workers does not matter) and dropout (the global RNG is reseeded per epoch and rank).
A run resumed from an epoch checkpoint therefore continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Sampler
from tqdm import tqdm

from .checkpoint import (
    EvaluationFiles,
    atomic_torch_save,
    build_checkpoint,
    model_from_checkpoint,
    read_checkpoint,
)
from .config import TrainConfig, apply_overrides
from .data.classes import ClassSet, check_same_classes
from .data.dataset import PreparedDataset
from .data.prepare import read_manifest
from .errors import CheckpointError, OutputError, UsageError, describe_os_error
from .fileio import write_text_atomic
from .folders import locked_folder
from .losses import weighted_cross_entropy
from .metrics import ConfusionMatrix
from .model import ENet, transfer_encoder
from .runtime import resolve_device
from .transforms import eval_transform, train_transform
from .visualize import plot_curves

__all__ = ["SeededSampler", "evaluate_model", "poly_lr", "read_log", "train"]

STAGE_PREFIX = {1: "Encoder", 2: "Encoder_1", 3: "ENet"}  # the seed's file stems (SPEC 4.5)
FINAL_NAME = {1: "Encoder_stage1.pt", 2: "Encoder_stage2.pt", 3: "ENet_stage3.pt"}


# --- set-up --------------------------------------------------------------------------------


@dataclass
class Runtime:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def init_runtime(device: str) -> Runtime:
    """Read torchrun's environment; start the process group (nccl on GPUs, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            gpus = torch.cuda.device_count()
            raise UsageError(
                f"process {local_rank} of this node has no GPU: torch sees {gpus}; start at "
                f"most {gpus} per node (torchrun --nproc_per_node {gpus}) or use --device cpu"
            )
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Runtime(rank, world, local_rank, dev)


def _mix(*values: int) -> int:
    """A 63-bit seed from integers (SplitMix-style), stable across runs and platforms."""
    x = 0x9E3779B97F4A7C15
    for v in values:
        x = (x ^ (v + 0x9E3779B97F4A7C15 + (x << 6) + (x >> 2))) & 0xFFFFFFFFFFFFFFFF
        x = (x * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x & 0x7FFFFFFFFFFFFFFF


def seed_everything(*values: int) -> None:
    """Seed torch (CPU and CUDA), numpy and random from ``values``."""
    import random

    seed = _mix(*values)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class SeededSampler(Sampler):
    """Wraps a ``DistributedSampler`` (also used with one process, so one and N processes
    see the same global batches) and yields ``(index, seed)`` so each sample's augmentation
    depends only on (run seed, stage, epoch, pass, index)."""

    def __init__(self, sampler: DistributedSampler, seed: int, stage: int, repeat: int = 1):
        self.sampler, self.seed, self.stage, self.repeat = sampler, seed, stage, repeat
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.sampler) * self.repeat

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for r in range(self.repeat):
            self.sampler.set_epoch(self.epoch * self.repeat + r)
            for index in self.sampler:
                yield index, _mix(self.seed, self.stage, self.epoch, r, index)


def poly_lr(lr_max: float, epoch: int, curve_epochs: int) -> float:
    """The seed's per-epoch poly schedule, lr * (1 - e/E)^0.9 (SPEC 4.2); e is 0-based."""
    return lr_max * (1 - epoch / curve_epochs) ** 0.9


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """BN affine parameters are exempt from weight decay, everything else (PReLU and the
    head's bias included) is decayed: MindSpore's default filter (SPEC 8.9)."""
    bn, rest = [], []
    for module in model.modules():
        params = list(module.parameters(recurse=False))
        (bn if isinstance(module, nn.modules.batchnorm._BatchNorm) else rest).extend(params)
    return [
        {"params": rest, "weight_decay": weight_decay},
        {"params": bn, "weight_decay": 0.0},
    ]


def stage_weights(manifest: dict, choice: str, stage: int, classes: ClassSet) -> torch.Tensor:
    """The class-weight vector a stage trains with (SPEC 4.3)."""
    table = manifest.get("weights", {})
    if choice == "auto":
        seed_key = "seed_encoder" if stage < 3 else "seed_decoder"
        choice = seed_key if seed_key in table else "enet"
    if choice == "uniform":
        w = np.ones(classes.num_classes)
        if classes.void is not None:
            w[classes.void] = 0.0
    elif choice in table and isinstance(table[choice], list):
        w = np.asarray(table[choice], dtype=np.float64)
    else:
        known = sorted(k for k, v in table.items() if isinstance(v, list))
        raise UsageError(f"unknown class weights {choice!r}; this dataset has {known} or uniform")
    if len(w) != classes.num_classes:
        raise UsageError(
            f"weights {choice!r} have {len(w)} entries, model has {classes.num_classes}"
        )
    return torch.tensor(w, dtype=torch.float32)


def _autocast(device: torch.device, amp: str):
    if amp == "off":
        return torch.autocast(device.type, enabled=False)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    if dtype is None:
        raise UsageError(f"--amp must be off, bf16 or fp16, got {amp!r}")
    return torch.autocast(device.type, dtype=dtype)


def _unwrap(model: nn.Module) -> ENet:
    model = getattr(model, "_orig_mod", model)  # torch.compile
    return getattr(model, "module", model)  # DDP


def _to_input(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = images.to(device, non_blocking=True).float().div_(255)  # SPEC 3.4 step 5
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


# --- one epoch, validation -----------------------------------------------------------------


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    weight: torch.Tensor,
    rt: Runtime,
    cfg: TrainConfig,
    scaler: torch.amp.GradScaler | None,
    desc: str,
    progress: bool,
) -> dict:
    model.train()
    if cfg.freeze_bn:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    losses, seen, start = [], 0, time.perf_counter()
    bar = tqdm(loader, desc=desc, disable=not (progress and rt.main), leave=False, unit="batch")
    for images, labels in bar:
        x = _to_input(images, rt.device, cfg.channels_last)
        y = labels.to(rt.device, non_blocking=True)
        with _autocast(rt.device, cfg.amp):
            logits = model(x)
        loss = weighted_cross_entropy(logits, y, weight)
        if rt.distributed:
            # DDP averages gradients over ranks; scaling each rank's weighted sum by the
            # global weight sum makes that average the gradient of the global weighted mean.
            local = weight[y].sum()
            total = local.detach().clone()
            dist.all_reduce(total)
            loss = loss * local.clamp_min(1e-12) / total.clamp_min(1e-12) * rt.world
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        losses.append(loss.item())
        seen += x.shape[0] * rt.world
        rate = seen / (time.perf_counter() - start)
        bar.set_postfix(
            loss=f"{losses[-1]:.4f}",
            lr=f"{optimizer.param_groups[0]['lr']:.2e}",
            img_s=f"{rate:.1f}",
        )
    elapsed = time.perf_counter() - start
    return {
        "loss": float(np.mean(losses)),
        "img_s": seen / elapsed,
        "seconds": elapsed,
        "steps": len(losses),
    }


@torch.inference_mode()
def evaluate_model(
    model: nn.Module,
    loader: DataLoader,
    weight: torch.Tensor,
    classes: ClassSet,
    device: torch.device,
    amp: str = "off",
    channels_last: bool = False,
) -> dict:
    """Seed protocol on whatever the loader yields: argmax over all outputs (void included),
    iouEval semantics, mean_loss = plain mean of the per-batch weighted CEs (SPEC 5)."""
    model.eval()
    cm = ConfusionMatrix(classes.num_classes, classes.void, device)
    losses = []
    for images, labels in loader:
        x = _to_input(images, device, channels_last)
        y = labels.to(device)
        with _autocast(device, amp):
            logits = model(x)
        losses.append(weighted_cross_entropy(logits, y, weight.to(device)).item())
        cm.update(logits.argmax(1), y)
    iou = cm.iou()
    return {
        "mean_iou": float(iou.mean()),
        "iou_class": iou.tolist(),
        "mean_loss": float(np.mean(losses)),
        "confusion": cm.mat.cpu(),
    }


# --- one stage -----------------------------------------------------------------------------


def _checkpoint_name(stage: int, epoch: int, steps: int) -> str:
    return f"{STAGE_PREFIX[stage]}-{epoch}_{steps}.pt"


def _initial_model(cfg: TrainConfig, stage: int, run: Path, classes: ClassSet) -> ENet:
    """Stage 1: random (or --init); stage 2: stage 1's final weights including the head;
    stage 3: stage 2's encoder (BN statistics included), new decoder (SPEC 4.6)."""
    sc = cfg.stage(stage)
    model = ENet(
        classes.num_classes, cfg.variant, sc.encoder_only, tuple(cfg.dropout), cfg.dropout_kind
    )
    source = run / FINAL_NAME[stage - 1] if stage > 1 else None
    if source is None or not source.is_file():
        if cfg.init == "random":
            return model
        source = Path(cfg.init) if cfg.init else None
        if source is None:
            if stage == 1:
                return model
            raise UsageError(
                f"stage {stage} starts from {run / FINAL_NAME[stage - 1]}, which does not exist; "
                "run the earlier stage first or give init = CHECKPOINT (or random)"
            )
    ckpt = read_checkpoint(source)
    meta = ckpt["model"]
    if meta["variant"] != cfg.variant:
        raise UsageError(
            f"{source}: a {meta['variant']} model cannot start a {cfg.variant} run (set "
            f"variant = {meta['variant']!r}, or start from another checkpoint)"
        )
    previous = model_from_checkpoint(ckpt, source)
    check_same_classes(previous.classes, classes, source, cfg.data)
    if meta["encoder_only"] == sc.encoder_only:
        model.load_state_dict(previous.state_dict())
        return model
    return transfer_encoder(previous, model)


def _make_loaders(cfg: TrainConfig, stage: int, rt: Runtime, val: bool):
    sc = cfg.stage(stage)
    train_ds = PreparedDataset(cfg.data, "train")
    scale = train_ds.size[0] / train_ds.source_size[0]
    train_ds.transform = train_transform(
        tuple(cfg.size), stage, scale, tuple(sc.crop_ratio), cfg.augment
    )
    if len(train_ds) < cfg.batch_size * rt.world:
        raise UsageError(
            f"{cfg.data}: {len(train_ds)} training samples cannot fill one batch of "
            f"{cfg.batch_size} x {rt.world} process(es)"
        )
    base = DistributedSampler(train_ds, rt.world, rt.rank, shuffle=True, seed=cfg.seed + stage)
    sampler = SeededSampler(base, cfg.seed, stage, cfg.repeat)
    common = {
        "num_workers": cfg.workers,
        "pin_memory": rt.device.type == "cuda",
        "persistent_workers": cfg.workers > 0,
    }
    if cfg.workers > 0:
        common["prefetch_factor"] = 4
    train_loader = DataLoader(train_ds, cfg.batch_size, sampler=sampler, drop_last=True, **common)
    val_loader = None
    manifest = train_ds.manifest
    if val and "val" in manifest["splits"]:
        val_ds = PreparedDataset(cfg.data, "val", eval_transform(tuple(cfg.size), sc.encoder_only))
        val_loader = DataLoader(val_ds, cfg.batch_size, shuffle=False, **common)
    return train_loader, val_loader


def _log(run: Path, row: dict) -> None:
    path = run / "log.jsonl"
    try:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")
    except OSError as exc:
        raise OutputError(describe_os_error(exc, path)) from None


def read_log(run: Path) -> list[dict]:
    """The rows of ``run``'s log; a line cut short (a process killed mid-write, a full disk)
    is left out, and ``--resume`` rewrites the log without it."""
    path = run / "log.jsonl"
    rows = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and {"stage", "epoch"} <= row.keys():
            rows.append(row)
    return rows


def fit_stage(
    cfg: TrainConfig,
    stage: int,
    run: Path,
    rt: Runtime,
    classes: ClassSet,
    manifest: dict,
    stages: list[int],
    resume: dict | None,
    progress: bool,
    writer=None,
) -> dict:
    sc = cfg.stage(stage)
    seed_everything(cfg.seed, stage)  # the random initialisation is part of the run's seed
    model = _initial_model(cfg, stage, run, classes)
    if resume is not None:
        model.load_state_dict(resume["state_dict"])
    model.to(rt.device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if cfg.sync_bn and rt.distributed:
        if rt.device.type != "cuda":
            raise UsageError("--sync-bn needs CUDA devices")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = torch.optim.Adam(
        param_groups(model, cfg.weight_decay),
        lr=cfg.lr,
        betas=tuple(cfg.betas),
        eps=cfg.eps,
        foreach=True,  # a few batched ops over ENet's ~300 small tensors, not a loop over them
    )
    scaler = torch.amp.GradScaler(rt.device.type) if cfg.amp == "fp16" else None
    start_epoch, best = 0, -1.0
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
        if scaler is not None and resume.get("scaler"):
            scaler.load_state_dict(resume["scaler"])
        start_epoch, best = resume["epoch"], resume.get("best_miou", -1.0)
    net: nn.Module = model
    if rt.distributed:
        ids = [rt.device.index] if rt.device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if cfg.compile and sc.compile:
        net = torch.compile(net, mode=cfg.compile_mode or None)
    weight = stage_weights(manifest, sc.weights, stage, classes).to(rt.device)
    train_loader, val_loader = _make_loaders(cfg, stage, rt, val=rt.main)
    steps = len(train_loader)
    run_offset = sum(cfg.stage(s).epochs for s in stages if s < stage)

    result: dict = {}
    for epoch in range(start_epoch, sc.epochs):
        lr = poly_lr(cfg.lr, sc.curve_start + epoch, sc.curve_epochs)
        for group in optimizer.param_groups:
            group["lr"] = lr
        seed_everything(cfg.seed, stage, epoch, rt.rank)
        train_loader.sampler.set_epoch(epoch)
        desc = f"stage {stage} epoch {epoch + 1}/{sc.epochs}"
        stats = train_one_epoch(
            net, train_loader, optimizer, weight, rt, cfg, scaler, desc, progress
        )
        done = epoch + 1
        last = done == sc.epochs
        row = {"stage": stage, "epoch": done, "run_epoch": run_offset + done, "lr": lr, **stats}
        if (
            rt.main
            and val_loader is not None
            and (last or (cfg.val_every and done % cfg.val_every == 0))
        ):
            val = evaluate_model(
                model, val_loader, weight, classes, rt.device, cfg.amp, cfg.channels_last
            )
            row.update(
                val_miou=val["mean_iou"], val_loss=val["mean_loss"], val_iou_class=val["iou_class"]
            )
        if rt.main:
            _log(run, row)
            msg = f"stage {stage} epoch {done}/{sc.epochs}: loss {stats['loss']:.4f} lr {lr:.2e} "
            msg += f"{stats['img_s']:.1f} img/s"
            if "val_miou" in row:
                msg += f", val mIoU {row['val_miou']:.4f} (loss {row['val_loss']:.4f})"
            print(msg, flush=True)
            if writer is not None:
                writer.add_scalar(f"stage{stage}/loss", stats["loss"], run_offset + done)
                writer.add_scalar(f"stage{stage}/lr", lr, run_offset + done)
                if "val_miou" in row:
                    writer.add_scalar(f"stage{stage}/val_miou", row["val_miou"], run_offset + done)
            is_best = row.get("val_miou", -1.0) > best
            best = max(best, row.get("val_miou", -1.0))
            if last or done % cfg.save_every == 0 or is_best:
                ckpt = build_checkpoint(
                    model,
                    classes,
                    {"trained_by": "enet train", "data": str(cfg.data)},
                    optimizer=optimizer.state_dict(),
                    scaler=scaler.state_dict() if scaler is not None else None,
                    stage=stage,
                    epoch=done,
                    steps_per_epoch=steps,
                    stages=stages,
                    config=cfg.to_dict(),
                    best_miou=best,
                    rng={"torch": torch.get_rng_state()},
                    metrics={k: row[k] for k in ("val_miou", "val_loss") if k in row},
                )
                if last or done % cfg.save_every == 0:
                    atomic_torch_save(
                        ckpt, run / "checkpoints" / _checkpoint_name(stage, done, steps)
                    )
                if is_best:
                    atomic_torch_save(ckpt, run / f"best_stage{stage}.pt")
                if last:
                    weights_only = {
                        k: v for k, v in ckpt.items() if k not in ("optimizer", "scaler")
                    }
                    atomic_torch_save(weights_only, run / FINAL_NAME[stage])
                atomic_torch_save(ckpt, run / "last.pt")  # last: resume starts from here
        result = row
    if rt.distributed:
        dist.barrier()
    return result


# --- the run -------------------------------------------------------------------------------


def _stages(selection: str) -> list[int]:
    if selection == "all":
        return [1, 2, 3]
    if selection in ("1", "2", "3"):
        return [int(selection)]
    raise UsageError(f"--stage must be 1, 2, 3 or all, got {selection!r}")


def _run_files(run: Path) -> list[Path]:
    """What ``enet train`` wrote into ``run``, and what ``enet eval`` wrote beside those
    checkpoints: exact names only, so files a user put there are never among them."""
    checkpoints = [run / name for name in FINAL_NAME.values()]
    checkpoints += [run / "last.pt", *(run / f"best_stage{s}.pt" for s in STAGE_PREFIX)]
    for prefix in STAGE_PREFIX.values():
        checkpoints += [
            p
            for p in (run / "checkpoints").glob(f"{prefix}-*_*.pt")
            if re.fullmatch(rf"{re.escape(prefix)}-\d+_\d+\.pt", p.name)
        ]
    files = [run / name for name in ("config.json", "log.jsonl", "curves.png", "tensorboard")]
    for checkpoint in checkpoints:
        files += [checkpoint, *EvaluationFiles.of(checkpoint).all()]
    return [f for f in dict.fromkeys(files) if f.exists()]


def _made_by_train(folder: Path) -> bool:
    """A run folder of enet train from before folders were marked."""
    return (folder / "config.json").is_file() and (
        (folder / "log.jsonl").is_file() or (folder / "last.pt").is_file()
    )


def _check_run_folder(run: Path, stages: list[int], resume: bool, overwrite: bool) -> None:
    """Start, continue or replace the run in ``run`` only as asked: a finished or partial
    run is never overwritten by accident (see docs/reliability.md)."""
    if resume:
        return
    produced = [f for f in _run_files(run) if f.name != "config.json"]
    if produced and not overwrite and not (run / "last.pt").is_file():
        print(f"{run}: the run here stopped before its first checkpoint; starting it anew")
        overwrite = True
    if overwrite or not produced:
        for path in produced:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        return
    rows = read_log(run)
    reached = max((r["stage"], r["epoch"]) for r in rows) if rows else (0, 0)
    if reached[0] and min(stages) > reached[0] and (run / FINAL_NAME[reached[0]]).is_file():
        added = ", ".join(map(str, stages))
        print(f"{run}: adding stage(s) {added} to the run (stage {reached[0]} finished)")
        return
    raise UsageError(
        f"{run}: holds a training run (stage {reached[0]}, epoch {reached[1]}); --resume "
        "continues it, --overwrite starts it anew, or choose another --out"
    )


def train(
    cfg: TrainConfig,
    stage: str | None = None,
    resume: bool = False,
    progress: bool = True,
    runtime: dict | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Run ``stage`` ("1", "2", "3" or "all"; default ``cfg.stages``) of ``cfg``; with
    ``resume``, continue the run in ``cfg.out`` from its last checkpoint with its saved
    config, but for the ``runtime`` values given (``workers``, ``device``). A folder holding
    a run is refused unless ``resume`` or ``overwrite`` (which first removes that run's
    files) is given, or the stages asked for follow the ones it finished. Returns the run
    folder."""
    run = Path(cfg.out)
    state = None
    if resume and overwrite:
        raise UsageError("--resume continues a run and --overwrite replaces it: give one")
    if resume:
        last = run / "last.pt"
        if not last.is_file():
            raise UsageError(f"{run}: nothing to resume (no last.pt); start it without --resume")
        state = read_checkpoint(last)
        saved = TrainConfig()
        apply_overrides(saved, state.get("config", {}), str(last))
        apply_overrides(saved, {k: v for k, v in (runtime or {}).items() if v is not None})
        saved.out = str(run)
        cfg, stages = saved, list(state.get("stages", []))
        if not stages or state.get("stage") not in stages:
            raise CheckpointError(f"{last}: not a training checkpoint of enet train")
    else:
        stages = _stages(stage or cfg.stages)
    if not cfg.data:
        raise UsageError("no training data given (--data PREPARED)")
    cfg.check(stages)
    manifest = read_manifest(cfg.data)
    classes = ClassSet.from_dict(manifest["classes"])
    rt = init_runtime(cfg.device)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    # Input sizes are fixed within a stage, so cuDNN's per-shape algorithm search pays off.
    torch.backends.cudnn.benchmark = not cfg.deterministic
    lock = locked_folder(run, "train", claim=True, recognise=_made_by_train)
    with lock if rt.main else contextlib.nullcontext():
        if rt.main:
            _check_run_folder(run, stages, resume, overwrite)
            cfg.save(run / "config.json")
            if state is not None:  # drop log rows written after the checkpoint we resume from
                keep = [
                    r
                    for r in read_log(run)
                    if (r["stage"], r["epoch"]) <= (state["stage"], state["epoch"])
                ]
                write_text_atomic(run / "log.jsonl", "".join(json.dumps(r) + "\n" for r in keep))
        writer = None
        if cfg.tensorboard and rt.main:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise UsageError(
                    "--tensorboard needs the tensorboard package (pip install tensorboard)"
                ) from None
            writer = SummaryWriter(str(run / "tensorboard"))
        try:
            for s in stages:
                resume_here = None
                if state is not None:
                    if s < state["stage"] or (
                        s == state["stage"] and state["epoch"] >= cfg.stage(s).epochs
                    ):
                        continue
                    if s == state["stage"]:
                        resume_here = state
                fit_stage(cfg, s, run, rt, classes, manifest, stages, resume_here, progress, writer)
        finally:
            if writer is not None:
                writer.close()
        if rt.main:
            rows = read_log(run)
            if rows:
                plot_curves(rows, run / "curves.png", title=f"{run.name}: {cfg.variant} ENet")
    if rt.distributed:
        dist.destroy_process_group()
    return run
