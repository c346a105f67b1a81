"""Import checkpoints from davidtvs/PyTorch-ENet and from the seed's MindSpore port.

Weights are mapped by name, never by position: each source name is rewritten into ours by a
few rules, and the result must cover every parameter and buffer of the model it describes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from .checkpoint import load_torch_file, save_checkpoint
from .data.classes import ClassSet, class_set, generic_class_set
from .errors import CheckpointError
from .fileio import check_output_file
from .mindspore_ckpt import read_mindspore_checkpoint
from .model import ENet

__all__ = [
    "SOURCES",
    "convert_checkpoint",
    "mindspore_key",
    "model_from_state",
    "pytorch_enet_key",
]

Source = Literal["pytorch-enet", "mindspore"]
SOURCES: tuple[str, ...] = ("pytorch-enet", "mindspore")

_PT_ENCODER = re.compile(
    r"^(initial_block|downsample[12]_0|regular1_\d|(regular|dilated|asymmetric)[23]_\d)\."
)
_PT_DECODER = re.compile(r"^(upsample[45]_0|regular[45]_\d)\.")


def pytorch_enet_key(name: str) -> str | None:
    """Our name for a PyTorch-ENet state-dict entry (None: not part of the network)."""
    name = name.removeprefix("module.")  # checkpoints saved from DataParallel
    name = name.replace("initial_block.main_branch.", "initial_block.conv.")
    name = name.replace(".ext_tconv1.", ".ext_tconv1.0.").replace(
        ".ext_tconv1_bnorm.", ".ext_tconv1.1."
    )
    if name.startswith("transposed_conv."):
        return "decoder.fullconv." + name.removeprefix("transposed_conv.")
    if _PT_ENCODER.match(name):
        return "encoder." + name
    if _PT_DECODER.match(name):
        return "decoder." + name
    return None


_MS_SUFFIX = {
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
    "w": "weight",  # PReLU
}
_MS_REGULAR_BRANCH = re.compile(r"\.((?:regular|dilated|asymmetric)\d_\d)\.conv([123])\.")


def mindspore_key(name: str) -> str | None:
    """Our name for a seed (MindSpore) checkpoint entry (None: optimizer or training state)."""
    if not name.startswith(("encoder.", "decoder.", "pred.")):
        return None  # moment1.*, moment2.*, learning_rate, global_step, scale_sense, ...
    name = _MS_REGULAR_BRANCH.sub(r".\1.ext_conv\2.", name)
    head, _, last = name.rpartition(".")
    return f"{head}.{_MS_SUFFIX.get(last, last)}"


def model_from_state(
    state: Mapping[str, torch.Tensor], variant: str, origin: str = "<checkpoint>"
) -> ENet:
    """Build the ENet that ``state`` (already in our names) describes and load it strictly.

    Only ``num_batches_tracked`` may be absent (MindSpore has no such counter).
    """
    if any(k.startswith("decoder.") for k in state):
        head, encoder_only, class_dim = "decoder.fullconv.weight", False, 1
    elif any(k.startswith("pred.") for k in state):
        head, encoder_only, class_dim = "pred.weight", True, 0
    else:
        raise CheckpointError(
            f"{origin}: no ENet decoder or encoder head found; is this an ENet checkpoint?"
        )
    if head not in state:
        raise CheckpointError(f"{origin}: {head} is missing (truncated file?)")
    shape = tuple(state[head].shape)
    if len(shape) != 4 or not 1 <= shape[class_dim] <= 1024:
        raise CheckpointError(f"{origin}: {head} has shape {shape}, not an ENet classifier's")
    model = ENet(shape[class_dim], variant, encoder_only)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
    if wrong_shape:
        problems.append(f"{len(wrong_shape)} with other shapes (e.g. {'; '.join(wrong_shape[:2])})")
    if problems:
        raise CheckpointError(
            f"{origin}: weights do not fit the {variant} ENet: {', '.join(problems)}"
        )
    model.load_state_dict({k: v for k, v in state.items()}, strict=False)
    return model.eval()


def _pytorch_enet_state(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    obj = load_torch_file(path)
    if isinstance(obj, dict) and obj.get("format") == "enet-checkpoint":
        raise CheckpointError(f"{path}: already an enet checkpoint; nothing to convert")
    source = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(source, dict) or not all(
        isinstance(v, torch.Tensor) for v in source.values()
    ):
        raise CheckpointError(
            f"{path}: not a PyTorch-ENet checkpoint "
            "(expected a dict with a 'state_dict' of tensors)"
        )
    state: dict[str, torch.Tensor] = {}
    for name, tensor in source.items():
        ours = pytorch_enet_key(name)
        if ours is None:
            raise CheckpointError(f"{path}: unknown PyTorch-ENet entry {name!r}")
        state[ours] = tensor
    info = {k: obj[k] for k in ("epoch", "miou") if isinstance(obj.get(k), (int, float))}
    return state, info


def _mindspore_state(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    entries = read_mindspore_checkpoint(path)
    state = {}
    for name, array in entries.items():
        ours = mindspore_key(name)
        if ours is not None:
            state[ours] = torch.from_numpy(np.array(array, dtype=np.float32))
    info = {}
    if "global_step" in entries:
        info["global_step"] = int(np.asarray(entries["global_step"]).reshape(-1)[0])
    return state, info


def _default_classes(source: Source, num_classes: int) -> ClassSet:
    defaults = {
        ("pytorch-enet", 20): "cityscapes-pytorch-enet",
        ("pytorch-enet", 12): "camvid",
        ("mindspore", 20): "cityscapes",
    }
    name = defaults.get((source, num_classes))
    return class_set(name) if name else generic_class_set(num_classes)


def import_checkpoint(src: str | Path, source: Source) -> tuple[ENet, dict]:
    """Read a foreign checkpoint into an ENet (eval mode) plus provenance details."""
    src = Path(src)
    if source == "pytorch-enet":
        state, info = _pytorch_enet_state(src)
        variant = "pytorch-enet"
    elif source == "mindspore":
        state, info = _mindspore_state(src)
        variant = "seed"
    else:
        raise CheckpointError(f"unknown checkpoint source {source!r}; choose one of {SOURCES}")
    model = model_from_state(state, variant, origin=str(src))
    return model, {"source_format": source, "source_file": src.name, **info}


def convert_checkpoint(
    src: str | Path,
    dst: str | Path,
    source: Source,
    *,
    classes: str | None = None,
    overwrite: bool = False,
) -> ENet:
    """Import ``src`` (PyTorch-ENet ``.pth`` or MindSpore ``.ckpt``) and save it as ours
    (over an existing ``dst`` only with ``overwrite``, never over ``src``).

    ``classes`` names a class set (default: guessed from the source and class count).
    """
    check_output_file(dst, overwrite=overwrite, inputs=[src])
    model, provenance = import_checkpoint(src, source)
    chosen = class_set(classes) if classes else _default_classes(source, model.num_classes)
    if chosen.num_classes != model.num_classes:
        raise CheckpointError(
            f"{src}: the model has {model.num_classes} outputs but class set "
            f"{chosen.name!r} has {chosen.num_classes}"
        )
    save_checkpoint(dst, model, chosen, provenance, replace=overwrite)
    model.classes = chosen
    return model
