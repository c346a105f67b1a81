"""The one way enet writes files: nothing half-written is ever left under a final name, and
nothing that exists is replaced unless the caller says so.

Each output is written to a temporary file beside its target, named after the target and
the writing process (``.<name>.<pid>-<random>.enet-tmp<suffix>``), flushed to disk and
renamed into place. A failed write (full disk, read-only folder) removes the temporary file
and raises ``OutputError`` naming the target. Temporary files of a process that was killed
are removed by the next enet command that writes to the folder (``clear_stale_temps``).
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from .errors import OutputError, UsageError, describe_os_error

__all__ = [
    "TEMP_TAG",
    "atomic_write",
    "check_not_a_file",
    "check_not_input",
    "check_output_file",
    "clear_stale_temps",
    "create_array",
    "output_folder",
    "output_path",
    "pid_alive",
    "scratch_folder",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]

TEMP_TAG = ".enet-tmp"
_TEMP_NAME = re.compile(r"^\..+\.(\d+)-[^.]+" + re.escape(TEMP_TAG) + r"(\.[A-Za-z0-9]+)?$")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (one we may not signal counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}-"


def check_not_a_file(folder: Path) -> None:
    """Refuse a file where an output folder is to be, before any work that would be lost."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: is a file where a folder is expected (choose another path)")


def _prepare_parent(path: Path, *, folder: bool = False) -> None:
    """Make ``path``'s parent; refuse a ``path`` of the other kind (a folder where a file
    will be written, or with ``folder`` the other way round)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(describe_os_error(exc, path.parent)) from None
    if folder:
        check_not_a_file(path)
    elif path.is_dir():
        raise OutputError(f"{path}: is a folder where a file is expected (give a file name)")


def _publish(tmp: Path, path: Path, replace: bool) -> None:
    """Rename ``tmp`` to ``path``; with ``replace=False`` never over an existing file (a hard
    link is the atomic no-clobber rename; file systems without links fall back to a check).
    Every output passes here, complete: tests inject a full disk at this seam."""
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual file mode
    if replace:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise OutputError(_exists_message(path)) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        if path.exists():
            raise OutputError(_exists_message(path)) from None
        os.replace(tmp, path)
        return
    tmp.unlink()


def _exists_message(path: Path, flag: str = "--overwrite") -> str:
    return f"{path}: already exists (pass {flag} to replace it, or choose another path)"


@contextlib.contextmanager
def output_path(path: str | Path, *, replace: bool = True) -> Iterator[Path]:
    """A temporary path beside ``path`` for writers that need a file name (ONNX, video). It
    keeps ``path``'s suffix (readers pick a format by it) and is renamed to ``path`` when the
    block ends without an error, else removed."""
    path = Path(path)
    _prepare_parent(path)
    try:
        fd, name = tempfile.mkstemp(
            prefix=_temp_prefix(path), suffix=TEMP_TAG + path.suffix, dir=path.parent
        )
        os.close(fd)
    except OSError as exc:
        raise OutputError(describe_os_error(exc, path)) from None
    tmp = Path(name)
    try:
        yield tmp
        _publish(tmp, path, replace)
    except OSError as exc:
        raise OutputError(describe_os_error(exc, path)) from None
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(
    path: str | Path, write: Callable[[IO[Any]], None], *, text: bool = False, replace: bool = True
) -> Path:
    """Call ``write(file)`` on an in-memory file, then write its bytes atomically to ``path``
    (over an existing file only with ``replace``)."""
    buffer: IO[Any] = io.StringIO() if text else io.BytesIO()
    write(buffer)
    data = buffer.getvalue()
    return write_bytes_atomic(path, data.encode() if text else data, replace=replace)


def write_bytes_atomic(path: str | Path, data: bytes, *, replace: bool = True) -> Path:
    """``data`` to a temporary file beside ``path``, flushed to disk, renamed to ``path``."""
    path = Path(path)
    with output_path(path, replace=replace) as tmp:
        _write_file(tmp, data)
    return path


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _reserve(fd: int, size: int) -> None:
    """Claim ``size`` bytes of disk for an open file now, so a memmap never meets a full disk
    (the other seam where tests inject one). File systems without the call skip it."""
    if not hasattr(os, "posix_fallocate"):
        return
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
            raise


def write_text_atomic(path: str | Path, text: str, *, replace: bool = True) -> Path:
    return atomic_write(path, lambda f: f.write(text), text=True, replace=replace)


def write_json_atomic(path: str | Path, obj: Any, *, replace: bool = True) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=1), replace=replace)


def create_array(path: str | Path, dtype: Any, shape: tuple[int, ...]) -> np.memmap:
    """A new ``.npy`` file opened as a writable memmap, its disk space reserved up front: a
    memmap written past the free space kills the process with SIGBUS, where a reservation
    fails with one clear error."""
    path = Path(path)
    try:
        array = np.lib.format.open_memmap(path, "w+", dtype, shape)
        fd = os.open(path, os.O_RDWR)
        try:
            _reserve(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise OutputError(describe_os_error(exc, path)) from None
    return array


def check_output_file(
    path: str | Path,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | Path] = (),
    flag: str = "--overwrite",
) -> Path:
    """Refuse an output that is one of the command's ``inputs`` or lies in an input folder,
    a folder, or (without ``overwrite``) a file that exists, before any work is done; remove
    what killed enet processes left of earlier writes beside it."""
    path = Path(path)
    check_not_input(path, inputs)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder where a file is expected (give a file name)")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"{parent}: is a file where a folder is expected")
            break
    if path.exists() and not overwrite:
        raise OutputError(_exists_message(path, flag))
    clear_stale_temps(path.parent, recursive=False)
    return path


def check_not_input(path: str | Path, inputs: Iterable[str | Path]) -> None:
    """``UsageError`` if ``path`` is one of the files in ``inputs`` or lies in (or is) one of
    the folders in it: outputs never replace or join what a command reads."""
    path = Path(path)
    where = path.resolve()
    for source in map(Path, inputs):
        if source.is_dir():
            if where == source.resolve() or source.resolve() in where.parents:
                raise UsageError(
                    f"{path}: lies in the input folder {source} (choose an output path "
                    "outside the inputs)"
                )
        elif source.exists() and path.exists() and os.path.samefile(source, path):
            raise UsageError(f"{path}: is also the input {source} (choose another output path)")


def clear_stale_temps(folder: str | Path, *, recursive: bool = True) -> int:
    """Remove the temporary files (and folders) that enet processes no longer running left
    in ``folder`` (and below it, when ``recursive``). Returns how many; nothing else is
    touched: only names of ``output_path``'s pattern whose writer's pid is gone."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    if recursive:
        found = ((Path(root), files, dirs) for root, dirs, files in os.walk(folder))
    else:
        found = [(folder, [n for n in os.listdir(folder) if TEMP_TAG in n], [])]
    removed = 0
    for root, files, dirs in found:
        for name in [*files, *dirs]:
            match = _TEMP_NAME.match(name)
            if match is None or pid_alive(int(match.group(1))):
                continue
            path = root / name
            with contextlib.suppress(OSError):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                    if name in dirs:
                        dirs.remove(name)
                else:
                    path.unlink()
                removed += 1
    return removed


