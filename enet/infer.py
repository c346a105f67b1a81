"""``enet infer``: segment images or folders with an ONNX model or a checkpoint.

One predictor interface, three backends (OpenVINO, ONNX Runtime, PyTorch). Any input size:
the image is padded to a multiple of 8 and the prediction cropped back, or (``resize``, and
always for an ONNX model with a fixed input size) resized to the model's size and the
prediction resized back by nearest. Per image: ``<stem>_pred.png`` (class index per pixel),
``_color.png`` and ``_overlay.png``, in the input's sub-folder mirrored under the output
folder. With ``labels``, the seed's 310-inference metric (``metric.txt``) is computed at the
model's size as its ``eval310.py`` does. A file that cannot be read is reported and
skipped; the run goes on. Nothing is written before every output name is known to be free.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys
import time
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .checkpoint import bundled_models, load_checkpoint, resolve_checkpoint
from .data import cityscapes
from .data.cityscapes import frame_key, to_class_ids
from .data.classes import ClassSet, check_same_classes, class_set
from .data.source import check_label_values
from .errors import DataError, EnetError, OutputError, UsageError
from .evaluate import class_to_label_id
from .fileio import (
    check_not_input,
    output_folder,
    output_path,
    write_json_atomic,
    write_png_atomic,
    write_text_atomic,
)
from .folders import locked_folder
from .images import read_label, read_rgb
from .metrics import ConfusionMatrix
from .model import SIZE_MULTIPLE
from .openvino_graph import rewrite_for_this_cpu
from .runtime import resolve_device
from .transforms import model_input
from .visualize import colorize, overlay

__all__ = [
    "InferenceReport",
    "compile_for_inference",
    "find_inputs",
    "has_openvino",
    "keep_freed_memory",
    "load_predictor",
    "openvino_computes_bf16",
    "run_inference",
]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}


class OnnxPredictor:
    """ONNX Runtime on an exported file; classes and input size from its metadata."""

    def __init__(self, path: Path, device: str = "auto") -> None:
        import onnxruntime as ort

        from .export import onnx_metadata

        meta = onnx_metadata(path)
        if "enet.classes" not in meta:
            raise UsageError(f"{path}: no enet metadata; export it with enet export")
        providers = ["CPUExecutionProvider"]
        on_gpu = resolve_device(device).type == "cuda"
        if on_gpu and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), providers=providers)
        except Exception as exc:
            reason = " ".join(str(exc).split())[:160]
            raise UsageError(f"{path}: ONNX Runtime cannot load it ({reason})") from None
        self.classes = ClassSet.from_dict(meta["enet.classes"])
        shape = self.session.get_inputs()[0].shape
        fixed = all(isinstance(d, int) for d in shape[2:])
        self.fixed_size = (shape[3], shape[2]) if fixed else None
        self.name = f"onnxruntime ({self.session.get_providers()[0]})"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"input": x})[0]


class OpenVinoPredictor:
    """OpenVINO on an exported file: on x86 CPUs it runs ENet well ahead of ONNX Runtime
    (fused convolutions, reused buffers, int8 kernels for ``enet export --int8`` files), the
    more so after the rewrites of ``enet.openvino_graph`` that pay on the CPU it runs on; see
    bench/latency.py.

    A ``--dynamic`` file runs each input shape on the dynamic graph the first time it comes,
    and on a graph compiled for that shape alone from the second time on (a video's frames, a
    folder of one camera's images): at 1024x512 on a 2-core AVX2 CPU the fixed-shape graph
    ran 1.49x (fp32) and 1.55x (int8) faster than the dynamic one, after a compile of 0.4
    and 1.7 s (``bench/dynamic_shapes.py``)."""

    #: how many input shapes seen once it remembers (to compile a graph if they come again)
    SHAPES_REMEMBERED = 64

    def __init__(
        self,
        path: Path,
        threads: int | None = None,
        shapes_kept: int = 4,
        skip_rewrites: Collection[str] = (),
        bf16: bool = False,
    ) -> None:
        """``shapes_kept``: how many fixed-shape graphs of a dynamic file to keep (0: always
        the dynamic graph). ``skip_rewrites``: rewrites of the graph (``enet.openvino_graph``:
        each applies where it makes ENet faster on this CPU) to leave out. ``bf16``: compute
        an fp32 file in bf16, on CPUs that do so natively (AMX, AVX512_BF16)."""
        import openvino as ov

        from .export import onnx_metadata

        meta = onnx_metadata(path)
        if "enet.classes" not in meta:
            raise UsageError(f"{path}: no enet metadata; export it with enet export")
        if not _openvino_runs(meta):
            raise UsageError(
                f"{path}: an int8 file of the first scheme, which OpenVINO cannot run; "
                "re-export it with enet export --int8 or use --backend onnx"
            )
        self.core = ov.Core()
        self.int8 = meta.get("enet.precision") != "fp32"
        if bf16 and self.int8:
            raise UsageError(f"{path}: --bf16 computes fp32 files in bf16; this one is int8")
        if bf16 and not openvino_computes_bf16(self.core):
            raise UsageError("--bf16: this CPU does not compute bf16 natively (AMX, AVX512_BF16)")
        precision = "bf16" if bf16 else "f32"
        self.config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = threads
        self.skip_rewrites = skip_rewrites
        self.shapes_kept = shapes_kept
        try:
            self.model = self.core.read_model(str(path))
            self.request = self._compile(self.model.clone())
        except Exception as exc:
            raise UsageError(f"{path}: OpenVINO cannot compile it ({exc})") from None
        self.classes = ClassSet.from_dict(meta["enet.classes"])
        shape = self.model.input(0).get_partial_shape()
        self.static = shape.is_static
        fixed = shape[2].is_static and shape[3].is_static
        self.fixed_size = (shape[3].get_length(), shape[2].get_length()) if fixed else None
        self.output_stride = 8 if meta.get("enet.encoder_only") else 1
        #: a dynamic file's graphs compiled for one input shape, and the shapes seen once
        self.shape_requests: OrderedDict[tuple[int, ...], object] = OrderedDict()
        self.shapes_seen: OrderedDict[tuple[int, ...], None] = OrderedDict()
        self.logits: np.ndarray | None = None
        self.binding: tuple | None = None  # the request writing into self.logits, and where
        self.tensor = ov.Tensor  # wraps our logits array for a request
        self.name = "openvino (CPU, bf16)" if bf16 else "openvino (CPU)"

    def _compile(self, model):
        """An infer request for ``model``, which it changes."""
        import openvino as ov

        model = rewrite_for_this_cpu(model, self.int8, self.core, self.skip_rewrites)
        # logits as OpenVINO computes them, channels last: its reorder back to N x C x H x W
        # took 7-8 of ~100 ms at 1024x512 (__call__ returns an N x C x H x W view)
        post = ov.preprocess.PrePostProcessor(model)
        post.output().model().set_layout(ov.Layout("NCHW"))
        post.output().tensor().set_layout(ov.Layout("NHWC"))
        return self.core.compile_model(post.build(), "CPU", self.config).create_infer_request()

    def _request_for(self, shape: tuple[int, ...]):
        if self.static or not self.shapes_kept:
            return self.request
        if shape in self.shape_requests:
            self.shape_requests.move_to_end(shape)
            return self.shape_requests[shape]
        if shape not in self.shapes_seen:
            self.shapes_seen[shape] = None
            if len(self.shapes_seen) > self.SHAPES_REMEMBERED:
                self.shapes_seen.popitem(last=False)
            return self.request
        model = self.model.clone()
        model.reshape({0: list(shape)})
        self.shape_requests[shape] = request = self._compile(model)
        if len(self.shape_requests) > self.shapes_kept:
            self.shape_requests.popitem(last=False)
        return request

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """OpenVINO writes the logits straight into an array of ours (copying them out of its
        own buffer took 6-9 of ~80 ms at 1024x512). The array is reused while nothing else
        refers to it, else a new one is made, so returned logits stay valid. (A request keeps
        a pointer to it, not a reference: the predictor holds it.)"""
        request = self._request_for(x.shape)
        n, _, h, w = x.shape
        s = self.output_stride
        shape = (n, h // s, w // s, self.classes.num_classes)
        # 2 = self.logits + getrefcount's argument: no caller holds it or a view of it
        if self.logits is None or self.logits.shape != shape or sys.getrefcount(self.logits) > 2:
            self.logits = np.empty(shape, np.float32)
        binding = (request, self.logits.ctypes.data, shape)  # not the array: its refcount
        old = self.binding
        if old is None or old[0] is not request or old[1:] != binding[1:]:
            request.set_output_tensor(0, self.tensor(self.logits, shared_memory=True))
            self.binding = binding
        request.infer({0: x})
        return np.moveaxis(self.logits, -1, 1)


def has_openvino() -> bool:
    return importlib.util.find_spec("openvino") is not None


def openvino_computes_bf16(core) -> bool:
    """Whether OpenVINO's CPU plugin (``core``: an ``openvino.Core``) computes bf16 natively
    on this CPU (AMX, AVX512_BF16), where ``--bf16`` pays."""
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


#: ``enet.precision`` of the first int8 exports, which quantised PRelu slopes: OpenVINO
#: crashes (segfaults) compiling them.
_FIRST_INT8_SCHEME = "int8 QDQ, per-channel weights"


def _openvino_runs(meta: dict) -> bool:
    return meta.get("enet.precision") != _FIRST_INT8_SCHEME


def compile_for_inference(model: torch.nn.Module) -> torch.nn.Module:
    """torch.compile with freezing: weights become constants and BatchNorm folds into the
    convolutions. PyTorch's fastest fp32 path on a CPU (bench/latency.py), after a
    compilation of a minute or more per input size: worth it for folders and videos, not one
    image. On a CPU the graph's wrapper is C++ too (5-8% faster at 1024x512 on 2 cores:
    ENet's ~100 kernels each cost a Python call otherwise)."""
    options = {"freezing": True}
    if next(model.parameters()).device.type == "cpu":
        options["cpp_wrapper"] = True
    return torch.compile(model.eval(), options=options)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory() -> None:
    """Keep large freed blocks in the process (glibc, where present). By default glibc hands
    each one back to the OS, so every eager 512x1024 call page-faults its activations in
    anew: ~20,000 page faults a call, gone with this (tests/test_infer.py). ONNX Runtime,
    OpenVINO and compiled graphs reuse their own buffers and do not need it."""
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # glibc's ceiling: smaller blocks come from the heap
    mallopt(_M_TRIM_THRESHOLD, 1 << 30)  # and stay there when freed


class TorchPredictor:
    """PyTorch on an enet checkpoint (inference mode, channels_last; compiled on request)."""

    def __init__(self, path: Path, device: str = "auto", compile: bool = False) -> None:
        self.device = resolve_device(device)
        model = load_checkpoint(path, self.device).to(memory_format=torch.channels_last)
        if model.encoder_only:
            raise UsageError(f"{path}: an encoder checkpoint predicts at 1/8; use a full ENet")
        self.classes = model.classes
        self.model = compile_for_inference(model) if compile else model
        if self.device.type == "cpu":
            keep_freed_memory()
        self.fixed_size = None
        self.name = f"pytorch{' compiled' if compile else ''} ({self.device.type})"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x).to(self.device).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self.model(t).float().cpu().numpy()


