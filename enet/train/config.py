"""Training configuration: dataclass defaults (the seed's recipe, SPEC 4) -> optional TOML ->
command-line overrides. Unknown keys are errors; the resolved config is saved with the run."""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["StageConfig", "TrainConfig", "apply_overrides", "load_config", "presets"]


@dataclass
class StageConfig:
    """One training stage (SPEC 4.1). The LR follows ``lr * (1 - e / curve_epochs) ** 0.9``
    with e = ``curve_start`` + epoch within the stage (stage 2 continues stage 1's curve)."""

    epochs: int
    curve_epochs: int
    curve_start: int
    encoder_only: bool
    crop_ratio: tuple[float, float]
    #: "auto" (the seed's tables for Cityscapes, else "enet"), "seed_encoder", "seed_decoder",
    #: "enet", "median_frequency" (from the prepared manifest) or "uniform".
    weights: str
    #: with ``compile``: whether this stage is compiled (compiling ENet's training step takes
    #: ~2 min on two CPU cores, so it pays off only for a stage of several hundred steps)
    compile: bool = True


def _seed_stages() -> dict[str, StageConfig]:
    return {
        "stage1": StageConfig(65, 150, 0, True, (1.2, 1.2), "auto"),
        "stage2": StageConfig(85, 150, 65, True, (1.0, 1.3), "auto"),
        "stage3": StageConfig(100, 100, 0, False, (1.0, 1.3), "auto"),
    }


