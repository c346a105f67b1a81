"""Named class sets: what each output channel of a model means and how to colour it.

Checkpoints and exports carry their class set, so a model always knows its own labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from . import camvid, cityscapes

__all__ = [
    "CLASS_SETS",
    "ClassSet",
    "check_same_classes",
    "class_set",
    "generic_class_set",
    "generic_palette",
    "same_classes",
]

_BLACK = (0, 0, 0)


@dataclass(frozen=True)
class ClassSet:
    """Output channel ``i`` is ``names[i]``, drawn as ``palette[i]``; ``void`` is the channel
    that stands for ignored pixels (trained with weight 0, never scored), or None."""

    name: str
    names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    void: int | None
    #: how a dataset's masks store the classes, for a folder dataset (``folder.decode_mask``):
    #: {"kind": "index" | "colour", "values": the mask value (or packed RGB) of each class,
    #: None for void, "ignore": the value (or colour) that is void, or None}
    encoding: dict | None = None

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def to_dict(self) -> dict:
        out = {
            "name": self.name,
            "names": list(self.names),
            "palette": [list(c) for c in self.palette],
            "void": self.void,
        }
        if self.encoding is not None:
            out["encoding"] = self.encoding
        return out

    @classmethod
    def from_dict(cls, d: Any) -> ClassSet:
        """The class set ``to_dict`` wrote; ``ValueError`` saying what is wrong with any
        other value (these dicts come from files: checkpoints, ONNX metadata, manifests)."""
        if not isinstance(d, dict) or not {"name", "names", "palette", "void"} <= d.keys():
            raise ValueError("class set is not a dict with name, names, palette and void")
        name, names, palette, void = d["name"], d["names"], d["palette"], d["void"]
        if not isinstance(name, str):
            raise ValueError("class set name is not a string")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ValueError("class names are not a non-empty list of strings")
        if not isinstance(palette, list) or len(palette) != len(names):
            raise ValueError(f"palette does not have one colour for each of {len(names)} classes")
        for colour in palette:
            if (
                not isinstance(colour, (list, tuple))
                or len(colour) != 3
                or not all(type(v) is int and 0 <= v <= 255 for v in colour)
            ):
                raise ValueError(f"palette colour {colour!r} is not three integers in 0..255")
        if void is not None and (type(void) is not int or not 0 <= void < len(names)):
            raise ValueError(f"void {void!r} is not a class index below {len(names)} (or null)")
        encoding = d.get("encoding")
        if encoding is not None:
            values = encoding.get("values") if isinstance(encoding, dict) else None
            ignore = encoding.get("ignore") if isinstance(encoding, dict) else None
            if (
                encoding.get("kind") not in ("index", "colour")
                or not isinstance(values, list)
                or len(values) != len(names)
                or not all(v is None or type(v) is int for v in values)
                or not (ignore is None or type(ignore) is int)
            ):
                raise ValueError("class set encoding is not {kind, values per class, ignore}")
        return cls(name, tuple(names), tuple(tuple(c) for c in palette), void, encoding)


def same_classes(model: ClassSet, data: ClassSet) -> bool:
    """Whether a model's outputs mean the data's classes, in the same order: two class sets of
    one size may still differ (PyTorch-ENet's Cityscapes order puts "unlabeled" first). A
    model with unnamed classes (``generic``) is taken at its count. The void output's name
    does not matter ("unlabeled", "void")."""
    if model.num_classes != data.num_classes:
        return False
    return model.name == "generic" or (_scored(model), model.void) == (_scored(data), data.void)


def _scored(classes: ClassSet) -> list[str]:
    return [n for i, n in enumerate(classes.names) if i != classes.void]


def check_same_classes(
    model: ClassSet, data: ClassSet, model_path: object, data_path: object
) -> None:
    """``UsageError`` unless ``same_classes``."""
    if not same_classes(model, data):
        differ = next(
            (
                f"output {i} is {a!r} in the model, {b!r} in the data"
                for i, (a, b) in enumerate(zip(model.names, data.names, strict=False))
                if a != b and not i == model.void == data.void
            ),
            f"{model.num_classes} outputs, {data.num_classes} classes",
        )
        raise UsageError(
            f"{model_path}: its classes ({model.name}) are not those of {data_path} "
            f"({data.name}): {differ} (use a model trained on these classes, in this order)"
        )


CLASS_SETS: dict[str, ClassSet] = {
    # The seed: 19 trainIds, then void as a 20th output (SPEC 3.3).
    "cityscapes": ClassSet(
        "cityscapes", (*cityscapes.TRAIN_NAMES, "void"), (*cityscapes.TRAIN_PALETTE, _BLACK), 19
    ),
    # PyTorch-ENet's Cityscapes loader puts "unlabeled" first, road..bicycle as 1..19.
    "cityscapes-pytorch-enet": ClassSet(
        "cityscapes-pytorch-enet",
        ("unlabeled", *cityscapes.TRAIN_NAMES),
        (_BLACK, *cityscapes.TRAIN_PALETTE),
        0,
    ),
    # SegNet / PyTorch-ENet CamVid: 11 classes, then unlabelled.
    "camvid": ClassSet(
        "camvid", (*camvid.NAMES, "unlabeled"), (*camvid.PALETTE, _BLACK), camvid.VOID_ID
    ),
}


def generic_palette(count: int) -> tuple[tuple[int, int, int], ...]:
    """``count`` well-spread colours, for classes that come without their own."""
    return tuple(
        ((37 * i + 71) % 256, (91 * i + 13) % 256, (157 * i + 199) % 256) for i in range(count)
    )


def generic_class_set(num_classes: int) -> ClassSet:
    """Names ``class_0..`` and well-spread colours for a model whose classes are not known."""
    names = tuple(f"class_{i}" for i in range(num_classes))
    return ClassSet("generic", names, generic_palette(num_classes), None)


def class_set(name: str) -> ClassSet:
    """Look up a named class set; the error lists the known names."""
    try:
        return CLASS_SETS[name]
    except KeyError:
        raise UsageError(f"unknown class set {name!r}; known: {', '.join(CLASS_SETS)}") from None
