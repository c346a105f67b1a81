"""``enet infer``: segment images, videos and folders of them with a model on any backend,
through ``enet.Segmenter``.

Per image, in the input's sub-folder mirrored under the output folder, the ``outputs``
chosen of: ``<stem>_pred.png`` (class id per pixel), ``_color.png`` (the same ids with the
classes' colours as the PNG's palette) and ``_overlay.jpg``; per video ``<stem>_pred/``
frames and ``_overlay.mp4``. Images run in lanes (``_run``) and the model, where it can, on
several images at once (``Segmenter(parallel=True)``). With ``labels``, the seed's 310
metric (``metric.txt``) is computed at the model's size as the seed's ``eval310.py`` does,
with ``metric.json`` (scores by class name) and ``confusion.png`` beside it. A file that
cannot be read is reported and skipped; the run goes on. Nothing is written before every
output name is known to be free.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
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
from ..fileio import check_output_file, write_bytes_atomic, write_json_atomic
from ..folders import LOCK_NAME, locked_folder
from ..images import grey_png, jpeg_bytes, png_bytes, read_rgb
from ..metrics import ConfusionMatrix, write_310_metric, write_metric_json
from ..visualize import plot_confusion
from .segmenter import Segmentation, Segmenter
from .video import VIDEO_SUFFIXES, write_video_outputs

__all__ = [
    "IMAGE_SUFFIXES",
    "OUTPUTS",
    "InferenceReport",
    "find_inputs",
    "output_stems",
    "run_inference",
    "shard_of",
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


#: what ``outputs`` may name: per image ``_pred.png`` (class ids), ``_color.png`` (the class
#: ids with the classes' colours as a palette) and ``_overlay.jpg``; per video ``_pred/`` and
#: ``_overlay.mp4``
OUTPUTS = ("pred", "color", "overlay")


@dataclass
class InferenceReport:
    processed: int = 0
    failed: list[str] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    metric: dict | None = None
    seconds: float = 0.0  # from the first input read to the last output written
    parallel: int = 1  # images the model ran at once

    def timing(self) -> dict:
        lat = np.asarray(self.latency_ms)
        return {
            "inputs": self.processed,
            "frames": len(self.latency_ms),
            "parallel": self.parallel,
            "latency_ms": {
                "mean": float(lat.mean()),
                "p50": float(np.percentile(lat, 50)),
                "p90": float(np.percentile(lat, 90)),
            },
            "model_fps": float(self.parallel * 1000 / np.percentile(lat, 50)),
            "seconds": self.seconds,
            "end_to_end_fps": len(lat) / self.seconds if self.seconds else 0.0,
        }


@dataclass
class _Plan:
    """The inputs of a run and every path it will write."""

    files: list[Path]
    stems: dict[Path, Path]  # file -> its outputs' stem below --out
    timing: Path
    outputs: list[Path]


def shard_of(files: list[Path], shard: tuple[int, int] | None) -> list[Path]:
    """Shard ``i`` of ``n`` (0 <= i < n): every n-th file from the i-th, of the sorted inputs,
    so that n runs over the same inputs cover each file exactly once."""
    if shard is None:
        return files
    index, count = shard
    return files[index::count]


def _plan(
    inputs: list[Path],
    out: Path,
    *,
    model: str | Path,
    timing_file: str | Path | None,
    outputs: Collection[str],
    labels: bool,
    label_ids: bool,
    shard: tuple[int, int] | None,
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
    found = find_inputs(inputs, exclude=out)
    if not found:
        inside = [p for p in inputs if p.resolve().is_relative_to(out.resolve())]
        if inside:
            raise UsageError(
                f"{inside[0]}: lies in --out {out}, whose files are never read as inputs "
                "(choose another --out)"
            )
        raise UsageError(f"no images or videos found in {', '.join(str(p) for p in inputs)}")
    stems = output_stems(found, inputs)  # of every input: a shard's names are the whole run's
    files = shard_of(found, shard)
    if not files:
        raise UsageError(
            f"--shard {shard[0]}/{shard[1]}: no inputs fall in it ({len(found)} inputs; use "
            "fewer shards)"
        )
    keys = [cityscapes.frame_key(stems[f].name) for f in files]
    if label_ids and len(set(keys)) < len(keys):
        double = sorted({k for k in keys if keys.count(k) > 1})
        raise UsageError(
            f"--label-ids names outputs by Cityscapes frame, and several inputs are frame "
            f"{double[0]} (give them to separate runs)"
        )
    if timing_file:
        inputs_and_model = [resolve_checkpoint(model), *inputs]
        timing = check_output_file(timing_file, overwrite=True, inputs=inputs_and_model)
    elif shard:
        timing = out / f"timing-shard-{shard[0]}-of-{shard[1]}.json"
    else:
        timing = out / "timing.json"
    planned = [timing]
    for f in files:
        stem = out / stems[f]
        if f.suffix.lower() in VIDEO_SUFFIXES:
            names = {"pred": "_pred", "overlay": "_overlay.mp4"}
        else:
            names = {"pred": "_pred.png", "color": "_color.png", "overlay": "_overlay.jpg"}
        chosen = [stem.with_name(stem.name + n) for kind, n in names.items() if kind in outputs]
        if not chosen:
            raise UsageError(
                f"{f}: --outputs {','.join(outputs)} writes nothing for a video (add pred or "
                "overlay)"
            )
        planned += chosen
    if labels:
        planned += [out / "metric.txt", out / "metric.json", out / "confusion.png"]
    if label_ids:
        planned += [out / "labelIds" / f"{k}_leftImg8bit.png" for k in keys]
    if len(set(planned)) < len(planned):
        double = next(p for p in planned if planned.count(p) > 1)
        raise UsageError(
            f"{double}: two of this run's outputs would have this name (rename an input, or "
            "choose another --timing)"
        )
    return _Plan(files, {f: stems[f] for f in files}, timing, planned)


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
    outputs: Collection[str] | None = None,
    progress: bool = True,
    label_ids: bool = False,
    compile: bool = False,
    bf16: bool = False,
    shard: tuple[int, int] | None = None,
    overwrite: bool = False,
) -> InferenceReport:
    """Segment every input; see the module docstring for what is written. Outputs mirror
    the inputs' sub-folders under ``out`` (``output_stems``); files below ``out`` are never
    read as inputs, and existing outputs are replaced only with ``overwrite``. ``shard``:
    (i, n), this run's share of the inputs (``shard_of``). ``outputs``: some of ``OUTPUTS``
    (None: all)."""
    outputs = OUTPUTS if outputs is None else tuple(outputs)
    unknown = sorted(set(outputs) - set(OUTPUTS))
    if unknown:
        raise UsageError(f"--outputs {unknown[0]}: unknown (choose from {', '.join(OUTPUTS)})")
    if shard == (0, 1):
        shard = None  # the whole
    if shard is not None and not 0 <= shard[0] < shard[1]:
        raise UsageError(f"--shard {shard[0]}/{shard[1]}: give I/N with 0 <= I < N")
    if shard is not None and labels is not None:
        raise UsageError(
            "--labels scores all the inputs in one run; it cannot be split with --shard"
        )
    out = Path(out)
    plan = _plan(
        [Path(p) for p in inputs],
        out,
        model=model,
        timing_file=timing_file,
        outputs=outputs,
        labels=labels is not None,
        label_ids=label_ids,
        shard=shard,
    )
    existing = [p for p in plan.outputs if p.exists()]
    if existing and not overwrite:
        more = f", and {len(existing) - 1} more of this run's outputs" if len(existing) > 1 else ""
        raise OutputError(
            f"{existing[0]}: already exists{more} (pass --overwrite to replace them, or "
            "choose another --out)"
        )
    videos = [f for f in plan.files if f.suffix.lower() in VIDEO_SUFFIXES]
    if videos and importlib.util.find_spec("av") is None:
        raise UsageError(f"{videos[0]}: video needs PyAV: pip install 'enet[video]'")
    segmenter = Segmenter(
        model,
        backend=backend,
        device=device,
        resize=resize,
        compile=compile,
        bf16=bf16,
        parallel=True,
    )
    label_files = _label_files(labels, segmenter.classes, segmenter.input_size, plan)
    lock = f".enet.lock.shard-{shard[0]}-of-{shard[1]}" if shard else LOCK_NAME
    with locked_folder(out, "infer", lock_name=lock):
        return _run(
            segmenter,
            plan,
            out,
            label_files,
            model_name=str(model),
            outputs=outputs,
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


class _Writer:
    """Encodes and writes a video's outputs on a thread of its own, in order, while the model
    runs on the next frames; at most ``depth`` jobs wait (memory stays bounded). The first
    error stops the run where it is raised: at the next ``submit`` or at ``drain``."""

    def __init__(self, depth: int = 4) -> None:
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="enet-write")
        self.pending: deque[Future] = deque()
        self.depth = depth

    def submit(self, fn: Callable[..., object], *args: object) -> None:
        while len(self.pending) >= self.depth:
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(fn, *args))

    def drain(self) -> None:
        while self.pending:
            self.pending.popleft().result()

    def close(self) -> None:
        for job in self.pending:
            job.cancel()
        self.pool.shutdown(wait=True)


def _write_image_outputs(
    stem: Path,
    result: Segmentation,
    *,
    outputs: Collection[str],
    label_ids: np.ndarray | None,
    label_ids_path: Path,
    replace: bool,
) -> None:
    if "pred" in outputs or "color" in outputs:  # one compression of the class map for both
        coloured = png_bytes(result.ids, palette=result.classes.palette)
    if "pred" in outputs:
        write_bytes_atomic(
            stem.with_name(f"{stem.name}_pred.png"), grey_png(coloured), replace=replace
        )
    if label_ids is not None:  # the benchmark's naming: <city>_<seq>_<frame>*.png, label ids
        write_bytes_atomic(label_ids_path, png_bytes(label_ids[result.ids]), replace=replace)
    if "color" in outputs:
        write_bytes_atomic(stem.with_name(f"{stem.name}_color.png"), coloured, replace=replace)
    if "overlay" in outputs:
        path = stem.with_name(f"{stem.name}_overlay.jpg")
        write_bytes_atomic(path, jpeg_bytes(result.overlay()), replace=replace)


def _run(
    segmenter: Segmenter,
    plan: _Plan,
    out: Path,
    label_files: dict[Path, Path | None] | None,
    *,
    model_name: str,
    outputs: Collection[str],
    progress: bool,
    label_ids: bool,
    overwrite: bool,
) -> InferenceReport:
    """Images run in lanes, each reading, segmenting and writing one image: twice as many
    lanes as the model has turns, so that while some wait for the model the others decode
    and encode. Videos run one at a time, their frames in order (``_video``)."""
    classes = segmenter.classes
    cm = ConfusionMatrix(classes.num_classes, classes.void) if label_files is not None else None
    lut = cityscapes.label_id_table(classes) if label_ids else None
    report = InferenceReport(parallel=segmenter.parallel)
    lock = threading.Lock()  # the report and the metric, shared by the lanes

    def image(path: Path) -> None:
        stem = out / plan.stems[path]
        try:
            rgb = read_rgb(path, upright=True)
        except DataError as exc:
            print(f"warning: {exc}; skipped")
            with lock:
                report.failed.append(str(path))
            return
        result = segmenter(rgb)
        with lock:
            report.latency_ms.append(result.latency_ms)
            if cm is not None:
                _score(cm, result, path, label_files[path], segmenter.input_size)
        key = cityscapes.frame_key(stem.name)
        _write_image_outputs(
            stem,
            result,
            outputs=outputs,
            label_ids=lut,
            label_ids_path=out / "labelIds" / f"{key}_leftImg8bit.png",
            replace=overwrite,
        )
        with lock:
            report.processed += 1

    start = time.perf_counter()
    lanes = 2 * segmenter.parallel
    bar = tqdm(total=len(plan.files), desc="infer", unit="file", disable=not progress)
    running: deque[Future] = deque()
    with ThreadPoolExecutor(lanes, thread_name_prefix="enet-lane") as pool:
        try:
            for path in plan.files:
                if path.suffix.lower() in VIDEO_SUFFIXES:
                    while running:  # the images before it done: a video's frames come alone
                        running.popleft().result()
                        bar.update()
                    if _video(path, out / plan.stems[path], segmenter, report, outputs, overwrite):
                        report.processed += 1
                    bar.update()
                    continue
                running.append(pool.submit(image, path))
                while len(running) >= 2 * lanes:  # bounded: memory does not grow with inputs
                    running.popleft().result()
                    bar.update()
            while running:
                running.popleft().result()
                bar.update()
        finally:
            for job in running:
                job.cancel()
    bar.close()
    report.seconds = time.perf_counter() - start
    if report.processed == 0:
        raise DataError(f"none of the {len(plan.files)} inputs could be read (see the warnings)")
    if not report.latency_ms:
        raise DataError("the inputs held no frames")
    if cm is not None:
        _write_metric(cm, out, classes, model_name=model_name, replace=overwrite)
        iou = cm.iou()
        report.metric = {"mean_iou": float(iou.mean()), "iou_class": iou.tolist()}
    timing = {
        "backend": segmenter.backend,
        "input_size": list(segmenter.input_size) if segmenter.input_size else "native",
        **report.timing(),
    }
    write_json_atomic(plan.timing, timing, replace=overwrite)
    return report


def _video(
    path: Path,
    stem: Path,
    segmenter: Segmenter,
    report: InferenceReport,
    outputs: Collection[str],
    overwrite: bool,
) -> bool:
    """Segment one video into its outputs; False (with a warning) if it cannot be read."""

    def results() -> Iterator[Segmentation]:
        for result in segmenter.video(path):
            report.latency_ms.append(result.latency_ms)
            yield result

    frames = len(report.latency_ms)
    writer = _Writer()
    try:
        write_video_outputs(
            path,
            results(),
            stem,
            pred="pred" in outputs,
            overlay="overlay" in outputs,
            replace=overwrite,
            submit=writer.submit,
            drain=writer.drain,
        )
    except OutputError:
        raise
    except Exception as exc:
        del report.latency_ms[frames:]
        # FFmpeg's errors are DataErrors (video._opened); anything else, named here
        reason = str(exc) if isinstance(exc, EnetError) else f"{path}: unreadable video ({exc})"
        print(f"warning: {reason}; skipped, nothing written for it")
        report.failed.append(str(path))
        return False
    finally:
        writer.close()
    return True


def _score(
    cm: ConfusionMatrix,
    result: Segmentation,
    path: Path,
    label_file: Path | None,
    size: tuple[int, int],
) -> None:
    """Add one prediction at the model's size to the seed's 310 metric."""
    if label_file is None:
        print(f"warning: {path}: no label for it in --labels, not scored")
        return
    truth = read_label_classes(label_file, result.classes)
    truth = np.asarray(Image.fromarray(truth).resize(size, Image.NEAREST))
    cm.update(
        torch.from_numpy(result.model_ids.astype(np.int64)),
        torch.from_numpy(truth.astype(np.int64)),
    )


def _write_metric(
    cm: ConfusionMatrix, out: Path, classes: ClassSet, *, model_name: str, replace: bool
) -> None:
    if int(cm.mat.sum()) == 0:
        raise DataError("none of the inputs has a label in --labels; no metric written")
    iou = cm.iou()
    write_310_metric(out / "metric.txt", iou, replace=replace)
    names = [n for i, n in enumerate(classes.names) if i != classes.void]
    write_metric_json(
        out / "metric.json",
        iou,
        model_path=model_name,
        class_names=names,
        protocol="seed-310",
        replace=replace,
    )
    plot_confusion(cm.mat.cpu().numpy(), classes.names, out / "confusion.png", replace=replace)
