"""Video in and out (PyAV: ``pip install 'enet[video]'``): frames decoded for a model, and
its results written as class-map PNGs and a colourised H.264 overlay video, whole or not
at all."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DataError
from ..fileio import output_folder, output_path, write_bytes_atomic
from ..images import png_bytes

if TYPE_CHECKING:
    from .segmenter import Segmentation

__all__ = ["VIDEO_SUFFIXES", "frame_rate", "read_frames", "write_video_outputs"]

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}

#: x264's options for the overlay video, a picture to look at, not to archive: "ultrafast"
#: on one thread keeps the encoder from limiting a run (at "veryfast" it took ~20 ms of one
#: core per 1024x512 frame and capped a clip at 22 frames/s; at "ultrafast" 30, its files
#: 1.7x larger), and from crowding out the model's threads.
X264_OPTIONS = {"preset": "ultrafast", "threads": "1"}


@contextmanager
def _opened(path: Path) -> Iterator:
    """The container of ``path``; FFmpeg's errors, there or while it is read, become a
    ``DataError`` naming the file."""
    import av

    if not path.is_file():
        raise DataError(f"{path}: {'is a folder' if path.is_dir() else 'no such file'}")
    try:
        with av.open(str(path)) as source:
            if not source.streams.video:
                raise DataError(f"{path}: unreadable video (no video stream)")
            yield source
    except av.FFmpegError as exc:
        detail = getattr(exc, "strerror", None) or exc  # FFmpeg's words, without the errno
        raise DataError(f"{path}: unreadable video ({detail})") from None


def read_frames(path: Path) -> Iterator[np.ndarray]:
    """Each frame of the first video stream, H x W x 3 uint8 RGB; a file that cannot be read,
    or fails part way, raises a ``DataError`` where it fails."""
    with _opened(path) as source:
        stream = source.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in source.decode(stream):
            yield frame.to_ndarray(format="rgb24")


def frame_rate(path: Path) -> Fraction:
    with _opened(path) as source:
        return Fraction(source.streams.video[0].average_rate or 25)


#: runs a function later, in order (``enet infer``'s writer thread); returns nothing
Submit = Callable[..., None]


def write_video_outputs(
    path: Path,
    results: Iterable[Segmentation],
    out_stem: Path,
    *,
    pred: bool,
    overlay: bool,
    replace: bool,
    submit: Submit,
    drain: Callable[[], None],
) -> int:
    """Every result of ``path``'s frames -> ``<stem>_pred/<frame>.png`` class maps (``pred``)
    and a colourised ``<stem>_overlay.mp4`` (``overlay``, H.264 at the source's frame rate),
    encoded through ``submit`` (``drain`` waits for what it was given). Returns the frame
    count. Both are written whole or not at all: a video that fails to decode part way
    (truncated) leaves nothing."""
    with ExitStack() as stack:
        frames_dir = video = None
        if pred:
            frames_dir = out_stem.with_name(f"{out_stem.name}_pred")
            frames_dir = stack.enter_context(output_folder(frames_dir, replace=replace))
        if overlay:
            video_out = out_stem.with_name(f"{out_stem.name}_overlay.mp4")
            tmp = stack.enter_context(output_path(video_out, replace=replace))
            video = stack.enter_context(_OverlayVideo(tmp, frame_rate(path)))
        count = 0
        try:
            for result in results:
                if frames_dir is not None:
                    submit(_write_png, frames_dir / f"{count:06d}.png", result.ids)
                if video is not None:
                    submit(video.add, result)
                count += 1
        finally:
            drain()  # before the outputs are published or thrown away
        if count == 0:
            raise DataError(f"{path}: unreadable video (no frames)")
        return count


class _OverlayVideo:
    """An H.264 file of overlays, frames added in order."""

    def __init__(self, path: Path, rate: Fraction) -> None:
        self.path, self.rate = path, rate
        self.container = self.stream = None

    def __enter__(self) -> _OverlayVideo:
        import av

        self.container = av.open(str(self.path), "w", format="mp4")
        return self

    def add(self, result: Segmentation) -> None:
        import av

        if self.stream is None:
            self.stream = self.container.add_stream("libx264", rate=self.rate, options=X264_OPTIONS)
            h, w = result.image.shape[:2]
            self.stream.width, self.stream.height = w // 2 * 2, h // 2 * 2
            self.stream.pix_fmt = "yuv420p"
        mixed = result.overlay()[: self.stream.height, : self.stream.width]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(mixed), format="rgb24")
        self.container.mux(self.stream.encode(frame))

    def __exit__(self, *exc_info) -> None:
        try:
            if self.stream is not None and exc_info[0] is None:
                self.container.mux(self.stream.encode())
        finally:
            self.container.close()


def _write_png(path: Path, ids: np.ndarray) -> None:
    write_bytes_atomic(path, png_bytes(ids))