def load_predictor(
    model: str | Path,
    backend: str = "auto",
    device: str = "auto",
    compile: bool = False,
    bf16: bool = False,
):
    """``model``: an ``.onnx`` file, an enet checkpoint or a bundled model's name (camvid).
    ``backend``: auto, onnx (ONNX Runtime), openvino or torch. auto takes the fastest that
    fits: OpenVINO for an ONNX file (fp32 or int8) on the CPU when installed, ONNX Runtime
    for other ONNX files (CUDA, the first int8 exports), PyTorch for checkpoints. ``compile``:
    PyTorch only, see ``compile_for_inference``; ``bf16``: OpenVINO only."""
    path = resolve_checkpoint(model)
    if not path.is_file():
        known = ", ".join(bundled_models())
        raise UsageError(f"{path}: no such model file (bundled models: {known})")
    is_onnx = path.suffix == ".onnx"
    if compile and is_onnx:
        raise UsageError(f"{path}: --compile is for checkpoints (the PyTorch backend)")
    if backend == "auto":
        backend = "torch"
        if is_onnx:
            from .export import onnx_metadata

            runs = _openvino_runs(onnx_metadata(path))
            cpu = resolve_device(device).type == "cpu"
            backend = "openvino" if runs and cpu and has_openvino() else "onnx"
    if backend in ("onnx", "openvino") and not is_onnx:
        raise UsageError(f"{path}: --backend {backend} needs an .onnx file (enet export makes one)")
    if backend == "torch" and is_onnx:
        raise UsageError(f"{path}: --backend torch needs an enet checkpoint, not ONNX")
    if bf16 and backend != "openvino":
        raise UsageError(f"{path}: --bf16 runs fp32 ONNX files on OpenVINO, on a CPU")
    if backend == "openvino":
        if not has_openvino():
            raise UsageError("--backend openvino needs OpenVINO: pip install 'enet[openvino]'")
        return OpenVinoPredictor(path, bf16=bf16)
    if backend == "onnx":
        return OnnxPredictor(path, device)
    return TorchPredictor(path, device, compile)


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


