"""``enet infer``: segment images, videos and folders of them with a model on any backend.

Any input size: the image is padded to a multiple of 8 and the prediction cropped back, or
(``resize``, and always for an ONNX model with a fixed input size) resized to the model's
size and the prediction resized back by nearest. Per image: ``<stem>_pred.png`` (class
index per pixel), ``_color.png`` and ``_overlay.png``, in the input's sub-folder mirrored
under the output folder. With ``labels``, the seed's 310 metric (``metric.txt``) is computed
at the model's size as the seed's ``eval310.py`` does, with ``metric.json`` (scores by class
name) and ``confusion.png`` beside it. A file that cannot be read is
reported and skipped; the run goes on. Nothing is written before every output name is
known to be free.
"""

from __future__ import annotations

import importlib.util
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..checkpoint import resolve_checkpoint
from ..data import cityscapes
from ..data.classes import ClassSet, check_same_classes, class_set
from ..data.folder import MASK_SUFFIXES, mask_files, read_label_classes
from ..errors import DataError, EnetError, OutputError, UsageError
from ..fileio import check_not_input, write_json_atomic, write_png_atomic
from ..folders import locked_folder
from ..images import read_rgb
from ..metrics import ConfusionMatrix, write_310_metric, write_metric_json
from ..model import SIZE_MULTIPLE
from ..runtime import image_to_input
from ..visualize import colorize, overlay, plot_confusion
from .backends import Predictor, load_predictor
from .video import VIDEO_SUFFIXES, segment_video

__all__ = [
    "IMAGE_SUFFIXES",
    "InferenceReport",
    "find_inputs",
    "output_stems",
    "run_inference",
]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def find_inputs(
    paths: list[Path],
    suffixes: set[str] = IMAGE_SUFFIXES | VIDEO_SUFFIXES,
    exclude: Path | None = None,
) -> list[Path]:
    """The files given, and the image/video files found below the folders given (sorted,
    each once); nothing below ``exclude`` (the run's own output folder). A path that does
    not exist is an error."""
    found: dict[Path, None] = {}
    skip = exclude.resolve() if exclude is not None else None
    for p in paths:
        if not p.exists():
            raise UsageError(f"{p}: no such file or folder")
        if p.is_dir():
            files = sorted(
                f
                for f in p.rglob("*")
                if f.suffix.lower() in suffixes and f.is_file() and not f.is_symlink()
            )
        else:
            files = [p]
        for f in files:
            if skip is None or not f.resolve().is_relative_to(skip):
                found.setdefault(f, None)
    return list(found)


def output_stems(files: list[Path], inputs: list[Path]) -> dict[Path, Path]:
    """Each input file's output name without suffix, relative to ``--out``: its path below
    the inputs' common folder, without its extension (``cam1/000001.png`` ->
    ``cam1/000001``). Files of one folder that differ only in their extension keep it,
    joined with an underscore (``x.png``, ``x.jpg`` -> ``x_png``, ``x_jpg``)."""
    roots = [os.path.abspath(p if p.is_dir() else p.parent) for p in inputs]
    base = os.path.commonpath(roots) if roots else os.getcwd()
    stems = {f: Path(os.path.relpath(os.path.abspath(f), base)).with_suffix("") for f in files}
    counts: dict[Path, int] = {}
    for stem in stems.values():
        counts[stem] = counts.get(stem, 0) + 1
    return {
        f: stem.with_name(f"{stem.name}_{f.suffix.lstrip('.').lower()}")
        if counts[stem] > 1
        else stem
        for f, stem in stems.items()
    }


@dataclass
class InferenceReport:
    processed: int = 0
    failed: list[str] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    metric: dict | None = None

    def timing(self) -> dict:
        lat = np.asarray(self.latency_ms)
        return {
            "inputs": self.processed,
            "frames": len(self.latency_ms),
            "latency_ms": {
                "mean": float(lat.mean()),
                "p50": float(np.percentile(lat, 50)),
                "p90": float(np.percentile(lat, 90)),
            },
            "throughput_fps": float(1000 / lat.mean()),
        }


@dataclass
class _Plan:
    """The inputs of a run and every path it will write."""

    files: list[Path]
    stems: dict[Path, Path]  # file -> its outputs' stem below --out
    timing: Path
    outputs: list[Path]


