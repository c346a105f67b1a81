"""Train the CamVid candidates side by side on one GPU inside a fixed time budget.

    python scripts/camvid_gpu.py pack --root CamVid --dest .carry/camvid    # here
    python scripts/camvid_gpu.py run --data .carry/camvid --budget 330 --out $OUT  # on the GPU

``pack`` copies the train and val splits with frames as JPEG (quality 97, 4:4:4) so that
they fit the 64 MiB a GPU lease carries; annotations stay lossless. The test split never
travels: it is scored once, on the CPU, from the original PNGs (results/camvid/README.md).

``run`` prepares the set, probes the epoch time of every candidate while all run at once
(ENet at batch 10 leaves an H100/H200 mostly idle, so candidates share it well), sizes each
schedule to the budget, trains them concurrently with ``enet train`` and bf16 autocast +
channels_last, and packs each run (log, config, curves, best and final weights) as a tar.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

#: name -> (staged?, overrides on top of the camvid preset)
CANDIDATES: dict[str, tuple[bool, dict[str, str]]] = {
    "staged-lr1e-3": (True, {}),
    "single-lr1e-3": (False, {}),
    "staged-lr5e-4": (True, {"lr": "5e-4"}),
}


#: Resumption state and the encoder stages' weights stay behind (a returned file holds 16 MiB).
SKIP_IN_TAR = {"checkpoints", "last.pt", "best_stage1.pt", "best_stage2.pt"}
SKIP_IN_TAR |= {"Encoder_stage1.pt", "Encoder_stage2.pt"}


def pack(root: Path, dest: Path, quality: int) -> None:
    for split in ("train", "val"):
        (dest / split).mkdir(parents=True, exist_ok=True)
        shutil.copytree(root / f"{split}annot", dest / f"{split}annot", dirs_exist_ok=True)
        for src in sorted((root / split).glob("*.png")):
            Image.open(src).convert("RGB").save(
                dest / split / f"{src.stem}.jpg", quality=quality, subsampling=0
            )
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    print(f"packed {root} -> {dest}: {size / 2**20:.1f} MiB")


def enet(*args: str, log: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2", "PYTHONUNBUFFERED": "1"}
    out = open(log, "w") if log else None  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(
        [sys.executable, "-m", "enet", *args], env=env, stdout=out, stderr=subprocess.STDOUT
    )


def train_args(
    data: Path,
    run: Path,
    staged: bool,
    overrides: dict[str, str],
    epochs: tuple[int, int, int],
    extra: list[str],
) -> list[str]:
    """``enet train`` flags for one candidate; epochs = (stage 1, stage 2, stage 3)."""
    e1, e2, e3 = epochs
    sets = {"stages": "all" if staged else "3", **overrides}
    if staged:
        sets.update(
            {
                "stage1.epochs": str(e1),
                "stage1.curve_epochs": str(e1 + e2),
                "stage2.epochs": str(e2),
                "stage2.curve_epochs": str(e1 + e2),
                "stage2.curve_start": str(e1),
            }
        )
    sets.update({"stage3.epochs": str(e3), "stage3.curve_epochs": str(e3)})
    args = ["train", "--config", "camvid", "--data", str(data), "--out", str(run)]
    args += ["--amp", "bf16", "--channels-last"]
    args += ["--workers", "4", "--no-progress"]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    return args + [a for item in extra for a in ("--set", item)]


def epoch_seconds(run: Path) -> dict[int, float]:
    """Seconds of each stage's last logged epoch (the first one pays for start-up)."""
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return {r["stage"]: r["seconds"] for r in rows}


