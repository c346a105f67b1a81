"""``enet prepare``: decode a dataset once into memory-mappable arrays training reads directly.

Why raw arrays: at training time the seed decodes a 2048x1024 PNG per sample (~80 ms here)
before augmenting. A prepared sample is a slice of an ``.npy`` memmap at the training size
(1.5 MB at 1024x512), so the loader's time goes to augmentation, not decoding.

Layout of ``OUT``::

    manifest.json              written last: a set without it (or without a split) is unfinished
    <split>/images.npy         N x H x W x 3 uint8 RGB
    <split>/labels.npy         N x H x W uint8 class ids (void = the class set's void channel)
    <split>/histograms.npy     N x C int64 per-sample class pixel counts
    <split>/split.json         keys (sample names), size, source, plan hash
    .partial/<split>/          work in progress (resumable), renamed into place when complete
    .enet.json                 marks the folder as prepare's own: it replaces nothing else

The input tree is only read. Array files have their disk space reserved when created, so a
full disk is one clear error before any decoding, not a crash halfway.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..fileio import check_not_a_file, create_array, write_json_atomic
from ..folders import locked_folder
from ..images import image_size
from ..losses import (
    SEED_DECODER_WEIGHTS,
    SEED_ENCODER_WEIGHTS,
    enet_weights,
    median_frequency_weights,
)
from .classes import ClassSet
from .layouts import DATASETS, layout_for
from .parallel import run_parallel
from .source import DataError, DatasetLayout, SourceSample, load_pair

__all__ = ["FORMAT_VERSION", "prepare", "read_manifest"]

FORMAT_VERSION = 1
_STATUS_DONE, _STATUS_FAILED = 1, 2


def read_manifest(root: str | Path) -> dict:
    """The manifest of a prepared set; ``DataError`` if ``root`` is not one (or unfinished)."""
    path = Path(root) / "manifest.json"
    if not path.is_file():
        raise DataError(
            f"{root}: not a prepared dataset (no manifest.json); run enet prepare, or rerun it "
            "to finish an interrupted one"
        )
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable manifest ({exc}) (run enet prepare again)") from None
    problem = _manifest_problem(manifest)
    if problem:
        raise DataError(f"{path}: malformed manifest: {problem} (run enet prepare again)")
    if manifest["format_version"] > FORMAT_VERSION:
        raise DataError(
            f"{path}: prepared with a newer enet (format {manifest['format_version']}) "
            "(upgrade enet)"
        )
    return manifest


def _manifest_problem(manifest: object) -> str | None:
    if not isinstance(manifest, dict):
        return "not a JSON object"
    if type(manifest.get("format_version")) is not int:
        return "no format_version"
    try:
        ClassSet.from_dict(manifest.get("classes"))
    except ValueError as exc:
        return str(exc)
    splits = manifest.get("splits")
    if not isinstance(splits, dict) or not splits:
        return "no splits"
    for name, info in splits.items():
        keys = ("count", "width", "height")
        if not isinstance(info, dict) or not all(type(info.get(k)) is int for k in keys):
            return f"split {name!r} lacks its count, width or height"
        if not isinstance(info.get("source_size"), list):
            return f"split {name!r} lacks its source_size"
    if not isinstance(manifest.get("weights", {}), dict):
        return "weights are not a table"
    return None


# --- worker side ---------------------------------------------------------------------------

_OPEN: dict[str, np.ndarray] = {}


def _memmap(path: Path) -> np.ndarray:
    key = str(path)
    if key not in _OPEN:
        _OPEN[key] = np.load(path, mmap_mode="r+")
    return _OPEN[key]


def _process(job: tuple) -> tuple[int, np.ndarray | None, str | None]:
    """Decode sample ``index`` into the split's memmaps; return its class histogram."""
    index, sample, layout, size, work, num_classes = job
    try:
        image, label = load_pair(sample, layout, size)
    except DataError as exc:
        return index, None, str(exc)
    _memmap(work / "images.npy")[index] = image
    _memmap(work / "labels.npy")[index] = label
    return index, np.bincount(label.ravel(), minlength=num_classes)[:num_classes], None


