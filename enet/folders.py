"""Output folders: which ones a command owns, and one writer at a time in each.

A command that fills a folder (``prepare``, ``synth``, ``train``, ``demo``) claims it: a new
or empty folder gets a marker file (``.enet.json``) naming the command, and the command
later treats only folders with its own marker as its own. A folder that holds anything else
is refused, so no command ever deletes or replaces what a user put there.

While a command writes into a folder it holds ``.enet.lock``: an exclusive ``flock`` (the
kernel releases it when the process dies, however it dies) on a file that records the
holder's pid. A second command on the same folder stops with one line naming the first. A
lock file still holding a pid when its lock is free means its holder was killed: the next
command takes over with a note and clears the temporary files the dead one left.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import OutputError, UsageError, describe_os_error
from .fileio import clear_stale_temps, write_json_atomic

try:
    import fcntl
except ImportError:  # pragma: no cover - not a POSIX system
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "MARKER_NAME", "claim_folder", "folder_kind", "locked_folder"]

MARKER_NAME = ".enet.json"
LOCK_NAME = ".enet.lock"
_OWN_FILES = {MARKER_NAME, LOCK_NAME}


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
def locked_folder(folder: str | Path, command: str) -> Iterator[None]:
    """Hold ``folder``'s lock while the block runs (see the module docstring)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: is a file where a folder is expected (choose another path)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(describe_os_error(exc, folder)) from None
    if fcntl is None:  # pragma: no cover
        yield
        return
    path = folder / LOCK_NAME
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(describe_os_error(exc, path)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_holder(fd)
            os.close(fd)
            who = f"enet {holder.get('command', '?')} (pid {holder.get('pid', '?')}"
            who += f" on {holder['host']})" if holder.get("host") else ")"
            raise OutputError(
                f"{folder}: in use by {who} since {holder.get('started', '?')} "
                "(wait for it to finish, or stop it)"
            ) from None
        # The file may have been removed by its last holder between our open and flock.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        previous = _read_holder(fd)
        if previous.get("pid"):
            cleared = clear_stale_temps(folder)
            print(
                f"note: {folder}: enet {previous.get('command', '?')} (pid "
                f"{previous.get('pid')}) stopped without finishing; taking over"
                + (f" and removing its {cleared} temporary file(s)" if cleared else ""),
                file=sys.stderr,
            )
        else:
            clear_stale_temps(folder)
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": command,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(holder).encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)
