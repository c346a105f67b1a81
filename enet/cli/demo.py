"""``enet demo``: the whole pipeline on built-in data, on the CPU, in minutes."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def run_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo as demo

    demo(Path(args.out))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on built-in data, on the CPU (the quick start)",
        description="Synthetic street scenes -> prepare -> the three training stages on a "
        "short schedule -> evaluation with pictures -> ONNX export -> inference, into OUT.",
    )
    p.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    p.set_defaults(func=run_demo)
