"""The model's queue: requests wait here for a turn, images of one size that wait together run
as one batch, and as many batches run at once as the backend has parallel streams."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from concurrent.futures import Future

import numpy as np

from ..deploy.segmenter import Segmentation, Segmenter

__all__ = ["JobQueue"]


class JobQueue:
    """Worker threads, one per parallel stream of ``segmenter``, each taking the oldest image
    and those of its size behind it (up to the segmenter's batch size)."""

    def __init__(self, segmenter: Segmenter) -> None:
        self.segmenter = segmenter
        self._jobs: deque[tuple[np.ndarray, Future]] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self.batches = 0  # batches run, and the images in them: how much batching happened
        self.images = 0
        self._workers = [
            threading.Thread(target=self._work, name=f"enet-model-{i}", daemon=True)
            for i in range(segmenter.parallel)
        ]
        for worker in self._workers:
            worker.start()

    async def segment(self, rgb: np.ndarray) -> Segmentation:
        """The image's segmentation, once a worker has run it; a request that is cancelled
        (timed out, its client gone) before its turn leaves the queue without running."""
        job: Future = Future()
        with self._ready:
            if self._closed:
                raise RuntimeError("the model's queue is closed")
            self._jobs.append((rgb, job))
            self._ready.notify()
        try:
            return await asyncio.wrap_future(job)
        except asyncio.CancelledError:
            job.cancel()
            raise

    def close(self) -> None:
        """Let the workers finish the jobs queued, then stop."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        for worker in self._workers:
            worker.join()

    def _take(self) -> list[tuple[np.ndarray, Future]] | None:
        """The next batch (None: closed and empty); jobs cancelled while waiting are dropped."""
        batch: list[tuple[np.ndarray, Future]] = []
        with self._ready:
            while not batch:
                while not self._jobs:
                    if self._closed:
                        return None
                    self._ready.wait()
                while self._jobs and len(batch) < self.segmenter.batch_size:
                    rgb, job = self._jobs[0]
                    if batch and rgb.shape != batch[0][0].shape:
                        break
                    self._jobs.popleft()
                    if job.set_running_or_notify_cancel():
                        batch.append((rgb, job))
        return batch

    def _work(self) -> None:
        while (batch := self._take()) is not None:
            try:
                results = self.segmenter([rgb for rgb, _ in batch])
            except BaseException as exc:  # the request answers 500; the worker goes on
                for _, job in batch:
                    job.set_exception(exc)
                continue
            self.batches += 1
            self.images += len(batch)
            for (_, job), result in zip(batch, results, strict=True):
                job.set_result(result)
