"""Named class sets: what each output channel of a model means and how to colour it.

Checkpoints and exports carry their class set, so a model always knows its own labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from . import camvid, cityscapes

__all__ = ["CLASS_SETS", "ClassSet", "check_same_classes", "class_set", "generic_class_set"]

_BLACK = (0, 0, 0)


@dataclass(frozen=True)
class ClassSet:
    """Output channel ``i`` is ``names[i]``, drawn as ``palette[i]``; ``void`` is the channel
    that stands for ignored pixels (trained with weight 0, never scored), or None."""

    name: str
    names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    void: int | None

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "names": list(self.names),
            "palette": [list(c) for c in self.palette],
            "void": self.void,
        }

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
        return cls(name, tuple(names), tuple(tuple(c) for c in palette), void)


def check_same_classes(
    model: ClassSet, data: ClassSet, model_path: object, data_path: object
) -> None:
    """``UsageError`` unless a model's outputs mean the data's classes, in the same order:
    two class sets of one size may still differ (PyTorch-ENet's Cityscapes order puts
    "unlabeled" first). A model with unnamed classes (``generic``) is taken at its count."""
    if model.num_classes != data.num_classes or (
        model.name != "generic" and (model.names, model.void) != (data.names, data.void)
    ):
        differ = next(
            (
                f"output {i} is {a!r} in the model, {b!r} in the data"
                for i, (a, b) in enumerate(zip(model.names, data.names, strict=False))
                if a != b
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


def generic_class_set(num_classes: int) -> ClassSet:
    """Names ``class_0..`` and well-spread colours for a model whose classes are not known."""
    palette = tuple(
        ((37 * i + 71) % 256, (91 * i + 13) % 256, (157 * i + 199) % 256)
        for i in range(num_classes)
    )
    return ClassSet("generic", tuple(f"class_{i}" for i in range(num_classes)), palette, None)


def class_set(name: str) -> ClassSet:
    """Look up a named class set; the error lists the known names."""
    try:
        return CLASS_SETS[name]
    except KeyError:
        raise UsageError(f"unknown class set {name!r}; known: {', '.join(CLASS_SETS)}") from None
