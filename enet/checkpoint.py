"""Self-describing checkpoints of plain types: safe to read with ``torch.load(weights_only=True)``.

A checkpoint is a dict::

    {"format": "enet-checkpoint", "format_version": 1,
     "model": {"variant": str, "num_classes": int, "encoder_only": bool},
     "classes": {"name", "names", "palette", "void"},
     "provenance": {...},            # where the weights came from
     "state_dict": {name: tensor},
     ...}                            # training adds optimizer, epoch, config, RNG states

Writes go to a temporary file in the target folder and are renamed into place, so a crash
never leaves a half-written checkpoint under the final name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .data.classes import ClassSet
from .errors import CheckpointError
from .fileio import atomic_write
from .model import ENet

__all__ = [
    "FORMAT",
    "atomic_torch_save",
    "build_checkpoint",
    "bundled_models",
    "load_checkpoint",
    "read_checkpoint",
    "resolve_checkpoint",
    "save_changed_weights",
    "save_checkpoint",
]

FORMAT = "enet-checkpoint"
FORMAT_VERSION = 1
#: Trained models shipped with the package; results/<name>/ holds how each was made.
BUNDLED_DIR = Path(__file__).parent / "weights"


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temp file beside ``path``, then rename over it."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def save_changed_weights(ckpt: dict, model: ENet, path: str | Path, provenance: dict) -> Path:
    """``ckpt`` with ``model``'s weights, written atomically to ``path``. Metrics recorded
    for the old weights are dropped (they no longer describe it); ``provenance`` says how
    the weights changed."""
    ckpt = {k: v for k, v in ckpt.items() if k not in ("best_miou", "metrics")}
    ckpt["state_dict"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    kept = {k: v for k, v in ckpt.get("provenance", {}).items() if k != "test_miou"}
    ckpt["provenance"] = kept | provenance
    return atomic_torch_save(ckpt, path)


def build_checkpoint(
    model: ENet, classes: ClassSet, provenance: dict | None = None, **extra: Any
) -> dict:
    """The checkpoint dict for ``model`` (see module docstring)."""
    if classes.num_classes != model.num_classes:
        raise CheckpointError(
            f"class set {classes.name!r} has {classes.num_classes} classes "
            f"but the model outputs {model.num_classes}"
        )
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": {
            "variant": model.variant,
            "num_classes": model.num_classes,
            "encoder_only": model.encoder_only,
        },
        "classes": classes.to_dict(),
        "provenance": dict(provenance or {}),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }


def save_checkpoint(
    path: str | Path,
    model: ENet,
    classes: ClassSet,
    provenance: dict | None = None,
    **extra: Any,
) -> Path:
    """Write ``model`` with its metadata atomically; returns the path."""
    return atomic_torch_save(build_checkpoint(model, classes, provenance, **extra), path)


def load_torch_file(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with every failure turned into one readable line."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip, pickle and torch errors differ by version
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (truncated or foreign file: {first[:200]})"
        ) from None


def bundled_models() -> list[str]:
    """Names of the models shipped inside the package (``load_checkpoint("camvid")``)."""
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.pt"))


def resolve_checkpoint(path: str | Path) -> Path:
    """``path`` itself, or the bundled model of that name when no such file exists."""
    path = Path(path)
    if not path.exists() and str(path) in bundled_models():
        return BUNDLED_DIR / f"{path}.pt"
    return path


def read_checkpoint(path: str | Path) -> dict:
    """Load and validate one of our checkpoints (a file, or a bundled model's name), as a
    dict of plain types and tensors."""
    path = resolve_checkpoint(path)
    obj = load_torch_file(path)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        hint = ""
        if isinstance(obj, dict) and "state_dict" in obj and "miou" in obj:
            hint = (
                "; it looks like a PyTorch-ENet checkpoint: "
                f"enet convert --from pytorch-enet {path} OUT.pt"
            )
        raise CheckpointError(f"{path}: not an enet checkpoint{hint}")
    if obj.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {obj['format_version']} is newer than this "
            f"enet understands ({FORMAT_VERSION}); upgrade enet"
        )
    for key in ("model", "classes", "state_dict"):
        if key not in obj:
            raise CheckpointError(f"{path}: enet checkpoint lacks its {key!r} entry")
    return obj


def model_from_checkpoint(ckpt: dict, path: str | Path = "<checkpoint>") -> ENet:
    """Build the ENet a checkpoint dict describes and load its weights (strict)."""
    meta = ckpt["model"]
    model = ENet(meta["num_classes"], meta["variant"], meta["encoder_only"])
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as exc:
        summary = " ".join(str(exc).split())[:300]
        raise CheckpointError(
            f"{path}: weights do not fit the model it describes: {summary}"
        ) from None
    model.classes = ClassSet.from_dict(ckpt["classes"])
    return model


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> ENet:
    """The model stored in ``path``, in eval mode, with ``model.classes`` set."""
    ckpt = read_checkpoint(path)
    return model_from_checkpoint(ckpt, path).to(map_location).eval()
