"""Argument types shared by the commands: each refuses a value that cannot work with one
line naming the flag, before anything runs."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

__all__ = ["SEED", "count", "epochs", "number", "shard", "size", "words"]


def count(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """A whole number in [``minimum``, ``maximum``]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            limits = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
            raise argparse.ArgumentTypeError(f"must be {limits}, got {value}")
        return value

    return parse


def number(low: float, high: float = math.inf, *, above_low: bool = False) -> Callable:
    """A finite number from ``low`` (excluded with ``above_low``) to ``high``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        below = value <= low if above_low else value < low
        if not math.isfinite(value) or below or value > high:
            where = f"above {low:g}" if above_low else f"at least {low:g}"
            where += f" and at most {high:g}" if math.isfinite(high) else ""
            raise argparse.ArgumentTypeError(f"must be a finite number {where}, got {text!r}")
        return value

    return parse


#: Seeds are whole numbers torch, NumPy and Python's random all take.
SEED = count(0, 2**63 - 1)


def epochs(text: str) -> list[int]:
    """``65,85,100``: one whole number of epochs for each of the three stages."""
    parts = text.split(",")
    try:
        values = [int(v) for v in parts]
    except ValueError:
        values = []
    if len(parts) != 3 or len(values) != 3 or min(values) < 0:
        raise argparse.ArgumentTypeError(
            f"expected the epochs of stages 1, 2 and 3 as three whole numbers such as "
            f"65,85,100, got {text!r}"
        )
    return values


def size(text: str) -> tuple[int, int]:
    """``WxH`` -> (width, height)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected WIDTHxHEIGHT such as 1024x512, got {text!r}"
        ) from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return w, h


def shard(text: str) -> tuple[int, int]:
    """``I/N`` -> (i, n): the i-th of n shares, 0 <= i < n."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N such as 0/4, got {text!r}") from None
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"expected I/N with 0 <= I < N, got {text!r}")
    return i, n


def words(text: str) -> tuple[str, ...]:
    """``a,b``: a comma-separated list, each once (the command checks the words)."""
    values = tuple(v.strip() for v in text.split(","))
    if "" in values:
        raise argparse.ArgumentTypeError(f"expected a list such as pred,overlay, got {text!r}")
    twice = [v for v in values if values.count(v) > 1]
    if twice:
        raise argparse.ArgumentTypeError(f"{twice[0]} is given twice in {text!r}")
    return values
