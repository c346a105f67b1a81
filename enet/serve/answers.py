"""What a request asks for, and its answer's bytes: the class ids, the colours or the overlay
as pictures, or the figures as JSON. Shared by the HTTP endpoint and the live socket."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from ..deploy.segmenter import Segmentation
from ..errors import UsageError
from ..images import jpeg_bytes, png_bytes

__all__ = ["ANSWERS", "Answer", "Question", "answer", "figures", "question_of"]

#: what ``answer=`` takes: grey PNG of class ids, palette PNG of them, the overlay, figures
ANSWERS = ("json", "ids", "color", "overlay")


@dataclass(frozen=True)
class Question:
    """How to answer one image: ``kind`` of ``ANSWERS``; the overlay's ``alpha`` and
    ``format`` (png or jpeg)."""

    kind: str = "json"
    alpha: float = 0.5
    format: str = "png"


@dataclass(frozen=True)
class Answer:
    body: bytes
    media_type: str


def question_of(params: dict[str, str]) -> Question:
    """A ``Question`` from query parameters; a ``UsageError`` names the bad one."""
    kind = params.get("answer", "json")
    if kind not in ANSWERS:
        raise UsageError(f"answer={kind}: unknown (choose from {', '.join(ANSWERS)})")
    try:
        alpha = float(params.get("alpha", "0.5"))
    except ValueError:
        alpha = math.nan
    if not 0 <= alpha <= 1:
        raise UsageError(f"alpha={params['alpha']}: give a number from 0 to 1")
    format = params.get("format", "png")
    if format not in ("png", "jpeg"):
        raise UsageError(f"format={format}: choose png or jpeg")
    return Question(kind, alpha, format)


def figures(result: Segmentation, *, backend: str) -> dict[str, Any]:
    """The JSON answer: size, the model's time for this image, each class's share."""
    h, w = result.ids.shape
    shares = {name: round(share, 6) for name, share in result.shares().items()}
    return {
        "width": w,
        "height": h,
        "latency_ms": round(result.latency_ms, 2),
        "backend": backend,
        "shares": shares,
    }


def answer(result: Segmentation, question: Question, *, backend: str) -> Answer:
    """The bytes of the answer, and their media type."""
    if question.kind == "json":
        return Answer(json.dumps(figures(result, backend=backend)).encode(), "application/json")
    if question.kind == "ids":
        return Answer(png_bytes(result.ids), "image/png")
    if question.kind == "color":
        return Answer(png_bytes(result.ids, palette=result.classes.palette), "image/png")
    if question.kind == "overlay":
        picture = result.overlay(question.alpha)
        if question.format == "jpeg":
            return Answer(jpeg_bytes(picture), "image/jpeg")
        return Answer(png_bytes(picture, level=1), "image/png")
    raise ValueError(f"answer={question.kind}: unknown")
