"""Errors a user can cause or meet; the CLI prints each as one line instead of a traceback:
``enet: error: <path>: <what went wrong> (<what to do>)``."""

from __future__ import annotations

import errno
from pathlib import Path

__all__ = [
    "CheckpointError",
    "DataError",
    "EnetError",
    "ImageTooLargeError",
    "NotAnImageError",
    "OutputError",
    "UsageError",
    "describe_os_error",
]


class EnetError(Exception):
    """Base class for problems with the user's input, reported as ``enet: error: <message>``."""


class CheckpointError(EnetError, ValueError):
    """A checkpoint file is missing, truncated, foreign or does not fit the model."""


class UsageError(EnetError, ValueError):
    """An option or argument value that cannot work (unknown name, wrong count, ...)."""


class DataError(EnetError):
    """Input data that cannot be used as it is (missing, extra, unreadable or wrong files)."""


class NotAnImageError(DataError):
    """Bytes or a file that no image decoder recognises (a server answers 415)."""


class ImageTooLargeError(DataError):
    """An image of more pixels than allowed, refused before it is decoded (a server: 413)."""


class OutputError(EnetError):
    """An output that cannot be written: it exists, its disk is full or it is not writable."""


_ADVICE = {
    errno.ENOSPC: "no space left on the device (free some space or write elsewhere)",
    errno.EDQUOT: "disk quota exceeded (free some space or write elsewhere)",
    errno.EROFS: "read-only file system (write elsewhere)",
    errno.EACCES: "permission denied (choose a location you can write to)",
    errno.EPERM: "operation not permitted (choose a location you can write to)",
    errno.EISDIR: "is a folder where a file is expected (give a file name)",
    errno.ENOTDIR: "a file stands where a folder is expected (choose another path)",
    errno.ENOENT: "no such file or folder",
    errno.EFBIG: "file too large for this file system (write elsewhere)",
    errno.ENAMETOOLONG: "name too long (choose a shorter path)",
    errno.EMFILE: "too many open files (raise the limit: ulimit -n)",
}


def describe_os_error(exc: OSError, path: str | Path | None = None) -> str:
    """``<path>: <what went wrong> (<what to do>)`` for an ``OSError``."""
    where = path if path is not None else (exc.filename or "")
    what = _ADVICE.get(exc.errno) or (exc.strerror or str(exc) or type(exc).__name__)
    return f"{where}: {what}" if where else what
