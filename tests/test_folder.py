"""Your own data: folder datasets in the layouts and mask formats people use, built from real
CamVid frames; every bad case named; the class set through training, export and inference;
fine-tuning from the shipped model."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from enet.checkpoint import load_checkpoint, read_checkpoint
from enet.cli import main
from enet.data.camvid import NAMES, PALETTE
from enet.data.classes import ClassSet
from enet.data.dataset import PreparedDataset
from enet.data.prepare import prepare
from enet.model import classifier_keys
from enet.train.config import load_config
from enet.train.engine import _initial_model
from enet.train.run_folder import RunFolder

from .conftest import DATA, require

SIZE = (96, 72)  # frames and masks scaled down: the tests are about files and classes


def _frames() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, RGB, CamVid class ids 0-11) of the real CamVid sample frames, at SIZE."""
    root = require(DATA / "camvid_sample")
    found = []
    for image in sorted(root.glob("*/*.png")):
        if image.parent.name.endswith("annot"):
            continue
        label = root / f"{image.parent.name}annot" / image.name
        rgb = np.asarray(Image.open(image).convert("RGB").resize(SIZE, Image.BILINEAR))
        ids = np.asarray(Image.open(label).resize(SIZE, Image.NEAREST))
        found.append((image.stem, rgb, ids))
    return found


def _colour(ids: np.ndarray) -> np.ndarray:
    table = np.array([*PALETTE, (0, 0, 0)], dtype=np.uint8)
    return table[ids]


def _write_set(root: Path, mask, *, layout: str = "splits", suffix: str = ".jpg") -> Path:
    """A folder dataset of the 6 frames: 4 train (2 of them in a nested folder), 2 val;
    ``mask(ids)`` makes each mask image."""
    for i, (name, rgb, ids) in enumerate(_frames()):
        split = "train" if i < 4 else "val"
        sub = Path("street") if i % 2 else Path()
        if layout == "splits":
            image_path = root / "images" / split / sub / f"{name}{suffix}"
            mask_path = root / "masks" / split / sub / f"{name}.png"
        else:  # one folder
            image_path = root / "photos" / sub / f"{name}{suffix}"
            mask_path = root / "labels" / sub / f"{name}.png"
        image_path.parent.mkdir(parents=True, exist_ok=True)
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(image_path, quality=95)
        mask(ids).save(mask_path)
    return root


CAMVID_CLASSES = [  # CamVid's classes, with a name of one's own: not the shipped model's set
    {"name": "sidewalk" if n == "pavement" else n, "id": i, "color": list(c)}
    for i, (n, c) in enumerate(zip(NAMES, PALETTE, strict=True))
] + [{"name": "unlabelled", "id": 11, "color": [0, 0, 0], "ignore": True}]


@pytest.fixture(scope="module")
def index_set(tmp_path_factory) -> Path:
    root = _write_set(
        tmp_path_factory.mktemp("index") / "streets", lambda ids: Image.fromarray(ids)
    )
    (root / "classes.json").write_text(json.dumps(CAMVID_CLASSES))
    return root


