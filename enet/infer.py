"""``enet infer``: segment images or folders with an ONNX model or a checkpoint.

One predictor interface, two backends (ONNX Runtime, PyTorch). Any input size: the image is
padded to a multiple of 8 and the prediction cropped back, or (``resize``, and always for an
ONNX model with a fixed input size) resized to the model's size and the prediction resized
back by nearest. Per image: ``<stem>_pred.png`` (class index per pixel), ``_color.png`` and
``_overlay.png``. With ``labels``, the seed's 310-inference metric (``metric.txt``) is computed
at the model's size as its ``eval310.py`` does. A file that cannot be read is reported and
skipped; the run goes on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from .checkpoint import bundled_models, load_checkpoint, resolve_checkpoint
from .data.cityscapes import frame_key, to_class_ids
from .data.classes import ClassSet
from .errors import EnetError, UsageError
from .fileio import atomic_write, write_json_atomic
from .metrics import ConfusionMatrix
from .model import SIZE_MULTIPLE
from .visualize import colorize, overlay

__all__ = ["InferenceReport", "load_predictor", "run_inference"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


class OnnxPredictor:
    """ONNX Runtime on an exported file; classes and input size from its metadata."""

    def __init__(self, path: Path, device: str = "auto") -> None:
        import onnxruntime as ort

        from .export import onnx_metadata

        providers = ["CPUExecutionProvider"]
        if device in ("auto", "cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), providers=providers)
        except Exception as exc:
            raise UsageError(f"{path}: not a loadable ONNX model ({exc})") from None
        meta = onnx_metadata(path)
        if "enet.classes" not in meta:
            raise UsageError(f"{path}: no enet metadata; export it with enet export")
        self.classes = ClassSet.from_dict(meta["enet.classes"])
        shape = self.session.get_inputs()[0].shape
        fixed = all(isinstance(d, int) for d in shape[2:])
        self.fixed_size = (shape[3], shape[2]) if fixed else None
        self.name = f"onnxruntime ({self.session.get_providers()[0]})"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"input": x})[0]


class TorchPredictor:
    """PyTorch eager on an enet checkpoint (inference mode, channels_last)."""

    def __init__(self, path: Path, device: str = "auto") -> None:
        dev = "cuda" if device == "auto" and torch.cuda.is_available() else device
        self.device = torch.device("cpu" if dev == "auto" else dev)
        self.model = load_checkpoint(path, self.device).to(memory_format=torch.channels_last)
        if self.model.encoder_only:
            raise UsageError(f"{path}: an encoder checkpoint predicts at 1/8; use a full ENet")
        self.classes = self.model.classes
        self.fixed_size = None
        self.name = f"pytorch ({self.device.type})"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x).to(self.device).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self.model(t).float().cpu().numpy()


def load_predictor(model: str | Path, backend: str = "auto", device: str = "auto"):
    """``model``: an ``.onnx`` file, an enet checkpoint or a bundled model's name (camvid).
    ``backend``: auto, onnx, torch."""
    path = resolve_checkpoint(model)
    if not path.is_file():
        known = ", ".join(bundled_models())
        raise UsageError(f"{path}: no such model file (bundled models: {known})")
    is_onnx = path.suffix == ".onnx"
    if backend == "auto":
        backend = "onnx" if is_onnx else "torch"
    if backend == "onnx" and not is_onnx:
        raise UsageError(f"{path}: --backend onnx needs an .onnx file (enet export makes one)")
    if backend == "torch" and is_onnx:
        raise UsageError(f"{path}: --backend torch needs an enet checkpoint, not ONNX")
    return OnnxPredictor(path, device) if backend == "onnx" else TorchPredictor(path, device)


def _inputs(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found += sorted(
                f
                for f in p.rglob("*")
                if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file() and not f.is_symlink()
            )
        else:
            found.append(p)
    return found


def _label_index(folder: Path) -> dict[str, Path]:
    """``<city>_<seq>_<frame>`` -> label file (labelTrainIds preferred, else labelIds)."""
    index: dict[str, Path] = {}
    for suffix in ("_gtFine_labelIds.png", "_gtFine_labelTrainIds.png"):
        for f in folder.rglob(f"*{suffix}"):  # exact suffix, not the seed's rstrip (SPEC 8.11)
            index[f.name[: -len(suffix)]] = f
    return index


def _read_label(path: Path, classes: ClassSet) -> np.ndarray:
    label = np.asarray(Image.open(path))
    if path.name.endswith("_labelIds.png"):
        return to_class_ids(label)
    out = label.copy()
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
            "images": self.processed,
            "latency_ms": {
                "mean": float(lat.mean()),
                "p50": float(np.percentile(lat, 50)),
                "p90": float(np.percentile(lat, 90)),
            },
            "throughput_fps": float(1000 / lat.mean()),
        }


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
) -> InferenceReport:
    """Segment every input image; see the module docstring for what is written."""
    predictor = load_predictor(model, backend, device)
    classes = predictor.classes
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = _inputs([Path(p) for p in inputs])
    if not files:
        raise UsageError(f"no images found in {', '.join(str(p) for p in inputs)}")
    target = predictor.fixed_size or resize
    label_files = _label_index(Path(labels)) if labels else None
    if label_files is not None and target is None:
        raise UsageError("--labels computes the seed's metric at the model's size: give --resize")
    cm = ConfusionMatrix(classes.num_classes, classes.void) if label_files is not None else None
    report = InferenceReport()
    for path in tqdm(files, desc="infer", unit="img", disable=not progress):
        try:
            with Image.open(path) as im:
                image = im.convert("RGB")
        except Exception as exc:
            print(f"warning: {path}: unreadable image, skipped ({exc})")
            report.failed.append(str(path))
            continue
        w, h = image.size
        if target is not None:
            arr = np.asarray(image.resize(target, Image.BILINEAR))
        else:
            arr = np.asarray(image)
        x = torch.from_numpy(arr.copy()).permute(2, 0, 1)[None].float().div_(255)
        ph = -x.shape[2] % SIZE_MULTIPLE
        pw = -x.shape[3] % SIZE_MULTIPLE
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        start = time.perf_counter()
        logits = predictor(x.numpy())
        report.latency_ms.append((time.perf_counter() - start) * 1e3)
        pred = logits[0].argmax(0)[: arr.shape[0], : arr.shape[1]].astype(np.uint8)
        key = frame_key(path.stem)
        if cm is not None:
            label_file = label_files.get(key)
            if label_file is None:
                print(f"warning: {path}: no label <{key}>_gtFine_label*Ids.png, not scored")
            else:
                lbl = Image.fromarray(_read_label(label_file, classes)).resize(
                    target, Image.NEAREST
                )
                cm.update(
                    torch.from_numpy(pred.astype(np.int64)),
                    torch.from_numpy(np.asarray(lbl).astype(np.int64)),
                )
        if pred.shape != (h, w):
            pred = np.asarray(Image.fromarray(pred).resize((w, h), Image.NEAREST))
        rel = path.stem
        atomic_write(out / f"{rel}_pred.png", lambda f, p=pred: Image.fromarray(p).save(f, "PNG"))
        if pictures:
            color = colorize(pred, classes.palette)
            atomic_write(
                out / f"{rel}_color.png", lambda f, c=color: Image.fromarray(c).save(f, "PNG")
            )
            mixed = overlay(np.asarray(image), color)
            atomic_write(
                out / f"{rel}_overlay.png", lambda f, m=mixed: Image.fromarray(m).save(f, "PNG")
            )
        report.processed += 1
    if report.processed == 0:
        raise EnetError(f"none of the {len(files)} inputs could be read")
    if cm is not None:
        iou = cm.iou()
        text = f"mean_iou:  {float(iou.mean())}\niou_class:  {iou}\n"
        atomic_write(out / "metric.txt", lambda f: f.write(text), text=True)
        report.metric = {"mean_iou": float(iou.mean()), "iou_class": iou.tolist()}
    timing = {
        "backend": predictor.name,
        "input_size": list(target) if target else "native",
        **report.timing(),
    }
    write_json_atomic(Path(timing_file) if timing_file else out / "timing.json", timing)
    return report
