"""int8 static quantisation of an exported ENet with ONNX Runtime (QDQ, per-channel weights).

Activations are calibrated on real images (their ranges decide the int8 scales); the result is
judged on other images by how often its per-pixel class equals the fp32 model's. Every
rounding costs agreement, so ``Int8Scheme`` rounds only where int8 pays: the convolutions'
inputs and weights at asymmetric 99.99th-percentile ranges, and, for a checkpoint tuned by
``enet finetune-int8`` (``TUNED_INT8_SCHEME``), the residual stream and the blocks' branches
too. ``snap_to_int8_grid`` (``enet snap``) puts a model's weights on the grid int8 will use.
docs/deployment.md says how each choice was measured.
"""

from __future__ import annotations

import contextlib
import io
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..checkpoint import (
    model_from_checkpoint,
    read_checkpoint,
    resolve_checkpoint,
    save_changed_weights,
)
from ..errors import EnetError
from ..fileio import check_output_file, scratch_folder
from ..images import read_rgb
from ..metrics import same_class_pixels
from ..model import BOTTLENECKS
from ..runtime import image_to_input

__all__ = [
    "FP32_LEADING_CONVS",
    "INT8_RESIDUALS",
    "INT8_WEIGHT_MAX",
    "REDUCED_WEIGHT_MAX",
    "TUNED_INT8_SCHEME",
    "WEIGHT_MAX_BY_BITS",
    "Int8Scheme",
    "QuantizationError",
    "argmax_agreement",
    "image_batches",
    "int8_convolutions",
    "int8_weight_scale",
    "ort_runner",
    "output_axis",
    "quantize_int8",
    "snap_checkpoint",
    "snap_to_int8_grid",
]


#: Convolutions left in fp32 at the start of the graph (topological order) unless a checkpoint
#: was tuned for fewer (``enet finetune-int8``).
FP32_LEADING_CONVS = 4
#: ONNX Runtime's symmetric int8 weights span [-127, 127]: scale max|w| / 127 per channel.
INT8_WEIGHT_MAX = 127
#: Its reduced range (``reduce_range``): 7-bit weights in [-64, 64]. int8 kernels without
#: VNNI (AVX2; AVX-512 before VNNI) add pairs of uint8 x int8 products in int16, which
#: saturates above 32767: with 8-bit weights OpenVINO's convolutions go wrong on bright 8-bit
#: inputs, with 7-bit ones they are exact (255 x 64 x 2 < 32768; bench/int8_overflow.py).
REDUCED_WEIGHT_MAX = 64
#: The weight grids, by their bits.
WEIGHT_MAX_BY_BITS = {8: INT8_WEIGHT_MAX, 7: REDUCED_WEIGHT_MAX}
#: How an int8 export keeps its residual stream and its blocks' branches at the adds
#: (``Int8Scheme.residual``, ``Int8Scheme.branches``).
INT8_RESIDUALS = ("fp32", "int8")