# --- parent side ---------------------------------------------------------------------------


def _plan(
    dataset: str,
    root: Path,
    split: str,
    samples: list[SourceSample],
    size,
    layout: DatasetLayout,
) -> dict:
    """What a split's work folder is for; a rerun with another plan starts that split over."""
    keys = [s.key for s in samples]
    what = [dataset, str(root), split, keys, size]
    if dataset == "folder":  # its classes and options decide the arrays too
        what += [layout.classes.to_dict(), layout.to_dict()]
    digest = hashlib.sha256(json.dumps(what).encode())
    return {
        "dataset": dataset,
        "split": split,
        "source": str(root),
        "size": list(size),
        "source_size": list(_source_size(samples)),
        "keys": keys,
        "plan_hash": digest.hexdigest()[:16],
    }


def _source_size(samples: list[SourceSample]) -> tuple[int, int]:
    """The size of the first image that opens: an unreadable one is named (or skipped with
    --skip-bad) with the split's other bad files."""
    for sample in samples:
        try:
            return image_size(sample.image)
        except DataError:
            continue
    return image_size(samples[0].image)  # none opens: the first one's error


def _open_work(work: Path, plan: dict, num_classes: int) -> np.ndarray:
    """The status vector of the split's work folder, creating (or resetting) it if needed."""
    plan_file = work / "plan.json"
    if plan_file.is_file() and json.loads(plan_file.read_text())["plan_hash"] == plan["plan_hash"]:
        return np.load(work / "status.npy", mmap_mode="r+")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    n, (w, h) = len(plan["keys"]), plan["size"]
    create_array(work / "images.npy", np.uint8, (n, h, w, 3)).flush()
    create_array(work / "labels.npy", np.uint8, (n, h, w)).flush()
    create_array(work / "histograms.npy", np.int64, (n, num_classes)).flush()
    create_array(work / "status.npy", np.uint8, (n,)).flush()
    write_json_atomic(plan_file, plan)  # last: marks the folder as a valid work folder
    return np.load(work / "status.npy", mmap_mode="r+")


def _finalize(work: Path, final: Path, plan: dict, status: np.ndarray, skipped: list[str]):
    keep = np.flatnonzero(status == _STATUS_DONE)
    keys = [plan["keys"][i] for i in keep]
    if len(keep) < len(status):  # compact away the skipped samples
        for name in ("images.npy", "labels.npy", "histograms.npy"):
            data = np.load(work / name, mmap_mode="r")
            out = create_array(work / f"kept_{name}", data.dtype, (len(keep), *data.shape[1:]))
            for j, i in enumerate(keep):
                out[j] = data[i]
            out.flush()
            del data, out
            os.replace(work / f"kept_{name}", work / name)
    info = {k: v for k, v in plan.items() if k != "keys"}
    write_json_atomic(work / "split.json", {**info, "keys": keys, "skipped": skipped})
    for name in ("plan.json", "status.npy"):
        (work / name).unlink()
    if final.exists():
        shutil.rmtree(final)
    os.replace(work, final)