@pytest.fixture(scope="module")
def index_prepared(index_set, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared") / "p"
    prepare("folder", index_set, out, classes_file=index_set / "classes.json", progress=False)
    return out


def _labels(prepared: Path, split: str) -> np.ndarray:
    return np.load(prepared / split / "labels.npy")


# --- layouts and mask kinds ---------------------------------------------------------------------


def test_index_masks_in_split_folders_with_nested_folders(index_prepared):
    manifest = json.loads((index_prepared / "manifest.json").read_text())
    assert {k: v["count"] for k, v in manifest["splits"].items()} == {"train": 4, "val": 2}
    assert manifest["classes"]["names"][:2] == ["sky", "building"]
    assert manifest["classes"]["void"] == 11 and manifest["classes"]["names"][-1] == "void"
    keys = PreparedDataset(index_prepared, "train").keys
    assert keys == sorted(keys) and any("/" in k for k in keys)  # street/<name>
    order = {name: ids for (name, _, ids) in _frames()}
    for split in ("train", "val"):
        for key, label in zip(
            PreparedDataset(index_prepared, split).keys, _labels(index_prepared, split), strict=True
        ):
            assert np.array_equal(label, order[Path(key).name])  # ids 0-10, 11 the ignore entry


def test_colour_masks_map_to_the_same_classes(index_set, index_prepared, tmp_path):
    root = _write_set(tmp_path / "colour", lambda ids: Image.fromarray(_colour(ids)))
    shutil.copy(index_set / "classes.json", root / "classes.json")
    out = tmp_path / "p"
    manifest = prepare("folder", root, out, classes_file=root / "classes.json", progress=False)
    assert manifest["classes"]["encoding"]["kind"] == "colour"
    for split in ("train", "val"):
        assert np.array_equal(_labels(out, split), _labels(index_prepared, split))


def test_palette_masks_in_a_pascal_voc_tree(tmp_path):
    root = tmp_path / "VOC"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True)
    names = []
    for name, rgb, ids in _frames():
        mask = ids.copy()
        mask[0, :] = 255  # VOC's object borders are 255: void
        image = Image.frombytes("P", SIZE, mask.tobytes())
        image.putpalette([v for c in (*PALETTE, (9, 9, 9)) for v in c] + [224, 224, 192] * 244)
        image.save(root / "SegmentationClass" / f"{name}.png")
        Image.fromarray(rgb).save(root / "JPEGImages" / f"{name}.jpg")
        names.append(name)
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(names[:4]))
    (root / "ImageSets/Segmentation/val.txt").write_text("\n".join(names[4:]))
    manifest = prepare("folder", root, tmp_path / "p", progress=False)
    classes = manifest["classes"]
    assert classes["names"][:12] == [f"class_{v}" for v in range(12)]  # numbered, a warning
    assert classes["palette"][3] == list(PALETTE[3])  # colours from the PNGs' own palette
    labels = _labels(tmp_path / "p", "train")
    assert (labels[:, 0, :] == classes["void"]).all() and manifest["splits"]["val"]["count"] == 2


def test_16_bit_masks_with_a_csv_classes_file(tmp_path):
    root = _write_set(tmp_path / "deep", lambda ids: Image.fromarray(ids.astype(np.uint16) * 1000))
    rows = ["name,id,color"] + [f"c{i},{i * 1000},#{i:02x}{i:02x}{i:02x}" for i in range(11)]
    (root / "classes.csv").write_text("\n".join(rows))
    code = main(
        [
            "prepare",
            "--dataset",
            "folder",
            "--root",
            str(root),
            "--out",
            str(tmp_path / "p"),
            "--classes",
            str(root / "classes.csv"),
            "--ignore",
            "11000",
            "--no-progress",
        ]
    )
    assert code == 0
    assert np.array_equal(_labels(tmp_path / "p", "train").max(), 11)  # 11000 is void


def test_segnet_camvid_layout_as_it_is(tmp_path):
    manifest = prepare(
        "folder", require(DATA / "camvid_sample"), tmp_path / "p", ignore=11, progress=False
    )
    assert set(manifest["splits"]) == {"train", "val", "test"}
    assert manifest["classes"]["void"] == 11 and len(manifest["classes"]["names"]) == 12


def test_one_folder_with_a_held_out_val_fraction_is_deterministic(tmp_path):
    root = _write_set(tmp_path / "flat", lambda ids: Image.fromarray(ids), layout="flat")
    options = {"images": "photos", "masks": "labels", "val_fraction": 0.5, "ignore": 11}
    a = prepare("folder", root, tmp_path / "a", progress=False, **options)
    prepare("folder", root, tmp_path / "b", progress=False, **options)
    assert a["splits"]["val"]["count"] + a["splits"]["train"]["count"] == 6
    assert a["splits"]["val"]["count"] > 0 and a["layout"]["val_fraction"] == 0.5
    keys = [
        json.loads((p / "val" / "split.json").read_text())["keys"]
        for p in (tmp_path / "a", tmp_path / "b")
    ]
    assert keys[0] == keys[1]


def test_yaml_classes_file(index_set, tmp_path):
    pytest.importorskip("yaml")
    text = "".join(f"- name: {c['name']}\n  id: {c['id']}\n" for c in CAMVID_CLASSES[:11])
    (tmp_path / "classes.yaml").write_text(text + "- {name: unlabelled, id: 11, ignore: true}\n")
    manifest = prepare(
        "folder", index_set, tmp_path / "p", classes_file=tmp_path / "classes.yaml", progress=False
    )
    assert manifest["classes"]["names"][:3] == ["sky", "building", "pole"]