def _label_index(folder: Path) -> dict[str, Path]:
    """``<city>_<seq>_<frame>`` -> label file (labelTrainIds preferred, else labelIds)."""
    index: dict[str, Path] = {}
    for suffix in ("_gtFine_labelIds.png", "_gtFine_labelTrainIds.png"):
        for f in folder.rglob(f"*{suffix}"):  # exact suffix, not the seed's rstrip (SPEC 8.11)
            index[f.name[: -len(suffix)]] = f
    return index


def _read_label(path: Path, classes: ClassSet) -> np.ndarray:
    """A Cityscapes ``labelIds`` or ``labelTrainIds`` file as the model's class ids; values
    outside the file's table are an error naming it."""
    label = read_label(path)
    if path.name.endswith("_labelIds.png"):
        check_label_values(label, cityscapes, path)
        return to_class_ids(label)
    bad = np.unique(label[(label >= classes.num_classes) & (label != 255)])
    if bad.size:
        raise DataError(
            f"{path}: trainIds {bad.tolist()[:6]} outside 0..{classes.num_classes - 1} and "
            "255 (is it the right label file?)"
        )
    out = label.astype(np.uint8)
    out[label == 255] = classes.void if classes.void is not None else 255
    return out


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


def _segment_video(path: Path, out_stem: Path, segment, classes: ClassSet, replace: bool) -> int:
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