@dataclass(frozen=True, kw_only=True)
class Int8Scheme:
    """What ``quantize_int8`` rounds: the residual stream's precision (see there), how many
    leading convolutions stay fp32, the weights' grid (``INT8_WEIGHT_MAX`` or
    ``REDUCED_WEIGHT_MAX`` steps either side of zero), and whether each bottleneck's branch
    (its convolutions' side, which the add sums with the shortcut) is rounded to uint8. The
    default suits any checkpoint; ``enet finetune-int8`` trains for ``TUNED_INT8_SCHEME`` and
    records it (``provenance``)."""

    residual: str = "fp32"
    fp32_convs: int = FP32_LEADING_CONVS
    weight_max: int = INT8_WEIGHT_MAX
    branches: str = "fp32"

    def __post_init__(self) -> None:
        if self.residual not in INT8_RESIDUALS:
            raise QuantizationError(f"residual stream must be one of {list(INT8_RESIDUALS)}")
        if self.branches not in INT8_RESIDUALS:
            raise QuantizationError(f"block branches must be one of {list(INT8_RESIDUALS)}")
        if self.fp32_convs < 0:
            raise QuantizationError(f"fp32 convolutions must be 0 or more, not {self.fp32_convs}")
        if self.weight_max not in WEIGHT_MAX_BY_BITS.values():
            raise QuantizationError(f"weight grid must be one of {WEIGHT_MAX_BY_BITS} (by bits)")

    def describe(self) -> str:
        """The ``enet.precision`` metadata of an export."""
        readers = {
            "fp32": "read by the convolution alone",
            "int8": "read by every consumer: int8 residual stream",
        }[self.residual]
        weights = "int8" if self.weight_max == INT8_WEIGHT_MAX else f"{self.weight_bits}-bit"
        branches = ", uint8 block branches at the adds" if self.branches == "int8" else ""
        return (
            f"int8 QDQ: 8-bit image input, per-channel {weights} weights, uint8 convolution "
            f"inputs (asymmetric 99.99th percentile, {readers}){branches}, first "
            f"{self.fp32_convs} convolutions fp32"
        )

    @property
    def weight_bits(self) -> int:
        return next(b for b, m in WEIGHT_MAX_BY_BITS.items() if m == self.weight_max)

    def provenance(self) -> dict[str, str]:
        """What a tuned checkpoint records of the scheme it was trained for."""
        return {
            "int8_fp32_convs": str(self.fp32_convs),
            "int8_weight_max": str(self.weight_max),
            "int8_branches": self.branches,
        }

    @classmethod
    def for_checkpoint(cls, provenance: dict, residual: str = "auto") -> Int8Scheme:
        """The scheme a checkpoint's weights are on: the one recorded by ``enet finetune-int8``
        for a checkpoint it tuned, else the default. ``residual="auto"``: int8 for a
        tuned checkpoint, else fp32."""
        tuned = "int8_finetune" in provenance
        if residual == "auto":
            residual = "int8" if tuned else "fp32"
        if not tuned:
            return cls(residual=residual)
        try:
            return cls(
                residual=residual,
                fp32_convs=int(provenance.get("int8_fp32_convs", FP32_LEADING_CONVS)),
                weight_max=int(provenance.get("int8_weight_max", INT8_WEIGHT_MAX)),
                branches=provenance.get("int8_branches", "fp32"),
            )
        except (TypeError, ValueError):
            raise QuantizationError(
                "the checkpoint's int8 tuning record is malformed (tune it again with enet "
                "finetune-int8)"
            ) from None


class QuantizationError(EnetError):
    pass


#: What ``enet finetune-int8`` trains a model for: every convolution int8 (the tuning wins
#: back what rounding the first ones costs), 7-bit weights, an int8 residual stream and int8
#: block branches.
TUNED_INT8_SCHEME = Int8Scheme(
    residual="int8", fp32_convs=0, weight_max=REDUCED_WEIGHT_MAX, branches="int8"
)


def image_batches(paths: list[Path], size: tuple[int, int]) -> Iterator[np.ndarray]:
    """The model inputs of image files, resized to ``size`` = (width, height)."""
    for path in paths:
        yield image_to_input(read_rgb(path), size)


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
        agree, pixels = same_class_pixels(a(x), b(x))
        same, total = same + agree, total + pixels
        worst = min(worst, agree / pixels)
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
    scheme: Int8Scheme = Int8Scheme(),
) -> None:
    """Write the QDQ int8 version of ``fp32`` to ``out`` (calibrated on ``calibration``).

    ``scheme.residual``: "fp32" hands the adds and pools of the residual stream the
    unrounded tensors (agrees best with fp32 for any checkpoint); "int8" lets them read the
    rounded ones, as ONNX Runtime wires QDQ by default: faster on OpenVINO (the residual
    stream stays in int8), for a checkpoint trained on that rounding (``enet finetune-int8``;
    on others it costs agreement). ``scheme.branches="int8"`` rounds each bottleneck's
    branch before its add (calibrated like the rest); the add's shortcut is left as the
    residual stream has it."""
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

    with scratch_folder(out) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # ONNX's own shape inference: ONNX Runtime's symbolic one fails on --dynamic files
        # (the quantised graphs of fixed-shape files are the same either way)
        try:
            quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        except Exception as exc:
            raise QuantizationError(f"{fp32}: ONNX Runtime cannot prepare it ({exc})") from None
        graph = onnx.load(str(prepared)).graph
        convs = [n.name for n in graph.node if n.op_type == "Conv"]
        adds = [n.name for n in graph.node if n.op_type == "Add"]
        # told apart in the exported graph: pre-processing can drop the exporter's records
        branch_adds = (
            _bottleneck_adds(onnx.load(str(fp32)).graph) if scheme.branches == "int8" else {}
        )
        if scheme.branches == "int8" and not branch_adds:
            raise QuantizationError(f"{fp32}: no block adds found (export it with enet export)")
        if not set(branch_adds) <= set(adds):
            raise QuantizationError(f"{fp32}: pre-processing renamed the blocks' adds")
        op_types = ["Conv", "ConvTranspose"] + (["Add"] if branch_adds else [])
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
                op_types_to_quantize=op_types,
                nodes_to_exclude=convs[: scheme.fp32_convs]
                + [a for a in adds if a not in branch_adds],
                reduce_range=scheme.weight_max == REDUCED_WEIGHT_MAX,  # weights only, in QDQ
                extra_options={
                    "OpTypesToExcludeOutputQuantization": op_types,
                    "CalibPercentile": 99.99,
                    "CalibTensorRangeSymmetric": False,  # percentile's default is symmetric
                    "CalibStridedMinMax": 1,  # any calibration method: one image per range
                },
            )
        model = onnx.load(str(Path(tmp) / "int8.onnx"))
        _shortcuts_unrounded(model.graph, branch_adds)
        if scheme.residual == "fp32":
            _convolutions_read_int8_alone(model.graph, branch_adds)
        _input_as_8bit(model.graph)
        onnx.save(model, str(out))