# --- bad data, named --------------------------------------------------------------------------


def _err(capsys, *args: str) -> str:
    code = main(["prepare", "--dataset", "folder", "--no-progress", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("enet: error: "), err
    return err[0]


def test_bad_pairs_sizes_and_values_are_named_and_can_be_skipped(index_set, tmp_path, capsys):
    root = tmp_path / "bad"
    shutil.copytree(index_set, root)
    masks = sorted((root / "masks" / "train").rglob("*.png"))
    images = sorted((root / "images" / "train").rglob("*.jpg"))
    masks[0].unlink()  # an image without a mask
    shutil.copy(masks[1], masks[1].with_name("stray.png"))  # a mask without an image
    ids = np.asarray(Image.open(masks[2])).copy()
    ids[:3, :4] = 40  # a value not in the classes
    Image.fromarray(ids).save(masks[2])
    small = np.asarray(Image.open(masks[3]))[::2, ::2]  # half the size, the same aspect
    Image.fromarray(small).save(masks[3])
    args = [
        "--root",
        str(root),
        "--out",
        str(tmp_path / "p"),
        "--classes",
        str(root / "classes.json"),
    ]
    err = _err(capsys, *args, "--split", "train")
    assert "4 bad file(s) in the train split" in err
    assert (
        f"{images[0]}: image without a label" in err and "stray.png: label without an image" in err
    )
    assert f"{masks[2]}: values not in the classes: 40 (12 px)" in err
    assert f"{masks[3]}: label is 48x36" in err and "pass --resize-masks" in err
    assert (
        main(
            [
                "prepare",
                "--dataset",
                "folder",
                "--no-progress",
                *args,
                "--split",
                "train",
                "--skip-bad",
                "--resize-masks",
            ]
        )
        == 0
    )
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert manifest["splits"]["train"]["count"] == 2  # the good one and the resized one
    assert len(manifest["splits"]["train"]["skipped"]) == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[]", "names no classes"),
        (
            '[{"name": "a", "color": "#ff0000"}, {"name": "b", "color": [255, 0, 0]}]',
            "the same colour twice: (255, 0, 0)",
        ),
        ('[{"name": "a", "id": "x"}]', "a: id 'x' is not a whole number"),
        ("{not json", "not a readable classes file"),
        ('[{"name": "a", "color": [1, 2]}]', "is not [r, g, b]"),
        (  # a defaulted id (its position) would take another class's pixels
            '[{"name": "car", "id": 1}, {"name": "road"}, {"name": "sky", "id": 2}]',
            "road has no id, but car has one (give every class an id, or none",
        ),
        ('[{"name": "a"}, {"name": "b"}, {"name": "v", "id": 1, "ignore": true}]', "id twice: 1"),
    ],
)
def test_bad_classes_files_are_named(index_set, tmp_path, capsys, content, message):
    (tmp_path / "classes.json").write_text(content)
    err = _err(
        capsys,
        "--root",
        str(index_set),
        "--out",
        str(tmp_path / "p"),
        "--classes",
        str(tmp_path / "classes.json"),
    )
    assert f"{tmp_path / 'classes.json'}" in err and message in err
    assert not (tmp_path / "p").exists()


def test_colours_not_in_the_classes_and_binary_masks_are_named(tmp_path, capsys):
    root = _write_set(tmp_path / "colour", lambda ids: Image.fromarray(_colour(ids)))
    (root / "classes.json").write_text(json.dumps(CAMVID_CLASSES[:3]))  # sky, building, pole
    err = _err(
        capsys,
        "--root",
        str(root),
        "--out",
        str(tmp_path / "p"),
        "--classes",
        str(root / "classes.json"),
    )
    listed = re.search(r"colours not in the classes: \((\d+), (\d+), (\d+)\) \(([\d,]+) px\)", err)
    assert listed, err
    colour = tuple(int(v) for v in listed.groups()[:3])
    assert colour not in [tuple(c["color"]) for c in CAMVID_CLASSES[:3]]
    binary = _write_set(
        tmp_path / "binary", lambda ids: Image.fromarray((ids == 9).astype(np.uint8) * 255)
    )
    err = _err(capsys, "--root", str(binary), "--out", str(tmp_path / "q"))
    assert "hold only 0 and 255, and 255 is the ignore value" in err and "--ignore none" in err
    assert (
        main(
            [
                "prepare",
                "--dataset",
                "folder",
                "--root",
                str(binary),
                "--out",
                str(tmp_path / "q"),
                "--ignore",
                "none",
                "--no-progress",
            ]
        )
        == 0
    )


