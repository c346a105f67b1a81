"""``enet train``: the seed's three stages (or a preset's), resumable, on one device or many."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UsageError
from ..train.config import presets
from . import args as types

__all__ = ["register"]

#: Flags that set a run's config: a resumed run keeps its saved one.
_RUN_SETTINGS = (
    "data", "out", "stage", "config", "variant", "size", "batch_size", "lr", "epochs",
    "repeat", "amp", "channels_last", "compile", "sync_bn", "seed", "deterministic",
    "save_every", "val_every", "tensorboard", "init", "freeze", "set",
)  # fmt: skip


def _overrides(args: argparse.Namespace) -> dict:
    """Config values the flags set (None: not given)."""
    values = {
        "data": str(args.data) if args.data else None,
        "out": str(args.out) if args.out else None,
        "variant": args.variant,
        "size": args.size,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "repeat": args.repeat,
        "workers": args.workers,
        "device": args.device,
        "amp": args.amp,
        "channels_last": args.channels_last or None,
        "compile": args.compile or None,
        "sync_bn": args.sync_bn or None,
        "seed": args.seed,
        "deterministic": args.deterministic or None,
        "save_every": args.save_every,
        "val_every": args.val_every,
        "tensorboard": args.tensorboard or None,
        "init": str(args.init) if args.init else None,
        "freeze": args.freeze,
    }
    for n, value in enumerate(args.epochs or [], 1):
        values[f"stage{n}.epochs"] = value
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--set expects KEY=VALUE, got {item!r}")
        values[key.strip()] = value.strip()
    return values


def run_train(args: argparse.Namespace) -> int:
    from ..train.config import load_config
    from ..train.engine import train

    progress = not args.no_progress
    if args.resume:
        if args.overwrite:
            raise UsageError("--resume continues a run and --overwrite replaces it: give one")
        fixed = [
            f"--{name.replace('_', '-')}"
            for name in _RUN_SETTINGS
            if getattr(args, name) not in (None, False, [])
        ]
        if fixed:
            raise UsageError(
                f"{args.resume}: --resume continues the run with its saved config; "
                f"{', '.join(fixed)} cannot change it (only --workers and --device can; to "
                f"train differently, start a new run with --init {args.resume}/last.pt)"
            )
        runtime = {"workers": args.workers, "device": args.device}
        cfg = load_config(None, out=str(args.resume))
        run = train(cfg, resume=True, progress=progress, runtime=runtime)
    else:
        cfg = load_config(args.config, **_overrides(args))
        run = train(cfg, stage=args.stage, progress=progress, overwrite=args.overwrite)
    print(f"run folder: {run} (log.jsonl, curves.png, checkpoints/)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train ENet: the seed's three stages, resumable, one device or torchrun DDP",
        description="Stage 1: encoder + head, 65 epochs of a 150-epoch poly curve; stage 2: 85 "
        "more on that curve; stage 3: full ENet, 100 epochs, encoder from stage 2. Adam 5e-4, "
        "coupled L2 1e-4 (BN exempt), batch 6, weighted cross-entropy. Defaults reproduce the "
        "seed; --config TOML and flags override. Multi-device: torchrun --nproc_per_node N "
        "-m enet train ... (gradients are averaged across ranks).",
    )
    p.add_argument("--data", type=Path, help="a prepared set (enet prepare)")
    p.add_argument("--out", type=Path, help="run folder (default runs/train)")
    p.add_argument(
        "--stage",
        choices=["1", "2", "3", "all"],
        help="stages to run (default: the config's stages, all unless a preset says otherwise)",
    )
    p.add_argument(
        "--config",
        type=Path,
        help="TOML (or JSON) file of config values, or a packaged preset: " + ", ".join(presets()),
    )
    p.add_argument("--resume", type=Path, metavar="RUN", help="continue RUN from last.pt")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start anew in an --out that holds a run, removing that run's files first",
    )
    p.add_argument("--variant", choices=["seed", "pytorch-enet"])
    p.add_argument("--size", type=types.size, help="training WxH (default 1024x512)")
    p.add_argument("--batch-size", type=types.count(1), help="per device (default 6)")
    p.add_argument(
        "--lr", type=types.number(0, above_low=True), help="peak learning rate (default 5e-4)"
    )
    p.add_argument("--epochs", type=types.epochs, help="epochs of stages 1,2,3 (e.g. 65,85,100)")
    p.add_argument(
        "--repeat", type=types.count(1), help="passes over the data per epoch (default 1)"
    )
    p.add_argument("--workers", type=types.count(0), help="loader processes per device (default 4)")
    p.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument(
        "--amp",
        choices=["off", "bf16", "fp16", "auto"],
        help="mixed precision (default off; auto: bf16 on a CPU that computes it natively)",
    )
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across GPUs")
    p.add_argument("--seed", type=types.SEED)
    p.add_argument("--deterministic", action="store_true")
    p.add_argument(
        "--save-every", type=types.count(1), help="checkpoint every N epochs (default 20)"
    )
    p.add_argument(
        "--val-every", type=types.count(0), help="validate every K epochs (default: stage end)"
    )
    p.add_argument("--tensorboard", action="store_true")
    p.add_argument(
        "--init",
        type=Path,
        help="enet checkpoint or bundled model (camvid) to start from, or 'random'; with "
        "other classes than the data's, every layer is copied but the classifier",
    )
    p.add_argument(
        "--freeze",
        choices=["encoder"],
        help="train the decoder only: the encoder stays as --init has it",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="any config value, e.g. --set stage3.weights=enet --set dropout=0,0 (repeatable)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run_train)