def _prepare_split(
    layout: DatasetLayout,
    dataset: str,
    root: Path,
    out: Path,
    split: str,
    found: tuple[list[SourceSample], list[str]],
    size: tuple[int, int] | None,
    workers: int,
    skip_bad: bool,
    progress: bool,
) -> dict:
    classes = layout.classes
    samples, unpaired = found
    size = tuple(size or layout.DEFAULT_SIZE or _source_size(samples))
    plan = _plan(dataset, root, split, samples, size, layout)
    final = out / split
    done_file = final / "split.json"
    if done_file.is_file() and json.loads(done_file.read_text())["plan_hash"] == plan["plan_hash"]:
        print(f"{split}: already prepared ({len(samples)} samples), nothing to do")
        return json.loads(done_file.read_text())
    if done_file.is_file():
        print(f"{split}: prepared before from other files or at another size; preparing it anew")

    work = out / ".partial" / split
    status = _open_work(work, plan, classes.num_classes)
    todo = np.flatnonzero(status != _STATUS_DONE)
    if len(todo) < len(samples):
        print(f"{split}: resuming, {len(samples) - len(todo)} of {len(samples)} already done")
    histograms = np.load(work / "histograms.npy", mmap_mode="r+")
    jobs = [(int(i), samples[i], layout, size, work, classes.num_classes) for i in todo]
    errors: dict[int, str] = {}
    results = run_parallel(_process, jobs, workers, desc=f"prepare {split}", progress=progress)
    try:
        for n, (index, hist, error) in enumerate(results, 1):
            if error is None:
                histograms[index] = hist
                status[index] = _STATUS_DONE
            else:
                errors[index] = error
                status[index] = _STATUS_FAILED
            if n % 32 == 0:
                histograms.flush()
                status.flush()
    finally:
        results.close()
        _OPEN.clear()
        histograms.flush()
        status.flush()
    problems = unpaired + [errors[i] for i in sorted(errors)]
    if problems and not skip_bad:
        listed = "; ".join(problems[:5])
        more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise DataError(
            f"{root}: {len(problems)} bad file(s) in the {split} split: {listed}{more} (fix "
            "them and rerun: finished samples are kept; or pass --skip-bad to leave them out)"
        )
    skipped = problems
    for problem in skipped:
        print(f"warning: skipped {problem}")
    del histograms
    _finalize(work, final, plan, status, skipped)
    return json.loads(done_file.read_text())


def _check_paths(root: Path, out: Path, *folders: str | Path | None) -> None:
    """Refuse an ``out`` in the source: below ``root``, or below ``folders`` (``--images``,
    ``--masks``: below ``root``, or anywhere when absolute)."""
    if not root.resolve().is_dir():
        raise DataError(f"{root}: source folder not found")
    out_r = out.resolve()
    for source in (root, *(root / f for f in folders if f is not None)):
        source_r = source.resolve()
        if out_r == source_r or source_r in out_r.parents:
            raise UsageError(
                f"--out {out} lies inside the source {source}; prepare never writes there"
            )


def _find_splits(
    layout: DatasetLayout, root: Path, splits: tuple[str, ...] | None
) -> dict[str, tuple[list[SourceSample], list[str]]]:
    """Each split's pairs and unpaired files, found before anything is written: a split
    without pairs stops the run with no other split half-done. A split not named with
    --split whose folder is missing is skipped with a word."""
    found: dict[str, tuple[list[SourceSample], list[str]]] = {}
    for split in splits or layout.splits():
        unpaired: list[str] = []
        try:
            found[split] = (layout.find_samples(root, split, unpaired), unpaired)
        except DataError as exc:
            if splits is not None or "not found" not in str(exc):
                raise
            print(f"{split}: skipped ({exc})")
    if not found:
        names = ", ".join(splits or layout.splits())
        raise DataError(f"{root}: none of the splits {names} could be prepared")
    return found


def prepare(
    dataset: str,
    root: str | Path,
    out: str | Path,
    *,
    splits: tuple[str, ...] | None = None,
    size: tuple[int, int] | None = None,
    workers: int | None = None,
    skip_bad: bool = False,
    enet_c: float = 1.02,
    progress: bool = True,
    images: str | Path | None = None,
    masks: str | Path | None = None,
    classes_file: str | Path | None = None,
    ignore: int | None = 255,
    val_fraction: float = 0.0,
    resize_masks: bool = False,
) -> dict:
    """Prepare ``splits`` of ``dataset`` from ``root`` into ``out``; returns the manifest.

    ``size`` is (width, height); default: Cityscapes 1024x512, CamVid and folders their
    source size. A folder dataset (``dataset="folder"``, ``folder.py``) takes the rest:
    where its images and masks are, its classes file, the masks' ignore value, the share of
    train to hold out as val where there is no val split, and whether masks of their image's
    aspect ratio are scaled to it. Rerunning is cheap (finished splits are skipped) and
    finishes an interrupted run.
    """
    if not enet_c > 1:
        raise UsageError(f"--enet-c must be above 1 (ENet's weights 1/ln(c + p)), got {enet_c}")
    root, out = Path(root), Path(out)
    _check_paths(root, out, images, masks)
    layout = layout_for(
        dataset,
        root,
        images=images,
        masks=masks,
        classes_file=classes_file,
        ignore=ignore,
        val_fraction=val_fraction,
        resize_masks=resize_masks,
    )
    check_not_a_file(out)
    found = _find_splits(layout, root, splits)
    with locked_folder(out, "prepare", claim=True, recognise=_made_by_prepare):
        return _prepare_into(
            layout, dataset, root, out, found, size, workers, skip_bad, enet_c, progress
        )


