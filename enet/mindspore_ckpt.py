"""Read MindSpore ``.ckpt`` files without MindSpore or protobuf installed.

The file is one proto2 ``Checkpoint`` message: ``repeated Value value = 1`` where ``Value`` is
``{tag = 1 (string), tensor = 2 (TensorProto)}`` and ``TensorProto`` is
``{dims = 1 (repeated int64, unpacked), tensor_type = 2 (string), tensor_content = 3 (bytes)}``
(schema and observed framing: shared/reference/mindspore/README.md). MindSpore 2.x may append
``b"crc_num"`` + a 10-byte big-endian ``zlib.crc32`` of everything before it.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from .errors import CheckpointError

__all__ = ["read_mindspore_checkpoint"]

_CRC_MARK = b"crc_num"
_CRC_TRAILER = len(_CRC_MARK) + 10

# str(mindspore dtype) -> numpy; early 1.x spelled unsigned types "Uint8" (we lower-case).
_DTYPES = {
    "float16": np.float16,
    "float32": np.float32,
    "float64": np.float64,
    "int8": np.int8,
    "int16": np.int16,
    "int32": np.int32,
    "int64": np.int64,
    "uint8": np.uint8,
    "uint16": np.uint16,
    "uint32": np.uint32,
    "uint64": np.uint64,
    "bool": np.bool_,
}


class _Truncated(Exception):
    pass


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise _Truncated("varint runs past the end of the data")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _Truncated("varint longer than 10 bytes")


def _fields(buf: bytes):
    """Yield (field number, wire type, value) for one message; value is int or bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise _Truncated(f"field {field} needs {length} bytes, {len(buf) - pos} left")
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise _Truncated(f"unsupported wire type {wire}")
        if pos > len(buf):
            raise _Truncated("fixed-size field runs past the end")
        yield field, wire, value


def _tensor(buf: bytes, tag: str) -> tuple[np.ndarray, list[int]] | None:
    """(flat values, dims) of one TensorProto; None for string entries, which hold no weights."""
    dims: list[int] = []
    dtype_name = ""
    content = b""
    for field, wire, value in _fields(buf):
        if field == 1 and wire == 0:
            dims.append(value)
        elif field == 1 and wire == 2:  # tolerate a packed encoding as well
            pos = 0
            while pos < len(value):
                d, pos = _varint(value, pos)
                dims.append(d)
        elif field == 2:
            dtype_name = bytes(value).decode("utf-8")
        elif field == 3:
            content = bytes(value)
    key = dtype_name.lower()
    if key == "str":
        return None
    if key not in _DTYPES:
        raise _Truncated(f"entry {tag!r} has unsupported tensor type {dtype_name!r}")
    itemsize = np.dtype(_DTYPES[key]).itemsize
    if len(content) % itemsize:
        raise _Truncated(f"entry {tag!r} has {len(content)} bytes, not a multiple of {itemsize}")
    return np.frombuffer(content, dtype=_DTYPES[key]), dims


def read_mindspore_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """Every tensor entry of a MindSpore checkpoint, by name, in stored order.

    Consecutive entries with the same tag (tensors over 512 MiB split along axis 0) are joined.
    Raises ``CheckpointError`` naming the file for a truncated, corrupt or foreign file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) >= _CRC_TRAILER and data[-_CRC_TRAILER:-10] == _CRC_MARK:
        body = data[:-_CRC_TRAILER]
        stored = int.from_bytes(data[-10:], "big")
        if zlib.crc32(body) != stored:
            raise CheckpointError(f"{path}: CRC check failed; the MindSpore checkpoint is corrupt")
        data = body
    if not data:
        raise CheckpointError(f"{path}: empty file, not a MindSpore checkpoint")

    # tag -> (pieces, dims); a dict keeps the stored order.
    entries: dict[str, tuple[list[np.ndarray], list[int]]] = {}
    try:
        for field, wire, value in _fields(data):
            if field != 1 or wire != 2:
                raise _Truncated(f"unexpected top-level field {field}")
            tag, tensor = None, None
            for f, w, v in _fields(value):
                if f == 1 and w == 2:
                    tag = bytes(v).decode("utf-8")
                elif f == 2 and w == 2:
                    tensor = v
            parsed = _tensor(tensor, tag) if tag is not None and tensor is not None else None
            if parsed is not None:
                entries.setdefault(tag, ([], parsed[1]))[0].append(parsed[0])
    except (_Truncated, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"{path}: not a readable MindSpore checkpoint (truncated or foreign file: {exc})"
        ) from None

    out: dict[str, np.ndarray] = {}
    for tag, (arrays, dims) in entries.items():
        flat = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
        if dims in ([], [0]) and flat.size == 1:  # scalars: 2.x writes no dims, 1.x writes [0]
            out[tag] = flat.reshape(())
        elif flat.size == int(np.prod(dims)):
            out[tag] = flat.reshape(dims)
        else:
            raise CheckpointError(
                f"{path}: entry {tag!r} holds {flat.size} values but its shape is {dims} "
                "(truncated file?)"
            )
    if not out:
        raise CheckpointError(f"{path}: no tensors found; not a MindSpore checkpoint")
    return out
