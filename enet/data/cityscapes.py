"""The official Cityscapes label table (cityscapesScripts ``helpers/labels.py``) and the
labelIds -> trainIds mapping (SPEC 3.2)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from ..errors import DataError, UsageError
from ..images import read_label
from .source import SourceSample, check_label_values, pair_by_key

if TYPE_CHECKING:
    from .classes import ClassSet

__all__ = [
    "CLASS_SET",
    "DEFAULT_SIZE",
    "IGNORE_ID",
    "LABELS",
    "LABEL_FILE_SUFFIXES",
    "LABEL_KIND",
    "LABEL_VALUES",
    "TRAIN_NAMES",
    "TRAIN_PALETTE",
    "VOID_CLASS",
    "find_samples",
    "frame_key",
    "label_files",
    "label_id_table",
    "read_label_as_classes",
    "to_class_ids",
    "to_train_ids",
]

#: The class set of prepared Cityscapes data: 19 trainIds + void (SPEC 3.3).
CLASS_SET = "cityscapes"
#: The seed trains and evaluates at 1024x512 (width, height).
DEFAULT_SIZE = (1024, 512)
#: Output channel that stands for ignored pixels (trainId 255) in the seed's 20-way setup.
VOID_CLASS = 19

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"

#: What a ``*_gtFine_labelIds.png`` may hold: the table's ids (license plate, -1, is never
#: written).
LABEL_KIND = "Cityscapes labelIds"
#: trainId of every pixel that the 19-class benchmark ignores.
IGNORE_ID = 255


class Label(NamedTuple):
    name: str
    id: int
    train_id: int
    category: str
    category_id: int
    has_instances: bool
    ignore_in_eval: bool
    color: tuple[int, int, int]


# fmt: off
LABELS: tuple[Label, ...] = (
    Label("unlabeled",             0, 255, "void",         0, False, True,  (0, 0, 0)),
    Label("ego vehicle",           1, 255, "void",         0, False, True,  (0, 0, 0)),
    Label("rectification border",  2, 255, "void",         0, False, True,  (0, 0, 0)),
    Label("out of roi",            3, 255, "void",         0, False, True,  (0, 0, 0)),
    Label("static",                4, 255, "void",         0, False, True,  (0, 0, 0)),
    Label("dynamic",               5, 255, "void",         0, False, True,  (111, 74, 0)),
    Label("ground",                6, 255, "void",         0, False, True,  (81, 0, 81)),
    Label("road",                  7,   0, "flat",         1, False, False, (128, 64, 128)),
    Label("sidewalk",              8,   1, "flat",         1, False, False, (244, 35, 232)),
    Label("parking",               9, 255, "flat",         1, False, True,  (250, 170, 160)),
    Label("rail track",           10, 255, "flat",         1, False, True,  (230, 150, 140)),
    Label("building",             11,   2, "construction", 2, False, False, (70, 70, 70)),
    Label("wall",                 12,   3, "construction", 2, False, False, (102, 102, 156)),
    Label("fence",                13,   4, "construction", 2, False, False, (190, 153, 153)),
    Label("guard rail",           14, 255, "construction", 2, False, True,  (180, 165, 180)),
    Label("bridge",               15, 255, "construction", 2, False, True,  (150, 100, 100)),
    Label("tunnel",               16, 255, "construction", 2, False, True,  (150, 120, 90)),
    Label("pole",                 17,   5, "object",       3, False, False, (153, 153, 153)),
    Label("polegroup",            18, 255, "object",       3, False, True,  (153, 153, 153)),
    Label("traffic light",        19,   6, "object",       3, False, False, (250, 170, 30)),
    Label("traffic sign",         20,   7, "object",       3, False, False, (220, 220, 0)),
    Label("vegetation",           21,   8, "nature",       4, False, False, (107, 142, 35)),
    Label("terrain",              22,   9, "nature",       4, False, False, (152, 251, 152)),
    Label("sky",                  23,  10, "sky",          5, False, False, (70, 130, 180)),
    Label("person",               24,  11, "human",        6, True,  False, (220, 20, 60)),
    Label("rider",                25,  12, "human",        6, True,  False, (255, 0, 0)),
    Label("car",                  26,  13, "vehicle",      7, True,  False, (0, 0, 142)),
    Label("truck",                27,  14, "vehicle",      7, True,  False, (0, 0, 70)),
    Label("bus",                  28,  15, "vehicle",      7, True,  False, (0, 60, 100)),
    Label("caravan",              29, 255, "vehicle",      7, True,  True,  (0, 0, 90)),
    Label("trailer",              30, 255, "vehicle",      7, True,  True,  (0, 0, 110)),
    Label("train",                31,  16, "vehicle",      7, True,  False, (0, 80, 100)),
    Label("motorcycle",           32,  17, "vehicle",      7, True,  False, (0, 0, 230)),
    Label("bicycle",              33,  18, "vehicle",      7, True,  False, (119, 11, 32)),
    Label("license plate",        -1,  -1, "vehicle",      7, False, True,  (0, 0, 142)),
)
# fmt: on

LABEL_VALUES = frozenset(lb.id for lb in LABELS if lb.id >= 0)

_TRAIN = sorted((lb for lb in LABELS if 0 <= lb.train_id < IGNORE_ID), key=lambda lb: lb.train_id)
TRAIN_NAMES: tuple[str, ...] = tuple(lb.name for lb in _TRAIN)
TRAIN_PALETTE: tuple[tuple[int, int, int], ...] = tuple(lb.color for lb in _TRAIN)

_ID_TO_TRAIN = np.full(256, IGNORE_ID, dtype=np.uint8)
for _lb in LABELS:
    if _lb.id >= 0:
        _ID_TO_TRAIN[_lb.id] = _lb.train_id if _lb.train_id >= 0 else IGNORE_ID


def to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map Cityscapes labelIds (uint8, any shape) to the 19 trainIds, 255 where ignored."""
    return _ID_TO_TRAIN[np.asarray(label_ids, dtype=np.uint8)]


