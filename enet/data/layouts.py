"""The dataset layouts ``enet prepare`` reads, behind one interface (``DatasetLayout`` in
``source.py``): Cityscapes and CamVid in their own layouts, and a folder of your own."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from ..errors import UsageError
from ..images import read_label
from .classes import ClassSet, class_set
from .folder import FolderLayout
from .source import DatasetLayout, SourceSample, check_label_values

__all__ = ["DATASETS", "KnownLayout", "layout_for"]

#: Dataset names ``enet prepare --dataset`` takes.
DATASETS = ("cityscapes", "camvid", "folder")


@dataclass(frozen=True)
class KnownLayout:
    """Cityscapes or CamVid: the tables and functions of ``enet.data.<name>``, with the splits
    ``prepare`` makes by default. Holds only its name, so it travels to worker processes."""

    name: str
    default_splits: tuple[str, ...]

    @property
    def _module(self) -> ModuleType:
        return importlib.import_module(f"enet.data.{self.name}")

    @property
    def classes(self) -> ClassSet:
        return class_set(self._module.CLASS_SET)

    @property
    def DEFAULT_SIZE(self) -> tuple[int, int] | None:
        return self._module.DEFAULT_SIZE

    resize_masks = False

    def splits(self) -> tuple[str, ...]:
        return self.default_splits

    def find_samples(
        self, root: Path, split: str, unpaired: list[str] | None = None
    ) -> list[SourceSample]:
        return self._module.find_samples(root, split, unpaired)

    def read_class_ids(self, path: Path) -> np.ndarray:
        ids = read_label(path)
        module = self._module
        check_label_values(ids, path, values=module.LABEL_VALUES, kind=module.LABEL_KIND)
        return module.to_class_ids(ids.astype(np.uint8))

    def to_dict(self) -> dict:
        return {"kind": self.name}


_KNOWN = {
    "cityscapes": KnownLayout("cityscapes", ("train", "val")),
    "camvid": KnownLayout("camvid", ("train", "val", "test")),
}


def layout_for(dataset: str, root: str | Path, **folder_options) -> DatasetLayout:
    """The layout of ``dataset`` at ``root``; ``folder_options`` (images, masks,
    classes_file, ignore, val_fraction, resize_masks) shape a folder dataset only."""
    if dataset == "folder":
        return FolderLayout.find(root, **folder_options)
    if dataset not in _KNOWN:
        raise UsageError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    given = {k: v for k, v in folder_options.items() if v not in (None, False, 0, 0.0, 255)}
    if given:
        flags = ", ".join(f"--{k.replace('_file', '').replace('_', '-')}" for k in given)
        raise UsageError(f"{flags}: for --dataset folder only")
    return _KNOWN[dataset]
