"""Training: the seed's three stages (SPEC 4), resumable, on one device or many (torchrun).

Read top to bottom: the schedule, one epoch, one stage (model, optimiser, loaders, loop),
the run.

Determinism: each epoch's randomness is a pure function of (seed, stage, epoch): the
sampler's permutation, each sample's augmentation (seeded per sample, so the number of
loader workers does not matter) and dropout (the global RNG is reseeded per epoch and rank).
A run resumed from an epoch checkpoint therefore continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Sampler
from tqdm import tqdm

from ..checkpoint import build_checkpoint, model_from_checkpoint, read_checkpoint
from ..data.classes import ClassSet, same_classes
from ..data.dataset import PreparedDataset
from ..data.prepare import read_manifest
from ..data.transforms import eval_transform, train_transform
from ..errors import CheckpointError, UsageError
from ..evaluate.seed import evaluate_model
from ..fileio import write_text_atomic
from ..folders import locked_folder
from ..losses import class_weights, weighted_cross_entropy
from ..model import SIZE_MULTIPLE, ENet, classifier_keys, transfer_encoder
from ..runtime import (
    Runtime,
    autocast,
    batch_to_input,
    init_runtime,
    mix_seed,
    resolve_amp,
    seed_everything,
)
from ..visualize import plot_curves
from .config import TrainConfig, apply_overrides
from .run_folder import RunFolder

__all__ = ["SeededSampler", "param_groups", "poly_lr", "train"]


# --- the schedule ----------------------------------------------------------------------------


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
                yield index, mix_seed(self.seed, self.stage, self.epoch, r, index)


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


# --- one epoch -------------------------------------------------------------------------------


def train_one_epoch(
    net: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    weight: torch.Tensor,
    rt: Runtime,
    cfg: TrainConfig,
    *,
    desc: str,
    progress: bool,
) -> dict:
    net.train()
    for m in net.modules():  # frozen BatchNorm keeps its running statistics too
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and (
            cfg.freeze_bn or (m.weight is not None and not m.weight.requires_grad)
        ):
            m.eval()
    losses, seen, start = [], 0, time.perf_counter()
    bar = tqdm(loader, desc=desc, disable=not (progress and rt.main), leave=False, unit="batch")
    for images, labels in bar:
        x = batch_to_input(images, rt.device, channels_last=cfg.channels_last)
        y = labels.to(rt.device, non_blocking=True)
        with autocast(rt.device, cfg.amp):
            logits = net(x)
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
        lr = optimizer.param_groups[0]["lr"]
        bar.set_postfix(loss=f"{losses[-1]:.4f}", lr=f"{lr:.2e}", img_s=f"{rate:.1f}")
    elapsed = time.perf_counter() - start
    return {
        "loss": float(np.mean(losses)),
        "img_s": seen / elapsed,
        "seconds": elapsed,
        "steps": len(losses),
    }


# --- one stage -------------------------------------------------------------------------------


def _described(classes: ClassSet) -> str:
    scored = classes.num_classes - (classes.void is not None)
    return f"{classes.name} ({scored} classes)"


def _initial_model(cfg: TrainConfig, stage: int, run: RunFolder, classes: ClassSet) -> ENet:
    """Stage 1: random (or --init); stage 2: stage 1's final weights including the head;
    stage 3: stage 2's encoder (BN statistics included), new decoder (SPEC 4.6)."""
    sc = cfg.stage(stage)
    model = ENet(
        classes.num_classes, cfg.variant, sc.encoder_only, tuple(cfg.dropout), cfg.dropout_kind
    )
    source = run.final(stage - 1) if stage > 1 else None
    if source is None or not source.is_file():
        if cfg.init == "random":
            return model
        source = Path(cfg.init) if cfg.init else None
        if source is None:
            if stage == 1:
                return model
            raise UsageError(
                f"stage {stage} starts from {run.final(stage - 1)}, which does not exist; "
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
    if meta["encoder_only"] != sc.encoder_only:
        return transfer_encoder(previous, model)
    state = previous.state_dict()
    if not same_classes(previous.classes, classes):
        for key in classifier_keys(model):
            del state[key]
        print(
            f"{source}: trained on {_described(previous.classes)}, the data is "
            f"{_described(classes)}: every layer copied but the classifier, "
            "which starts anew"
        )
    missing = model.load_state_dict(state, strict=False).missing_keys
    assert set(missing) <= set(classifier_keys(model)), missing
    return model


def _loaders(cfg: TrainConfig, stage: int, rt: Runtime) -> tuple[DataLoader, DataLoader | None]:
    """The stage's training loader (seeded, sharded over ranks) and, on rank 0, its
    validation loader (None when the set has no val split)."""
    sc = cfg.stage(stage)
    train_set = PreparedDataset(cfg.data, "train")
    scale = train_set.size[0] / train_set.source_size[0]
    train_set.transform = train_transform(
        tuple(cfg.size), stage, scale, tuple(sc.crop_ratio), cfg.augment
    )
    if len(train_set) < cfg.batch_size * rt.world:
        raise UsageError(
            f"{cfg.data}: {len(train_set)} training samples cannot fill one batch of "
            f"{cfg.batch_size} x {rt.world} process(es) (lower --batch-size)"
        )
    base = DistributedSampler(train_set, rt.world, rt.rank, shuffle=True, seed=cfg.seed + stage)
    sampler = SeededSampler(base, cfg.seed, stage, cfg.repeat)
    common = {
        "num_workers": cfg.workers,
        "pin_memory": rt.device.type == "cuda",
        "persistent_workers": cfg.workers > 0,
    }
    if cfg.workers > 0:
        common["prefetch_factor"] = 4
    train_loader = DataLoader(train_set, cfg.batch_size, sampler=sampler, drop_last=True, **common)
    if not rt.main or "val" not in train_set.manifest["splits"]:
        return train_loader, None
    val_set = PreparedDataset(cfg.data, "val", eval_transform(tuple(cfg.size), sc.encoder_only))
    return train_loader, DataLoader(val_set, cfg.batch_size, shuffle=False, **common)


@dataclass
class _Stage:
    """What one stage trains with: the model, the module that runs it (DDP, compiled), the
    optimiser and where it resumes."""

    model: ENet
    net: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    start_epoch: int
    best: float


def _set_up_stage(
    cfg: TrainConfig,
    stage: int,
    run: RunFolder,
    rt: Runtime,
    classes: ClassSet,
    resume: dict | None,
) -> _Stage:
    seed_everything(cfg.seed, stage)  # the random initialisation is part of the run's seed
    model = _initial_model(cfg, stage, run, classes)
    if resume is not None:
        model.load_state_dict(resume["state_dict"])
    if cfg.freeze == "encoder":
        model.encoder.requires_grad_(False)
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
    if cfg.compile and cfg.stage(stage).compile:
        net = torch.compile(net, mode=cfg.compile_mode or None)
    return _Stage(model, net, optimizer, scaler, start_epoch, best)


def _report(row: dict, epochs: int, writer) -> None:
    """One line per epoch on stdout, and TensorBoard's scalars when asked for."""
    msg = f"stage {row['stage']} epoch {row['epoch']}/{epochs}: loss {row['loss']:.4f} "
    msg += f"lr {row['lr']:.2e} {row['img_s']:.1f} img/s"
    if "val_miou" in row:
        msg += f", val mIoU {row['val_miou']:.4f} (loss {row['val_loss']:.4f})"
    print(msg, flush=True)
    if writer is not None:
        stage, step = row["stage"], row["run_epoch"]
        for key in ("loss", "lr", "val_miou"):
            if key in row:
                writer.add_scalar(f"stage{stage}/{key}", row[key], step)


def fit_stage(
    cfg: TrainConfig,
    stage: int,
    run: RunFolder,
    rt: Runtime,
    manifest: dict,
    *,
    stages: list[int],
    resume: dict | None = None,
    progress: bool = True,
    writer=None,
) -> dict:
    """Train one stage from its start (or from ``resume``); returns its last log row."""
    sc = cfg.stage(stage)
    classes = ClassSet.from_dict(manifest["classes"])
    s = _set_up_stage(cfg, stage, run, rt, classes, resume)
    weight = class_weights(
        manifest.get("weights", {}),
        sc.weights,
        stage=stage,
        num_classes=classes.num_classes,
        void=classes.void,
    ).to(rt.device)
    train_loader, val_loader = _loaders(cfg, stage, rt)
    steps = len(train_loader)
    run_offset = sum(cfg.stage(n).epochs for n in stages if n < stage)
    row: dict = {}
    for epoch in range(s.start_epoch, sc.epochs):
        lr = poly_lr(cfg.lr, sc.curve_start + epoch, sc.curve_epochs)
        for group in s.optimizer.param_groups:
            group["lr"] = lr
        seed_everything(cfg.seed, stage, epoch, rt.rank)
        train_loader.sampler.set_epoch(epoch)
        desc = f"stage {stage} epoch {epoch + 1}/{sc.epochs}"
        stats = train_one_epoch(
            s.net,
            train_loader,
            s.optimizer,
            s.scaler,
            weight,
            rt,
            cfg,
            desc=desc,
            progress=progress,
        )
        done = epoch + 1
        last = done == sc.epochs
        row = {"stage": stage, "epoch": done, "run_epoch": run_offset + done, "lr": lr, **stats}
        if val_loader is not None and (last or (cfg.val_every and done % cfg.val_every == 0)):
            val = evaluate_model(
                s.model,
                val_loader,
                weight,
                classes,
                rt.device,
                amp=cfg.amp,
                channels_last=cfg.channels_last,
            )
            row |= {
                "val_miou": val["mean_iou"],
                "val_loss": val["mean_loss"],
                "val_iou_class": val["iou_class"],
            }
        if not rt.main:
            continue
        run.append_log(row)
        _report(row, sc.epochs, writer)
        is_best = row.get("val_miou", -1.0) > s.best
        s.best = max(s.best, row.get("val_miou", -1.0))
        periodic = done % cfg.save_every == 0
        if last or periodic or is_best:
            checkpoint = build_checkpoint(
                s.model,
                classes,
                {"trained_by": "enet train", "data": str(cfg.data)},
                optimizer=s.optimizer.state_dict(),
                scaler=s.scaler.state_dict() if s.scaler is not None else None,
                stage=stage,
                epoch=done,
                steps_per_epoch=steps,
                stages=stages,
                config=cfg.to_dict(),
                best_miou=s.best,
                rng={"torch": torch.get_rng_state()},
                metrics={k: row[k] for k in ("val_miou", "val_loss") if k in row},
            )
            run.save(checkpoint, stage=stage, periodic=periodic, best=is_best, last=last)
    if rt.distributed:
        dist.barrier()
    return row


# --- the run ---------------------------------------------------------------------------------


def _stages(selection: str) -> list[int]:
    if selection == "all":
        return [1, 2, 3]
    if selection in ("1", "2", "3"):
        return [int(selection)]
    raise UsageError(f"--stage must be 1, 2, 3 or all, got {selection!r}")


def _prepared_size(manifest: dict, data: str) -> tuple[int, int]:
    """The size the train split was prepared at, for ``size = 0x0``."""
    info = manifest["splits"].get("train")
    if info is None:
        raise UsageError(f"{data}: has no train split")
    w, h = info["width"], info["height"]
    if w % SIZE_MULTIPLE or h % SIZE_MULTIPLE:
        raise UsageError(
            f"{data}: prepared at {w}x{h}, not multiples of {SIZE_MULTIPLE} (give --size, or "
            "prepare it with --size)"
        )
    return w, h


def _resumed(run: RunFolder, runtime: dict | None) -> tuple[TrainConfig, list[int], dict]:
    """The saved config (with the ``runtime`` values given), stages and state of a run."""
    if not run.last.is_file():
        raise UsageError(f"{run.path}: nothing to resume (no last.pt); start it without --resume")
    state = read_checkpoint(run.last)
    cfg = TrainConfig()
    apply_overrides(cfg, state.get("config", {}), str(run.last))
    apply_overrides(cfg, {k: v for k, v in (runtime or {}).items() if v is not None})
    cfg.out = str(run.path)
    stages = list(state.get("stages", []))
    if not stages or state.get("stage") not in stages:
        raise CheckpointError(f"{run.last}: not a training checkpoint of enet train")
    return cfg, stages, state


def train(
    cfg: TrainConfig,
    *,
    stage: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    runtime: dict | None = None,
) -> Path:
    """Run ``stage`` ("1", "2", "3" or "all"; default ``cfg.stages``) of ``cfg``; with
    ``resume``, continue the run in ``cfg.out`` from its last checkpoint with its saved
    config, but for the ``runtime`` values given (``workers``, ``device``). A folder holding
    a run is refused unless ``resume`` or ``overwrite`` (which first removes that run's
    files) is given, or the stages asked for follow the ones it finished. Returns the run
    folder."""
    run = RunFolder(cfg.out)
    state = None
    if resume and overwrite:
        raise UsageError("--resume continues a run and --overwrite replaces it: give one")
    if resume:
        cfg, stages, state = _resumed(run, runtime)
    else:
        stages = _stages(stage or cfg.stages)
    if not cfg.data:
        raise UsageError("no training data given (--data PREPARED)")
    cfg.check(stages)
    manifest = read_manifest(cfg.data)
    if tuple(cfg.size) == (0, 0):
        cfg.size = _prepared_size(manifest, cfg.data)
    rt = init_runtime(cfg.device)
    cfg.amp = resolve_amp(cfg.amp, rt.device)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    # Input sizes are fixed within a stage, so cuDNN's per-shape algorithm search pays off.
    torch.backends.cudnn.benchmark = not cfg.deterministic
    lock = locked_folder(run.path, "train", claim=True, recognise=lambda _: run.is_legacy_run())
    with lock if rt.main else contextlib.nullcontext():
        if rt.main:
            run.admit(stages, resume=resume, overwrite=overwrite)
            cfg.save(run.config)
            if state is not None:  # drop log rows written after the checkpoint we resume from
                reached = (state["stage"], state["epoch"])
                keep = [r for r in run.log() if (r["stage"], r["epoch"]) <= reached]
                write_text_atomic(
                    run.path / "log.jsonl", "".join(json.dumps(r) + "\n" for r in keep)
                )
        writer = None
        if cfg.tensorboard and rt.main:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise UsageError(
                    "--tensorboard needs the tensorboard package (pip install tensorboard)"
                ) from None
            writer = SummaryWriter(str(run.path / "tensorboard"))
        try:
            for s in stages:
                here = None
                if state is not None:
                    if s < state["stage"] or (
                        s == state["stage"] and state["epoch"] >= cfg.stage(s).epochs
                    ):
                        continue
                    here = state if s == state["stage"] else None
                fit_stage(
                    cfg,
                    s,
                    run,
                    rt,
                    manifest,
                    stages=stages,
                    resume=here,
                    progress=progress,
                    writer=writer,
                )
        finally:
            if writer is not None:
                writer.close()
        if rt.main and (rows := run.log()):
            plot_curves(rows, run.curves, title=f"{run.path.name}: {cfg.variant} ENet")
    if rt.distributed:
        dist.destroy_process_group()
    return run.path
