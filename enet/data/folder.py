"""Your own data: a folder of images and masks, in the layouts people actually use.

Layouts, recognised in this order below the root (or the ``images``/``masks`` folders given):

- ``images/<split>/**`` beside ``masks/<split>/**`` (any split names, nested folders), or
  ``images/**`` beside ``masks/**`` without split folders (one set, ``train``);
- SegNet's CamVid layout: ``<split>/`` beside ``<split>annot/``;
- Pascal VOC: ``JPEGImages/`` and ``SegmentationClass/``, splits listed in
  ``ImageSets/Segmentation/<split>.txt``.

An image and its mask pair by their path below their folders, without the extension
(``street/001.jpg`` with ``street/001.png``). Masks are either class-index images (8- or
16-bit grey, or a palette PNG's indices, as VOC stores them), whose ``ignore`` value (default
255) becomes void, or colour images mapped to classes by a classes file. The class set ends
with a void channel, as Cityscapes' and CamVid's do; how masks encode the classes travels
with it (``ClassSet.encoding``), so evaluation and ``enet infer --labels`` read masks alike.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError, UsageError
from ..images import read_mask
from .cityscapes import read_label_as_classes
from .classes import ClassSet, generic_palette
from .source import SourceSample, pair_by_key

__all__ = [
    "IMAGE_SUFFIXES",
    "MASK_SUFFIXES",
    "MAX_CLASSES",
    "FolderLayout",
    "decode_mask",
    "mask_files",
    "read_classes_file",
    "read_label_classes",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")
#: Colour masks with more distinct colours than this are not class maps (JPEG-compressed?).
MAX_COLOURS = 64
#: Class maps are uint8 with a void channel after the classes: 255 classes at most.
MAX_CLASSES = 255
_SCAN_LIMIT = 2000  # masks read to find the classes when no classes file names them


# --- the classes file ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassEntry:
    name: str
    value: int | None = None  # the mask value (index masks)
    colour: tuple[int, int, int] | None = None  # the mask colour (colour masks)
    ignore: bool = False


def _colour(raw: object, where: str) -> tuple[int, int, int]:
    if isinstance(raw, str):
        text = raw.strip().lstrip("#")
        if len(text) == 6:
            try:
                return tuple(int(text[i : i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]
            except ValueError:
                pass
        parts = [p for p in text.replace(",", " ").split() if p]
        raw = parts if len(parts) == 3 else raw
    if isinstance(raw, (list, tuple)) and len(raw) == 3:
        try:
            values = tuple(int(v) for v in raw)
        except (TypeError, ValueError):
            values = ()
        if len(values) == 3 and all(0 <= v <= 255 for v in values):
            return values  # type: ignore[return-value]
    raise ValueError(f"{where}: colour {raw!r} is not [r, g, b] in 0..255 or #rrggbb")


def _name(raw: object) -> str | None:
    """An entry's name; a number is a name too (YAML and JSON read ``name: 1`` as one)."""
    name = raw.get("name") if isinstance(raw, dict) else None
    if isinstance(name, (int, float)) and not isinstance(name, bool):
        name = str(name)
    return (name.strip() or None) if isinstance(name, str) else None


def _entry(raw: dict, index: int, where: str) -> ClassEntry:
    name = _name(raw)
    if name is None:
        raise ValueError(f"{where}: entry {index + 1} has no name")
    value = raw.get("id", raw.get("value"))
    if value not in (None, ""):
        try:
            value = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: {name}: id {value!r} is not a whole number") from None
        if not 0 <= value <= 65535:
            raise ValueError(f"{where}: {name}: id {value} is not in 0..65535")
    else:
        value = None
    colour = raw.get("color", raw.get("colour"))
    if colour is None and all(k in raw for k in ("r", "g", "b")):
        colour = [raw["r"], raw["g"], raw["b"]]
    ignore = str(raw.get("ignore", "")).strip().lower() in ("true", "1", "yes")
    return ClassEntry(
        name, value, _colour(colour, where) if colour not in (None, "") else None, ignore
    )


