"""Images in and out. Reading images and label maps from outside: every failure names the
file, and no image is read into something other than what it shows (a 16-bit image is scaled,
not clipped to white). Encoding pictures and class maps to PNG and JPEG bytes.
"""

from __future__ import annotations

import io
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import DataError, ImageTooLargeError, NotAnImageError

try:  # libspng decodes a PNG photo in about half of PIL's time
    import pyspng
except ImportError:  # pragma: no cover - a platform without its wheel reads through PIL
    pyspng = None

__all__ = [
    "MAX_IMAGE_PIXELS",
    "grey_png",
    "image_size",
    "jpeg_bytes",
    "png_bytes",
    "read_label",
    "read_mask",
    "read_rgb",
    "rgb_from_bytes",
    "rgb_of",
]

#: Larger images are refused before they are decoded (PIL's own guard starts at 89 Mpx with
#: a warning only); 8K video frames (33 Mpx) are well inside.
MAX_IMAGE_PIXELS = 64_000_000

#: the EXIF tag that says how a photo is turned
EXIF_ORIENTATION = 0x0112


def _open(
    path: Path | io.BytesIO, what: str, *, source: str = "", max_pixels: int = MAX_IMAGE_PIXELS
) -> Image.Image:
    """The image, its header read; ``source`` names it in errors (default: the path)."""
    source = source or str(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLargeError(
            f"{source}: {what} larger than {MAX_IMAGE_PIXELS:,} pixels (scale it down first)"
        ) from None
    except FileNotFoundError:
        raise DataError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{source}: is a folder, not an image") from None
    except UnidentifiedImageError:
        raise NotAnImageError(
            f"{source}: not an image (give a PNG, JPEG, BMP, TIFF or WebP file)"
        ) from None
    except Exception as exc:
        raise DataError(f"{source}: unreadable {what} ({_reason(exc)})") from None
    w, h = im.size
    if w * h > max_pixels:
        im.close()
        raise ImageTooLargeError(
            f"{source}: {what} of {w}x{h} is larger than {max_pixels:,} pixels "
            "(scale it down first)"
        )
    return im


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:160] if text else type(exc).__name__


