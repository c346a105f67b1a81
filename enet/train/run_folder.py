"""A training run's folder: the names of what ``enet train`` writes there, its per-epoch log,
and the rules for starting, continuing or replacing a run in it (docs/reliability.md).

Layout (the seed's checkpoint names, SPEC 4.5)::

    config.json  log.jsonl  curves.png  .enet.json (marker)  .enet.lock (while running)
    checkpoints/Encoder-65_495.pt  Encoder_1-85_495.pt  ENet-100_495.pt   every save_every
    Encoder_stage1.pt  Encoder_stage2.pt  ENet_stage3.pt                 final weights
    best_stage{1,2,3}.pt                                                  best val mIoU
    last.pt                                                               where --resume starts
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from ..checkpoint import EvaluationFiles, atomic_torch_save
from ..errors import OutputError, UsageError, describe_os_error

__all__ = ["STAGE_PREFIX", "RunFolder"]

#: The seed's checkpoint stems per stage.
STAGE_PREFIX = {1: "Encoder", 2: "Encoder_1", 3: "ENet"}
_FINAL = {1: "Encoder_stage1.pt", 2: "Encoder_stage2.pt", 3: "ENet_stage3.pt"}
_WEIGHTS_ONLY_DROPS = ("optimizer", "scaler")


class RunFolder:
    """The files of one run, by name."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def last(self) -> Path:
        return self.path / "last.pt"

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def curves(self) -> Path:
        return self.path / "curves.png"

    def final(self, stage: int) -> Path:
        """The weights-only checkpoint a stage ends with (the next stage starts from it)."""
        return self.path / _FINAL[stage]

    def best(self, stage: int) -> Path:
        return self.path / f"best_stage{stage}.pt"

    def epoch_checkpoint(self, stage: int, epoch: int, steps: int) -> Path:
        return self.path / "checkpoints" / f"{STAGE_PREFIX[stage]}-{epoch}_{steps}.pt"

    def save(self, checkpoint: dict, *, stage: int, periodic: bool, best: bool, last: bool):
        """Write an epoch's checkpoint wherever it belongs; ``last.pt`` last, so a run killed
        while saving resumes from the epoch before."""
        epoch, steps = checkpoint["epoch"], checkpoint["steps_per_epoch"]
        if periodic or last:
            atomic_torch_save(checkpoint, self.epoch_checkpoint(stage, epoch, steps))
        if best:
            atomic_torch_save(checkpoint, self.best(stage))
        if last:
            weights = {k: v for k, v in checkpoint.items() if k not in _WEIGHTS_ONLY_DROPS}
            atomic_torch_save(weights, self.final(stage))
        atomic_torch_save(checkpoint, self.last)

    # --- the log ---------------------------------------------------------------------------

    def append_log(self, row: dict) -> None:
        path = self.path / "log.jsonl"
        try:
            with open(path, "a") as f:
                f.write(json.dumps(row) + "\n")
        except OSError as exc:
            raise OutputError(describe_os_error(exc, path)) from None

    def log(self) -> list[dict]:
        """The log's rows; a line cut short (a process killed mid-write, a full disk) is
        left out, and ``--resume`` rewrites the log without it."""
        path = self.path / "log.jsonl"
        rows = []
        for line in path.read_text().splitlines() if path.exists() else []:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and {"stage", "epoch"} <= row.keys():
                rows.append(row)
        return rows

    # --- what is there, and what may be done with it -----------------------------------------

    def files(self) -> list[Path]:
        """What ``enet train`` wrote here, and what ``enet eval`` wrote beside those
        checkpoints: exact names only, so files a user put here are never among them."""
        checkpoints = [*(self.final(s) for s in _FINAL), self.last]
        checkpoints += [self.best(s) for s in STAGE_PREFIX]
        for prefix in STAGE_PREFIX.values():
            pattern = re.compile(rf"{re.escape(prefix)}-\d+_\d+\.pt")
            found = (self.path / "checkpoints").glob(f"{prefix}-*_*.pt")
            checkpoints += [p for p in found if pattern.fullmatch(p.name)]
        files = [self.config, self.path / "log.jsonl", self.curves, self.path / "tensorboard"]
        for checkpoint in checkpoints:
            files += [checkpoint, *EvaluationFiles.of(checkpoint).all()]
        return [f for f in dict.fromkeys(files) if f.exists()]

    def is_legacy_run(self) -> bool:
        """A run folder of enet train from before folders were marked."""
        return self.config.is_file() and (
            (self.path / "log.jsonl").is_file() or self.last.is_file()
        )

    def admit(self, stages: list[int], *, resume: bool, overwrite: bool) -> None:
        """Start, continue or replace the run here only as asked: a run is never replaced by
        accident. Stages that follow the ones it finished may be added; a run that stopped
        before its first checkpoint is started anew."""
        if resume:
            return
        produced = [f for f in self.files() if f != self.config]
        if produced and not overwrite and not self.last.is_file():
            print(
                f"{self.path}: the run here stopped before its first checkpoint; starting it anew"
            )
            overwrite = True
        if overwrite or not produced:
            for path in produced:
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            return
        rows = self.log()
        reached = max((r["stage"], r["epoch"]) for r in rows) if rows else (0, 0)
        if reached[0] and min(stages) > reached[0] and self.final(reached[0]).is_file():
            added = ", ".join(map(str, stages))
            print(f"{self.path}: adding stage(s) {added} to the run (stage {reached[0]} finished)")
            return
        raise UsageError(
            f"{self.path}: holds a training run (stage {reached[0]}, epoch {reached[1]}); "
            "--resume continues it, --overwrite starts it anew, or choose another --out"
        )
