"""Does this CPU's OpenVINO multiply int8 weights by 8-bit inputs exactly?

    python bench/int8_overflow.py

One QDQ convolution (16 -> 32 channels, 3x3) on bright 8-bit pixels, run by ONNX Runtime
(exact integer sums) and by OpenVINO, with 8-bit weights (|w| <= 127) and with the 7-bit
ones of ``TUNED_INT8_SCHEME`` (|w| <= 64). Without VNNI (AVX2, AVX-512 before VNNI) the int8
kernels add pairs of uint8 x int8 products in int16, which 255 x 127 x 2 overflows and
255 x 64 x 2 does not. Prints OpenVINO's largest error, in steps of the integer sum, for each.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from enet.deploy.quantize import INT8_WEIGHT_MAX, REDUCED_WEIGHT_MAX  # noqa: E402

#: The weights' scale: one step of the integer sum is WEIGHT_SCALE / 255 of the output.
WEIGHT_SCALE = 0.01


def openvino_error_steps(weight_max: int, folder: Path) -> tuple[float, float]:
    """OpenVINO's largest deviation from ONNX Runtime and the largest output, both in steps
    of the integer sum, for one convolution with weights in [-weight_max, weight_max]."""
    import onnx
    import onnxruntime as ort
    import openvino as ov
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = rng.integers(-weight_max, weight_max + 1, (32, 16, 3, 3))
    constants = {
        "s": np.float32(1 / 255), "z": np.uint8(0), "wz": np.zeros(32, np.int8),
        "wq": weights.astype(np.int8), "ws": np.full(32, WEIGHT_SCALE, np.float32),
    }  # fmt: skip
    graph = helper.make_graph(
        [
            helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
            helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
            helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=0),
            helper.make_node("Conv", ["xd", "w"], ["c"], kernel_shape=[3, 3], pads=[1] * 4),
            helper.make_node("Relu", ["c"], ["y"]),
        ],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in constants.items()],
    )
    path = folder / f"conv{weight_max}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    x = (rng.integers(200, 256, (1, 16, 32, 32)) / 255).astype(np.float32)  # bright pixels
    expected = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    got = ov.Core().compile_model(str(path), "CPU")({0: x})[0]
    step = WEIGHT_SCALE / 255
    return float(np.abs(got - expected).max() / step), float(expected.max() / step)


def main() -> None:
    from latency import cpu_description

    print(f"CPU: {cpu_description()}")
    with tempfile.TemporaryDirectory() as tmp:
        for bits, weight_max in ((8, INT8_WEIGHT_MAX), (7, REDUCED_WEIGHT_MAX)):
            error, largest = openvino_error_steps(weight_max, Path(tmp))
            print(
                f"{bits}-bit weights (|w| <= {weight_max}): OpenVINO off by up to {error:,.2f} "
                f"steps of the integer sum (outputs reach {largest:,.0f} steps)"
            )


if __name__ == "__main__":
    main()
