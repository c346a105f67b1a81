"""Data layer: label mapping against cityscapesscripts, pairing, prepare, datasets, synthetic
scenes, augmentation alignment and class weights."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from enet.data import prepare as prepare_module
from enet.data.cityscapes import to_class_ids, to_train_ids
from enet.data.dataset import PreparedDataset, SourceDataset, open_dataset
from enet.data.prepare import prepare
from enet.data.source import DataError
from enet.data.synthetic import synthesize
from enet.data.transforms import SegmentationTransform, train_transform
from enet.errors import UsageError
from enet.losses import (
    SEED_DECODER_WEIGHTS,
    SEED_ENCODER_WEIGHTS,
    enet_weights,
    median_frequency_weights,
    weighted_cross_entropy,
)

from .conftest import DATA, require

CITYSCAPES = DATA / "cityscapes_sample"
CAMVID = DATA / "camvid_sample"


def _label_files():
    return sorted(require(DATA).glob("cityscapes_*/gtFine/*/*/*_gtFine_labelIds.png"))


def test_to_train_ids_equals_cityscapesscripts_on_real_frames():
    from cityscapesscripts.helpers.labels import id2label

    files = _label_files()
    assert len(files) == 6
    for path in files:
        ids = np.asarray(Image.open(path))
        expected = np.vectorize(lambda i: id2label[int(i)].trainId % 256)(ids)
        ours = to_train_ids(ids)
        assert ours.dtype == np.uint8
        assert np.array_equal(ours, expected), path.name
        assert set(np.unique(ids)) & {0, 1, 3, 4}  # void ids really occur in these frames


def test_class_ids_put_ignore_on_void_channel():
    ids = np.array([[0, 7, 33], [26, 3, 255]], dtype=np.uint8)
    assert to_class_ids(ids).tolist() == [[19, 0, 18], [13, 19, 19]]


# --- prepare and datasets ----------------------------------------------------------------


@pytest.fixture(scope="module")
def prepared_real(tmp_path_factory):
    out = tmp_path_factory.mktemp("prep") / "cityscapes"
    prepare("cityscapes", require(CITYSCAPES), out, size=(256, 128), workers=2, progress=False)
    return out


def test_prepare_round_trip_on_real_frames(prepared_real):
    ds = PreparedDataset(prepared_real, "train")
    assert len(ds) == 4 and ds.keys[0] == "aachen_000000_000019"
    image, label = ds[0]
    src = CITYSCAPES / "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png"
    lbl = CITYSCAPES / "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png"
    expected_image = np.asarray(Image.open(src).convert("RGB").resize((256, 128), Image.BILINEAR))
    expected_label = to_class_ids(np.asarray(Image.open(lbl).resize((256, 128), Image.NEAREST)))
    assert np.array_equal(image, expected_image)
    assert np.array_equal(label, expected_label)
    source = SourceDataset("cityscapes", CITYSCAPES, "train", size=(256, 128))
    assert source.keys == ds.keys
    for (a, b), (c, d) in zip(source, ds, strict=True):
        assert np.array_equal(a, c) and np.array_equal(b, d)
    manifest = ds.manifest
    assert manifest["splits"]["val"]["count"] == 1
    assert manifest["splits"]["train"]["source_size"] == [2048, 1024]
    hist = np.array(manifest["splits"]["train"]["histogram"])
    assert hist.sum() == 4 * 256 * 128 and len(hist) == 20
    assert manifest["weights"]["seed_encoder"] == list(SEED_ENCODER_WEIGHTS)


def test_prepare_is_idempotent_and_never_writes_into_the_source(prepared_real, capsys):
    before = {p: p.stat().st_mtime_ns for p in prepared_real.rglob("*") if p.is_file()}
    prepare("cityscapes", CITYSCAPES, prepared_real, size=(256, 128), progress=False)
    assert "nothing to do" in capsys.readouterr().out
    after = {p: p.stat().st_mtime_ns for p in prepared_real.rglob("*") if p.is_file()}
    assert {p: t for p, t in after.items() if p.name != "manifest.json"} == {
        p: t for p, t in before.items() if p.name != "manifest.json"
    }
    with pytest.raises(UsageError, match="inside the source"):
        prepare("cityscapes", CITYSCAPES, CITYSCAPES / "prepared", progress=False)


def test_interrupted_prepare_looks_unfinished_and_rerun_completes(tmp_path, monkeypatch, capsys):
    root = synthesize(tmp_path / "syn", train=6, val=0, size=(64, 32), progress=False)
    out = tmp_path / "prep"
    real = prepare_module._process
    calls = {"n": 0}

    def flaky(job):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(prepare_module, "_process", flaky)
    with pytest.raises(KeyboardInterrupt):
        prepare("cityscapes", root, out, splits=("train",), workers=1, progress=False)
    assert not (out / "manifest.json").exists() and not (out / "train").exists()
    with pytest.raises(DataError, match="not a prepared dataset"):
        PreparedDataset(out, "train")
    monkeypatch.setattr(prepare_module, "_process", real)
    prepare("cityscapes", root, out, splits=("train",), workers=1, progress=False)
    assert "resuming, 3 of 6 already done" in capsys.readouterr().out
    fresh = tmp_path / "fresh"
    prepare("cityscapes", root, fresh, splits=("train",), workers=2, progress=False)
    for name in ("images.npy", "labels.npy", "histograms.npy"):
        assert np.array_equal(np.load(out / "train" / name), np.load(fresh / "train" / name))


def _broken_copy(tmp_path, how: str):
    """A copy of the tiny real Cityscapes frame plus two synthetic frames, broken one way."""
    root = synthesize(tmp_path / "src", train=0, val=2, size=(64, 32), progress=False)
    shutil.copytree(require(DATA / "cityscapes_tiny"), root, dirs_exist_ok=True)
    labels = sorted((root / "gtFine/val").glob("*/*_labelIds.png"))
    images = sorted((root / "leftImg8bit/val").glob("*/*.png"))
    if how == "missing label":
        labels[0].unlink()
        return root, labels[0].name.replace("_gtFine_labelIds", "_leftImg8bit")
    if how == "extra label":
        extra = labels[0].with_name("synthcity_000099_000019_gtFine_labelIds.png")
        shutil.copy(labels[0], extra)
        return root, extra.name
    if how == "corrupt png":
        images[0].write_bytes(images[0].read_bytes()[:200])
        return root, images[0].name
    if how == "wrong size":
        Image.new("L", (10, 10)).save(labels[1])
        return root, labels[1].name
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["missing label", "extra label", "corrupt png", "wrong size"])
def test_bad_inputs_give_a_clear_error_or_are_skipped(tmp_path, how):
    root, culprit = _broken_copy(tmp_path, how)
    with pytest.raises(DataError) as err:
        prepare("cityscapes", root, tmp_path / "out", splits=("val",), workers=1, progress=False)
    message = str(err.value)
    assert culprit in message and "--skip-bad" in message and "\n" not in message
    assert not (tmp_path / "out" / "manifest.json").exists()
    manifest = prepare(
        "cityscapes",
        root,
        tmp_path / "out",
        splits=("val",),
        workers=1,
        skip_bad=True,
        progress=False,
    )
    kept = 3 if how == "extra label" else 2
    assert manifest["splits"]["val"]["count"] == kept
    assert len(manifest["splits"]["val"]["skipped"]) == 1
    assert culprit in manifest["splits"]["val"]["skipped"][0]
    ds = PreparedDataset(tmp_path / "out", "val")
    assert len(ds) == kept and np.load(tmp_path / "out/val/images.npy").shape[0] == kept


def test_camvid_round_trip():
    root = require(CAMVID)
    ds = SourceDataset("camvid", root, "train")
    image, label = ds[0]
    assert image.shape == (360, 480, 3) and label.max() <= 11
    out_ds = open_dataset(root, "val")
    assert isinstance(out_ds, SourceDataset) and out_ds.classes.name == "camvid"


def test_camvid_frames_may_be_jpeg(tmp_path):
    root = require(CAMVID)
    for name in ("train", "trainannot"):
        shutil.copytree(root / name, tmp_path / name)
    for png in (tmp_path / "train").glob("*.png"):
        Image.open(png).save(png.with_suffix(".jpg"), quality=97)
        png.unlink()
    ds = SourceDataset("camvid", tmp_path, "train")
    image, label = ds[0]
    original, same_label = SourceDataset("camvid", root, "train")[0]
    assert len(ds) == 2 and np.array_equal(label, same_label)
    assert np.abs(image.astype(int) - original).mean() < 2  # lossy, but the same frame


def test_camvid_prepare_weights(tmp_path):
    manifest = prepare("camvid", require(CAMVID), tmp_path / "cv", workers=1, progress=False)
    assert {k: v["count"] for k, v in manifest["splits"].items()} == {
        "train": 2,
        "val": 2,
        "test": 2,
    }
    assert manifest["splits"]["train"]["width"] == 480
    weights = manifest["weights"]
    assert len(weights["enet"]) == 12 and weights["enet"][11] == 0
    assert "seed_encoder" not in weights


# --- synthetic scenes ---------------------------------------------------------------------


def test_synthetic_scenes_are_cityscapes_shaped_and_deterministic(tmp_path):
    a = synthesize(tmp_path / "a", train=3, val=2, size=(128, 64), seed=7, progress=False)
    b = synthesize(
        tmp_path / "b", train=3, val=2, size=(128, 64), seed=7, workers=1, progress=False
    )
    c = synthesize(tmp_path / "c", train=1, val=0, size=(128, 64), seed=8, progress=False)
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert len(files) == 10
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    first = "leftImg8bit/train/synthtown/synthtown_000000_000019_leftImg8bit.png"
    assert (a / first).read_bytes() != (c / first).read_bytes()
    ids = set()
    for path in (a / "gtFine").rglob("*_labelIds.png"):
        label = Image.open(path)
        assert label.mode == "L" and label.size == (128, 64)
        ids |= set(np.unique(np.asarray(label)).tolist())
    assert {7, 8, 11, 23, 26} <= ids  # road, sidewalk, building, sky, car
    samples = SourceDataset("cityscapes", a, "val").samples
    assert [s.key for s in samples] == ["synthcity_000000_000019", "synthcity_000001_000019"]


def test_synthetic_set_covers_all_19_classes():
    from enet.data.synthetic import _frame_rng, draw_scene

    seen = np.zeros(20, dtype=bool)
    for i in range(20):
        _, label = draw_scene(256, 128, _frame_rng(0, "val", i))
        seen[np.unique(to_class_ids(np.asarray(label)))] = True
    assert seen.all(), np.flatnonzero(~seen)


# --- augmentation --------------------------------------------------------------------------


def _coded_pair(h=96, w=192):
    """An image whose colour encodes its label: blocks of classes 0..19."""
    rng = np.random.default_rng(0)
    label = np.kron(rng.integers(0, 20, size=(h // 16, w // 16)), np.ones((16, 16), int))
    palette = (np.arange(20)[:, None] * np.array([12, 7, 3]) + [10, 60, 110]) % 256
    return palette[label].astype(np.uint8), label.astype(np.uint8), palette


@pytest.mark.parametrize("seed", range(6))
def test_augmentation_keeps_image_and_label_aligned(seed):
    image, label, palette = _coded_pair()
    torch.manual_seed(seed)
    t = SegmentationTransform(
        (160, 80),
        augment=True,
        crop_ratio=(1.0, 1.3),
        crop_p=1.0 if seed % 2 else 0.0,
        flip_p=1.0 if seed < 3 else 0.0,
        blur_radius=1.0,
    )
    out_image, out_label = t(image, label)
    assert out_image.shape == (3, 80, 160) and out_image.dtype == torch.uint8
    assert out_label.shape == (80, 160) and out_label.dtype == torch.int64
    # nearest-neighbour resampling only moves labels: it never makes a new value
    assert set(np.unique(out_label.numpy())) <= set(np.unique(label))
    lab = out_label.numpy()
    # Away from block edges (blur and bilinear mix colours there) colours match labels.
    interior = np.ones_like(lab, dtype=bool)
    for dy in (-2, 0, 2):
        for dx in (-2, 0, 2):
            interior &= np.roll(lab, (dy, dx), (0, 1)) == lab
    interior[:2], interior[-2:], interior[:, :2], interior[:, -2:] = False, False, False, False
    assert interior.mean() > 0.3
    got = out_image.permute(1, 2, 0).numpy()[interior].astype(int)
    nearest = np.abs(got[:, None, :] - palette[None]).sum(-1).argmin(1)
    assert np.array_equal(nearest, lab[interior])


def test_stage_presets_and_encoder_labels():
    image, label, _ = _coded_pair()
    t1 = train_transform((96, 48), stage=1)
    assert t1.crop_ratio == (1.2, 1.2) and t1.label_stride == 8
    assert train_transform((96, 48), stage=2).crop_ratio == (1.0, 1.3)
    torch.manual_seed(0)
    img, lbl = t1(image, label)
    assert img.shape == (3, 48, 96) and lbl.shape == (6, 12)
    assert train_transform((96, 48), stage=3)(image, label)[1].shape == (48, 96)


def test_prepared_dataset_pickles_for_workers(prepared_real):
    ds = PreparedDataset(prepared_real, "train", SegmentationTransform((128, 64)))
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2)
    batches = list(loader)
    assert [b[0].shape for b in batches] == [(2, 3, 64, 128)] * 2
    assert all(int(b[1].max()) <= 19 for b in batches)


# --- class weights and loss ----------------------------------------------------------------


def test_enet_weights_by_hand():
    hist = np.array([50, 30, 20, 0])  # p = 0.5, 0.3, 0.2, 0.0; last is void
    w = enet_weights(hist, c=1.02, void=3)
    expected = [1 / np.log(1.52), 1 / np.log(1.32), 1 / np.log(1.22), 0.0]
    np.testing.assert_allclose(w, expected)


def test_median_frequency_weights_by_hand():
    hist = np.array([60, 30, 10, 5])
    present = np.array([100, 100, 50, 100])  # class 2 only in half the pixels' images
    w = median_frequency_weights(hist, present, void=3)
    # freq = 0.6, 0.3, 0.2 (class 2 over its images' pixels only); median 0.3
    np.testing.assert_allclose(w, [0.3 / 0.6, 1.0, 0.3 / 0.2, 0.0])
    assert median_frequency_weights([0, 5], [0, 10]).tolist() == [0.0, 1.0]


def test_seed_weight_tables_match_spec():
    assert len(SEED_ENCODER_WEIGHTS) == len(SEED_DECODER_WEIGHTS) == 20
    assert SEED_ENCODER_WEIGHTS[0] == 2.3653597831726 and SEED_DECODER_WEIGHTS[0] == 2.8149201869965
    assert (
        SEED_ENCODER_WEIGHTS[17] == 5.4631009101868 and SEED_DECODER_WEIGHTS[18] == 10.138095855713
    )
    assert SEED_ENCODER_WEIGHTS[19] == SEED_DECODER_WEIGHTS[19] == 0.0
    # SPEC 3.2's observation: they fit 1/ln(c + p) with c ~ 1.20 (encoder) and ~1.10 (decoder).
    p_road_enc = np.exp(1 / SEED_ENCODER_WEIGHTS[0]) - 1.20
    p_road_dec = np.exp(1 / SEED_DECODER_WEIGHTS[0]) - 1.10
    assert abs(p_road_enc - 0.326) < 0.01 and abs(p_road_dec - 0.326) < 0.01


def test_weighted_cross_entropy_matches_torch_and_survives_all_void():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5, 6)
    target = torch.randint(0, 4, (2, 5, 6))
    weight = torch.tensor([1.0, 2.0, 0.5, 0.0])
    expected = torch.nn.functional.cross_entropy(logits, target, weight=weight)
    torch.testing.assert_close(weighted_cross_entropy(logits, target, weight), expected)
    void = torch.full((2, 5, 6), 3)
    assert weighted_cross_entropy(logits, void, weight).item() == 0.0
