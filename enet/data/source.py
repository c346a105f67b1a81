"""Image/label pairs of a dataset in its original layout, and reading one pair.

Pairs are matched by a sample key (Cityscapes ``<city>_<seq>_<frame>``, CamVid file stem),
never by sort order: the seed pairs two independently sorted lists, so one missing file
shifts every later pair (SPEC 8.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from ..errors import EnetError

__all__ = [
    "DataError",
    "DatasetLayout",
    "SourceSample",
    "load_pair",
    "pair_by_key",
]


class DataError(EnetError):
    """A dataset on disk that cannot be used as it is (missing, extra or bad files)."""


@dataclass(frozen=True)
class SourceSample:
    key: str
    image: Path
    label: Path


class DatasetLayout(Protocol):
    """What a dataset module (``cityscapes``, ``camvid``) provides."""

    CLASS_SET: str
    DEFAULT_SIZE: tuple[int, int] | None  # (width, height) to prepare at; None keeps the source

    def find_samples(
        self, root: Path, split: str, skip_bad: bool = False, unpaired: list[str] | None = None
    ) -> list[SourceSample]: ...

    def to_class_ids(self, label: np.ndarray) -> np.ndarray: ...


def _listing(title: str, items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit]) + (
        f" and {len(items) - limit} more" if len(items) > limit else ""
    )
    return f"{len(items)} {title} ({shown})"


def pair_by_key(
    images: dict[str, Path],
    labels: dict[str, Path],
    where: str,
    skip_bad: bool = False,
    unpaired: list[str] | None = None,
) -> list[SourceSample]:
    """Join images and labels on their key; unmatched files are an error listing them all
    (or, with ``skip_bad``, dropped with a warning and appended to ``unpaired``)."""
    missing = sorted(str(images[k]) for k in images.keys() - labels.keys())
    extra = sorted(str(labels[k]) for k in labels.keys() - images.keys())
    if (missing or extra) and not skip_bad:
        parts = []
        if missing:
            parts.append(_listing("images without a label", missing))
        if extra:
            parts.append(_listing("labels without an image", extra))
        raise DataError(f"{where}: {'; '.join(parts)} (fix the files or pass --skip-bad)")
    if missing or extra:
        print(f"warning: {where}: skipping {len(missing)} unpaired images, {len(extra)} labels")
        if unpaired is not None:
            unpaired += missing + extra
    if not images.keys() & labels.keys():
        raise DataError(f"{where}: no image/label pairs found")
    return [SourceSample(k, images[k], labels[k]) for k in sorted(images.keys() & labels.keys())]


def load_pair(
    sample: SourceSample, layout: DatasetLayout, size: tuple[int, int] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Decode one pair as (H x W x 3 uint8 RGB, H x W uint8 class ids), resized to ``size``
    (width, height): bilinear (antialiased) for the image, nearest for the label, as PIL
    does in the seed's transforms (SPEC 3.4 step 3).

    Raises ``DataError`` naming the file when it cannot be decoded or the sizes disagree.
    """
    try:
        with Image.open(sample.image) as im:
            image = im.convert("RGB")
    except Exception as exc:
        raise DataError(f"{sample.image}: unreadable image ({exc})") from None
    try:
        with Image.open(sample.label) as lb:
            lb.load()
            label = lb if lb.mode in ("L", "P") else lb.convert("L")
    except Exception as exc:
        raise DataError(f"{sample.label}: unreadable label ({exc})") from None
    if image.size != label.size:
        raise DataError(
            f"{sample.label}: label is {label.size[0]}x{label.size[1]} but its image "
            f"{sample.image.name} is {image.size[0]}x{image.size[1]}"
        )
    if size is not None and image.size != tuple(size):
        image = image.resize(size, Image.BILINEAR)
        label = label.resize(size, Image.NEAREST)
    return np.asarray(image), layout.to_class_ids(np.asarray(label))
