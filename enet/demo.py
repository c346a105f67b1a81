"""``enet demo``: everything the package can do so far, end to end, on the CPU in seconds.

Today that is the model itself: both variants built and counted against SPEC 2.4, a forward
pass at the seed's 512x1024 deployment size timed, and a checkpoint written, read back and
checked to reproduce the same logits. Data, training, evaluation and export join as they land.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from .checkpoint import load_checkpoint, save_checkpoint
from .data.classes import class_set
from .model import ENet

__all__ = ["run_demo"]

# SPEC 2.4 / issue 2: trainable parameters for 20 classes.
EXPECTED_PARAMETERS = {
    ("seed", False): 358_039,
    ("seed", True): 326_059,
    ("pytorch-enet", False): 351_804,
}


def _latency_ms(model: ENet, x: torch.Tensor, repeats: int = 3) -> float:
    with torch.inference_mode():
        model(x)  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            model(x)
    return (time.perf_counter() - start) / repeats * 1e3


def run_demo(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    print(f"enet demo -> {out}")

    print("1. ENet variants, trainable parameters (expected per SPEC 2.4):")
    for (variant, encoder_only), expected in EXPECTED_PARAMETERS.items():
        n = sum(p.numel() for p in ENet(20, variant, encoder_only).parameters())
        kind = "encoder + head" if encoder_only else "full"
        status = "ok" if n == expected else f"MISMATCH (expected {expected:,})"
        print(f"   {variant:13s} {kind:15s} {n:>9,}  {status}")

    print("2. Forward pass, 1x3x512x1024, eval mode, fp32 eager:")
    x = torch.rand(1, 3, 512, 1024)
    for variant in ("seed", "pytorch-enet"):
        model = ENet(20, variant).eval()
        ms = _latency_ms(model, x)
        print(f"   {variant:13s} {ms:7.1f} ms  (threads: {torch.get_num_threads()})")

    print("3. Checkpoint round trip (atomic write, weights_only load):")
    model = ENet(20, "seed").eval()
    path = save_checkpoint(
        out / "enet_seed_init.pt", model, class_set("cityscapes"), {"source": "enet demo"}
    )
    loaded = load_checkpoint(path)
    with torch.inference_mode():
        same = torch.equal(model(x[..., :256, :512]), loaded(x[..., :256, :512]))
    size_mb = path.stat().st_size / 1e6
    print(f"   wrote {path} ({size_mb:.2f} MB); reload gives identical logits: {same}")
    if not same:
        raise RuntimeError("checkpoint round trip changed the model's output")

    print(
        "Done. Still to come in this demo: synthetic data -> prepare -> 3-stage training -> "
        "evaluation -> ONNX export -> inference (issues 3-6)."
    )
