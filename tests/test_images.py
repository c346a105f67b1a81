"""Images in and out: the fast PNG reader gives PIL's pixels or steps aside, and the class map
compressed once gives both the grey and the colour file."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps

import enet.images as images
from enet.images import grey_png, png_bytes, read_rgb

from .conftest import DATA, require

ORIENTATION = 0x0112


@pytest.fixture(scope="module")
def photos():
    files = sorted(require(DATA / "cityscapes_tiny").glob("leftImg8bit/val/*/*.png"))[:2]
    files += sorted(require(DATA / "camvid_sample").glob("test/*.png"))[:2]
    return [np.asarray(Image.open(f).convert("RGB")) for f in files]


@pytest.fixture
def spng_calls(monkeypatch):
    calls = []
    load = images.pyspng.load

    def counted(data, format=None):
        calls.append(format)
        return load(data, format)

    monkeypatch.setattr(images.pyspng, "load", counted)
    return calls


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_png_photos_read_through_libspng_are_pils_pixels(photos, tmp_path, spng_calls):
    for i, rgb in enumerate(photos):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rgb).save(path)
        assert np.array_equal(read_rgb(path), rgb)
        assert np.array_equal(read_rgb(path, upright=True), rgb)
    assert spng_calls == ["RGB"] * 2 * len(photos)


def test_exif_turned_png_is_read_upright_by_pil(photos, tmp_path, spng_calls):
    rgb = photos[0]
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # stored on its side: viewers turn it 90 degrees clockwise
    path = tmp_path / "turned.png"
    Image.fromarray(rgb).save(path, exif=exif.tobytes())
    upright = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    assert upright.shape == (rgb.shape[1], rgb.shape[0], 3)
    assert np.array_equal(read_rgb(path, upright=True), upright)
    assert spng_calls == []
    assert np.array_equal(read_rgb(path), rgb)  # a dataset's frame: the stored pixels
    assert spng_calls == ["RGB"]


def test_16_bit_and_transparent_pngs_are_left_to_pil(tmp_path, spng_calls):
    rng = np.random.default_rng(0)
    deep = rng.integers(0, 65536, (5, 7, 3), dtype=np.uint16)
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in deep)
    ihdr = struct.pack(">IIBBBBB", 7, 5, 16, 2, 0, 0, 0)
    path = tmp_path / "deep.png"
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(rows))
        + _chunk(b"IEND", b"")
    )
    assert np.array_equal(read_rgb(path), (deep >> 8).astype(np.uint8))

    rgb = rng.integers(0, 256, (6, 4, 3), dtype=np.uint8)
    keyed = tmp_path / "keyed.png"
    Image.fromarray(rgb).save(keyed, transparency=(1, 2, 3))
    assert np.array_equal(read_rgb(keyed), rgb)
    assert spng_calls == []


def test_class_map_compressed_once_gives_the_grey_and_the_colour_file():
    ids = np.random.default_rng(1).integers(0, 12, (37, 53), dtype=np.uint8)
    palette = [(i * 20, i, 255 - i) for i in range(12)]
    coloured = png_bytes(ids, palette=palette)
    colour = Image.open(io.BytesIO(coloured))
    assert colour.mode == "P"
    assert np.array_equal(np.asarray(colour), ids)
    assert np.array_equal(np.asarray(colour.convert("RGB")), np.array(palette, np.uint8)[ids])
    grey = Image.open(io.BytesIO(grey_png(coloured)))
    assert grey.mode == "L"
    assert np.array_equal(np.asarray(grey), ids)
    with pytest.raises(ValueError, match="palette"):
        grey_png(png_bytes(ids))