def to_class_ids(label_ids: np.ndarray) -> np.ndarray:
    """labelIds -> the 20 training classes: trainIds with ignore (255) as void = 19."""
    train = to_train_ids(label_ids)
    train[train == IGNORE_ID] = VOID_CLASS
    return train


def frame_key(name: str) -> str:
    """``<city>_<seq>_<frame>`` of any Cityscapes-style file name (how the benchmark matches
    predictions to ground truth)."""
    return "_".join(name.split("_")[:3])


def label_id_table(classes: ClassSet) -> np.ndarray:
    """A lookup table: a model's output channel -> Cityscapes label id, by class name (void
    -> 0, unlabeled). Classes that are not Cityscapes labels are a ``UsageError``."""
    by_name = {lb.name: lb.id for lb in LABELS if lb.id >= 0}
    lut = np.zeros(256, dtype=np.uint8)
    for i, name in enumerate(classes.names):
        if i != classes.void and name not in by_name:
            raise UsageError(
                f"class {name!r} is not a Cityscapes label: Cityscapes label ids (--protocol "
                "cityscapes, --label-ids) need a model trained on Cityscapes classes"
            )
        lut[i] = by_name.get(name, 0) if i != classes.void else 0
    return lut


#: The label files of a gtFine tree: labelIds, or cityscapesScripts' labelTrainIds.
LABEL_FILE_SUFFIXES = ("_gtFine_labelIds.png", "_gtFine_labelTrainIds.png")


def label_files(folder: Path) -> dict[str, Path]:
    """``<city>_<seq>_<frame>`` -> label file below ``folder`` (labelTrainIds preferred)."""
    index: dict[str, Path] = {}
    for suffix in LABEL_FILE_SUFFIXES:
        for f in Path(folder).rglob(f"*{suffix}"):  # exact suffix, not the seed's rstrip
            index[f.name[: -len(suffix)]] = f
    return index


def read_label_as_classes(path: Path, classes: ClassSet) -> np.ndarray:
    """A ``labelIds`` or ``labelTrainIds`` file as the seed's 20 class ids (void 19); values
    outside the file's table are a ``DataError`` naming it."""
    label = read_label(path)
    if path.name.endswith("_labelIds.png"):
        check_label_values(label, path, values=LABEL_VALUES, kind=LABEL_KIND)
        return to_class_ids(label)
    bad = np.unique(label[(label >= classes.num_classes) & (label != IGNORE_ID)])
    if bad.size:
        raise DataError(
            f"{path}: trainIds {bad.tolist()[:6]} outside 0..{classes.num_classes - 1} and "
            "255 (is it the right label file?)"
        )
    out = label.astype(np.uint8)
    out[label == IGNORE_ID] = classes.void if classes.void is not None else IGNORE_ID
    return out


def _by_key(folder: Path, suffix: str) -> dict[str, Path]:
    # Exact suffix match (the seed's eval310 used rstrip, a character set: SPEC 8.11).
    return {p.name[: -len(suffix)]: p for p in folder.glob(f"*/*{suffix}")}


def find_samples(root: Path, split: str, unpaired: list[str] | None = None) -> list[SourceSample]:
    """Pairs of ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` and
    ``gtFine/<split>/<city>/*_gtFine_labelIds.png``, matched by ``<city>_<seq>_<frame>``."""
    root = Path(root)
    image_dir, label_dir = root / "leftImg8bit" / split, root / "gtFine" / split
    for folder in (image_dir, label_dir):
        if not folder.is_dir():
            raise DataError(
                f"{folder}: not found; expected the Cityscapes layout "
                f"ROOT/leftImg8bit/{split}/<city>/ and ROOT/gtFine/{split}/<city>/"
            )
    return pair_by_key(
        _by_key(image_dir, IMAGE_SUFFIX),
        _by_key(label_dir, LABEL_SUFFIX),
        str(root),
        unpaired,
    )