def _transcode(path: Path, tmp: Path, frames_dir: Path, segment, classes: ClassSet) -> int:
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


def _planned_outputs(
    files: list[Path], stems: dict[Path, Path], out: Path, pictures: bool
) -> list[Path]:
    """Every file and folder a run over ``files`` writes below ``out`` (but for the
    run-wide ones: timing, metric, label ids)."""
    planned = []
    for f in files:
        stem = out / stems[f]
        if f.suffix.lower() in VIDEO_SUFFIXES:
            names = ["_pred", "_overlay.mp4"]
        else:
            names = ["_pred.png", *(["_color.png", "_overlay.png"] if pictures else [])]
        planned += [stem.with_name(stem.name + n) for n in names]
    return planned


def run_inference(
    model: str | Path,
    inputs: list[str | Path],
    out: str | Path,
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
    *,
    overwrite: bool = False,
) -> InferenceReport:
    """Segment every input image; see the module docstring for what is written. Outputs
    mirror the inputs' sub-folders under ``out`` (``output_stems``); files below ``out`` are
    never read as inputs, and existing outputs are replaced only with ``overwrite``."""
    out = Path(out)
    inputs = [Path(p) for p in inputs]
    for p in inputs:
        if p.is_dir() and (
            p.resolve() == out.resolve() or p.resolve().is_relative_to(out.resolve())
        ):
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
    keys = [frame_key(stems[f].name) for f in files]
    if label_ids and len(set(keys)) < len(keys):
        double = sorted({k for k in keys if keys.count(k) > 1})
        raise UsageError(
            f"--label-ids names outputs by Cityscapes frame, and several inputs are frame "
            f"{double[0]} (give them to separate runs)"
        )
    timing_path = Path(timing_file) if timing_file else out / "timing.json"
    if timing_file:
        check_not_input(timing_path, [resolve_checkpoint(model), *inputs])
    planned = [*_planned_outputs(files, stems, out, pictures), timing_path]
    if labels:
        planned.append(out / "metric.txt")
    if label_ids:
        planned += [out / "labelIds" / f"{k}_leftImg8bit.png" for k in keys]
    if len(set(planned)) < len(planned):
        double = next(p for p in planned if planned.count(p) > 1)
        raise UsageError(f"{double}: two inputs would write this output (rename one of them)")
    existing = [p for p in planned if p.exists()]
    if existing and not overwrite:
        more = f", and {len(existing) - 1} more of this run's outputs" if len(existing) > 1 else ""
        raise OutputError(
            f"{existing[0]}: already exists{more} (pass --overwrite to replace them, or "
            "choose another --out)"
        )
    predictor = load_predictor(model, backend, device, compile, bf16)
    with locked_folder(out, "infer"):
        return _infer(
            predictor,
            files,
            stems,
            out,
            resize,
            labels,
            timing_path,
            pictures,
            progress,
            label_ids,
            overwrite,
        )