def wait_all(procs: dict[str, subprocess.Popen], deadline: float) -> dict[str, int]:
    codes = {}
    for name, proc in procs.items():
        try:
            codes[name] = proc.wait(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes[name] = -9
    return codes


def run(data_root: Path, out: Path, budget: float, work: Path, extra: list[str]) -> None:
    start = time.time()
    out.mkdir(parents=True, exist_ok=True)
    prepared = work / "camvid_prepared"
    prep = enet(
        "prepare", "--dataset", "camvid", "--root", str(data_root), "--out", str(prepared),
        "--split", "train", "--split", "val",
    )  # fmt: skip
    if prep.wait() != 0:
        raise SystemExit("prepare failed")

    # Probe: every candidate at once, two epochs per stage it uses.
    probes = {
        name: enet(
            *train_args(prepared, work / f"probe-{name}", staged, sets, (2, 2, 2), extra),
            log=work / f"probe-{name}.log",
        )
        for name, (staged, sets) in CANDIDATES.items()
    }
    codes = wait_all(probes, time.time() + 120)
    if any(codes.values()):
        for name in CANDIDATES:
            print((work / f"probe-{name}.log").read_text()[-3000:])
        raise SystemExit(f"probe failed: {codes}")
    train_budget = budget - (time.time() - start)
    plan = {}
    for name, (staged, _) in CANDIDATES.items():
        t = epoch_seconds(work / f"probe-{name}")
        # Staged: stages 1+2 get half as many epochs as stage 3; 15 s for loaders and
        # validation (every 10 epochs, ~0.5 s each) per stage.
        fixed = 15.0 * (3 if staged else 1)
        per_unit = t[3] + (0.5 * t[1] if staged else 0.0)
        e3 = int(max(20, min(600, 0.9 * (train_budget - fixed) / per_unit)) // 10 * 10)
        e12 = e3 // 2 if staged else 0
        plan[name] = {"epoch_s": t, "epochs": (e12 * 2 // 5, e12 - e12 * 2 // 5, e3)}
    print(json.dumps({"train_budget_s": round(train_budget), "plan": plan}, indent=1), flush=True)

    t0 = time.time()
    procs = {}
    for name, (staged, sets) in CANDIDATES.items():
        (work / name).mkdir(parents=True, exist_ok=True)
        args = train_args(prepared, work / name, staged, sets, plan[name]["epochs"], extra)
        procs[name] = enet(*args, log=work / name / "train.log")
    codes = wait_all(procs, t0 + train_budget + 30)

    import torch

    summary = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "budget_s": budget,
        "train_wall_s": round(time.time() - t0, 1),
        "candidates": {},
    }
    for name in CANDIDATES:
        rows = [json.loads(x) for x in (work / name / "log.jsonl").read_text().splitlines()]
        final = [r for r in rows if r["stage"] == 3 and "val_miou" in r]
        best = max(final, key=lambda r: r["val_miou"], default=None)
        summary["candidates"][name] = {
            "exit_code": codes[name],
            "epochs": plan[name]["epochs"],
            "best_val_miou": best and best["val_miou"],
            "best_epoch": best and best["epoch"],
            "last_val_miou": final[-1]["val_miou"] if final else None,
            "train_seconds": round(sum(r["seconds"] for r in rows), 1),
        }
        with tarfile.open(out / f"{name}.tar", "w") as tar:
            tar.add(work / f"probe-{name}.log", arcname=f"{name}/probe.log")
            for path in sorted((work / name).iterdir()):
                if path.name not in SKIP_IN_TAR:
                    tar.add(path, arcname=f"{name}/{path.name}")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="copy train/val with JPEG frames (here)")
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--dest", type=Path, required=True)
    p.add_argument("--quality", type=int, default=97)
    p = sub.add_parser("run", help="probe, size and train the candidates (on the GPU)")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--budget", type=float, default=330, help="seconds for prepare+probe+train")
    p.add_argument("--work", type=Path, default=Path("/tmp/camvid_gpu"))
    p.add_argument("--set", action="append", default=[], help="KEY=VALUE for every candidate")
    args = parser.parse_args()
    if args.command == "pack":
        pack(args.root, args.dest, args.quality)
    else:
        run(args.data, args.out, args.budget, args.work, args.set)


if __name__ == "__main__":
    main()
