"""int8 static quantisation of an exported ENet with ONNX Runtime (QDQ, per-channel weights).

Activations are calibrated on real images (their ranges decide the int8 scales, so random
inputs would not do); the result is judged on other images by how often its per-pixel class
equals the fp32 model's. BatchNorm is folded into the convolutions before quantisation
(ONNX Runtime's pre-processing), so every convolution becomes one int8 kernel.

Every rounding costs agreement (ENet's margins between classes are small), so the scheme
rounds where int8 pays and nowhere else. Measured on the shipped CamVid model, calibrated on
the 4 CamVid train/val frames of ../shared/data, agreement on the 7 other real frames there:

- every op ONNX Runtime can quantise, min-max ranges (its defaults): 90.0% of pixels;
- only the convolutions' inputs and weights (outputs, adds, PReLUs, pools stay fp32): 95.8%;
- their input ranges at the 99.99th percentile instead of min-max (outliers no longer
  stretch the int8 steps): 97.6%;
- the first ``FP32_LEADING_CONVS`` convolutions in fp32 too (initial block and first
  downsampling: one rounding there costs the most agreement, and they are ~2% of the
  FLOPs): 98.2%.

It is also a file OpenVINO runs in int8: OpenVINO crashes on quantised PRelu or
BatchNormalization parameters and computes wrong results for quantised Slice/Reshape/Mul.
"""

from __future__ import annotations

import contextlib
import io
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
    "INT8_SCHEME",
    "QuantizationError",
    "argmax_agreement",
    "image_batches",
    "ort_runner",
    "quantize_int8",
]


#: Convolutions left in fp32 at the start of the graph (topological order).
FP32_LEADING_CONVS = 4
#: The ``enet.precision`` of an int8 export.
INT8_SCHEME = (
    "int8 QDQ: per-channel int8 weights, uint8 convolution inputs (99.99th percentile), "
    f"first {FP32_LEADING_CONVS} convolutions fp32"
)


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


def ort_runner(path: Path, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """input -> logits through an ONNX Runtime CPU session (``threads``: default all cores)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
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


def latency_ms(
    run: Callable[[np.ndarray], np.ndarray], size: tuple[int, int], repeats: int = 5
) -> float:
    """Median wall time of one 1 x 3 x H x W call (after one warm-up call)."""
    x = np.random.default_rng(0).random((1, 3, size[1], size[0]), dtype=np.float32)
    run(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(x)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def quantize_int8(
    fp32: Path,
    out: Path,
    calibration: list[Path],
    size: tuple[int, int],
) -> None:
    """Write the QDQ int8 version of ``fp32`` to ``out`` (calibrated on ``calibration``)."""
    import onnx
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
        """One image per range: ONNX Runtime keeps every calibrated tensor of a range in
        memory (~0.6 GB per 1024x512 image), so it is fed one at a time (histograms merge)."""

        def __init__(self) -> None:
            self.batches: Iterator[np.ndarray] = iter(())

        def __len__(self) -> int:
            return len(calibration)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.batches = image_batches(calibration[start_index:end_index], size)

        def get_next(self) -> dict | None:
            x = next(self.batches, None)
            return None if x is None else {"input": x}

    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=False)
        convs = [n.name for n in onnx.load(str(prepared)).graph.node if n.op_type == "Conv"]
        with contextlib.redirect_stdout(io.StringIO()):  # its histogram chatter
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
                calibrate_method=CalibrationMethod.Percentile,
                op_types_to_quantize=["Conv", "ConvTranspose"],
                nodes_to_exclude=convs[:FP32_LEADING_CONVS],
                extra_options={
                    "OpTypesToExcludeOutputQuantization": ["Conv", "ConvTranspose"],
                    "CalibPercentile": 99.99,
                    "CalibStridedMinMax": 1,  # any calibration method: one image per range
                },
            )
        os.replace(Path(tmp) / "int8.onnx", out)