def _infer(
    predictor,
    files: list[Path],
    stems: dict[Path, Path],
    out: Path,
    resize: tuple[int, int] | None,
    labels: str | Path | None,
    timing_path: Path,
    pictures: bool,
    progress: bool,
    label_ids: bool,
    overwrite: bool,
) -> InferenceReport:
    classes = predictor.classes
    target = predictor.fixed_size or resize
    label_files = None
    if labels:
        check_same_classes(classes, class_set("cityscapes"), "the model", "--labels")
        if not Path(labels).is_dir():
            raise UsageError(f"{labels}: no such folder (--labels takes a gtFine folder)")
        label_files = _label_index(Path(labels))
        if not label_files:
            raise UsageError(f"{labels}: no *_gtFine_labelIds.png or *_labelTrainIds.png in it")
        if target is None:
            raise UsageError(
                "--labels computes the seed's metric at the model's size: give --resize"
            )
    cm = ConfusionMatrix(classes.num_classes, classes.void) if label_files is not None else None
    lut = class_to_label_id(classes) if label_ids else None
    videos = [f for f in files if f.suffix.lower() in VIDEO_SUFFIXES]
    if videos and importlib.util.find_spec("av") is None:
        raise UsageError(f"{videos[0]}: video needs PyAV: pip install 'enet[video]'")
    report = InferenceReport()

    def segment(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """H x W x 3 uint8 -> class indices at the model's resolution and at the input's."""
        h, w = rgb.shape[:2]
        x = model_input(rgb, target)
        mh, mw = x.shape[2:]
        x = np.pad(x, ((0, 0), (0, 0), (0, -mh % SIZE_MULTIPLE), (0, -mw % SIZE_MULTIPLE)), "edge")
        start = time.perf_counter()
        logits = predictor(x)
        report.latency_ms.append((time.perf_counter() - start) * 1e3)
        small = logits[0].argmax(0)[:mh, :mw].astype(np.uint8)
        if small.shape == (h, w):
            return small, small
        return small, np.asarray(Image.fromarray(small).resize((w, h), Image.NEAREST))

    for path in tqdm(files, desc="infer", unit="file", disable=not progress):
        stem = out / stems[path]
        if path.suffix.lower() in VIDEO_SUFFIXES:
            try:
                _segment_video(path, stem, segment, classes, overwrite)
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
        key = frame_key(stem.name)
        if cm is not None:
            label_file = label_files.get(key)
            if label_file is None:
                print(f"warning: {path}: no label <{key}>_gtFine_label*Ids.png, not scored")
            else:
                lbl = Image.fromarray(_read_label(label_file, classes)).resize(
                    target, Image.NEAREST
                )
                cm.update(
                    torch.from_numpy(small.astype(np.int64)),
                    torch.from_numpy(np.asarray(lbl).astype(np.int64)),
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
        raise DataError(f"none of the {len(files)} inputs could be read (see the warnings)")
    if not report.latency_ms:
        raise DataError("the inputs held no frames")
    if cm is not None:
        if int(cm.mat.sum()) == 0:
            raise DataError(f"{labels}: none of the inputs has a label there; no metric written")
        iou = cm.iou()
        text = f"mean_iou:  {float(iou.mean())}\niou_class:  {iou}\n"
        write_text_atomic(out / "metric.txt", text, replace=overwrite)
        report.metric = {"mean_iou": float(iou.mean()), "iou_class": iou.tolist()}
    timing = {
        "backend": predictor.name,
        "input_size": list(target) if target else "native",
        **report.timing(),
    }
    write_json_atomic(timing_path, timing, replace=overwrite)
    return report
