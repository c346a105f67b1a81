"""``enet export``: an ONNX model of either variant, self-describing, checked against PyTorch.

Both variants export through torch's dynamo-based exporter; for ``pytorch-enet`` it writes
max-unpool as a scatter that ONNX Runtime runs (the TorchScript exporter refuses
``max_unpool2d``). The file is written to a temporary name and renamed only after ONNX
Runtime reproduces PyTorch's logits on a fixed input, so a failed export leaves nothing.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import model_from_checkpoint, read_checkpoint, resolve_checkpoint
from ..errors import EnetError
from ..fileio import check_output_file, output_path
from ..images import MAX_IMAGE_PIXELS
from ..metrics import same_class_pixels
from ..model import SIZE_MULTIPLE, check_input_size
from .backends import load_predictor
from .onnx_meta import onnx_metadata, set_onnx_metadata
from .quantize import Int8Scheme, argmax_agreement, latency_ms, ort_runner, quantize_int8

__all__ = ["ExportError", "export_onnx"]

#: Parity thresholds. Max-pool windows with float near-ties may flip an index in the
#: pytorch-enet variant, moving a few unpooled values; so the bulk is judged by the 99.9th
#: percentile and the decision by argmax agreement.
P999_TOLERANCE = 1e-3
ARGMAX_AGREEMENT = 0.9999


class ExportError(EnetError):
    pass


def _parity(path: Path, model, inputs: list[torch.Tensor]) -> dict:
    """ONNX Runtime against PyTorch on each input; the worst figure over the inputs."""
    run = ort_runner(path)
    diffs, agreements = [], []
    for x in inputs:
        got = run(x.numpy())
        with torch.inference_mode():
            want = model(x).numpy()
        diffs.append(np.abs(got - want))
        same, pixels = same_class_pixels(got, want)
        agreements.append(same / pixels)
    return {
        "max_abs_diff": max(float(d.max()) for d in diffs),
        "p999_abs_diff": max(float(np.quantile(d, 0.999)) for d in diffs),
        "argmax_agreement": min(agreements),
    }


def _translations() -> dict:
    """ONNX for enet's custom ops, each exactly one ONNX op (see ``enet.model``): the seed's
    asymmetric bilinear x2 is Resize (linear, asymmetric coordinates, edge clamped); its
    ``same`` max-pool and transposed conv pad at the end (bottom/right) only."""
    from onnxscript import opset18 as op

    def resize(x):
        scales = op.Constant(value_floats=[1.0, 1.0, 2.0, 2.0])
        return op.Resize(
            x, None, scales, mode="linear", coordinate_transformation_mode="asymmetric"
        )

    def max_pool(x):
        pooled, _ = op.MaxPool(x, kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1])
        return pooled

    def conv_transpose(x, weight):
        return op.ConvTranspose(x, weight, kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1])

    ops = torch.ops.enet
    return {
        ops.upsample2x_asymmetric.default: resize,
        ops.max_pool3x3s2_same.default: max_pool,
        ops.conv_transpose3x3s2_same.default: conv_transpose,
    }


def _dynamic_shapes(dynamic_batch: bool, dynamic: bool) -> dict | None:
    """Batch, and with ``dynamic`` height and width as multiples of 8 (what ENet takes)."""
    if not (dynamic_batch or dynamic):
        return None
    dims = {0: torch.export.Dim("batch", min=1, max=1024)}
    if dynamic:
        dims[2] = SIZE_MULTIPLE * torch.export.Dim("height_div8", min=1, max=1024)
        dims[3] = SIZE_MULTIPLE * torch.export.Dim("width_div8", min=1, max=1024)
    return {"x": dims}


def export_onnx(
    checkpoint: str | Path,
    out: str | Path,
    *,
    size: tuple[int, int] | None = None,
    dynamic_batch: bool = False,
    opset: int = 18,
    dynamic: bool = False,
    int8_calibration: list[Path] | None = None,
    int8_check: list[Path] | None = None,
    min_agreement: float = 0.95,
    int8_residual: str = "auto",
    overwrite: bool = False,
) -> dict:
    """Export ``checkpoint`` to ``out`` (eval graph, input ``input`` N x 3 x H x W RGB/255,
    output ``logits``); returns the parity report. ``size`` is (width, height), default the
    training size recorded in the checkpoint, else 1024x512. ``dynamic``: batch, height and
    width chosen at run time (height and width multiples of 8).

    With ``int8_calibration`` (images), ``out`` is the int8 QDQ model calibrated on them and
    the fp32 model is kept beside it as ``<stem>.fp32.onnx``; the report adds the argmax
    agreement with fp32 on ``int8_check`` (other images) and both latencies. Agreement
    below ``min_agreement`` is an error and leaves nothing. ``int8_residual``: see
    ``quantize_int8``; "auto" is "int8" for a checkpoint tuned by ``enet finetune-int8``,
    else "fp32". The rest of the scheme (leading fp32 convolutions, the weights' grid) is
    the one a tuned checkpoint's weights were trained on (``Int8Scheme.for_checkpoint``).
    Existing files are replaced only with ``overwrite``."""

    checkpoint, out = Path(checkpoint), Path(out)
    int8 = int8_calibration is not None
    inputs = [resolve_checkpoint(checkpoint), *(int8_calibration or []), *(int8_check or [])]
    for path in (out, out.with_suffix(".fp32.onnx")) if int8 else (out,):
        check_output_file(path, overwrite=overwrite, inputs=inputs)
    ckpt = read_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt, checkpoint).eval()
    w, h = size or tuple(ckpt.get("config", {}).get("size", ()) or (1024, 512))
    try:
        check_input_size(h, w)
    except ValueError as exc:
        raise ExportError(f"--size {w}x{h}: {exc}") from None
    if w * h > MAX_IMAGE_PIXELS:
        raise ExportError(f"--size {w}x{h}: more than {MAX_IMAGE_PIXELS:,} pixels (export smaller)")
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    shapes = _dynamic_shapes(dynamic_batch, dynamic)
    fp32_out = out.with_suffix(".fp32.onnx") if int8 else out
    with output_path(fp32_out, replace=overwrite) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            level = logging.getLogger("torch").level
            logging.getLogger("torch").setLevel(logging.ERROR)
            try:
                program = torch.onnx.export(
                    model,
                    (x,),
                    dynamo=True,
                    opset_version=opset,
                    input_names=["input"],
                    output_names=["logits"],
                    dynamic_shapes=shapes,
                    custom_translation_table=_translations(),
                    verbose=False,
                )
            finally:
                logging.getLogger("torch").setLevel(level)
        program.save(str(tmp))
        meta = {
            "enet.variant": model.variant,
            "enet.encoder_only": model.encoder_only,
            "enet.classes": ckpt["classes"],
            "enet.precision": "fp32",
            "enet.input_size": [w, h],
            "enet.dynamic": "batch, height, width" if dynamic else "batch" if dynamic_batch else "",
            "enet.input": "N x 3 x H x W float32, RGB scaled to [0, 1], no mean/std",
            "enet.source_checkpoint": checkpoint.name,
            "enet.provenance": ckpt.get("provenance", {}),
        }
        set_onnx_metadata(tmp, meta)
        inputs = [x]
        if dynamic:  # a second size and batch through the same graph
            inputs.append(torch.rand(2, 3, h + 2 * SIZE_MULTIPLE, w + SIZE_MULTIPLE))
        report = _parity(tmp, model, inputs)
        if (
            report["p999_abs_diff"] > P999_TOLERANCE
            or report["argmax_agreement"] < ARGMAX_AGREEMENT
        ):
            raise ExportError(
                f"{checkpoint}: ONNX Runtime does not reproduce PyTorch (max |diff| "
                f"{report['max_abs_diff']:.3g}, 99.9th pct {report['p999_abs_diff']:.3g}, "
                f"argmax agreement {report['argmax_agreement']:.5%}); nothing written"
            )
        if int8:
            scheme = Int8Scheme.for_checkpoint(ckpt.get("provenance", {}), int8_residual)
            report |= _quantize(
                tmp, out, (w, h), int8_calibration, int8_check, min_agreement, scheme, overwrite
            )
    return {"path": str(out), "size": [w, h], "opset": opset, **report}


def _quantize(
    fp32: Path,
    out: Path,
    size: tuple[int, int],
    calibration: list[Path],
    check: list[Path] | None,
    min_agreement: float,
    scheme: Int8Scheme,
    overwrite: bool,
) -> dict:
    """int8 QDQ of ``fp32`` into ``out`` (atomically), with its agreement and latencies as
    ``enet infer`` would run both files on this CPU (OpenVINO when installed)."""
    with output_path(out, replace=overwrite) as tmp:
        quantize_int8(fp32, tmp, calibration, size, scheme)
        meta = onnx_metadata(fp32)
        meta["enet.precision"] = scheme.describe()
        set_onnx_metadata(tmp, meta)
        check = check or calibration
        reference = load_predictor(fp32, device="cpu")
        quantized = load_predictor(tmp, device="cpu")
        agreement, worst = argmax_agreement(reference, quantized, check, size)
        report = {
            "int8_calibration_images": len(calibration),
            "int8_check_images": len(check),
            "int8_check_is_calibration": check is calibration,
            "int8_residual": scheme.residual,
            "int8_fp32_convs": scheme.fp32_convs,
            "int8_weight_bits": scheme.weight_bits,
            "int8_branches": scheme.branches,
            "int8_argmax_agreement": agreement,
            "int8_worst_image_agreement": worst,
            "backend": quantized.name,
            "fp32_latency_ms": latency_ms(reference, size),
            "int8_latency_ms": latency_ms(quantized, size),
        }
        if agreement < min_agreement:
            raise ExportError(
                f"{out}: int8 model agrees with fp32 on {agreement:.3%} of pixels, below "
                f"{min_agreement:.1%} (use more or more typical --calib images); nothing written"
            )
        meta["enet.int8"] = report
        set_onnx_metadata(tmp, meta)
    return report
