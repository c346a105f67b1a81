"""Video through a model: every frame segmented, written as class-map PNGs and as a
colourised H.264 overlay video, whole or not at all (PyAV: ``pip install 'enet[video]'``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..data.classes import ClassSet
from ..errors import DataError
from ..fileio import output_folder, output_path, write_png_atomic
from ..visualize import colorize, overlay

__all__ = ["VIDEO_SUFFIXES", "segment_video"]

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}

#: H x W x 3 uint8 -> (class ids at the model's size, class ids at the frame's)
Segment = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def segment_video(
    path: Path, out_stem: Path, segment: Segment, classes: ClassSet, *, replace: bool
) -> int:
    """Every frame of ``path`` -> ``<stem>_pred/<frame>.png`` class maps and a colourised
    ``<stem>_overlay.mp4`` (H.264 at the source's frame rate); returns the frame count.
    Both are written whole or not at all: a video that fails to decode part way (truncated)
    leaves nothing."""
    frames_dir = out_stem.with_name(f"{out_stem.name}_pred")
    video_out = out_stem.with_name(f"{out_stem.name}_overlay.mp4")
    with (
        output_folder(frames_dir, replace=replace) as frames_tmp,
        output_path(video_out, replace=replace) as video_tmp,
    ):
        return _transcode(path, video_tmp, frames_tmp, segment, classes)


def _transcode(path: Path, tmp: Path, frames_dir: Path, segment: Segment, classes: ClassSet) -> int:
    import av

    count = 0
    with av.open(str(path)) as source:
        stream = source.streams.video[0]
        rate = stream.average_rate or 25
        with av.open(str(tmp), "w", format="mp4") as sink:
            encoder = None
            for frame in source.decode(stream):
                rgb = frame.to_ndarray(format="rgb24")
                pred = segment(rgb)[1]
                write_png_atomic(frames_dir / f"{count:06d}.png", pred)
                mixed = overlay(rgb, colorize(pred, classes.palette))
                if encoder is None:
                    encoder = sink.add_stream("libx264", rate=rate)
                    encoder.width, encoder.height = rgb.shape[1] // 2 * 2, rgb.shape[0] // 2 * 2
                    encoder.pix_fmt = "yuv420p"
                mixed = np.ascontiguousarray(mixed[: encoder.height, : encoder.width])
                sink.mux(encoder.encode(av.VideoFrame.from_ndarray(mixed, format="rgb24")))
                count += 1
            if encoder is None:
                raise DataError(f"{path}: unreadable video (no frames)")
            sink.mux(encoder.encode())
    return count