def _load(im: Image.Image, source: str, what: str) -> None:
    try:
        im.load()
    except Exception as exc:
        im.close()
        reason = _reason(exc)
        raise DataError(f"{source}: unreadable {what}, truncated or corrupt ({reason})") from None


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the header, without decoding the pixels."""
    path = Path(path)
    with _open(path, "image") as im:
        return im.size


def read_rgb(path: str | Path, *, upright: bool = False) -> np.ndarray:
    """H x W x 3 uint8 RGB. High-depth grey images (16-bit, 32-bit integer, float in [0, 1])
    are scaled to 8 bits; colour images of 16 bits per channel are read by PIL at 8 bits;
    alpha is dropped. ``upright``: turned as its EXIF orientation says, as viewers show a
    photo (a dataset's labels are drawn on the stored pixels, so datasets read it as is)."""
    path = Path(path)
    return _decoded_rgb(_open(path, "image"), path.read_bytes, str(path), upright=upright)


def rgb_from_bytes(
    data: bytes, *, source: str, upright: bool = True, max_pixels: int = MAX_IMAGE_PIXELS
) -> np.ndarray:
    """``read_rgb`` of an image file's bytes (an upload); ``source`` names it in errors.
    Images of more than ``max_pixels`` are refused before they are decoded."""
    im = _open(io.BytesIO(data), "image", source=source, max_pixels=max_pixels)
    return _decoded_rgb(im, lambda: data, source, upright=upright)


def _decoded_rgb(
    im: Image.Image, data_of: Callable[[], bytes], source: str, *, upright: bool
) -> np.ndarray:
    """The pixels of an opened image: a plain 8-bit RGB PNG through libspng (its bytes from
    ``data_of``), anything else through PIL."""
    with im:
        if im.format == "PNG" and im.mode == "RGB" and pyspng is not None:
            rgb = _plain_png_rgb(data_of(), upright=upright)
            if rgb is not None:
                return rgb
        _load(im, source, "image")
        return rgb_of(im, source=source, upright=upright)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _plain_png_rgb(data: bytes, *, upright: bool) -> np.ndarray | None:
    """The pixels of an 8-bit RGB PNG through libspng, the same array PIL gives; None where
    PIL must read it: other depths, transparency, EXIF that may turn it (with ``upright``),
    or a file libspng refuses (PIL then names the problem)."""
    if data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR" or data[24:26] != b"\x08\x02":
        return None
    for kind, start, _ in _png_chunks(data):
        if kind == b"tRNS":
            return None
        if upright and (
            kind == b"eXIf"
            or (kind in (b"tEXt", b"zTXt", b"iTXt") and data[start + 8 : start + 29] == EXIF_TEXT)
        ):
            return None
    try:
        return pyspng.load(data, "RGB")
    except Exception:
        return None


#: the text chunk in which ImageMagick and others store a PNG's EXIF
EXIF_TEXT = b"Raw profile type exif"


def rgb_of(im: Image.Image, *, source: str = "image", upright: bool = False) -> np.ndarray:
    """``read_rgb`` for an image already open (``source`` names it in errors)."""
    if upright and im.getexif().get(EXIF_ORIENTATION, 1) != 1:
        im = ImageOps.exif_transpose(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        grey = np.asarray(im, dtype=np.int64)
        if grey.min() < 0 or grey.max() > 65535:
            raise DataError(
                f"{source}: 32-bit integer image with values outside 0..65535 "
                "(save it as an 8- or 16-bit image)"
            )
        grey = ((grey * 255 + 32767) // 65535).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if im.mode == "F":
        grey = np.asarray(im, dtype=np.float64)
        if not np.isfinite(grey).all() or grey.min() < 0 or grey.max() > 1:
            raise DataError(
                f"{source}: floating-point image with values outside [0, 1] "
                "(save it as an 8- or 16-bit image)"
            )
        return np.repeat(np.round(grey * 255).astype(np.uint8)[..., None], 3, axis=2)
    try:
        return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
    except Exception as exc:
        raise DataError(f"{source}: unreadable image ({_reason(exc)})") from None


def read_label(path: str | Path, *, palette: bool = False) -> np.ndarray:
    """H x W integer class or label ids of a single-channel label image (8 or 16 bits; with
    ``palette``, a palette image's indices, as Pascal VOC stores classes). Colour images are
    refused: their pixels are colours, not ids; so are palette images where ids are stored
    as grey values (Cityscapes, CamVid), since a colour map saved with a palette would
    otherwise pass for ids."""
    path = Path(path)
    im = _open(path, "label")
    with im:
        _load(im, str(path), "label")
        if im.mode == "P" and not palette:
            raise DataError(
                f"{path}: a palette (P) image, but these labels are grey id maps (is it a "
                "colour label saved with a palette? give the id file)"
            )
        if im.mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV"):
            raise DataError(
                f"{path}: a colour ({im.mode}) image, but labels are single-channel id maps "
                "(is it a *_color.png? give the *_labelIds.png or class-index file)"
            )
        if im.mode in ("LA", "PA", "F", "1"):
            raise DataError(
                f"{path}: a {im.mode} image, but labels are single-channel 8- or 16-bit id maps"
            )
        return np.asarray(im)


def read_mask(path: str | Path, *, colour: bool) -> np.ndarray:
    """A dataset's mask as stored: with ``colour``, H x W x 3 uint8 colours (a palette image
    converted, alpha dropped); else H x W class values (8- or 16-bit grey, or a palette
    image's indices, as Pascal VOC stores classes). A mask of the other kind is refused."""
    path = Path(path)
    im = _open(path, "mask")
    with im:
        _load(im, str(path), "mask")
        if colour:
            if im.mode not in ("RGB", "RGBA", "P"):
                raise DataError(
                    f"{path}: a {im.mode} image among colour masks (save every mask the same way)"
                )
            return np.asarray(im.convert("RGB"))
        if im.mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "LA", "PA", "F", "1"):
            raise DataError(
                f"{path}: a {im.mode} image among class-index masks (a colour mask? give the "
                "classes file with colours, and save every mask the same way)"
            )
        return np.asarray(im)


def png_bytes(
    array: Any, *, palette: Sequence[Sequence[int]] | None = None, level: int | None = None
) -> bytes:
    """An H x W (x 3) uint8 array as a PNG. ``palette``: an H x W array of indices, stored
    with these colours (viewers show the colours, readers get the indices). Single-channel
    images (class maps) are compressed as runs (zlib's Z_RLE): smaller than the default
    level's output in 60% of its time. ``level``: zlib's level for a picture (default 6; 1
    takes a third of the time for a tenth more bytes)."""
    image = Image.fromarray(array)
    if palette is not None:  # an L image becomes P, its values kept; 256 colours keep the
        # samples 8-bit (PIL packs a short palette's indices tighter), as ``grey_png`` needs
        colours = [c for colour in palette for c in colour]
        image.putpalette(colours + [0] * (768 - len(colours)))
    options: dict[str, Any] = {"compress_level": 6 if level is None else level}
    if image.mode in ("L", "P"):
        options = {"compress_level": 1, "compress_type": zlib.Z_RLE}
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **options)
    return buffer.getvalue()


def grey_png(palette_png: bytes) -> bytes:
    """The grey PNG of a palette PNG's indices (``png_bytes(ids, palette=...)``), by rewriting
    its header: both store the same 8-bit samples, so the class map is compressed once for
    the two files."""
    if palette_png[:8] != PNG_SIGNATURE or palette_png[24:26] != b"\x08\x03":
        raise ValueError("not an 8-bit palette PNG")
    chunks = [PNG_SIGNATURE]
    for kind, start, end in _png_chunks(palette_png):
        if kind == b"IHDR":
            body = (
                palette_png[start + 8 : start + 17] + b"\x00" + palette_png[start + 18 : start + 21]
            )
            crc = zlib.crc32(b"IHDR" + body).to_bytes(4, "big")
            chunks.append(palette_png[start : start + 8] + body + crc)
        elif kind not in (b"PLTE", b"tRNS"):
            chunks.append(palette_png[start:end])
    return b"".join(chunks)


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """Each chunk of a PNG after its signature: its type, where it starts and ends (its
    length field, type, data and CRC), up to and including IEND."""
    pos = 8
    while pos + 8 <= len(data):
        end = pos + 12 + int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        yield kind, pos, end
        if kind == b"IEND":
            return
        pos = end


def jpeg_bytes(array: Any, *, quality: int = 90) -> bytes:
    """An H x W x 3 uint8 picture as a JPEG: a photo's overlay encodes ~100x faster than as
    a PNG, at a sixth of the size."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()
