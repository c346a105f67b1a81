"""Train variants of the demo's schedule side by side and rank them by val mIoU.

    python scripts/demo_sweep.py --out sweep                          # every variant, CPU
    python scripts/demo_sweep.py --out $OUT --device cuda --jobs 16   # on a GPU, all at once
    python scripts/demo_sweep.py --out sweep --variants default,e13 --seeds 0,1,2

The demo must reach its target within minutes on two CPU cores, so its schedule is chosen
by mIoU per training step. One full demo takes ~10 min there; on a GPU all the variants
train at once in a few minutes. Every variant trains on the demo's own data (synthesized
and prepared once, or ``--prepared`` from an earlier run) through ``enet.demo.demo_config``,
so a variant differs from the demo only in what it names. GPUs run in fp32 with TF32 off,
as the CPU does. Writes ``sweep.json`` and prints a table: variant, stage-3 steps, images
seen, val mIoU over the seeds (one seed to the next moves it by up to 0.03).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from enet.demo import DEMO_SETTINGS  # noqa: E402

#: name -> changes to DEMO_SETTINGS ("overrides" are config keys, merged into the demo's own).
#: Stage-3 steps are what the CPU's time goes to: 60 per epoch at 240 scenes and batch 4.
VARIANTS: dict[str, dict] = {
    "default": {},
    "e13": {"epochs": (2, 1, 13)},
    "e16": {"epochs": (2, 1, 16)},
    "e22": {"epochs": (2, 1, 22)},
    "e22-weights-enet": {
        "epochs": (2, 1, 22),
        "overrides": {f"stage{i}.weights": "enet" for i in (1, 2, 3)},
    },
    "e24": {"epochs": (2, 1, 24)},
    "enc1-1": {"epochs": (1, 1, 20)},
    "lr6e-3": {"lr": 6e-3},
    "lr2e-3": {"lr": 2e-3},
    "wd0": {"overrides": {"weight_decay": 0.0}},
    "betas0.99": {"overrides": {"betas": (0.9, 0.99)}},
    "enc4-2": {"epochs": (4, 2, 20)},
    "b8-lr6e-3": {"batch_size": 8, "lr": 6e-3},
    "weights-enet": {"overrides": {f"stage{i}.weights": "enet" for i in (1, 2, 3)}},
    "weights-median": {"overrides": {f"stage{i}.weights": "median_frequency" for i in (1, 2, 3)}},
    "weights-uniform": {"overrides": {f"stage{i}.weights": "uniform" for i in (1, 2, 3)}},
}


def settings_of(name: str, seed: int) -> dict:
    change = VARIANTS[name]
    overrides = {**DEMO_SETTINGS["overrides"], **change.get("overrides", {}), "seed": seed}
    return {**DEMO_SETTINGS, **change, "overrides": overrides}


def prepare_data(out: Path) -> Path:
    from enet.data.prepare import prepare
    from enet.data.synthetic import synthesize

    s = DEMO_SETTINGS
    synth = synthesize(
        out / "synth", train=s["train_images"], val=s["val_images"], size=s["size"], seed=0
    )
    prepared = out / "prepared"
    prepare("cityscapes", synth, prepared, size=s["size"])
    return prepared


def train_one(name: str, seed: int, prepared: Path, run: Path, device: str) -> dict:
    import torch

    from enet.demo import demo_config
    from enet.train.engine import train
    from enet.train.run_folder import RunFolder

    torch.backends.cudnn.allow_tf32 = False  # the CPU computes in plain fp32
    torch.backends.cuda.matmul.allow_tf32 = False
    settings = {**settings_of(name, seed), "compile": False}  # the step's numbers, not speed
    cfg = demo_config(prepared, run, settings, device=device)
    start = time.perf_counter()
    last = RunFolder(train(cfg, stage="all", progress=False)).log()[-1]
    e1, e2, e3 = settings["epochs"]
    steps3 = e3 * (settings["train_images"] // settings["batch_size"])
    return {
        "variant": name,
        "seed": seed,
        "val_miou": last["val_miou"],
        "val_iou_class": last["val_iou_class"],
        "stage3_steps": steps3,
        "images": (e1 + e2 + e3) * settings["train_images"],
        "seconds": round(time.perf_counter() - start, 1),
        "settings": settings,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", type=int, default=1, help="variants trained at once")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seeds", default="0", help="training seeds per variant, e.g. 0,1,2")
    parser.add_argument("--prepared", type=Path, help="the demo's prepared data, if made before")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: train this variant
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.one:
        name, seed = args.one.rsplit("@", 1)
        tag = f"{name}-seed{seed}"
        result = train_one(name, int(seed), args.prepared, args.out / tag, args.device)
        (args.out / f"{tag}.json").write_text(json.dumps(result, indent=1))
        return
    variants = args.variants.split(",")
    unknown = [n for n in variants if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    names = [f"{v}@{s}" for v in variants for s in args.seeds.split(",")]
    prepared = args.prepared or prepare_data(args.out)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if args.jobs > 1:  # the jobs share the cores
        env["OMP_NUM_THREADS"] = "1"
    pending, running, failed = list(names), {}, []
    while pending or running:
        while pending and len(running) < args.jobs:
            name = pending.pop(0)
            cmd = [sys.executable, __file__, "--out", str(args.out), "--device", args.device]
            cmd += ["--prepared", str(prepared), "--one", name]
            log = open(args.out / f"{name.replace('@', '-seed')}.log", "w")  # noqa: SIM115 - closed with the process
            running[name] = (subprocess.Popen(cmd, env=env, stdout=log, stderr=log), log)
        time.sleep(1)
        for name, (proc, log) in list(running.items()):
            if proc.poll() is not None:
                log.close()
                del running[name]
                if proc.returncode:
                    failed.append(name)
                print(f"{name}: {'failed' if proc.returncode else 'done'}", flush=True)
    runs = [
        json.loads((args.out / f"{n.replace('@', '-seed')}.json").read_text())
        for n in names
        if n not in failed
    ]
    table = []
    for v in variants:
        mious = [r["val_miou"] for r in runs if r["variant"] == v]
        if mious:
            first = next(r for r in runs if r["variant"] == v)
            table.append((statistics.mean(mious), min(mious), max(mious), len(mious), v, first))
    table.sort(key=lambda row: -row[0])
    (args.out / "sweep.json").write_text(json.dumps(runs, indent=1))
    print(f"{'variant':18s} {'stage-3 steps':>13s} {'images':>7s}  val mIoU: mean (min-max, runs)")
    for mean, lo, hi, n, v, r in table:
        print(
            f"{v:18s} {r['stage3_steps']:13d} {r['images']:7d}  {mean:.4f} ({lo:.4f}-{hi:.4f}, {n})"
        )
    if failed:
        sys.exit(f"failed: {', '.join(failed)} (see their logs in {args.out})")


if __name__ == "__main__":
    main()
