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

import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .data.classes import ClassSet
from .errors import CheckpointError, describe_os_error
from .fileio import write_bytes_atomic
from .model import VARIANTS, ENet

__all__ = [
    "FORMAT",
    "EvaluationFiles",
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


def atomic_torch_save(obj: Any, path: str | Path, *, replace: bool = True) -> Path:
    """``torch.save`` into memory, then written atomically: a full disk is then an
    ``OutputError`` naming ``path`` (torch's zip writer reports it as "unexpected pos")."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return write_bytes_atomic(path, buffer.getvalue(), replace=replace)


def save_changed_weights(
    ckpt: dict, model: ENet, path: str | Path, provenance: dict, *, replace: bool = True
) -> Path:
    """``ckpt`` with ``model``'s weights, written atomically to ``path``. Metrics recorded
    for the old weights are dropped (they no longer describe it); ``provenance`` says how
    the weights changed."""
    ckpt = {k: v for k, v in ckpt.items() if k not in ("best_miou", "metrics")}
    ckpt["state_dict"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    kept = {k: v for k, v in ckpt.get("provenance", {}).items() if k != "test_miou"}
    ckpt["provenance"] = kept | provenance
    return atomic_torch_save(ckpt, path, replace=replace)


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
    *,
    replace: bool = True,
    **extra: Any,
) -> Path:
    """Write ``model`` with its metadata atomically (over an existing file only with
    ``replace``); returns the path."""
    checkpoint = build_checkpoint(model, classes, provenance, **extra)
    return atomic_torch_save(checkpoint, path, replace=replace)


#: How a file made by ``torch.save`` starts: a zip archive, or (before PyTorch 1.6) a pickle.
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80\x02")


def load_torch_file(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with every failure turned into one readable line.
    Pickled code is never run: a file that needs it is refused, whatever torch suggests."""
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file (give the .pt file)")
    if not path.is_file():
        known = ", ".join(bundled_models())
        raise CheckpointError(f"{path}: no such checkpoint file (bundled models: {known})")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise CheckpointError(describe_os_error(exc, path)) from None
    if not head.startswith(_TORCH_MAGIC):
        hint = {
            ".onnx": "an ONNX model: give it to enet infer --model",
            ".ckpt": "a MindSpore checkpoint? enet convert --from mindspore reads those",
        }.get(path.suffix.lower(), "an empty, text or other file")
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({hint})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{path}: holds Python objects other than tensors and plain data, which enet "
            "never loads since loading them can run code (save the model's state_dict "
            "instead, or import it with enet convert)"
        ) from None
    except Exception as exc:  # zip, pickle and torch errors differ by version
        reason = " ".join(str(exc).split()).split(". ")[0][:160] or type(exc).__name__
        raise CheckpointError(
            f"{path}: truncated or corrupt checkpoint ({reason}) (copy or save it again)"
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
        hint = hint or " (enet convert imports PyTorch-ENet and MindSpore checkpoints)"
        raise CheckpointError(f"{path}: not an enet checkpoint{hint}")
    version = obj.get("format_version", 0)
    if not isinstance(version, int):
        raise CheckpointError(f"{path}: malformed enet checkpoint: format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version} is newer than this enet "
            f"understands ({FORMAT_VERSION}) (upgrade enet)"
        )
    problem = _layout_problem(obj)
    if problem:
        raise CheckpointError(f"{path}: malformed enet checkpoint: {problem}")
    return obj


def _layout_problem(obj: dict) -> str | None:
    """What is wrong with the entries every enet checkpoint has (None: nothing)."""
    for key in ("model", "classes", "state_dict"):
        if not isinstance(obj.get(key), dict):
            return f"its {key!r} entry is missing or not a dict"
    meta = obj["model"]
    if meta.get("variant") not in VARIANTS:
        return f"unknown variant {meta.get('variant')!r} (known: {', '.join(VARIANTS)})"
    count = meta.get("num_classes")
    if type(count) is not int or count < 1:
        return f"num_classes {count!r} is not a positive integer"
    if not isinstance(meta.get("encoder_only"), bool):
        return f"encoder_only {meta.get('encoder_only')!r} is not true or false"
    try:
        classes = ClassSet.from_dict(obj["classes"])
    except ValueError as exc:
        return str(exc)
    if classes.num_classes != count:
        return f"{classes.num_classes} class names for {count} outputs"
    state = obj["state_dict"]
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        return "its state_dict holds entries that are not named tensors"
    return None


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


@dataclass(frozen=True)
class EvaluationFiles:
    """What ``enet eval`` writes beside a checkpoint ``X.pt``; training removes them with
    the checkpoint they describe."""

    metric_txt: Path  # X.metric.txt, the seed's format
    metric_json: Path  # X.metric.json
    confusion_png: Path  # X.confusion.png
    pictures: Path  # X_predictions/

    @classmethod
    def of(cls, checkpoint: str | Path) -> EvaluationFiles:
        checkpoint = Path(checkpoint)
        return cls(
            checkpoint.with_suffix(".metric.txt"),
            checkpoint.with_suffix(".metric.json"),
            checkpoint.with_suffix(".confusion.png"),
            checkpoint.parent / f"{checkpoint.stem}_predictions",
        )

    def all(self) -> list[Path]:
        return [self.metric_txt, self.metric_json, self.confusion_png, self.pictures]


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> ENet:
    """The model stored in ``path``, in eval mode, with ``model.classes`` set."""
    ckpt = read_checkpoint(path)
    return model_from_checkpoint(ckpt, path).to(map_location).eval()
