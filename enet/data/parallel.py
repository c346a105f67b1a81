"""Decoding and drawing on all cores, with a progress bar, that never hangs on a dead worker.

``multiprocessing.Pool`` waits forever for the result of a worker that was killed (out of
memory, a signal); ``concurrent.futures`` reports it, and the run stops with one line.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from tqdm import tqdm

from ..errors import DataError

__all__ = ["run_parallel"]

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent(parent: int) -> None:
    """A worker is killed with its parent (Linux), so a killed ``enet prepare`` leaves no
    workers decoding on into a folder nobody finishes."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the call
        os._exit(1)


def run_parallel(
    function: Callable[[Any], Any],
    jobs: Sequence[Any],
    workers: int,
    *,
    desc: str,
    progress: bool = True,
) -> Iterator[Any]:
    """``function(job)`` for every job, in the order they finish, on ``workers`` forked
    processes (in this process when 1). A worker exception is raised here; a worker that
    dies stops the run with ``DataError``. At most ``4 x workers`` jobs are in flight."""
    bar = tqdm(total=len(jobs), desc=desc, unit="img", disable=not progress)
    workers = max(1, min(workers, len(jobs)))
    try:
        if workers == 1:
            for job in jobs:
                yield function(job)
                bar.update()
            return
        with ProcessPoolExecutor(
            workers,
            mp_context=mp.get_context("fork"),
            initializer=_die_with_parent,
            initargs=(os.getpid(),),
        ) as pool:
            pending, queue = set(), iter(jobs)
            try:
                while True:
                    for job in queue:
                        pending.add(pool.submit(function, job))
                        if len(pending) >= 4 * workers:
                            break
                    if not pending:
                        return
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        yield future.result()
                        bar.update()
            except BrokenProcessPool:
                raise DataError(
                    f"{desc}: a worker process died (killed, or out of memory?); rerun to "
                    "finish (work done is kept), with fewer --workers if memory is short"
                ) from None
            finally:
                for future in pending:
                    future.cancel()
    finally:
        bar.close()