def read_classes_file(path: str | Path) -> list[ClassEntry]:
    """The classes a file names, in order: JSON (a list of {name, color, id, ignore}, or
    {"classes": [...]}), YAML (the same) or CSV (columns name, color or r/g/b, id, ignore;
    separated by commas, semicolons or tabs). UTF-8, with or without the byte-order mark
    spreadsheets write. ``DataError`` naming the file for an unreadable, empty or
    contradictory one."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"{path}: cannot read the classes file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: the classes file is not UTF-8 text (save it as UTF-8)") from None
    try:
        if path.suffix.lower() == ".csv":
            rows: object = _csv_rows(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            rows = yaml.safe_load(text)
        else:
            rows = json.loads(text)
    except Exception as exc:  # JSON, YAML and CSV errors differ
        reason = " ".join(str(exc).split())[:120]
        raise DataError(f"{path}: not a readable classes file ({reason})") from None
    if isinstance(rows, dict):
        rows = rows.get("classes")
    if not isinstance(rows, list) or not rows:
        raise DataError(f"{path}: names no classes (give a list of {{name, color, id}})")
    try:
        entries = [_entry(raw, i, str(path)) for i, raw in enumerate(rows)]
    except ValueError as exc:
        raise DataError(str(exc)) from None
    _check_entries(entries, path)
    return entries


def _csv_rows(text: str) -> list[dict]:
    """A CSV file's rows by column, the separator (``,`` ``;`` or tab) the header's own:
    spreadsheets in many locales save CSV with semicolons."""
    lines = [line for line in text.splitlines() if line.strip()]
    delimiter = max((",", ";", "\t"), key=lines[0].count) if lines else ","
    rows = csv.DictReader(lines, delimiter=delimiter)
    return [{(k or "").strip().lower(): v for k, v in row.items()} for row in rows]


def _check_entries(entries: list[ClassEntry], path: Path) -> None:
    """``DataError`` for a file that contradicts itself: ids given for some classes only (a
    defaulted id, its position, would silently take another class's pixels), a name, id or
    colour twice, no class left after the ignore entry, or more classes than ENet holds."""
    kept = [e for e in entries if not e.ignore]
    if not kept:
        raise DataError(f"{path}: every class is marked ignore")
    if len(kept) > MAX_CLASSES:
        raise DataError(
            f"{path}: names {len(kept)} classes; ENet's class maps hold at most {MAX_CLASSES} "
            "(merge classes, or mark the unwanted ones ignore)"
        )
    with_id = [e for e in kept if e.value is not None]
    if with_id and len(with_id) < len(kept):
        lacking = next(e for e in kept if e.value is None)
        raise DataError(
            f"{path}: {lacking.name} has no id, but {with_id[0].name} has one (give every "
            "class an id, or none: each class's id is then its position)"
        )
    for what, keys in (
        ("names", [e.name for e in kept]),
        (
            "ids",
            [*_class_values(kept), *(e.value for e in entries if e.ignore and e.value is not None)],
        ),
        ("colours", [e.colour for e in entries if e.colour is not None]),
    ):
        double = sorted({str(k) for k in keys if keys.count(k) > 1})
        if double:
            raise DataError(f"{path}: the same {what[:-1]} twice: {', '.join(double)}")


def _class_values(kept: list[ClassEntry]) -> list[int]:
    """The mask value of each class (ignore entries left out): its id, or where the file
    gives none, its position among the classes."""
    return [i if e.value is None else e.value for i, e in enumerate(kept)]


# --- masks --------------------------------------------------------------------------------------


def _pack(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _describe(value: int, kind: str) -> str:
    if kind == "colour":
        return f"({value >> 16}, {(value >> 8) & 255}, {value & 255})"
    return str(value)


def decode_mask(mask: np.ndarray, classes: ClassSet, path: Path) -> np.ndarray:
    """H x W class ids of a mask array (H x W values, or H x W x 3 colours) as the class
    set's ``encoding`` says; values or colours it does not name are a ``DataError`` listing
    them with their pixel counts."""
    encoding = classes.encoding or {}
    kind = encoding.get("kind")
    if kind not in ("index", "colour"):
        raise DataError(f"{path}: the model's classes ({classes.name}) say nothing of masks")
    if (mask.ndim == 3) != (kind == "colour"):
        found = "a colour" if mask.ndim == 3 else "a single-channel"
        expected = "colour" if kind == "colour" else "class-index"
        raise DataError(f"{path}: {found} image, but this set's masks are {expected} masks")
    keys = _pack(mask[..., :3]) if kind == "colour" else mask.astype(np.int64)
    table = {int(v): i for i, v in enumerate(encoding["values"]) if v is not None}
    if encoding.get("ignore") is not None:
        table[int(encoding["ignore"])] = classes.void
    present, counts = np.unique(keys, return_counts=True)
    bad = [(int(v), int(c)) for v, c in zip(present, counts, strict=True) if int(v) not in table]
    if bad:
        shown = ", ".join(f"{_describe(v, kind)} ({c:,} px)" for v, c in bad[:6])
        more = f" and {len(bad) - 6} more" if len(bad) > 6 else ""
        what = "colours" if kind == "colour" else "values"
        raise DataError(
            f"{path}: {what} not in the classes: {shown}{more} (add them to the classes "
            "file, or pass --skip-bad)"
        )
    lut_keys = np.array(sorted(table), dtype=np.int64)
    lut_ids = np.array([table[k] for k in lut_keys], dtype=np.uint8)
    return lut_ids[np.searchsorted(lut_keys, keys)]


# --- the layout -----------------------------------------------------------------------------------


def read_label_classes(path: Path, classes: ClassSet) -> np.ndarray:
    """A label file as a model's class ids: a mask of a folder dataset as its class set's
    ``encoding`` says, else a Cityscapes ``labelIds``/``labelTrainIds`` file."""
    if classes.encoding is None:
        return read_label_as_classes(path, classes)
    colour = classes.encoding["kind"] == "colour"
    return decode_mask(_read_mask(path, colour), classes, path)


def _read_mask(path: Path, colour: bool) -> np.ndarray:
    """``read_mask``, and two kinds of index mask it refuses that image editors write: 1-bit
    (read as 0 and 1) and grey with alpha (the alpha dropped)."""
    try:
        return read_mask(path, colour=colour)
    except DataError:
        other = None if colour else _bilevel_or_grey_alpha(path)
        if other is None:
            raise
        return other


def _bilevel_or_grey_alpha(path: Path) -> np.ndarray | None:
    """A 1-bit or grey-with-alpha mask's class values; None for any other file."""
    try:
        with Image.open(path) as im:
            if im.mode == "1":
                return np.asarray(im, dtype=np.uint8)
            if im.mode == "LA":
                return np.asarray(im.getchannel("L"))
    except Exception:  # unreadable: read_mask has said so
        return None
    return None


def mask_files(folder: Path) -> dict[str, Path]:
    """The masks below ``folder`` by their path without the extension."""
    return _files(folder, MASK_SUFFIXES)


def _files(
    folder: Path, suffixes: tuple[str, ...], clashes: dict[str, list[Path]] | None = None
) -> dict[str, Path]:
    """Files below ``folder`` by their path without the extension; the first of two that
    share it (``000.jpg``, ``000.png``), the other added to ``clashes`` under the key."""
    found: dict[str, Path] = {}
    if not folder.is_dir():
        return found
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() in suffixes and p.is_file() and not p.name.startswith("."):
            key = p.relative_to(folder).with_suffix("").as_posix()
            if key in found and clashes is not None:
                clashes.setdefault(key, [found[key]]).append(p)
            found.setdefault(key, p)
    return found


def _in_val(key: str, fraction: float) -> bool:
    """Whether ``key`` goes to the val split carved from train: by a hash of the name, so the
    choice is the same on every machine and in any file order."""
    digest = hashlib.sha256(os.fsencode(key)).digest()  # names need not be UTF-8
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


@dataclass(frozen=True)
class FolderLayout:
    """A folder dataset as found: where each split's images and masks are, how masks map to
    classes (``classes``), and the options that shape it. Implements the ``DatasetLayout``
    protocol of ``source.py`` (built by ``FolderLayout.find``)."""

    root: Path
    kind: str  # "split folders", "one folder", "segnet" or "voc"
    images: Path
    masks: Path
    classes: ClassSet | None
    val_fraction: float = 0.0  # of train carved into val, where there is no val split
    resize_masks: bool = False
    split_names: tuple[str, ...] = ()

    DEFAULT_SIZE = None

    # --- finding it ---

    @classmethod
    def find(
        cls,
        root: str | Path,
        *,
        images: str | Path | None = None,
        masks: str | Path | None = None,
        classes_file: str | Path | None = None,
        ignore: int | None = 255,
        val_fraction: float = 0.0,
        resize_masks: bool = False,
    ) -> FolderLayout:
        """The dataset at ``root``: its layout, splits and classes (from ``classes_file``, or
        numbered from the values the masks hold)."""
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{root}: no such folder")
        if not 0 <= val_fraction < 1:
            raise UsageError(f"--val-fraction {val_fraction}: must be at least 0 and below 1")
        kind, image_dir, mask_dir, splits = _structure(root, images, masks)
        carve = _carves(root, val_fraction, splits)
        layout = cls(
            root, kind, image_dir, mask_dir, None, val_fraction if carve else 0.0,
            resize_masks, (*splits, "val") if carve else splits,
        )  # fmt: skip
        return replace(layout, classes=_class_set(layout, classes_file, ignore))

    def to_dict(self) -> dict:
        """What the manifest records of how the set was found."""
        return {
            "kind": self.kind,
            "images": str(self.images),
            "masks": str(self.masks),
            "val_fraction": self.val_fraction,
            "resize_masks": self.resize_masks,
        }

    # --- the DatasetLayout protocol ---

    def splits(self) -> tuple[str, ...]:
        return self.split_names

    def pairs_of(
        self, split: str, problems: list[str] | None = None
    ) -> tuple[dict[str, Path], dict[str, Path]]:
        """(images, masks) of a split as found, by key, before pairing. Two files of one
        name (``000.jpg``, ``000.png``) leave the pair out, each named in ``problems`` when
        it is given, else a ``DataError``: which of them is meant is not ours to guess."""
        clashes: dict[str, list[Path]] = {}
        carved = bool(self.val_fraction) and split in ("train", "val")
        source = "train" if carved else split
        if self.kind == "voc":
            listed = self.root / "ImageSets" / "Segmentation" / f"{source}.txt"
            names = [n for n in listed.read_text().split() if n]
            images = {n: self.images / f"{n}.jpg" for n in names}
            masks = {
                n: self.masks / f"{n}.png" for n in names if (self.masks / f"{n}.png").is_file()
            }
        else:
            image_dir, mask_dir = self._split_dirs(source)
            images = _files(image_dir, IMAGE_SUFFIXES, clashes)
            masks = _files(mask_dir, MASK_SUFFIXES, clashes)
        if carved:

            def keep(key: str) -> bool:
                return _in_val(key, self.val_fraction) == (split == "val")

            images = {k: v for k, v in images.items() if keep(k)}
            masks = {k: v for k, v in masks.items() if keep(k)}
            clashes = {k: v for k, v in clashes.items() if keep(k)}
        for key, (first, *others) in sorted(clashes.items()):
            names = " and ".join(p.name for p in others)
            message = (
                f"{first}: {names} has the same name without the extension (keep one: "
                "images and masks pair by that name)"
            )
            if problems is None:
                raise DataError(message)
            problems.append(message)
            images.pop(key, None)
            masks.pop(key, None)
        return images, masks

    def find_samples(
        self, root: Path, split: str, unpaired: list[str] | None = None
    ) -> list[SourceSample]:
        if split not in self.split_names:
            raise DataError(
                f"{self.root}: no split {split!r} (found: {', '.join(self.split_names)})"
            )
        images, masks = self.pairs_of(split, unpaired)
        if not images.keys() & masks.keys():
            raise DataError(self._no_pairs(split, images, masks))
        return pair_by_key(images, masks, str(self.root), unpaired)

    def read_class_ids(self, path: Path) -> np.ndarray:
        return read_label_classes(path, self.classes)

    # --- helpers ---

    def _no_pairs(self, split: str, images: dict[str, Path], masks: dict[str, Path]) -> str:
        """Why ``split`` holds no pair, and what to do."""
        if self.val_fraction and split in ("train", "val"):
            total = sum(len(self.pairs_of(s, [])[0]) for s in ("train", "val"))
            return (
                f"{self.images}: --val-fraction {self.val_fraction} of {total} images leaves "
                f"the {split} split empty (choose a fraction that leaves both some images)"
            )
        where = self.root if self.kind == "voc" else self._split_dirs(split)[0]
        found = ", ".join(
            f"{len(files)} {what}"
            + (f" such as {next(iter(files.values())).name}" if files else "")
            for what, files in (("images", images), ("masks", masks))
        )
        return (
            f"{where}: the {split} split has no image/mask pairs ({found}; an image and its "
            "mask pair by name without the extension, case counting; or prepare the other "
            "splits with --split)"
        )

    def _split_dirs(self, split: str) -> tuple[Path, Path]:
        if self.kind == "one folder":
            return self.images, self.masks
        if self.kind == "segnet":
            return self.root / split, self.root / f"{split}annot"
        return self.images / split, self.masks / split


def _carves(root: Path, val_fraction: float, splits: tuple[str, ...]) -> bool:
    """Whether ``--val-fraction`` holds val out of train: only where there is a train
    split and no val split; said, never silently dropped."""
    if not val_fraction:
        return False
    if "val" in splits:
        print(f"warning: {root}: has a val split; --val-fraction {val_fraction} not used")
        return False
    if "train" not in splits:
        raise UsageError(
            f"{root}: --val-fraction {val_fraction} holds val out of the train split, and "
            f"the splits are {', '.join(splits)} (name one train, or leave out --val-fraction)"
        )
    return True


def _structure(
    root: Path, images: str | Path | None, masks: str | Path | None
) -> tuple[str, Path, Path, tuple[str, ...]]:
    """(kind, images folder, masks folder, splits) of the tree at ``root``."""
    if (images is None) != (masks is None):
        raise UsageError("--images and --masks go together (the two folders to pair)")
    if images is None:
        if (root / "JPEGImages").is_dir() and (root / "SegmentationClass").is_dir():
            lists = sorted((root / "ImageSets" / "Segmentation").glob("*.txt"))
            if not lists:
                raise DataError(
                    f"{root}: a Pascal VOC tree without ImageSets/Segmentation/<split>.txt lists"
                )
            splits = tuple(p.stem for p in lists if p.stem != "trainval")
            return "voc", root / "JPEGImages", root / "SegmentationClass", splits
        segnet = tuple(
            sorted(
                p.name for p in root.iterdir() if p.is_dir() and (root / f"{p.name}annot").is_dir()
            )
        )
        if segnet:
            return "segnet", root, root, segnet
        images, masks = "images", "masks"
    image_dir, mask_dir = (Path(p) if Path(p).is_absolute() else root / p for p in (images, masks))
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            raise DataError(
                f"{folder}: not found (a folder dataset is images/<split>/ beside "
                "masks/<split>/, or give --images DIR --masks DIR)"
            )
    subfolders = sorted(p.name for p in image_dir.iterdir() if p.is_dir())
    loose = any(p.suffix.lower() in IMAGE_SUFFIXES for p in image_dir.iterdir() if p.is_file())
    labelled = tuple(s for s in subfolders if (mask_dir / s).is_dir())
    if subfolders and not loose and labelled:
        for split in sorted(set(subfolders) - set(labelled)):  # a test split without masks
            print(f"warning: {image_dir / split}: no {mask_dir / split} folder; split not prepared")
        return "split folders", image_dir, mask_dir, labelled
    return "one folder", image_dir, mask_dir, ("train",)


def _mask_files(layout: FolderLayout) -> list[Path]:
    found: list[Path] = []
    for split in layout.split_names:
        found += layout.pairs_of(split, [])[1].values()  # files of one name: named later
    return sorted(set(found))


def _first_mask(masks: list[Path]) -> tuple[str, list | None]:
    """(mode, palette or None) of the first mask that opens: one unreadable file is named
    (or skipped with ``--skip-bad``) where it is prepared, not here."""
    for path in masks:
        try:
            with Image.open(path) as im:
                return im.mode, im.getpalette() if im.mode == "P" else None
        except Exception:  # PIL raises many kinds; read_mask names the first below
            continue
    read_mask(masks[0], colour=False)  # the standard "<path>: unreadable mask (...)"
    raise DataError(f"{masks[0]}: unreadable mask")


def _class_set(
    layout: FolderLayout, classes_file: str | Path | None, ignore: int | None
) -> ClassSet:
    """The class set of a folder dataset, void last, with how its masks encode classes."""
    masks = _mask_files(layout)
    if not masks:
        raise DataError(f"{layout.root}: no masks found ({', '.join(MASK_SUFFIXES)})")
    mode, palette = _first_mask(masks)
    colour = mode in ("RGB", "RGBA")
    name = layout.root.resolve().name or "folder"
    if classes_file is not None:
        entries = read_classes_file(classes_file)
        colour = colour or (mode == "P" and _by_colour(entries))
        return _from_entries(entries, name, colour, classes_file, ignore)
    return _from_masks(masks, name, colour, ignore, palette)


def _by_colour(entries: list[ClassEntry]) -> bool:
    """Whether palette masks are read by colour: where the classes file gives colours and
    no ids. A palette's order is the drawing program's, not the file's; ids, where given,
    are the palette indices."""
    kept = [e for e in entries if not e.ignore]
    return all(e.value is None and e.colour is not None for e in kept)


def _from_entries(
    entries: list[ClassEntry], name: str, colour: bool, source: str | Path, ignore: int | None
) -> ClassSet:
    """The classes a file names; the value that is void is the file's ignore entry, else
    ``ignore`` (index masks) where no class has that value."""
    kept = [e for e in entries if not e.ignore]
    ignored = [e for e in entries if e.ignore]
    if colour:
        lacking = [e.name for e in entries if e.colour is None]
        if lacking:
            raise DataError(
                f"{source}: the masks are read by colour, but {', '.join(lacking[:3])} has no "
                "colour (give each entry its colour)"
            )
        values = [int(_pack(np.array(e.colour))) for e in kept]
        ignore_value = int(_pack(np.array(ignored[0].colour))) if ignored else None
    else:
        values = _class_values(kept)
        if ignored:
            ignore_value = ignored[0].value if ignored[0].value is not None else ignore
            if ignore_value in values:  # only a defaulted ignore value can be a class's id
                raise DataError(
                    f"{source}: {ignored[0].name} has no id, and --ignore {ignore} is the id "
                    f"of {kept[values.index(ignore_value)].name} (give {ignored[0].name} its id)"
                )
        else:
            ignore_value = ignore if ignore not in values else None
    generated = generic_palette(len(kept))
    colours = [e.colour if e.colour is not None else generated[i] for i, e in enumerate(kept)]
    void_colour = ignored[0].colour if ignored and ignored[0].colour else (0, 0, 0)
    return ClassSet(
        name,
        (*(e.name for e in kept), "void"),
        (*colours, void_colour),
        len(kept),
        {
            "kind": "colour" if colour else "index",
            "values": [*values, None],
            "ignore": ignore_value,
        },
    )


def _from_masks(
    masks: list[Path], name: str, colour: bool, ignore: int | None, palette: list | None
) -> ClassSet:
    """Classes numbered from the values (or colours) the masks hold, with a warning."""
    seen: set[int] = set()
    for path in masks[:_SCAN_LIMIT]:
        try:
            array = _read_mask(path, colour)
        except DataError:  # named (or skipped) where it is prepared
            continue
        keys = _pack(array[..., :3]) if colour else array
        seen |= {int(v) for v in np.unique(keys)}
        if colour and len(seen) > MAX_COLOURS:
            raise DataError(
                f"{path}: the masks hold more than {MAX_COLOURS} colours, not a class map "
                "(JPEG-compressed?); give a classes file"
            )
        if len(seen - {ignore}) > MAX_CLASSES:
            raise DataError(
                f"{path}: {len(seen)} distinct mask values; ENet's class maps hold at most "
                f"{MAX_CLASSES} classes (is this an instance map? give a classes file, or "
                "masks of class ids)"
            )
    if not seen:
        _read_mask(masks[0], colour)  # none readable: the first one's error
    if not colour and ignore is not None and seen == {0, ignore}:
        raise DataError(
            f"{masks[0].parent}: the masks hold only 0 and {ignore}, and {ignore} is the ignore "
            f"value: for binary masks pass --ignore none, or a classes file naming both"
        )
    values = sorted(v for v in seen if colour or v != ignore)
    if not values:
        raise DataError(f"{masks[0].parent}: the masks hold only the ignore value {ignore}")
    if colour:
        names = [f"class_{i}" for i in range(len(values))]
        colours = [(v >> 16, (v >> 8) & 255, v & 255) for v in values]
    else:
        names = [f"class_{v}" for v in values]
        colours = (
            [tuple(palette[3 * v : 3 * v + 3]) for v in values]
            if palette and max(values) < 256
            else list(generic_palette(len(values)))
        )
    shown = ", ".join(f"{n}" for n in names[:8]) + (", ..." if len(names) > 8 else "")
    print(
        f"warning: no classes file: {len(values)} classes numbered from the "
        f"{'colours' if colour else 'values'} in the masks ({shown}); name them with --classes"
    )
    return ClassSet(
        name,
        (*names, "void"),
        (*colours, (0, 0, 0)),
        len(values),
        {
            "kind": "colour" if colour else "index",
            "values": [*values, None],
            "ignore": None if colour else ignore,
        },
    )