def _input_as_8bit(graph) -> None:
    """Read the input as the 8-bit pixels it holds (RGB / 255: exact for 8-bit images).

    The initial block max-pools the 3-channel image; in fp32 OpenVINO first copied it into
    16-channel blocks (10 of ~100 ms at 1024x512), in uint8 it pools it in place. An int8
    convolution of the image (and the pool beside it) reads these 8 bits too, not a second,
    calibrated rounding of its own."""
    from onnx import helper, numpy_helper

    name = graph.input[0].name
    rounds_input = {
        q.output[0] for q in graph.node if q.op_type == "QuantizeLinear" and q.input[0] == name
    }
    rounded = {
        dq.output[0]
        for dq in graph.node
        if dq.op_type == "DequantizeLinear" and dq.input[0] in rounds_input
    }
    for node in graph.node:
        node.input[:] = [name if i in rounded else i for i in node.input]
    _drop_unused(graph)
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(1 / 255, np.float32), f"{name}_scale"),
            numpy_helper.from_array(np.array(0, np.uint8), f"{name}_zero_point"),
        ]
    )
    for node in graph.node:
        node.input[:] = [f"{name}_8bit" if i == name else i for i in node.input]
    params = [f"{name}_scale", f"{name}_zero_point"]
    quantize = helper.make_node("QuantizeLinear", [name, *params], [f"{name}_uint8"])
    dequantize = helper.make_node("DequantizeLinear", [f"{name}_uint8", *params], [f"{name}_8bit"])
    nodes = [quantize, dequantize, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)


