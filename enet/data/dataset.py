"""Datasets over a prepared set (memory-mapped arrays) or a dataset tree in its own layout.

Both yield the same thing: ``transform(image HxWx3 uint8, label HxW uint8 class ids)``, or
the two arrays when there is no transform. An item may be asked for as ``(index, seed)``: the
transform then draws its randomness from a generator seeded with ``seed`` (see
``enet.train.engine.SeededSampler``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .classes import ClassSet
from .layouts import layout_for
from .prepare import read_manifest
from .source import DataError, load_pair

__all__ = ["PreparedDataset", "SourceDataset", "open_dataset"]

Transform = Callable[..., object]


def _apply(transform: Transform | None, image, label, seed: int | None):
    if transform is None:
        return np.array(image), np.array(label)
    if seed is None:
        return transform(image, label)
    return transform(image, label, torch.Generator().manual_seed(seed))


class PreparedDataset(Dataset):
    """One split of an ``enet prepare`` output. Memmaps open lazily, once per process, so the
    dataset pickles cheaply into DataLoader workers."""

    def __init__(self, root: str | Path, split: str, transform: Transform | None = None) -> None:
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        if split not in self.manifest["splits"]:
            raise DataError(
                f"{self.root}: split {split!r} was not prepared "
                f"(have: {', '.join(self.manifest['splits'])})"
            )
        self.split = split
        info = self.manifest["splits"][split]
        self.size: tuple[int, int] = (info["width"], info["height"])
        self.source_size: tuple[int, int] = tuple(info["source_size"])
        split_file = self.root / split / "split.json"
        try:
            self.keys: list[str] = list(json.loads(split_file.read_text())["keys"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(
                f"{split_file}: unreadable ({type(exc).__name__}: {exc}) (run enet prepare again)"
            ) from None
        if len(self.keys) != info["count"]:
            raise DataError(
                f"{split_file}: {len(self.keys)} samples, the manifest says {info['count']} "
                "(run enet prepare again)"
            )
        self.classes: ClassSet = ClassSet.from_dict(self.manifest["classes"])
        self.transform = transform
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.keys)

    def _open(self) -> tuple[np.ndarray, np.ndarray]:
        if self._arrays is None:
            folder = self.root / self.split
            w, h = self.size
            expected = {"images.npy": (len(self), h, w, 3), "labels.npy": (len(self), h, w)}
            arrays = []
            for name, shape in expected.items():
                try:
                    array = np.load(folder / name, mmap_mode="r")
                except (OSError, ValueError) as exc:
                    raise DataError(
                        f"{folder / name}: unreadable ({exc}) (run enet prepare again)"
                    ) from None
                if array.shape != shape or array.dtype != np.uint8:
                    raise DataError(
                        f"{folder / name}: holds {array.dtype} {array.shape}, not uint8 "
                        f"{shape} (run enet prepare again)"
                    )
                arrays.append(array)
            self._arrays = (arrays[0], arrays[1])
        return self._arrays

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_arrays": None}

    def __getitem__(self, item: int | tuple[int, int]):
        index, seed = item if isinstance(item, tuple) else (item, None)
        images, labels = self._open()
        return _apply(self.transform, images[index], labels[index], seed)


class SourceDataset(Dataset):
    """A split read straight from the dataset's own layout (decoding PNGs every time)."""

    def __init__(
        self,
        dataset: str,
        root: str | Path,
        split: str,
        transform: Transform | None = None,
        size: tuple[int, int] | None = None,
    ) -> None:
        self.layout = layout_for(dataset, root)
        self.root = Path(root)
        self.samples = self.layout.find_samples(self.root, split)
        self.keys = [s.key for s in self.samples]
        self.classes = self.layout.classes
        self.size = size or self.layout.DEFAULT_SIZE
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item: int | tuple[int, int]):
        index, seed = item if isinstance(item, tuple) else (item, None)
        image, label = load_pair(self.samples[index], self.layout, self.size)
        return _apply(self.transform, image, label, seed)


def detect_layout(root: Path) -> str | None:
    """``"cityscapes"`` / ``"camvid"`` if ``root`` looks like that dataset's own layout."""
    if (root / "leftImg8bit").is_dir() and (root / "gtFine").is_dir():
        return "cityscapes"
    if any((root / s).is_dir() and (root / f"{s}annot").is_dir() for s in ("train", "val", "test")):
        return "camvid"
    return None


def open_dataset(
    root: str | Path, split: str, transform: Transform | None = None
) -> PreparedDataset | SourceDataset:
    """A prepared set if ``root`` has a manifest, else a Cityscapes or CamVid tree."""
    root = Path(root)
    if (root / "manifest.json").is_file():
        return PreparedDataset(root, split, transform)
    dataset = detect_layout(root)
    if dataset is None:
        raise DataError(
            f"{root}: neither a prepared set (manifest.json) nor a Cityscapes "
            "(leftImg8bit/, gtFine/) or CamVid (train/, trainannot/) tree"
        )
    return SourceDataset(dataset, root, split, transform)