@dataclass
class TrainConfig:
    """Everything a run needs; defaults reproduce the seed (single device)."""

    data: str = ""
    out: str = "runs/train"
    variant: str = "seed"
    #: (width, height) of training inputs; the seed trains at 1024x512. (0, 0): the size the
    #: data was prepared at.
    size: tuple[int, int] = (1024, 512)
    batch_size: int = 6
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 1e-4
    #: passes over the (per-rank) data per epoch; the seed's multi-device recipe uses 2.
    repeat: int = 1
    #: dropout rates (stage 1, from 2.0 on), SPEC 2.2.
    dropout: tuple[float, float] = (0.01, 0.1)
    #: "auto" (the variant's: seed element-wise, pytorch-enet channel-wise), "element",
    #: "channel" (far faster on CPUs, where random numbers dominate the step).
    dropout_kind: str = "auto"
    augment: bool = True
    #: keep BatchNorm in eval mode (running statistics frozen) while training.
    freeze_bn: bool = False
    #: "encoder": train only the decoder (or head); the encoder's weights and BatchNorm
    #: statistics stay as the initial checkpoint has them. "" trains everything.
    freeze: str = ""
    workers: int = 4
    device: str = "auto"
    amp: str = "off"
    channels_last: bool = False
    compile: bool = False
    #: torch.compile mode with --compile: "" (default), "reduce-overhead" (CUDA graphs: ENet's
    #: many small kernels leave a GPU waiting on launches), "max-autotune".
    compile_mode: str = ""
    sync_bn: bool = False
    seed: int = 0
    deterministic: bool = False
    save_every: int = 20
    val_every: int = 0
    tensorboard: bool = False
    #: the stages ``enet train`` runs when --stage is not given: "all", "1", "2" or "3".
    stages: str = "all"
    #: an enet checkpoint to start stage 1 from (or a later stage, when the earlier stage's
    #: final file is absent); "random" starts any stage from a random initialisation.
    init: str = ""
    stage1: StageConfig = field(default_factory=lambda: _seed_stages()["stage1"])
    stage2: StageConfig = field(default_factory=lambda: _seed_stages()["stage2"])
    stage3: StageConfig = field(default_factory=lambda: _seed_stages()["stage3"])

    def stage(self, n: int) -> StageConfig:
        return getattr(self, f"stage{n}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        from ..fileio import write_json_atomic

        write_json_atomic(path, self.to_dict())

    def check(self, stages: list[int]) -> None:
        """``UsageError`` naming the first value that cannot work for a run of ``stages``,
        before any data is read or anything is written."""
        from ..images import MAX_IMAGE_PIXELS
        from ..model import DROPOUT_KINDS, SIZE_MULTIPLE, VARIANTS

        rules: list[tuple[str, Any, bool, str]] = [
            ("variant", self.variant, self.variant in VARIANTS, f"is not one of {VARIANTS}"),
            (
                "size",
                self.size,
                tuple(self.size) == (0, 0)
                or (
                    all(v > 0 and v % SIZE_MULTIPLE == 0 for v in self.size)
                    and self.size[0] * self.size[1] <= MAX_IMAGE_PIXELS
                ),
                f"must be positive multiples of {SIZE_MULTIPLE} (width, height), at most "
                f"{MAX_IMAGE_PIXELS:,} pixels, or 0x0 for the prepared size",
            ),
            ("seed", self.seed, 0 <= self.seed < 2**63, "must be a whole number from 0 to 2^63-1"),
            ("batch_size", self.batch_size, self.batch_size >= 1, "must be at least 1"),
            ("lr", self.lr, self.lr > 0, "must be positive"),
            ("betas", self.betas, all(0 <= b < 1 for b in self.betas), "must lie in [0, 1)"),
            ("eps", self.eps, self.eps > 0, "must be positive"),
            ("weight_decay", self.weight_decay, self.weight_decay >= 0, "must not be negative"),
            ("repeat", self.repeat, self.repeat >= 1, "must be at least 1"),
            ("dropout", self.dropout, all(0 <= p < 1 for p in self.dropout), "must lie in [0, 1)"),
            (
                "dropout_kind",
                self.dropout_kind,
                self.dropout_kind in DROPOUT_KINDS,
                f"is not one of {DROPOUT_KINDS}",
            ),
            ("workers", self.workers, self.workers >= 0, "must not be negative"),
            (
                "amp",
                self.amp,
                self.amp in ("off", "bf16", "fp16", "auto"),
                "is not off, bf16, fp16 or auto",
            ),
            (
                "compile_mode",
                self.compile_mode,
                self.compile_mode in ("", "default", "reduce-overhead", "max-autotune"),
                "is not default, reduce-overhead or max-autotune",
            ),
            ("save_every", self.save_every, self.save_every >= 1, "must be at least 1"),
            ("val_every", self.val_every, self.val_every >= 0, "must not be negative"),
            ("stages", self.stages, self.stages in ("all", "1", "2", "3"), "is not all, 1, 2 or 3"),
            ("freeze", self.freeze, self.freeze in ("", "encoder"), "is not encoder (or empty)"),
        ]
        for n in stages:
            sc, key = self.stage(n), f"stage{n}"
            rules += [
                (f"{key}.epochs", sc.epochs, sc.epochs >= 1, "must be at least 1 to run it"),
                (f"{key}.curve_start", sc.curve_start, sc.curve_start >= 0, "is negative"),
                (
                    f"{key}.curve_epochs",
                    sc.curve_epochs,
                    sc.curve_start + sc.epochs <= sc.curve_epochs,
                    f"is shorter than curve_start + epochs ({sc.curve_start} + {sc.epochs}): "
                    "the poly schedule would run past zero",
                ),
                (
                    f"{key}.crop_ratio",
                    sc.crop_ratio,
                    0 < sc.crop_ratio[0] <= sc.crop_ratio[1],
                    "must be (low, high) with 0 < low <= high",
                ),
            ]
        for key, value, ok, rule in rules:
            if not ok:
                raise UsageError(
                    f"config key {key!r}: {value!r} {rule} (set it in --config, with its flag "
                    f"or with --set {key}=VALUE)"
                )


def _scalar(value: Any, current: Any) -> Any:
    """``value`` as the type of ``current``; an int must be a whole number (1.5 is refused,
    not truncated) and a bool a boolean word."""
    if isinstance(current, bool):
        if isinstance(value, str):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("true", "1", "yes")
        if not isinstance(value, (bool, int)) or value not in (0, 1):
            raise ValueError(value)
        return bool(value)
    if isinstance(current, int):
        if isinstance(value, bool):
            raise ValueError(value)
        number = float(value.strip()) if isinstance(value, str) else value
        if isinstance(number, float) and not number.is_integer():
            raise ValueError(value)
        return int(number)
    if isinstance(current, float):
        if isinstance(value, bool):
            raise ValueError(value)
        number = float(value)
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError(value)
        return number
    if isinstance(current, str) and not isinstance(value, str):
        raise ValueError(value)
    return type(current)(value)


def _coerce(value: Any, current: Any, key: str) -> Any:
    """Bring a TOML/CLI value to the type of the default it replaces."""
    try:
        if isinstance(current, tuple):
            items = value.replace("x", ",").split(",") if isinstance(value, str) else list(value)
            if len(items) != len(current):
                raise ValueError(value)
            return tuple(_scalar(v, c) for c, v in zip(current, items, strict=True))
        return _scalar(value, current)
    except (TypeError, ValueError, OverflowError):
        raise UsageError(
            f"config key {key!r}: cannot use {value!r} (default {current!r})"
        ) from None


def apply_overrides(config: TrainConfig, values: dict[str, Any], origin: str = "") -> TrainConfig:
    """Set dotted keys (``lr``, ``stage3.epochs``) or nested dicts; unknown keys are errors."""
    where = f" in {origin}" if origin else ""
    for key, value in values.items():
        target, name = config, key
        if isinstance(value, dict) and hasattr(config, key):
            sub = getattr(config, key)
            for k, v in value.items():
                _set(sub, k, v, f"{key}.{k}", where)
            continue
        if "." in key:
            head, name = key.split(".", 1)
            if not hasattr(config, head) or not dataclasses.is_dataclass(getattr(config, head)):
                raise UsageError(f"unknown config key {key!r}{where}")
            target = getattr(config, head)
        _set(target, name, value, key, where)
    return config


def _set(target: Any, name: str, value: Any, key: str, where: str) -> None:
    names = {f.name for f in dataclasses.fields(target)}
    if name not in names:
        raise UsageError(f"unknown config key {key!r}{where}; known: {', '.join(sorted(names))}")
    current = getattr(target, name)
    if dataclasses.is_dataclass(current):
        raise UsageError(f"config key {key!r}{where} is a table; set its fields ({key}.epochs)")
    setattr(target, name, _coerce(value, current, key))


PRESETS_DIR = Path(__file__).parent / "presets"


def presets() -> list[str]:
    """Names of the packaged configs (``enet train --config camvid``)."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))


def load_config(path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Defaults, then the TOML or JSON file at ``path`` (or a packaged preset of that name),
    then ``overrides`` (dotted keys)."""
    config = TrainConfig()
    if path:
        path = Path(path)
        if not path.exists() and str(path) in presets():
            path = PRESETS_DIR / f"{path}.toml"
        try:
            text = path.read_text()
            values = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        except (OSError, ValueError) as exc:
            raise UsageError(f"{path}: cannot read config ({exc})") from None
        apply_overrides(config, values, str(path))
    apply_overrides(config, {k: v for k, v in overrides.items() if v is not None})
    return config