def _plan(
    inputs: list[Path],
    out: Path,
    *,
    model: str | Path,
    timing_file: str | Path | None,
    pictures: bool,
    labels: bool,
    label_ids: bool,
) -> _Plan:
    """Find the inputs and name every output, refusing collisions and inputs in ``out``."""
    for p in inputs:
        if p.is_dir() and p.resolve().is_relative_to(out.resolve()):
            raise UsageError(
                f"{out}: the output folder holds the input folder {p} (choose an --out "
                "outside the inputs)"
            )
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: is a file where a folder is expected (choose another --out)")
    files = find_inputs(inputs, exclude=out)
    if not files:
        inside = [p for p in inputs if p.resolve().is_relative_to(out.resolve())]
        if inside:
            raise UsageError(
                f"{inside[0]}: lies in --out {out}, whose files are never read as inputs "
                "(choose another --out)"
            )
        raise UsageError(f"no images or videos found in {', '.join(str(p) for p in inputs)}")
    stems = output_stems(files, inputs)
    keys = [cityscapes.frame_key(stems[f].name) for f in files]
    if label_ids and len(set(keys)) < len(keys):
        double = sorted({k for k in keys if keys.count(k) > 1})
        raise UsageError(
            f"--label-ids names outputs by Cityscapes frame, and several inputs are frame "
            f"{double[0]} (give them to separate runs)"
        )
    timing = Path(timing_file) if timing_file else out / "timing.json"
    if timing_file:
        check_not_input(timing, [resolve_checkpoint(model), *inputs])
    outputs = [timing]
    for f in files:
        stem = out / stems[f]
        if f.suffix.lower() in VIDEO_SUFFIXES:
            names = ["_pred", "_overlay.mp4"]
        else:
            names = ["_pred.png", *(["_color.png", "_overlay.png"] if pictures else [])]
        outputs += [stem.with_name(stem.name + n) for n in names]
    if labels:
        outputs += [out / "metric.txt", out / "metric.json", out / "confusion.png"]
    if label_ids:
        outputs += [out / "labelIds" / f"{k}_leftImg8bit.png" for k in keys]
    if len(set(outputs)) < len(outputs):
        double = next(p for p in outputs if outputs.count(p) > 1)
        raise UsageError(f"{double}: two inputs would write this output (rename one of them)")
    return _Plan(files, stems, timing, outputs)


def run_inference(
    model: str | Path,
    inputs: list[str | Path],
    out: str | Path,
    *,
    backend: str = "auto",
    device: str = "auto",
    resize: tuple[int, int] | None = None,
    labels: str | Path | None = None,
    timing_file: str | Path | None = None,
    pictures: bool = True,
    progress: bool = True,
    label_ids: bool = False,
    compile: bool = False,
    bf16: bool = False,
    overwrite: bool = False,
) -> InferenceReport:
    """Segment every input; see the module docstring for what is written. Outputs mirror
    the inputs' sub-folders under ``out`` (``output_stems``); files below ``out`` are never
    read as inputs, and existing outputs are replaced only with ``overwrite``."""
    out = Path(out)
    plan = _plan(
        [Path(p) for p in inputs],
        out,
        model=model,
        timing_file=timing_file,
        pictures=pictures,
        labels=labels is not None,
        label_ids=label_ids,
    )
    existing = [p for p in plan.outputs if p.exists()]
    if existing and not overwrite:
        more = f", and {len(existing) - 1} more of this run's outputs" if len(existing) > 1 else ""
        raise OutputError(
            f"{existing[0]}: already exists{more} (pass --overwrite to replace them, or "
            "choose another --out)"
        )
    predictor = load_predictor(model, backend=backend, device=device, compile=compile, bf16=bf16)
    target = predictor.fixed_size or resize
    label_files = _label_files(labels, predictor.classes, target, plan)
    videos = [f for f in plan.files if f.suffix.lower() in VIDEO_SUFFIXES]
    if videos and importlib.util.find_spec("av") is None:
        raise UsageError(f"{videos[0]}: video needs PyAV: pip install 'enet[video]'")
    with locked_folder(out, "infer"):
        return _run(
            predictor,
            plan,
            out,
            target,
            label_files,
            model_name=str(model),
            pictures=pictures,
            progress=progress,
            label_ids=label_ids,
            overwrite=overwrite,
        )


def _label_files(
    labels: str | Path | None,
    classes: ClassSet,
    target: tuple[int, int] | None,
    plan: _Plan,
) -> dict[Path, Path | None] | None:
    """``--labels``: each input's label file (None: it has none). Cityscapes models read
    gtFine files by frame name; a model of a folder dataset reads its masks, matched by the
    input's path below the inputs' folder (or by name where that is unique)."""
    if labels is None:
        return None
    labels = Path(labels)
    if not labels.is_dir():
        raise UsageError(f"{labels}: no such folder (--labels takes a folder of labels)")
    if target is None:
        raise UsageError("--labels computes the seed's metric at the model's size: give --resize")
    if classes.encoding is None:
        check_same_classes(classes, class_set("cityscapes"), "the model", "--labels")
        by_frame = cityscapes.label_files(labels)
        if not by_frame:
            raise UsageError(f"{labels}: no *_gtFine_labelIds.png or *_labelTrainIds.png in it")
        return {f: by_frame.get(cityscapes.frame_key(plan.stems[f].name)) for f in plan.files}
    masks = mask_files(labels)
    if not masks:
        raise UsageError(f"{labels}: no masks in it ({', '.join(MASK_SUFFIXES)})")
    by_name: dict[str, list[Path]] = {}
    for key, path in masks.items():
        by_name.setdefault(Path(key).name, []).append(path)
    found = {}
    for f in plan.files:
        stem = plan.stems[f].as_posix()
        named = by_name.get(Path(stem).name, [])
        found[f] = masks.get(stem) or (named[0] if len(named) == 1 else None)
    return found


