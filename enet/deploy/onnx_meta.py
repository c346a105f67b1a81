"""The enet metadata an exported ONNX file carries (classes, palette, input size, variant,
precision, provenance), stored as JSON strings in the model's ``metadata_props``."""

from __future__ import annotations

import json
from pathlib import Path

from ..data.classes import ClassSet
from ..errors import UsageError

__all__ = ["onnx_metadata", "set_onnx_metadata"]


def onnx_metadata(path: str | Path) -> dict:
    """The enet metadata stored in an exported ONNX file (values decoded from JSON); a file
    that is not ONNX, or whose metadata is not enet's, is a ``UsageError`` naming it."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such ONNX file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        reason = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise UsageError(
            f"{path}: not a readable ONNX file, truncated or corrupt ({reason}) "
            "(export it again with enet export)"
        ) from None
    meta = {}
    for prop in model.metadata_props:
        if prop.key.startswith("enet."):
            try:
                meta[prop.key] = json.loads(prop.value)
            except ValueError:
                raise UsageError(
                    f"{path}: its {prop.key} metadata is not JSON (export it again)"
                ) from None
    if "enet.classes" in meta:
        try:
            ClassSet.from_dict(meta["enet.classes"])
        except ValueError as exc:
            raise UsageError(f"{path}: its enet.classes metadata is malformed: {exc}") from None
    return meta


def set_onnx_metadata(path: Path, values: dict) -> None:
    """Replace the ``enet.*`` metadata of the ONNX file at ``path`` (values stored as JSON)."""
    import onnx

    proto = onnx.load(str(path))
    kept = [p for p in proto.metadata_props if not p.key.startswith("enet.")]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.save(proto, str(path))
