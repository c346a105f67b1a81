"""``enet export``: an ONNX model of either variant, self-describing, checked against PyTorch.

Both variants export through torch's dynamo-based exporter; for ``pytorch-enet`` it writes
max-unpool as a scatter that ONNX Runtime runs (the TorchScript exporter refuses
``max_unpool2d``). The file is written to a temporary name and renamed only after ONNX
Runtime reproduces PyTorch's logits on a fixed input, so a failed export leaves nothing.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from .checkpoint import model_from_checkpoint, read_checkpoint
from .errors import EnetError
from .model import check_input_size

__all__ = ["ExportError", "export_onnx", "onnx_metadata"]

#: Parity thresholds. Max-pool windows with float near-ties may flip an index in the
#: pytorch-enet variant, moving a few unpooled values; so the bulk is judged by the 99.9th
#: percentile and the decision by argmax agreement.
P999_TOLERANCE = 1e-3
ARGMAX_AGREEMENT = 0.9999


class ExportError(EnetError):
    pass


def _parity(path: Path, model, x: torch.Tensor) -> dict:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.numpy()})[0]
    with torch.inference_mode():
        want = model(x).numpy()
    diff = np.abs(got - want)
    return {
        "max_abs_diff": float(diff.max()),
        "p999_abs_diff": float(np.quantile(diff, 0.999)),
        "argmax_agreement": float((got.argmax(1) == want.argmax(1)).mean()),
    }


def onnx_metadata(path: str | Path) -> dict:
    """The enet metadata stored in an exported ONNX file (values decoded from JSON)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: json.loads(p.value) for p in model.metadata_props if p.key.startswith("enet.")}


def export_onnx(
    checkpoint: str | Path,
    out: str | Path,
    size: tuple[int, int] | None = None,
    dynamic_batch: bool = False,
    opset: int = 18,
) -> dict:
    """Export ``checkpoint`` to ``out`` (eval graph, input ``input`` N x 3 x H x W RGB/255,
    output ``logits``); returns the parity report. ``size`` is (width, height), default the
    training size recorded in the checkpoint, else 1024x512."""
    import onnx

    checkpoint, out = Path(checkpoint), Path(out)
    ckpt = read_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt, checkpoint).eval()
    w, h = size or tuple(ckpt.get("config", {}).get("size", ()) or (1024, 512))
    try:
        check_input_size(h, w)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    dynamic = {"x": {0: torch.export.Dim("batch", min=1, max=1024)}} if dynamic_batch else None
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
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
                    dynamic_shapes=dynamic,
                    verbose=False,
                )
            finally:
                logging.getLogger("torch").setLevel(level)
        program.save(str(tmp))
        proto = onnx.load(str(tmp))
        meta = {
            "enet.variant": model.variant,
            "enet.encoder_only": model.encoder_only,
            "enet.classes": ckpt["classes"],
            "enet.input_size": [w, h],
            "enet.input": "N x 3 x H x W float32, RGB scaled to [0, 1], no mean/std",
            "enet.source_checkpoint": checkpoint.name,
            "enet.provenance": ckpt.get("provenance", {}),
        }
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, json.dumps(value)
        onnx.save(proto, str(tmp))
        report = _parity(tmp, model, x)
        if (
            report["p999_abs_diff"] > P999_TOLERANCE
            or report["argmax_agreement"] < ARGMAX_AGREEMENT
        ):
            raise ExportError(
                f"{checkpoint}: ONNX Runtime does not reproduce PyTorch (max |diff| "
                f"{report['max_abs_diff']:.3g}, 99.9th pct {report['p999_abs_diff']:.3g}, "
                f"argmax agreement {report['argmax_agreement']:.5%}); nothing written"
            )
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return {"path": str(out), "size": [w, h], "opset": opset, **report}
