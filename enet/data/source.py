"""Image/label pairs of a dataset in its original layout, and reading one pair.

Pairs are matched by a sample key (Cityscapes ``<city>_<seq>_<frame>``, CamVid file stem),
never by sort order: the seed pairs two independently sorted lists, so one missing file
shifts every later pair (SPEC 8.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from PIL import Image

from ..errors import DataError
from ..images import read_rgb

if TYPE_CHECKING:
    from .classes import ClassSet

__all__ = [
    "DataError",
    "DatasetLayout",
    "SourceSample",
    "check_label_values",
    "load_pair",
    "pair_by_key",
]


@dataclass(frozen=True)
class SourceSample:
    key: str
    image: Path
    label: Path


class DatasetLayout(Protocol):
    """What ``prepare`` and the datasets need of a layout (``layouts.py``: Cityscapes, CamVid,
    a folder of your own)."""

    classes: ClassSet
    DEFAULT_SIZE: tuple[int, int] | None  # (width, height) to prepare at; None keeps the source
    resize_masks: bool  # scale a mask of its image's aspect ratio to the image's size

    def splits(self) -> tuple[str, ...]: ...

    def find_samples(
        self, root: Path, split: str, unpaired: list[str] | None = None
    ) -> list[SourceSample]: ...

    def read_class_ids(self, path: Path) -> np.ndarray: ...

    def to_dict(self) -> dict: ...


def _listing(title: str, items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit]) + (
        f" and {len(items) - limit} more" if len(items) > limit else ""
    )
    return f"{len(items)} {title} ({shown})"


def pair_by_key(
    images: dict[str, Path],
    labels: dict[str, Path],
    where: str,
    unpaired: list[str] | None = None,
) -> list[SourceSample]:
    """Join images and labels on their key. Unmatched files are appended to ``unpaired`` as
    one message each when it is given (the caller reports them with its other problems),
    else they are an error listing them all."""
    missing = sorted(str(images[k]) for k in images.keys() - labels.keys())
    extra = sorted(str(labels[k]) for k in labels.keys() - images.keys())
    if (missing or extra) and unpaired is None:
        parts = []
        if missing:
            parts.append(_listing("images without a label", missing))
        if extra:
            parts.append(_listing("labels without an image", extra))
        raise DataError(f"{where}: {'; '.join(parts)} (fix the files, or prepare with --skip-bad)")
    if unpaired is not None:
        unpaired += [f"{p}: image without a label" for p in missing]
        unpaired += [f"{p}: label without an image" for p in extra]
    if not images.keys() & labels.keys():
        raise DataError(f"{where}: no image/label pairs found")
    return [SourceSample(k, images[k], labels[k]) for k in sorted(images.keys() & labels.keys())]


def load_pair(
    sample: SourceSample, layout: DatasetLayout, size: tuple[int, int] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Decode one pair as (H x W x 3 uint8 RGB, H x W uint8 class ids), resized to ``size``
    (width, height): bilinear (antialiased) for the image, nearest for the label, as PIL
    does in the seed's transforms (SPEC 3.4 step 3).

    Raises ``DataError`` naming the file when it cannot be decoded, the sizes disagree or
    the label holds values outside the layout's classes.
    """
    rgb, ids = read_rgb(sample.image), layout.read_class_ids(sample.label)
    (h, w), (lh, lw) = rgb.shape[:2], ids.shape
    if (lh, lw) != (h, w):
        same_shape = abs(lw / lh - w / h) <= 0.01 * w / h
        if not (layout.resize_masks and same_shape):
            hint = (
                "pass --resize-masks to scale masks to their images"
                if same_shape
                else ("fix the pair, or pass --skip-bad")
            )
            raise DataError(
                f"{sample.label}: label is {lw}x{lh} but its image {sample.image.name} is "
                f"{w}x{h} ({hint})"
            )
        ids = np.asarray(Image.fromarray(ids).resize((w, h), Image.NEAREST))
    if size is not None and (w, h) != tuple(size):
        rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))
        ids = np.asarray(Image.fromarray(ids).resize(size, Image.NEAREST))
    return rgb, ids


def check_label_values(label: np.ndarray, path: Path, *, values: frozenset, kind: str) -> None:
    """``DataError`` listing the values (with pixel counts) of ``label`` that are not in the
    table ``values`` (named ``kind``): a colour or instance map under a label's name would
    otherwise become void pixels without a word."""
    if label.dtype == np.uint8:  # one bincount: a tenth of np.unique's time on a full frame
        counts = np.bincount(label.ravel(), minlength=256)
        present = np.flatnonzero(counts)
        counts = counts[present]
    else:
        present, counts = np.unique(label, return_counts=True)
    bad = [(int(v), int(c)) for v, c in zip(present, counts, strict=True) if int(v) not in values]
    if bad:
        shown = ", ".join(f"{v} ({c:,} px)" for v, c in bad[:6])
        more = f" and {len(bad) - 6} more" if len(bad) > 6 else ""
        raise DataError(
            f"{path}: values not in the {kind} table: {shown}{more} "
            "(is it the right label file? fix it, or pass --skip-bad)"
        )