# --- odd folders and files, each named or read --------------------------------------------------

TINY = (16, 12)  # these tests are about files and names: the pixels hardly matter


def _mask(values: tuple[int, ...] = (0, 1), mode: str = "L") -> Image.Image:
    """A TINY mask of vertical stripes: column x holds ``values[x % len(values)]``."""
    row = np.array(values)[np.arange(TINY[0]) % len(values)]
    ids = np.tile(row, (TINY[1], 1))
    if mode == "1":
        return Image.fromarray(ids.astype(bool))
    return Image.fromarray(ids.astype(np.uint8)).convert(mode)


def _pair(root: Path, key: str, mask: Image.Image | None, suffix: str = ".png") -> None:
    """``images/<key>.jpg`` and, unless ``mask`` is None, ``masks/<key><suffix>``."""
    image = root / "images" / f"{key}.jpg"
    image.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", TINY, (90, 120, 30)).save(image)
    if mask is not None:
        path = root / "masks" / f"{key}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        mask.save(path)


def _tiny_set(root: Path, count: int = 3, mask: Image.Image | None = None) -> Path:
    for i in range(count):
        _pair(root, str(i), mask if mask is not None else _mask())
    return root


def test_a_split_folder_without_masks_is_left_out_with_a_warning(tmp_path, capsys):
    root = tmp_path / "d"
    for split in ("train", "val", "test"):  # test images come without masks
        for i in range(2):
            _pair(root, f"{split}/{split}{i}", None if split == "test" else _mask())
    manifest = prepare("folder", root, tmp_path / "p", val_fraction=0.2, progress=False)
    assert {k: v["count"] for k, v in manifest["splits"].items()} == {"train": 2, "val": 2}
    out = capsys.readouterr().out
    assert f"warning: {root / 'images/test'}: no {root / 'masks/test'} folder; split not" in out
    assert "has a val split; --val-fraction 0.2 not used" in out


def test_palette_masks_are_read_by_colour_where_the_classes_file_gives_colours(tmp_path):
    mask = _mask()
    mask.putpalette([0, 0, 142, 128, 64, 128])  # index 0 is car's colour, index 1 road's
    root = _tiny_set(tmp_path / "d", 2, mask)
    by_colour = [{"name": "road", "color": [128, 64, 128]}, {"name": "car", "color": [0, 0, 142]}]
    by_index = [{"name": "car", "id": 0}, {"name": "road", "id": 1}]
    for name, entries in (("colour", by_colour), ("index", by_index)):
        (tmp_path / f"{name}.json").write_text(json.dumps(entries))
        manifest = prepare(
            "folder", root, tmp_path / name, classes_file=tmp_path / f"{name}.json", progress=False
        )
        names = np.array(manifest["classes"]["names"])[_labels(tmp_path / name, "train")]
        assert (names[..., 0] == "car").all() and (names[..., 1] == "road").all(), name


