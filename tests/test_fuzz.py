"""Fuzzing every reader of outside bytes: random and mutated files give the reader's one-line
error (an ``EnetError``) or a valid result, never another exception, a hang or a large
allocation. Bounded: a fixed number of examples each (``EXAMPLES``, listed in
docs/reliability.md), a fixed seed (``derandomize``), a time limit per test."""

from __future__ import annotations

import contextlib
import json
import resource
import shutil
import signal
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enet.checkpoint import load_checkpoint
from enet.convert import import_checkpoint
from enet.data.dataset import PreparedDataset
from enet.data.layouts import layout_for
from enet.data.prepare import read_manifest
from enet.data.source import SourceSample, load_pair
from enet.deploy.onnx_meta import onnx_metadata
from enet.errors import EnetError
from enet.images import read_label, read_rgb
from enet.mindspore_ckpt import read_mindspore_checkpoint

from .conftest import DATA, MINDSPORE, REFERENCE, require

#: Examples per reader; CI runs exactly these (docs/reliability.md quotes the total).
EXAMPLES = {
    "enet checkpoint": 300,
    "PyTorch-ENet checkpoint": 200,
    "MindSpore checkpoint": 300,
    "ONNX metadata": 200,
    "label PNG": 400,
    "image": 300,
    "manifest": 300,
}
SECONDS_PER_READER = 90
#: Growth of the test process's peak memory a reader may cause over all its examples.
MEMORY_LIMIT_MB = 1024


