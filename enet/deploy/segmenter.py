"""``enet.Segmenter``: images, lists of them and videos in, class ids and pictures out, on
any backend. ``enet infer`` runs through it, so a model gives the same answer from Python
and from the command line.

Any input size: the image is padded to a multiple of 8 (edge pixels repeated) and the
prediction cropped back, or (``resize``, and always for an ONNX file of a fixed input size)
resized to the model's size and the prediction resized back by nearest.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import overload

import numpy as np
from PIL import Image

from ..data.classes import ClassSet
from ..errors import UsageError
from ..images import read_rgb, rgb_of
from ..model import SIZE_MULTIPLE
from ..visualize import colorize, overlay
from .backends import Predictor, load_predictor

__all__ = ["ImageLike", "Segmentation", "Segmenter", "as_rgb"]

#: a path, a PIL image, or an H x W x 3 (or H x W grey, or H x W x 4) uint8 array
ImageLike = str | os.PathLike | Image.Image | np.ndarray


@dataclass(frozen=True, eq=False)
class Segmentation:
    """One segmented image: ``ids[y, x]`` is the class of ``image[y, x]``."""

    image: np.ndarray  # H x W x 3 uint8 RGB, as segmented
    ids: np.ndarray  # H x W uint8 class ids
    classes: ClassSet
    #: the class ids at the size the model ran at (what the seed's 310 metric scores)
    model_ids: np.ndarray
    latency_ms: float  # the model's share of the batch this image ran in

    def colorize(self) -> np.ndarray:
        """H x W x 3 uint8: each pixel in its class's colour."""
        return colorize(self.ids, self.classes.palette)

    def overlay(self, alpha: float = 0.5) -> np.ndarray:
        """H x W x 3 uint8: the colours blended over the image, ``alpha`` of the colour."""
        return overlay(self.image, self.colorize(), alpha)

    def shares(self) -> dict[str, float]:
        """Each class's share of the pixels (0 to 1), by class name."""
        counts = np.bincount(self.ids.ravel(), minlength=self.classes.num_classes)
        return {name: float(counts[i]) / self.ids.size for i, name in enumerate(self.classes.names)}


def as_rgb(image: ImageLike) -> np.ndarray:
    """H x W x 3 uint8 RGB of an image given as a path (turned upright as its EXIF says), a
    PIL image or an array."""
    if isinstance(image, (str, os.PathLike)):
        return read_rgb(Path(image), upright=True)
    if isinstance(image, Image.Image):
        return rgb_of(image)
    if isinstance(image, np.ndarray):
        if image.ndim in (2, 3) and 0 in image.shape[:2]:
            raise UsageError(f"an image array of {image.shape[1]}x{image.shape[0]} pixels is empty")
        if image.dtype == np.uint8 and image.ndim == 2:
            return np.repeat(image[..., None], 3, axis=2)
        if image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] in (3, 4):
            return image[..., :3]
        shape = " x ".join(map(str, image.shape)) or "0-d"
        raise UsageError(
            f"an image array must be H x W x 3 uint8 RGB, not {shape} {image.dtype} (scale it to "
            "0-255 first: (array * 255).round().astype(np.uint8) for values in [0, 1])"
        )
    raise UsageError(
        f"cannot segment a {type(image).__name__} (give a path, a PIL image or an array)"
    )


def _size(size: object) -> tuple[int, int]:
    """(width, height) of positive whole numbers, or a one-line error."""
    if (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(v, int) and v > 0 for v in size)
    ):
        return int(size[0]), int(size[1])
    raise UsageError(f"resize {size!r}: give (width, height) in pixels, e.g. (1024, 512)")