def _made_by_prepare(folder: Path) -> bool:
    """An output of enet prepare from before folders were marked."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        return manifest.get("dataset") in DATASETS and "splits" in manifest
    except (OSError, ValueError, AttributeError):
        return any((folder / ".partial").glob("*/plan.json"))


def _prepare_into(
    layout: DatasetLayout,
    dataset: str,
    root: Path,
    out: Path,
    found: dict[str, tuple[list[SourceSample], list[str]]],
    size: tuple[int, int] | None,
    workers: int | None,
    skip_bad: bool,
    enet_c: float,
    progress: bool,
) -> dict:
    workers = workers or os.cpu_count() or 1
    classes = layout.classes

    manifest_path = out / "manifest.json"
    manifest = read_manifest(out) if manifest_path.is_file() else {}
    if manifest and manifest.get("dataset") != dataset:
        raise UsageError(f"{out} already holds a prepared {manifest.get('dataset')} set")
    if manifest and manifest["classes"] != classes.to_dict():
        raise UsageError(
            f"{out}: holds a set prepared with other classes ({manifest['classes']['name']}: "
            f"{', '.join(manifest['classes']['names'][:4])}, ...) (choose another --out)"
        )
    split_info = dict(manifest.get("splits", {}))
    start = time.perf_counter()
    for split, pairs in found.items():
        info = _prepare_split(
            layout, dataset, root, out, split, pairs, size, workers, skip_bad, progress
        )
        hist = np.load(out / split / "histograms.npy").sum(0)
        split_info[split] = {
            "source": str(Path(info["source"]).resolve()),
            "count": len(info["keys"]),
            "width": info["size"][0],
            "height": info["size"][1],
            "skipped": info["skipped"],
            "plan_hash": info["plan_hash"],
            "source_size": info["source_size"],
            "histogram": hist.tolist(),
        }
    ref = "train" if "train" in split_info else next(iter(split_info))
    hist = np.array(split_info[ref]["histogram"], dtype=np.int64)
    per_sample = np.load(out / ref / "histograms.npy")
    present = ((per_sample > 0) * per_sample.sum(1, keepdims=True)).sum(0)
    weights = {
        "enet": enet_weights(hist, enet_c, classes.void).tolist(),
        "median_frequency": median_frequency_weights(hist, present, classes.void).tolist(),
    }
    if classes.name == "cityscapes":
        weights["seed_encoder"] = list(SEED_ENCODER_WEIGHTS)
        weights["seed_decoder"] = list(SEED_DECODER_WEIGHTS)
    manifest = {
        "format_version": FORMAT_VERSION,
        "dataset": dataset,
        "source": str(root.resolve()),
        "classes": classes.to_dict(),
        "layout": layout.to_dict(),
        "splits": split_info,
        "weights": {"from_split": ref, "enet_c": enet_c, **weights},
    }
    write_json_atomic(manifest_path, manifest)
    shutil.rmtree(out / ".partial", ignore_errors=True)
    total = sum(s["count"] for s in split_info.values())
    print(f"prepared {dataset} -> {out}: {total} samples in {time.perf_counter() - start:.1f} s")
    return manifest