def _drop_unused(graph) -> None:
    """Remove the nodes and constants nothing reads any more."""
    while True:
        read = {name for node in graph.node for name in node.input}
        read |= {out.name for out in graph.output}
        dead = [node for node in graph.node if not any(out in read for out in node.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    for constant in [t for t in graph.initializer if t.name not in read]:
        graph.initializer.remove(constant)


def _bottleneck_adds(graph) -> dict[str, int]:
    """The add of each bottleneck block, by node name, with the index of its branch input.

    The exporter records each node's module path and classes (``pkg.torch.onnx.*``): the
    block's add is the one of its own ops with one input from the block's ``ext_`` modules
    (max-unpool's index arithmetic has none)."""
    blocks = {block.__name__ for block in BOTTLENECKS}
    scopes = {node.name: _torch_meta(node, "name_scopes") for node in graph.node}
    producer = _producers(graph)
    adds: dict[str, int] = {}
    for node in graph.node:
        classes = _torch_meta(node, "class_hierarchy")
        if node.op_type != "Add" or len(classes) < 2 or classes[-2].split(".")[-1] not in blocks:
            continue
        block = scopes[node.name][-2]  # [..., "encoder.regular1_1", "add"]
        branch = [
            i
            for i, name in enumerate(node.input)
            if name in producer
            and any(s.startswith(f"{block}.ext_") for s in scopes[producer[name].name])
        ]
        if len(branch) == 1:
            adds[node.name] = branch[0]
    return adds


def _producers(graph) -> dict:
    """Each tensor's producing node, by tensor name."""
    return {name: node for node in graph.node for name in node.output}


def _torch_meta(node, key: str) -> list[str]:
    """A list the exporter recorded on ``node`` (``pkg.torch.onnx.<key>``; [] if none)."""
    import ast

    meta = {p.key: p.value for p in node.metadata_props}
    return ast.literal_eval(meta.get(f"pkg.torch.onnx.{key}", "[]"))


def _shortcuts_unrounded(graph, branch_adds: dict[str, int]) -> None:
    """Quantising an add rounds both its inputs; keep only its branch rounded. The shortcut
    goes back to fp32 where it was rounded for the add alone (a max-pool's or an upsampling's
    output); where a convolution reads the same rounding (a regular block's input) it stays
    as the residual stream has it (``_convolutions_read_int8_alone`` for an fp32 one)."""
    producer = _producers(graph)
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    for node in graph.node:
        if node.name not in branch_adds:
            continue
        i = 1 - branch_adds[node.name]
        dq = producer.get(node.input[i])
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        if not any(r.op_type in ("Conv", "ConvTranspose") for r in readers[node.input[i]]):
            node.input[i] = producer[dq.input[0]].input[0]


def _convolutions_read_int8_alone(graph, branch_adds: dict[str, int]) -> None:
    """Hand every other consumer of a quantised activation its fp32 tensor back (but the
    branch inputs of ``branch_adds``, which are rounded for the add alone).

    ONNX Runtime rewires all consumers of a quantised tensor to its dequantised copy, so the
    adds and max-pools of ENet's residual stream would read it rounded, at every block."""
    constants = {t.name for t in graph.initializer}
    producer = _producers(graph)
    for node in graph.node:
        if node.op_type in ("Conv", "ConvTranspose", "QuantizeLinear", "DequantizeLinear"):
            continue
        for i, name in enumerate(node.input):
            if branch_adds.get(node.name) == i:
                continue
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] in constants:
                continue
            q = producer.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[i] = q.input[0]


def int8_convolutions(model: nn.Module, fp32_convs: int = FP32_LEADING_CONVS) -> list[str]:
    """Names of the convolutions ``quantize_int8`` makes int8, in execution order (the
    exported graph's): all but the first ``fp32_convs`` ``Conv2d``."""
    order: list[str] = []
    hooks = [
        module.register_forward_pre_hook(lambda _m, _x, name=name: order.append(name))
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d))
    ]
    training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, 16, 16, device=next(model.parameters()).device))
    finally:
        model.train(training)
        for hook in hooks:
            hook.remove()
    leading = [n for n in order if isinstance(model.get_submodule(n), nn.Conv2d)]
    return [n for n in order if n not in leading[:fp32_convs]]


def snap_to_int8_grid(model: nn.Module, scheme: Int8Scheme = Int8Scheme()) -> list[str]:
    """Round the weights of the int8 convolutions to the grid ``quantize_int8`` puts them on
    (symmetric, per output channel), in place; returns their names.

    int8 then loses nothing on weights: per output channel the grid scales with the
    channel, so BatchNorm folded in at export keeps them on it. The rounding changes the
    fp32 model a little: evaluate it after."""
    names = int8_convolutions(model, scheme.fp32_convs)
    with torch.no_grad():
        for name in names:
            conv = model.get_submodule(name)
            weight, axis = conv.weight, output_axis(conv)
            shape = [-1 if d == axis else 1 for d in range(weight.dim())]
            scale = int8_weight_scale(weight, axis, scheme.weight_max).reshape(shape)
            weight.copy_(torch.round(weight / scale) * scale)
    return names


def output_axis(conv: nn.Module) -> int:
    """The output-channel axis of a convolution's weight (1 for a transposed one)."""
    return 1 if isinstance(conv, nn.ConvTranspose2d) else 0


def int8_weight_scale(
    weight: torch.Tensor, axis: int, weight_max: int = INT8_WEIGHT_MAX
) -> torch.Tensor:
    """Per output channel, the step of the symmetric grid ONNX Runtime quantises weights to:
    max|w| / ``weight_max`` (1 for an all-zero channel)."""
    dims = [d for d in range(weight.dim()) if d != axis]
    scale = weight.detach().abs().amax(dim=dims) / weight_max
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def snap_checkpoint(src: str | Path, dst: str | Path, *, overwrite: bool = False) -> list[str]:
    """``src`` with its weights on the int8 grid (``snap_to_int8_grid``) written to ``dst``
    (an existing file is replaced only with ``overwrite``, never ``src`` itself); metrics
    recorded for the old weights are dropped (they no longer describe it)."""
    check_output_file(dst, overwrite=overwrite, inputs=[resolve_checkpoint(src)])
    ckpt = read_checkpoint(src)
    model = model_from_checkpoint(ckpt, src)
    names = snap_to_int8_grid(model)
    provenance = {"int8_grid": f"{len(names)} convolutions of {src}"}
    save_changed_weights(ckpt, model, dst, provenance, replace=overwrite)
    return names