class Segmenter:
    """A model ready to segment: ``Segmenter("camvid")(image)``.

    ``model``: a bundled model's name, an enet checkpoint or an ``.onnx`` export; ``backend``,
    ``device``, ``compile`` and ``bf16`` as ``enet infer`` takes them (auto: OpenVINO for ONNX
    files on a CPU, ONNX Runtime elsewhere, PyTorch for checkpoints). ``resize``: (width,
    height) to run the model at. ``batch_size``: how many images of one size a list runs
    together (a file exported for batch 1 runs them one by one). ``parallel``: run several
    images at once where the backend can (OpenVINO on a fixed-size file), each on a share
    of the cores: more images per second over lists, videos and folders, at a longer
    latency each. A segmenter may be called from several threads.
    """

    def __init__(
        self,
        model: str | Path = "camvid",
        *,
        backend: str = "auto",
        device: str = "auto",
        resize: tuple[int, int] | None = None,
        compile: bool = False,
        bf16: bool = False,
        batch_size: int = 4,
        parallel: bool = False,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise UsageError(f"batch_size {batch_size!r}: give a whole number, 1 or more")
        if resize is not None:
            resize = _size(resize)
        self.predictor: Predictor = load_predictor(
            model,
            backend=backend,
            device=device,
            compile=compile,
            bf16=bf16,
            class_ids=True,
            parallel=parallel,
        )
        #: how many images the model runs at once; the others wait for a turn
        self.parallel = self.predictor.parallel_requests
        self._turns = threading.BoundedSemaphore(self.parallel)
        self._pool: ThreadPoolExecutor | None = None
        self.classes: ClassSet = self.predictor.classes
        fixed = self.predictor.fixed_size
        if fixed and resize and resize != fixed:
            w, h = fixed
            raise UsageError(
                f"{model}: runs at {w}x{h} only, not {resize[0]}x{resize[1]} (leave out the "
                "resize, or export the model at that size or with --dynamic)"
            )
        #: (width, height) the model runs at, or None: each image's own (padded to 8)
        self.input_size = fixed or resize
        self.batch_size = min(batch_size, self.predictor.batch_size or batch_size)

    @property
    def backend(self) -> str:
        """The backend and device, as ``timing.json`` names them, e.g. ``openvino (CPU)``."""
        return self.predictor.name

    @overload
    def __call__(self, images: ImageLike) -> Segmentation: ...

    @overload
    def __call__(self, images: Sequence[ImageLike]) -> list[Segmentation]: ...

    def __call__(self, images):
        """One image -> its ``Segmentation``; a list or tuple -> a list, run in batches."""
        if isinstance(images, (list, tuple)):
            return list(self.map(images))
        return self._run([as_rgb(images)])[0]

    def map(self, images: Iterable[ImageLike]) -> Iterator[Segmentation]:
        """Results one by one, in order, for any number of images (read as they are needed;
        consecutive images of one size run as one batch, ``parallel`` batches at once)."""
        if self.parallel == 1:
            for batch in self._batches(images):
                yield from self._run(batch)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.parallel, thread_name_prefix="enet-model")
        running: deque[Future] = deque()
        for batch in self._batches(images):
            running.append(self._pool.submit(self._run, batch))
            if len(running) > self.parallel:
                yield from running.popleft().result()
        while running:
            yield from running.popleft().result()

    def _batches(self, images: Iterable[ImageLike]) -> Iterator[list[np.ndarray]]:
        batch: list[np.ndarray] = []
        for image in images:
            rgb = as_rgb(image)
            if batch and (len(batch) == self.batch_size or rgb.shape != batch[0].shape):
                yield batch
                batch = []
            batch.append(rgb)
        if batch:
            yield batch

    def video(self, path: str | Path) -> Iterator[Segmentation]:
        """Each frame of a video file, segmented, as it is decoded (needs PyAV)."""
        from .video import read_frames

        return self.map(read_frames(Path(path)))

    def _model_input(self, rgb: np.ndarray) -> np.ndarray:
        if self.input_size is not None and rgb.shape[1::-1] != self.input_size:
            rgb = np.asarray(Image.fromarray(rgb).resize(self.input_size, Image.BILINEAR))
        h, w = rgb.shape[:2]
        pad = ((0, -h % SIZE_MULTIPLE), (0, -w % SIZE_MULTIPLE), (0, 0))
        return np.pad(rgb, pad, "edge") if any(p[1] for p in pad) else rgb

    def _run(self, rgbs: list[np.ndarray]) -> list[Segmentation]:
        """Images of one size, as one batch."""
        inputs = [self._model_input(rgb) for rgb in rgbs]
        batch = inputs[0][None] if len(inputs) == 1 else np.stack(inputs)
        with self._turns:
            start = time.perf_counter()
            ids = self.predictor.class_ids(np.ascontiguousarray(batch))
            latency_ms = (time.perf_counter() - start) * 1e3 / len(rgbs)
        model_h, model_w = (self.input_size or rgbs[0].shape[1::-1])[::-1]
        stride = batch.shape[1] // ids.shape[1]  # 8 for an encoder-only file
        results = []
        for rgb, one in zip(rgbs, ids, strict=True):
            small = one[: -(-model_h // stride), : -(-model_w // stride)]
            h, w = rgb.shape[:2]
            full = small
            if small.shape != (h, w):
                full = np.asarray(Image.fromarray(small).resize((w, h), Image.NEAREST))
            results.append(Segmentation(rgb, full, self.classes, small, latency_ms))
        return results
