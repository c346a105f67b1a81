"""The ``enet`` command. Each command's flags sit beside its handler in a module of this
package (``data``, ``train``, ``evaluate``, ``deploy``, ``checkpoints``, ``demo``); a handler
calls one library function. Here: the parser, and the rule that every failure ends as one
line, ``enet: error: <path>: <what went wrong> (<what to do>)``, never a traceback."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import NoReturn

from .. import __version__
from ..errors import EnetError, describe_os_error
from . import checkpoints, data, demo, deploy, evaluate, train

__all__ = ["build_parser", "main"]

#: The command modules, in the order ``enet --help`` lists their commands.
_COMMANDS = (checkpoints, data, train, evaluate, deploy, demo)


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"enet: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="enet",
        description="ENet semantic segmentation: train, evaluate, convert, export, deploy.",
    )
    parser.add_argument("--version", action="version", version=f"enet {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of an error instead of one line (or set ENET_DEBUG=1)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _COMMANDS:
        module.register(sub)
    for command in sub.choices.values():  # --debug after the command works too
        command.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every failure ends as one line ``enet: error: ...`` and a non-zero
    exit code (2: the input or a flag, 1: anything else, 130: interrupted)."""
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("ENET_DEBUG", "") not in ("", "0")
    try:
        with _terminate_as_interrupt():
            return args.func(args)
    except Exception as exc:
        if debug:
            raise
        code, message = _one_line(exc)
        print(f"enet: error: {message}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        if debug:
            raise
        again = "the same command"
        if args.command == "train":
            run = getattr(args, "resume", None) or args.out or "runs/train"
            again = f"enet train --resume {run}"
        print(
            f"enet: error: interrupted (to finish, run {again}: work that was done is kept)",
            file=sys.stderr,
        )
        return 130


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, a scheduler's timeout) ends a command as Ctrl-C does: temporary
    files are removed on the way out instead of left for the next run to clear."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _one_line(exc: Exception) -> tuple[int, str]:
    """Exit code and message for an exception that ends a command."""
    if isinstance(exc, EnetError):
        return 2, " ".join(str(exc).split())
    if isinstance(exc, OSError):
        return 1, describe_os_error(exc)
    if isinstance(exc, MemoryError):
        return 1, "out of memory (use smaller inputs or batches, or a machine with more memory)"
    text = " ".join(str(exc).split())[:300]
    return 1, (
        f"unexpected {type(exc).__name__}: {text} (rerun with --debug for the traceback and "
        "report it)"
    )