@contextlib.contextmanager
def scratch_folder(beside: str | Path) -> Iterator[Path]:
    """A temporary folder for intermediate files next to the output ``beside`` (on its disk),
    removed when the block ends; named so ``clear_stale_temps`` finds it after a kill."""
    beside = Path(beside)
    try:
        path = tempfile.mkdtemp(prefix=_temp_prefix(beside), suffix=TEMP_TAG, dir=beside.parent)
    except OSError as exc:
        raise OutputError(describe_os_error(exc, beside.parent)) from None
    try:
        yield Path(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def output_folder(path: str | Path, *, replace: bool = False) -> Iterator[Path]:
    """A temporary folder beside ``path`` (a folder of many outputs, such as a video's
    frames), renamed to ``path`` when the block ends without an error, else removed. An
    existing ``path`` is replaced only with ``replace``, and only once the new one is whole."""
    path = Path(path)
    _prepare_parent(path, folder=True)
    if path.exists() and not replace:
        raise OutputError(_exists_message(path))
    try:
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=TEMP_TAG, dir=path.parent))
    except OSError as exc:
        raise OutputError(describe_os_error(exc, path)) from None
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if path.exists():
            old = path.with_name(f"{_temp_prefix(path)}old{TEMP_TAG}")
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    except OSError as exc:
        raise OutputError(describe_os_error(exc, path)) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