@pytest.mark.parametrize("mode", ["1", "LA"])
def test_one_bit_and_grey_alpha_masks_are_index_masks(tmp_path, mode):
    root = _tiny_set(tmp_path / "d", 2, _mask((0, 1), mode))
    manifest = prepare("folder", root, tmp_path / "p", progress=False)
    assert manifest["classes"]["names"] == ["class_0", "class_1", "void"]
    labels = _labels(tmp_path / "p", "train")
    assert (labels[..., 0] == 0).all() and (labels[..., 1] == 1).all()


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("excel.csv", "\ufeffname,id\nbg,0\nfg,1\n"),  # Excel's "CSV UTF-8" starts with a BOM
        ("semicolons.csv", "name;id\nbg;0\nfg;1\n"),
        ("bom.json", '\ufeff[{"name": "bg", "id": 0}, {"name": "fg", "id": 1}]'),
        ("numbers.json", '[{"name": 0, "id": 0}, {"name": 1, "id": 1}]'),
    ],
)
def test_classes_files_as_spreadsheets_and_editors_write_them(tmp_path, name, text):
    root = _tiny_set(tmp_path / "d", 2)
    (tmp_path / name).write_text(text, encoding="utf-8")
    manifest = prepare("folder", root, tmp_path / "p", classes_file=tmp_path / name, progress=False)
    assert manifest["classes"]["names"][:2] in (["bg", "fg"], ["0", "1"])


def test_names_that_are_not_utf8_are_held_out_by_val_fraction(tmp_path):
    root = tmp_path / "d"
    for i in range(6):
        _pair(root, os.fsdecode(b"caf\xe9%d" % i), _mask())  # a Latin-1 name on a UTF-8 system
    manifest = prepare("folder", root, tmp_path / "p", val_fraction=0.5, progress=False)
    assert manifest["splits"]["train"]["count"] + manifest["splits"]["val"]["count"] == 6


def test_instance_maps_and_empty_splits_are_named_before_anything_is_written(tmp_path, capsys):
    deep = tmp_path / "deep"
    _pair(deep, "a", Image.fromarray(np.arange(300, dtype=np.uint16).reshape(15, 20)))
    err = _err(capsys, "--root", str(deep), "--out", str(tmp_path / "p"))
    assert f"{deep / 'masks/a.png'}: 300 distinct mask values; ENet's class maps hold at " in err
    root = tmp_path / "splits"
    for i in range(2):
        _pair(root, f"train/{i}", _mask())
    (root / "images/val").mkdir()
    (root / "masks/val").mkdir()
    err = _err(capsys, "--root", str(root), "--out", str(tmp_path / "p"))
    assert f"{root / 'images/val'}: the val split has no image/mask pairs (0 images" in err
    assert not (tmp_path / "p").exists()  # train was not prepared either
    flat = _tiny_set(tmp_path / "flat", 4)
    err = _err(capsys, "--root", str(flat), "--out", str(tmp_path / "p"), "--val-fraction", "0.01")
    assert "--val-fraction 0.01 of 4 images leaves the val split empty" in err
    no_train = tmp_path / "no_train"
    _pair(no_train, "a/0", _mask())
    _pair(no_train, "b/0", _mask())
    err = _err(
        capsys, "--root", str(no_train), "--out", str(tmp_path / "p"), "--val-fraction", "0.2"
    )
    assert "--val-fraction 0.2 holds val out of the train split, and the splits are a, b" in err


def test_files_of_one_name_and_unreadable_first_files_can_be_skipped(tmp_path, capsys):
    root = _tiny_set(tmp_path / "d", 4)
    (root / "images/0.jpg").write_bytes(b"")  # the first image and mask: nothing to read
    (root / "masks/0.png").write_bytes(b"")
    Image.new("RGB", TINY).save(root / "images/1.png")  # two photos named 1
    _mask().save(root / "masks/2.tif")  # two masks named 2
    args = ["--root", str(root), "--out", str(tmp_path / "p")]
    err = _err(capsys, *args)
    assert "3 bad file(s) in the train split" in err
    assert f"{root / 'images/0.jpg'}: not an image (" in err
    assert f"{root / 'images/1.jpg'}: 1.png has the same name without the extension" in err
    assert f"{root / 'masks/2.png'}: 2.tif has the same name without the extension" in err
    assert main(["prepare", "--dataset", "folder", "--no-progress", *args, "--skip-bad"]) == 0
    split = json.loads((tmp_path / "p/manifest.json").read_text())["splits"]["train"]
    assert split["count"] == 1 and len(split["skipped"]) == 3


def test_out_in_an_images_folder_outside_the_root_is_refused(tmp_path, capsys):
    data = _tiny_set(tmp_path / "d", 2)
    (tmp_path / "root").mkdir()
    out = data / "images/prepared"
    err = _err(
        capsys,
        *("--root", str(tmp_path / "root"), "--out", str(out)),
        *("--images", str(data / "images"), "--masks", str(data / "masks")),
    )
    assert f"--out {out} lies inside the source {data / 'images'}" in err and not out.exists()


