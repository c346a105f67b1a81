"""int8 static quantisation of an exported ENet with ONNX Runtime (QDQ, per-channel weights).

Activations are calibrated on real images (their ranges decide the int8 scales, so random
inputs would not do); the result is judged on other images by how often its per-pixel class
equals the fp32 model's. BatchNorm is folded into the convolutions before quantisation
(ONNX Runtime's pre-processing), so every convolution becomes one int8 kernel.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import EnetError
from .transforms import model_input

__all__ = [
    "QuantizationError",
    "argmax_agreement",
    "image_batches",
    "ort_runner",
    "ort_session",
    "quantize_int8",
]


class QuantizationError(EnetError):
    pass


def image_batches(paths: list[Path], size: tuple[int, int]) -> Iterator[np.ndarray]:
    """The model inputs of image files, resized to ``size`` = (width, height)."""
    for path in paths:
        try:
            with Image.open(path) as im:
                rgb = np.asarray(im.convert("RGB"))
        except Exception as exc:
            raise QuantizationError(f"{path}: unreadable image ({exc})") from None
        yield model_input(rgb, size)


def ort_session(path: Path, threads: int | None = None):
    """An ONNX Runtime CPU session (``threads`` intra-op threads; default: all cores)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_runner(path: Path, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """input -> logits through ONNX Runtime."""
    session = ort_session(path, threads)
    return lambda x: session.run(None, {"input": x})[0]


def argmax_agreement(
    a: Callable[[np.ndarray], np.ndarray],
    b: Callable[[np.ndarray], np.ndarray],
    images: list[Path],
    size: tuple[int, int],
) -> tuple[float, float]:
    """(share of pixels where two models pick the same class, worst single image)."""
    same = total = 0
    worst = 1.0
    for x in image_batches(images, size):
        pa, pb = a(x).argmax(1), b(x).argmax(1)
        agree = int((pa == pb).sum())
        same, total = same + agree, total + pa.size
        worst = min(worst, agree / pa.size)
    return same / total, worst


def latency_ms(path: Path, size: tuple[int, int], repeats: int = 5) -> float:
    """Median wall time of one 1 x 3 x H x W call (after one warm-up call)."""
    session = ort_session(path)
    x = np.random.default_rng(0).random((1, 3, size[1], size[0]), dtype=np.float32)
    session.run(None, {"input": x})
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, {"input": x})
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def quantize_int8(
    fp32: Path,
    out: Path,
    calibration: list[Path],
    size: tuple[int, int],
) -> None:
    """Write the QDQ int8 version of ``fp32`` to ``out`` (calibrated on ``calibration``)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise QuantizationError("int8 calibration needs at least one image (--calib DIR)")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = image_batches(calibration, size)

        def get_next(self) -> dict | None:
            x = next(self.batches, None)
            return None if x is None else {"input": x}

    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=False)
        quantize_static(
            str(prepared),
            str(Path(tmp) / "int8.onnx"),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            # Asymmetric uint8 activations agree best with fp32 here (symmetric int8 ones,
            # which OpenVINO could also run, lost 4 points of pixel agreement).
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            # Min-max over a few images: more images widened the ranges and lost agreement,
            # percentile calibration did no better (measured on the CamVid model).
            calibrate_method=CalibrationMethod.MinMax,
        )
        os.replace(Path(tmp) / "int8.onnx", out)
