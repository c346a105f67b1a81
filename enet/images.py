"""Reading images and label maps from outside: every failure names the file, and no image is
read into something other than what it shows (a 16-bit image is scaled, not clipped to white).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .errors import DataError

__all__ = ["MAX_IMAGE_PIXELS", "image_size", "read_label", "read_mask", "read_rgb", "rgb_of"]

#: Larger images are refused before they are decoded (PIL's own guard starts at 89 Mpx with
#: a warning only); 8K video frames (33 Mpx) are well inside.
MAX_IMAGE_PIXELS = 64_000_000

#: the EXIF tag that says how a photo is turned
EXIF_ORIENTATION = 0x0112


def _open(path: Path, what: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(
            f"{path}: {what} larger than {MAX_IMAGE_PIXELS:,} pixels (scale it down first)"
        ) from None
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not an image") from None
    except Exception as exc:
        raise DataError(f"{path}: unreadable {what} ({_reason(exc)})") from None
    w, h = im.size
    if w * h > MAX_IMAGE_PIXELS:
        im.close()
        raise DataError(
            f"{path}: {what} of {w}x{h} is larger than {MAX_IMAGE_PIXELS:,} pixels "
            "(scale it down first)"
        )
    return im


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:160] if text else type(exc).__name__


def _load(im: Image.Image, path: Path, what: str) -> None:
    try:
        im.load()
    except Exception as exc:
        im.close()
        reason = _reason(exc)
        raise DataError(f"{path}: unreadable {what}, truncated or corrupt ({reason})") from None


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
    im = _open(path, "image")
    with im:
        _load(im, path, "image")
        return rgb_of(im, source=str(path), upright=upright)


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
        _load(im, path, "label")
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
        _load(im, path, "mask")
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