def _segment(
    predictor: Predictor, rgb: np.ndarray, target: tuple[int, int] | None, latency_ms: list
) -> tuple[np.ndarray, np.ndarray]:
    """H x W x 3 uint8 -> class indices at the model's resolution and at the input's."""
    h, w = rgb.shape[:2]
    x = image_to_input(rgb, target)
    mh, mw = x.shape[2:]
    x = np.pad(x, ((0, 0), (0, 0), (0, -mh % SIZE_MULTIPLE), (0, -mw % SIZE_MULTIPLE)), "edge")
    start = time.perf_counter()
    logits = predictor(x)
    latency_ms.append((time.perf_counter() - start) * 1e3)
    small = logits[0].argmax(0)[:mh, :mw].astype(np.uint8)
    if small.shape == (h, w):
        return small, small
    return small, np.asarray(Image.fromarray(small).resize((w, h), Image.NEAREST))


def _run(
    predictor: Predictor,
    plan: _Plan,
    out: Path,
    target: tuple[int, int] | None,
    label_files: dict[Path, Path | None] | None,
    *,
    model_name: str,
    pictures: bool,
    progress: bool,
    label_ids: bool,
    overwrite: bool,
) -> InferenceReport:
    classes = predictor.classes
    cm = ConfusionMatrix(classes.num_classes, classes.void) if label_files is not None else None
    lut = cityscapes.label_id_table(classes) if label_ids else None
    report = InferenceReport()

    def segment(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _segment(predictor, rgb, target, report.latency_ms)

    for path in tqdm(plan.files, desc="infer", unit="file", disable=not progress):
        stem = out / plan.stems[path]
        if path.suffix.lower() in VIDEO_SUFFIXES:
            try:
                segment_video(path, stem, segment, classes, replace=overwrite)
            except OutputError:
                raise
            except Exception as exc:
                if isinstance(exc, EnetError):
                    reason = str(exc)
                else:
                    detail = getattr(exc, "strerror", None) or exc  # FFmpeg's, without errno
                    reason = f"{path}: unreadable video ({detail})"
                print(f"warning: {reason}; skipped, nothing written for it")
                report.failed.append(str(path))
                continue
            report.processed += 1
            continue
        try:
            rgb = read_rgb(path, upright=True)
        except DataError as exc:
            print(f"warning: {exc}; skipped")
            report.failed.append(str(path))
            continue
        small, pred = segment(rgb)
        key = cityscapes.frame_key(stem.name)
        if cm is not None:
            label_file = label_files[path]
            if label_file is None:
                print(f"warning: {path}: no label for it in --labels, not scored")
            else:
                truth = read_label_classes(label_file, classes)
                truth = np.asarray(Image.fromarray(truth).resize(target, Image.NEAREST))
                cm.update(
                    torch.from_numpy(small.astype(np.int64)),
                    torch.from_numpy(truth.astype(np.int64)),
                )
        write_png_atomic(stem.with_name(f"{stem.name}_pred.png"), pred, replace=overwrite)
        if lut is not None:  # the benchmark's naming: <city>_<seq>_<frame>*.png, label ids
            name = out / "labelIds" / f"{key}_leftImg8bit.png"
            write_png_atomic(name, lut[pred], replace=overwrite)
        if pictures:
            color = colorize(pred, classes.palette)
            write_png_atomic(stem.with_name(f"{stem.name}_color.png"), color, replace=overwrite)
            mixed = overlay(rgb, color)
            write_png_atomic(stem.with_name(f"{stem.name}_overlay.png"), mixed, replace=overwrite)
        report.processed += 1
    if report.processed == 0:
        raise DataError(f"none of the {len(plan.files)} inputs could be read (see the warnings)")
    if not report.latency_ms:
        raise DataError("the inputs held no frames")
    if cm is not None:
        if int(cm.mat.sum()) == 0:
            raise DataError("none of the inputs has a label in --labels; no metric written")
        iou = cm.iou()
        write_310_metric(out / "metric.txt", iou, replace=overwrite)
        names = [n for i, n in enumerate(classes.names) if i != classes.void]
        write_metric_json(
            out / "metric.json",
            iou,
            model_path=model_name,
            class_names=names,
            protocol="seed-310",
            replace=overwrite,
        )
        plot_confusion(
            cm.mat.cpu().numpy(), classes.names, out / "confusion.png", replace=overwrite
        )
        report.metric = {"mean_iou": float(iou.mean()), "iou_class": iou.tolist()}
    timing = {
        "backend": predictor.name,
        "input_size": list(target) if target else "native",
        **report.timing(),
    }
    write_json_atomic(plan.timing, timing, replace=overwrite)
    return report
