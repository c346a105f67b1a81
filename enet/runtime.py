"""Where computation runs: one reading of ``--device`` for every command."""

from __future__ import annotations

import torch

from .errors import UsageError

__all__ = ["resolve_device"]


def resolve_device(name: str) -> torch.device:
    """``auto`` (the GPU when torch sees one, else the CPU), ``cpu``, ``cuda`` or
    ``cuda:N``; anything else, or CUDA without a GPU, is a ``UsageError``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {name!r}: not a device enet runs on (auto, cpu, cuda, cuda:N)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: torch sees no CUDA device (use --device cpu)")
    return device
