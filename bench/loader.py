"""Training-loader throughput vs. merely decoding the source PNGs, in one run.

    python bench/loader.py [--shared ../shared] [--samples 120]

Prepares the real Cityscapes frames of shared/data/cityscapes_sample at 1024x512 (the seed's
training size), then times (a) Pillow decoding the source leftImg8bit + labelIds PNGs on all
cores, the floor of any loader that reads the seed's PNG-bytes format, and (b) the stage-3
training DataLoader (blur, crop, resize, flip, tensors) at 512x1024 output on all cores.
Prints both rates and the ratio (target >= 2x).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from enet.data import cityscapes
from enet.data.dataset import PreparedDataset
from enet.data.prepare import prepare
from enet.data.transforms import train_transform


def _decode(pair: tuple[Path, Path]) -> int:
    image = np.asarray(Image.open(pair[0]).convert("RGB"))
    label = np.asarray(Image.open(pair[1]))
    return image.nbytes + label.nbytes


def decode_rate(pairs: list[tuple[Path, Path]], n: int, workers: int) -> float:
    jobs = [pairs[i % len(pairs)] for i in range(n)]
    with mp.get_context("fork").Pool(workers) as pool:
        pool.map(_decode, jobs[:workers])  # warm up
        start = time.perf_counter()
        pool.map(_decode, jobs, chunksize=1)
        return n / (time.perf_counter() - start)


def loader_rate(root: Path, n: int, workers: int, batch: int = 6) -> float:
    ds = PreparedDataset(root, "train", train_transform((1024, 512), stage=3, source_scale=0.5))
    sampler = torch.utils.data.RandomSampler(ds, replacement=True, num_samples=n + 2 * batch)
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=batch,
        sampler=sampler,
        num_workers=workers,
        persistent_workers=True,
        prefetch_factor=4,
    )
    it = iter(loader)
    next(it)  # workers started and warm
    start, seen = time.perf_counter(), 0
    for images, _ in it:
        seen += images.shape[0]
        if seen >= n:
            break
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).parents[2] / "shared")
    parser.add_argument("--samples", type=int, default=120)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()
    root = args.shared / "data" / "cityscapes_sample"
    pairs = [(s.image, s.label) for s in cityscapes.find_samples(root, "train")]
    with tempfile.TemporaryDirectory() as tmp:
        prepare("cityscapes", root, Path(tmp), splits=("train",), progress=False)
        decode = decode_rate(pairs, args.samples, args.workers)
        load = loader_rate(Path(tmp), args.samples, args.workers)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "workers": args.workers,
        "decode_only_samples_per_s": round(decode, 2),
        "stage3_loader_samples_per_s": round(load, 2),
        "ratio": round(load / decode, 2),
    }
    print(json.dumps(result, indent=1))
    print(
        f"loader {load:.1f} samples/s vs decode-only {decode:.1f} samples/s: {load / decode:.2f}x"
    )


if __name__ == "__main__":
    main()