def fuzz_settings(reader: str):
    return settings(
        max_examples=EXAMPLES[reader],
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


@contextlib.contextmanager
def bounded(seconds: int = SECONDS_PER_READER):
    """Fail (not hang) past ``seconds``; fail if peak memory grew by more than the limit."""

    def stop(*_):
        raise TimeoutError(f"a reader ran past {seconds} s")

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < MEMORY_LIMIT_MB, f"peak memory grew by {grown_mb:.0f} MB"


@st.composite
def mutated(draw, seed: bytes):
    """``seed`` with a few bytes flipped, overwritten, inserted or removed, or cut short;
    positions favour the first and last 4 KiB, where formats keep their structure."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        n = len(data)
        if n == 0:
            break
        at = draw(
            st.one_of(
                st.integers(0, min(n - 1, 4095)),
                st.integers(max(0, n - 4096), n - 1),
                st.integers(0, n - 1),
            )
        )
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[at] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        else:
            del data[at:]
    return bytes(data)


@st.composite
def png_with_valid_crcs(draw, seed: bytes):
    """``seed`` (a PNG) with one chunk's data changed and its length and CRC made to fit, so
    the change reaches the decoder instead of its CRC check: odd sizes, depths, colour
    types, palettes, compressed data."""
    chunks, at = [], 8
    while at + 12 <= len(seed):
        length = int.from_bytes(seed[at : at + 4], "big")
        chunks.append([seed[at + 4 : at + 8], bytearray(seed[at + 8 : at + 8 + length])])
        at += 12 + length
    kind, data = chunks[draw(st.integers(0, len(chunks) - 1))]
    if kind == b"IHDR":  # width, height, bit depth, colour type, compression, filter, interlace
        field = draw(st.sampled_from([(0, 4), (4, 4), (8, 1), (9, 1), (10, 1), (11, 1), (12, 1)]))
        start, size = field
        value = draw(st.sampled_from([0, 1, 2, 3, 4, 6, 8, 16, 255, 2**16, 2**31 - 1]))
        data[start : start + size] = (value % 256**size).to_bytes(size, "big")
    elif data:
        data[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
    out = bytearray(seed[:8])
    for kind, data in chunks:
        crc = zlib.crc32(kind + bytes(data)).to_bytes(4, "big")
        out += len(data).to_bytes(4, "big") + kind + bytes(data) + crc
    return bytes(out)


def files_like(seed: bytes, magic: bytes = b""):
    """Mutations of ``seed``, and random bytes (some starting with the format's ``magic``)."""
    noise = st.binary(max_size=2048)
    return st.one_of(mutated(seed), noise, noise.map(lambda b: magic + b))


def check(read, path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and read it (a manifest's reader gets its folder)."""
    path.write_bytes(data)
    try:
        read(path.parent if path.name == "manifest.json" else path)
    except EnetError as exc:
        message = str(exc)
        assert message and "\n" not in message.strip() and "Traceback" not in message


@pytest.fixture(scope="module")
def checkpoint_bytes(tiny_run) -> bytes:
    return (tiny_run / "ENet_stage3.pt").read_bytes()


def test_enet_checkpoints(checkpoint_bytes, tmp_path):
    @fuzz_settings("enet checkpoint")
    @given(files_like(checkpoint_bytes, b"PK\x03\x04"))
    def run(data):
        check(load_checkpoint, tmp_path / "x.pt", data)

    with bounded():
        run()


def test_pytorch_enet_checkpoints(tmp_path):
    seed = require(REFERENCE / "pytorch_enet_checkpoint.pth").read_bytes()

    @fuzz_settings("PyTorch-ENet checkpoint")
    @given(files_like(seed, b"PK\x03\x04"))
    def run(data):
        check(lambda p: import_checkpoint(p, "pytorch-enet"), tmp_path / "x.pth", data)

    with bounded():
        run()


def test_mindspore_checkpoints(tmp_path):
    seed = require(MINDSPORE / "mindspore_enet.ckpt").read_bytes()

    @fuzz_settings("MindSpore checkpoint")
    @given(files_like(seed, b"\x0a"))
    def run(data):
        check(read_mindspore_checkpoint, tmp_path / "x.ckpt", data)
        check(lambda p: import_checkpoint(p, "mindspore"), tmp_path / "x.ckpt", data)

    with bounded():
        run()


def test_onnx_metadata(tiny_run, tmp_path):
    from enet.deploy.export import export_onnx

    exported = export_onnx(tiny_run / "ENet_stage3.pt", tmp_path / "m.onnx")["path"]
    seed = Path(exported).read_bytes()

    @fuzz_settings("ONNX metadata")
    @given(files_like(seed, b"\x08"))
    def run(data):
        check(onnx_metadata, tmp_path / "x.onnx", data)

    with bounded():
        run()


def test_label_pngs(tmp_path):
    label = next(require(DATA / "cityscapes_tiny").glob("gtFine/val/*/*_labelIds.png"))
    image = next(require(DATA / "cityscapes_tiny").glob("leftImg8bit/val/*/*.png"))
    seed = label.read_bytes()

    def read_pair(path: Path) -> None:
        read_label(path)
        load_pair(SourceSample("x", image, path), layout_for("cityscapes", "."), None)

    @fuzz_settings("label PNG")
    @given(st.one_of(files_like(seed, b"\x89PNG\r\n\x1a\n"), png_with_valid_crcs(seed)))
    def run(data):
        check(read_pair, tmp_path / "x_gtFine_labelIds.png", data)

    with bounded():
        run()


def test_images(tmp_path):
    seed = next(require(DATA / "cityscapes_tiny").glob("leftImg8bit/val/*/*.png")).read_bytes()

    @fuzz_settings("image")
    @given(st.one_of(files_like(seed, b"\x89PNG\r\n\x1a\n"), png_with_valid_crcs(seed)))
    def run(data):
        check(read_rgb, tmp_path / "x.png", data)

    with bounded():
        run()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 100)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def test_manifests(tiny_data, tmp_path):
    root = tmp_path / "prepared"
    shutil.copytree(tiny_data, root)
    seed = json.loads((tiny_data / "manifest.json").read_text())
    keys = sorted(seed)

    def open_set(folder: Path) -> None:
        read_manifest(folder)
        PreparedDataset(folder, "train")[0]

    @st.composite
    def manifests(draw):
        """The real manifest with a few entries (top-level or one level down) replaced."""
        manifest = json.loads(json.dumps(seed))
        for _ in range(draw(st.integers(1, 3))):
            key = draw(st.sampled_from(keys))
            target = manifest
            if isinstance(manifest[key], dict) and manifest[key] and draw(st.booleans()):
                target, key = manifest[key], draw(st.sampled_from(sorted(manifest[key])))
            target[key] = draw(json_values)
        return json.dumps(manifest).encode()

    @fuzz_settings("manifest")
    @given(st.one_of(manifests(), json_values.map(lambda v: json.dumps(v).encode())))
    def run(data):
        check(open_set, root / "manifest.json", data)

    with bounded():
        run()
