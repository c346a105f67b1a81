"""OpenVINO on a ``--dynamic`` export: the dynamic graph against one compiled for the shape.

    python bench/dynamic_shapes.py [--threads 2] [--size 1024x512] [--rounds 4] [--calls 4]

``enet infer`` runs a dynamic file's shape on the dynamic graph the first time it comes and
on a graph compiled for that shape from the second time on
(``enet.deploy.backends.OpenVinoPredictor``).
This exports the shipped CamVid model with ``--dynamic`` in fp32 and int8 (calibrated on the
real CamVid frames of ../shared/data), then for each file times that compile (the second
call) and the two graphs' calls, taking turns as ``bench/latency.py`` does.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from latency import in_process, interleaved_median_ms, machine_description  # noqa: E402

from enet.deploy.backends import OpenVinoPredictor, has_openvino  # noqa: E402
from enet.deploy.export import export_onnx  # noqa: E402

SHARED = Path(os.environ.get("ENET_SHARED", ROOT.parent / "shared"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", default="1024x512", help="WxH of the timed input")
    parser.add_argument("--rounds", type=int, default=4, help="turns each graph takes")
    parser.add_argument("--calls", type=int, default=4, help="timed calls per turn")
    args = parser.parse_args()
    if not has_openvino():
        sys.exit("OpenVINO is not installed (pip install 'enet[openvino]')")
    w, h = (int(v) for v in args.size.split("x"))
    camvid = SHARED / "data" / "camvid_sample"
    calibration = sorted(camvid.glob("train/*.png")) + sorted(camvid.glob("val/*.png"))
    if not calibration:
        sys.exit(f"no calibration frames under {camvid}")
    tmp = Path(tempfile.mkdtemp(prefix="enet-dynamic-"))
    int8 = tmp / "camvid.onnx"
    export_onnx("camvid", int8, size=(w, h), dynamic=True, int8_calibration=calibration)
    files = {"fp32": int8.with_suffix(".fp32.onnx"), "int8": int8}
    x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
    paths, compile_s = {}, {}
    for precision, path in files.items():
        dynamic = OpenVinoPredictor(path, threads=args.threads, shapes_kept=0)
        fixed = OpenVinoPredictor(path, threads=args.threads)
        fixed(x)  # the dynamic graph, as for any shape's first call
        start = time.perf_counter()
        fixed(x)  # compiles the graph for this shape, then runs it
        second = time.perf_counter() - start
        compile_s[precision] = second - min(in_process(lambda p=fixed: p(x))(3))
        paths[f"{precision}, dynamic graph"] = in_process(lambda p=dynamic: p(x))
        paths[f"{precision}, graph for {w}x{h}"] = in_process(lambda p=fixed: p(x))
    print(f"timing {len(paths)} graphs, {args.rounds} turns of {args.calls} calls", flush=True)
    results = interleaved_median_ms(paths, args.rounds, args.calls)
    print(f"\nmachine: {machine_description(args.threads)}; input 1x3x{h}x{w}")
    print(f"{'graph':28s} {'ms':>8s} {'vs dynamic':>11s}")
    names = list(results)
    for dynamic_name, fixed_name in zip(names[::2], names[1::2], strict=True):
        base = results[dynamic_name]
        for name in (dynamic_name, fixed_name):
            print(f"{name:28s} {results[name]:8.1f} {base / results[name]:10.2f}x")
    for precision, seconds in compile_s.items():
        print(f"{precision}: compiling the {w}x{h} graph took {seconds:.2f} s")


if __name__ == "__main__":
    main()
