"""Where and how computation runs, the same way for training, evaluation and deployment: the
device, torchrun's processes, seeds, mixed precision and the model's input tensor."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image

from .errors import UsageError

__all__ = [
    "Runtime",
    "autocast",
    "batch_to_input",
    "image_to_input",
    "images_to_input",
    "init_runtime",
    "mix_seed",
    "native_bf16",
    "resolve_amp",
    "resolve_device",
    "seed_everything",
    "torchrun_ranks",
]


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


@dataclass
class Runtime:
    """This process's place among torchrun's: its rank, how many there are, its device."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def torchrun_ranks() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) without it."""
    env = os.environ
    return (
        int(env.get("RANK", "0")),
        int(env.get("WORLD_SIZE", "1")),
        int(env.get("LOCAL_RANK", "0")),
    )


def init_runtime(device: str) -> Runtime:
    """Read torchrun's environment; start the process group (nccl on GPUs, gloo on CPU)."""
    rank, world, local_rank = torchrun_ranks()
    dev = resolve_device(device)
    if dev.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            gpus = torch.cuda.device_count()
            raise UsageError(
                f"process {local_rank} of this node has no GPU: torch sees {gpus}; start at "
                f"most {gpus} per node (torchrun --nproc_per_node {gpus}) or use --device cpu"
            )
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Runtime(rank, world, local_rank, dev)


def mix_seed(*values: int) -> int:
    """A 63-bit seed from integers (SplitMix-style), stable across runs and platforms."""
    x = 0x9E3779B97F4A7C15
    for v in values:
        x = (x ^ (v + 0x9E3779B97F4A7C15 + (x << 6) + (x >> 2))) & 0xFFFFFFFFFFFFFFFF
        x = (x * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x & 0x7FFFFFFFFFFFFFFF


def seed_everything(*values: int) -> None:
    """Seed torch (CPU and CUDA), NumPy and ``random`` from ``values``."""
    seed = mix_seed(*values)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively (a CPU with AMX or AVX512_BF16, a GPU of
    compute capability 8 or more), where bf16 autocast is faster than fp32, not slower."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    cpu = torch.cpu
    return any(
        bool(getattr(cpu, name, lambda: False)())
        for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    )


def resolve_amp(amp: str, device: torch.device) -> str:
    """``--amp auto``: bf16 on a CPU that computes it natively, else off (a GPU trains in
    the precision asked for, fp32 unless bf16 or fp16 is given)."""
    if amp != "auto":
        return amp
    return "bf16" if device.type == "cpu" and native_bf16(device) else "off"


def autocast(device: torch.device, amp: str) -> torch.autocast:
    """Mixed precision as ``--amp`` asks: off, bf16 or fp16."""
    if amp == "off":
        return torch.autocast(device.type, enabled=False)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    if dtype is None:
        raise UsageError(f"--amp must be off, bf16 or fp16, got {amp!r}")
    return torch.autocast(device.type, dtype=dtype)


def batch_to_input(
    images: torch.Tensor, device: torch.device, *, channels_last: bool = False
) -> torch.Tensor:
    """A loader's N x 3 x H x W uint8 batch as the model's input: float RGB in [0, 1] (the
    seed's only normalisation) on ``device``."""
    x = images.to(device, non_blocking=True).float().div_(255)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def image_to_input(rgb: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """H x W x 3 uint8 RGB -> the 1 x 3 x h x w float32 in [0, 1] that a model (PyTorch, ONNX)
    takes at inference, resized bilinearly (PIL) to ``size`` = (width, height) if given."""
    if size is not None:
        rgb = np.asarray(Image.fromarray(rgb).resize(tuple(size), Image.BILINEAR))
    return images_to_input(rgb[None])


def images_to_input(images: np.ndarray) -> np.ndarray:
    """N x H x W x 3 uint8 RGB -> N x 3 x H x W float32 in [0, 1]."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) / 255