# --- the class set flows; fine-tuning -----------------------------------------------------------


def test_fine_tuning_copies_every_layer_but_the_classifier(index_prepared, tmp_path):
    manifest = json.loads((index_prepared / "manifest.json").read_text())
    classes = ClassSet.from_dict(manifest["classes"])
    assert classes.num_classes == 12 and classes.names != load_checkpoint("camvid").classes.names
    cfg = load_config("finetune", data=str(index_prepared), out=str(tmp_path / "r"))
    model = _initial_model(cfg, 3, RunFolder(tmp_path / "r"), classes)
    shipped = load_checkpoint("camvid").state_dict()
    new = set(classifier_keys(model))
    assert new == {"decoder.fullconv.weight"}
    for key, value in model.state_dict().items():
        assert torch.equal(value, shipped[key]) != (key in new), key
    same = ClassSet("mine", (*NAMES, "void"), (*PALETTE, (0, 0, 0)), 11)  # void named otherwise
    model = _initial_model(cfg, 3, RunFolder(tmp_path / "r"), same)
    assert all(torch.equal(v, shipped[k]) for k, v in model.state_dict().items())


def test_class_set_survives_training_export_and_inference(
    index_set, index_prepared, tmp_path, capsys
):
    run = tmp_path / "run"
    args = [
        "train",
        "--config",
        "finetune",
        "--data",
        str(index_prepared),
        "--out",
        str(run),
        "--epochs",
        "0,0,1",
        "--freeze",
        "encoder",
        "--set",
        "compile=false",
        "--amp",
        "off",
        "--no-progress",
    ]
    assert main(args) == 0
    assert "every layer copied but the classifier" in capsys.readouterr().out
    trained = read_checkpoint(run / "ENet_stage3.pt")
    shipped = load_checkpoint("camvid").state_dict()
    encoder = [k for k in trained["state_dict"] if k.startswith("encoder.")]
    assert all(torch.equal(trained["state_dict"][k], shipped[k]) for k in encoder)  # frozen
    assert (
        trained["classes"]["names"][0] == "sky"
        and trained["classes"]["encoding"]["kind"] == "index"
    )
    assert main(["info", str(run / "ENet_stage3.pt")]) == 0
    assert '"unlabelled"' not in capsys.readouterr().out  # the ignore entry is void, not a class
    onnx = tmp_path / "m.onnx"
    assert main(["export", str(run / "ENet_stage3.pt"), "--out", str(onnx)]) == 0
    out = tmp_path / "pred"
    assert (
        main(
            [
                "infer",
                str(index_set / "images" / "val"),
                "--model",
                str(onnx),
                "--out",
                str(out),
                "--labels",
                str(index_set / "masks" / "val"),
                "--resize",
                "96x72",
                "--backend",
                "onnx",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "[seed 310 protocol] mean_iou" in capsys.readouterr().out
    pred = np.asarray(Image.open(next(out.rglob("*_pred.png"))))
    colour = np.asarray(Image.open(next(out.rglob("*_color.png"))).convert("RGB"))
    palette = np.array(trained["classes"]["palette"], dtype=np.uint8)
    assert np.array_equal(colour, palette[pred])  # the data's colours
    assert (out / "metric.txt").read_text().startswith("mean_iou:  ")
    scores = json.loads((out / "metric.json").read_text())
    assert list(scores["iou_class"]) == list(trained["classes"]["names"][:-1])  # names, no void
    assert Image.open(out / "confusion.png").size[0] > 100


def test_the_three_stage_recipe_runs_on_a_folder_dataset(index_prepared, tmp_path):
    run = tmp_path / "three"
    args = ["train", "--data", str(index_prepared), "--out", str(run), "--epochs", "1,1,1"]
    args += ["--size", "96x72", "--batch-size", "2", "--workers", "0", "--no-progress"]
    assert main(args) == 0
    final = read_checkpoint(run / "ENet_stage3.pt")
    assert (run / "Encoder_stage2.pt").is_file()
    assert final["classes"]["names"][:2] == ["sky", "building"]
