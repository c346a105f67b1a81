"""Output folders: which ones a command owns, and one writer at a time in each.

A command that fills a folder (``prepare``, ``synth``, ``train``, ``demo``) claims it: a new
or empty folder gets a marker file (``.enet.json``) naming the command, and the command
later treats only folders with its own marker as its own. A folder that holds anything else
is refused, so no command ever deletes or replaces what a user put there.

While a command writes into a folder it holds ``.enet.lock``: an exclusive POSIX lock (the
kernel releases it when the process dies, however it dies) on a file that records the
holder's pid. A second command on the same folder stops with one line naming the first. A
lock file still holding a pid when its lock is free means its holder was killed: the next
command takes over with a note and clears the temporary files the dead one left.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import OutputError, UsageError, describe_os_error
from .fileio import check_not_a_file, clear_stale_temps, write_json_atomic

__all__ = [
    "LOCK_NAME",
    "MARKER_NAME",
    "check_not_in_use",
    "claim_folder",
    "folder_kind",
    "locked_folder",
]

MARKER_NAME = ".enet.json"
LOCK_NAME = ".enet.lock"
_OWN_FILES = {MARKER_NAME, LOCK_NAME}
#: Lock files this process holds: testing one of them would release it (POSIX locks belong
#: to the process, and closing any descriptor of the file lets them go).
_HELD: set[str] = set()


def folder_kind(folder: Path) -> str | None:
    """The command whose marker ``folder`` holds, or None."""
    try:
        return json.loads((folder / MARKER_NAME).read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return None


def claim_folder(
    folder: str | Path,
    kind: str,
    *,
    flag: str = "--out",
    recognise: Callable[[Path], bool] | None = None,
) -> bool:
    """Make ``folder`` the output folder of command ``kind``; returns True when it was new
    or empty. A folder marked by ``kind`` is accepted as is; so is one that ``recognise``
    (a check for outputs of enet versions before markers) accepts, which is then marked.
    Anything else is an error: enet never writes into a folder holding other files."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: is a file where a folder is expected (choose another {flag})")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        entries = {p.name for p in folder.iterdir()} - _OWN_FILES
    except OSError as exc:
        raise OutputError(describe_os_error(exc, folder)) from None
    owner = folder_kind(folder)
    if owner is not None and owner != kind:
        raise UsageError(
            f"{folder}: holds the output of enet {owner}, not of enet {kind} "
            f"(choose another {flag})"
        )
    if owner is None and entries and not (recognise and recognise(folder)):
        shown = ", ".join(sorted(entries)[:3]) + (", ..." if len(entries) > 3 else "")
        raise UsageError(
            f"{folder}: is not empty ({shown}) and was not made by enet {kind}; enet "
            f"never writes among other files (choose a new or empty folder for {flag})"
        )
    if owner is None:
        write_json_atomic(folder / MARKER_NAME, {"kind": kind})
    return not entries


def _read_holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 4096).decode("utf-8", "replace").strip()
        return json.loads(text) if text else {}
    except (OSError, ValueError):
        return {"pid": "?"}


@contextlib.contextmanager
def locked_folder(
    folder: str | Path,
    command: str,
    *,
    claim: bool = False,
    recognise: Callable[[Path], bool] | None = None,
    lock_name: str = LOCK_NAME,
) -> Iterator[None]:
    """Hold ``folder``'s lock while the block runs (see the module docstring); with
    ``claim``, the folder must also be ``command``'s own (``claim_folder``). A folder this
    call made is removed again when the block fails before writing anything into it.
    ``lock_name``: another lock for writers of disjoint files (``enet infer --shard``)."""
    folder = Path(folder)
    check_not_a_file(folder)
    existed = folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(describe_os_error(exc, folder)) from None
    path = folder / lock_name
    fd = _lock(folder, path, command)
    _HELD.add(str(path))
    try:
        if claim:
            claim_folder(folder, command, recognise=recognise)
        yield
    except BaseException:
        _remove_if_unused(folder, existed, lock_name)
        raise
    finally:
        _HELD.discard(str(path))
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)


def _lock(folder: Path, path: Path, command: str) -> int:
    """The open lock file of ``folder``, locked for this process; a lock a dead process left
    is taken over with a note (and its temporary files removed)."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(describe_os_error(exc, path)) from None
        try:
            # A POSIX record lock, not flock: it is not inherited by forked workers, so one
            # that outlives a killed parent does not keep the folder locked.
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_holder(fd)
            os.close(fd)
            who = f"enet {holder.get('command', '?')} (pid {holder.get('pid', '?')}"
            who += f" on {holder['host']})" if holder.get("host") else ")"
            raise OutputError(
                f"{folder}: in use by {who} since {holder.get('started', '?')} "
                "(wait for it to finish, or stop it)"
            ) from None
        # The file may have been removed by its last holder between our open and lock.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    previous = _read_holder(fd)
    cleared = clear_stale_temps(folder)
    if previous.get("pid"):
        print(
            f"note: {folder}: enet {previous.get('command', '?')} (pid "
            f"{previous.get('pid')}) stopped without finishing; taking over"
            + (f" and removing its {cleared} temporary file(s)" if cleared else ""),
            file=sys.stderr,
        )
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(holder).encode())
    return fd


def check_not_in_use(folder: str | Path, command: str) -> None:
    """``OutputError`` naming the holder when another process holds ``folder``'s lock: a
    command that only adds files beside another's (``enet eval`` in a run folder) must not
    do so while that one writes there."""
    path = Path(folder) / LOCK_NAME
    if str(path) in _HELD or not path.is_file():
        return
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return
    try:
        fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        holder = _read_holder(fd)
        raise OutputError(
            f"{folder}: in use by enet {holder.get('command', '?')} (pid "
            f"{holder.get('pid', '?')}); enet {command} would read and write files it is "
            "still changing (wait for it to finish)"
        ) from None
    finally:
        os.close(fd)


def _remove_if_unused(folder: Path, existed: bool, lock_name: str) -> None:
    """Undo the creation of ``folder`` when nothing but enet's own two files is in it."""
    if existed:
        return
    with contextlib.suppress(OSError):
        if {p.name for p in folder.iterdir()} <= {MARKER_NAME, lock_name}:
            (folder / MARKER_NAME).unlink(missing_ok=True)
            (folder / lock_name).unlink(missing_ok=True)
            folder.rmdir()
