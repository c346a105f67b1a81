"""One training step (forward + weighted CE + backward + Adam), several ways, one run.

    python bench/train_step.py [--batch 2] [--size 1024x512] [--repeats 5]
    python bench/train_step.py --device cuda --batch 6 --repeats 30   # on a GPU
    python bench/train_step.py --fine-tune --size 320x320   # the finetune preset's CPU path

Baseline: the ``pytorch-enet`` variant in plain eager fp32 NCHW with the default Adam
(PyTorch-ENet's own setup: on a CPU it loops over the tensors). Our paths use Adam's ``foreach``
form, as ``enet train`` does.
Then our paths: eager, channels_last, bf16 autocast, torch.compile, and channel-wise dropout
(element-wise dropout needs a random number per activation, most of a CPU step's time).
On a GPU: bf16 + channels_last eager, compiled, and compiled with CUDA graphs
("reduce-overhead": ENet's small kernels leave a GPU waiting on their launches).
Prints ms/step and the speed-up over the baseline measured in this same run.
``--fine-tune``: the baseline against the ``finetune`` preset's settings as ``enet train``
resolves them on this machine, also over a whole fine-tune (``--fine-tune-steps``) with the
compilation counted (the inductor's on-disk cache is off, so compilation is paid in full).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings

import torch
import torch._inductor.config

from enet.losses import SEED_DECODER_WEIGHTS, weighted_cross_entropy
from enet.model import ENet
from enet.runtime import resolve_amp
from enet.train.config import load_config
from enet.train.engine import param_groups

WARMUP_STEPS = 3  # compilation, graph capture, allocator


def step_time(
    variant: str,
    batch: int,
    size: tuple[int, int],
    repeats: int,
    *,
    channels_last: bool = False,
    compile: bool = False,
    compile_mode: str | None = None,
    amp: str = "off",
    dropout_kind: str = "auto",
    device: str = "cpu",
    foreach: bool | None = True,
) -> tuple[float, float]:
    """(median ms per step, seconds of the warm-up steps, compilation included)."""
    torch.manual_seed(0)
    model = ENet(20, variant, dropout_kind=dropout_kind).train().to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = torch.compile(model, mode=compile_mode) if compile else model
    opt = torch.optim.Adam(param_groups(model, 1e-4), lr=5e-4, foreach=foreach)
    weight = torch.tensor(SEED_DECODER_WEIGHTS, device=device)
    w, h = size
    x = torch.rand(batch, 3, h, w, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 20, (batch, h, w), device=device)
    dev_type = torch.device(device).type
    times = []
    for _ in range(repeats + WARMUP_STEPS):
        start = time.perf_counter()
        with torch.autocast(dev_type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            logits = net(x)
        loss = weighted_cross_entropy(logits, y, weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if dev_type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[WARMUP_STEPS:]) * 1e3, sum(times[:WARMUP_STEPS])


def cpu_paths(skip_compile: bool) -> dict[str, dict]:
    paths = {
        "baseline: pytorch-enet eager fp32 NCHW": dict(variant="pytorch-enet", foreach=None),
        "seed eager fp32 NCHW": dict(variant="seed"),
        "seed eager fp32 channels_last": dict(variant="seed", channels_last=True),
        "seed eager bf16 channels_last": dict(variant="seed", channels_last=True, amp="bf16"),
    }
    if not skip_compile:
        paths["seed compile fp32 channels_last"] = dict(
            variant="seed", channels_last=True, compile=True
        )
        paths["seed compile channels_last channel-dropout"] = dict(
            variant="seed", channels_last=True, compile=True, dropout_kind="channel"
        )
        paths["pytorch-enet compile fp32 channels_last"] = dict(
            variant="pytorch-enet", channels_last=True, compile=True
        )
    return paths


def fine_tune_paths() -> dict[str, dict]:
    """The baseline and the ``finetune`` preset's step, resolved as ``enet train`` does."""
    cfg = load_config("finetune")
    preset = dict(
        variant=cfg.variant,
        channels_last=cfg.channels_last,
        compile=cfg.compile,
        amp=resolve_amp(cfg.amp, torch.device("cpu")),
        dropout_kind=cfg.dropout_kind,
    )
    paths = {
        "baseline: pytorch-enet eager fp32 NCHW": dict(variant="pytorch-enet", foreach=None),
        "finetune preset": preset,
    }
    if preset["amp"] != "off":  # what the preset does on a CPU without native bf16
        paths["finetune preset in fp32"] = {**preset, "amp": "off"}
    return paths


def cuda_paths(skip_compile: bool) -> dict[str, dict]:
    bf16_cl = dict(channels_last=True, amp="bf16")
    paths = {
        "baseline: pytorch-enet eager fp32 NCHW": dict(variant="pytorch-enet", foreach=None),
        "seed eager bf16 channels_last": dict(variant="seed", **bf16_cl),
        "pytorch-enet eager bf16 channels_last": dict(variant="pytorch-enet", **bf16_cl),
    }
    if not skip_compile:
        paths["seed compile bf16 channels_last"] = dict(variant="seed", compile=True, **bf16_cl)
        paths["seed compile+cudagraphs bf16 channels_last"] = dict(
            variant="seed", compile=True, compile_mode="reduce-overhead", **bf16_cl
        )
    return paths


def machine(device: str) -> str:
    if device == "cuda":
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", default="1024x512")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--fine-tune", action="store_true", help="the finetune preset's path")
    parser.add_argument(
        "--fine-tune-steps",
        type=int,
        default=1140,
        help="steps of a whole fine-tune (default: 20 epochs of 231 images at batch 4)",
    )
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    if args.fine_tune:
        torch._inductor.config.force_disable_caches = True  # pay compilation in full
        warnings.filterwarnings("ignore", message="dynamo_pgo force disabled")
        paths = fine_tune_paths()
    elif args.device == "cuda":
        paths = cuda_paths(args.skip_compile)
    else:
        paths = cpu_paths(args.skip_compile)
    torch.backends.cudnn.benchmark = True  # as enet train does: fixed shapes, tuned kernels
    results, warmup = {}, {}
    for name, kw in paths.items():
        results[name], warmup[name] = step_time(
            batch=args.batch, size=size, repeats=args.repeats, device=args.device, **kw
        )
        print(f"{name:40s} {results[name]:8.1f} ms/step (warm-up {warmup[name]:.1f} s)", flush=True)
    base = results["baseline: pytorch-enet eager fp32 NCHW"]
    best = min((v, k) for k, v in results.items() if not k.startswith("baseline"))
    print(
        json.dumps(
            {
                "machine": machine(args.device),
                "batch": args.batch,
                "size": args.size,
                "ms_per_step": {k: round(v, 1) for k, v in results.items()},
                "speedup_vs_baseline": {k: round(base / v, 2) for k, v in results.items()},
                "fastest": best[1],
            },
            indent=1,
        )
    )
    print(f"fastest: {best[1]}: {base / best[0]:.2f}x the baseline")
    if args.fine_tune:
        steps, baseline_name = args.fine_tune_steps, "baseline: pytorch-enet eager fp32 NCHW"

        def whole(key: str) -> float:  # seconds of a fine-tune, warm-up steps as measured
            return warmup[key] + results[key] * (steps - WARMUP_STEPS) / 1e3

        for name in [k for k in results if k != baseline_name]:
            print(
                f"{name} over {steps} steps, compilation included: {whole(name):.0f} s "
                f"against {whole(baseline_name):.0f} s, "
                f"{whole(baseline_name) / whole(name):.2f}x the baseline"
            )


if __name__ == "__main__":
    main()
