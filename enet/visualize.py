"""Pictures a person would rather look at than read: colour masks, overlays, training curves."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import UsageError
from .fileio import atomic_write

__all__ = ["colorize", "legend", "overlay", "plot_confusion", "plot_curves"]


def colorize(classes: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """H x W class indices -> H x W x 3 uint8 colours (indices past the palette: black)."""
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    return np.take(table, np.asarray(classes, dtype=np.uint8), axis=0)  # 4x table[classes]


def overlay(image: np.ndarray, colors: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a colour mask over an RGB image of the same size, ``alpha`` of the mask (in
    steps of 1/256: integer arithmetic, twice as fast as float at 1024x512)."""
    if not isinstance(alpha, numbers.Real) or not 0 <= alpha <= 1:
        raise UsageError(f"overlay alpha {alpha!r}: give a number from 0 to 1")
    weight = round(alpha * 256)
    mixed = image.astype(np.uint16) * (256 - weight)
    mixed += colors.astype(np.uint16) * weight
    mixed += 128
    mixed >>= 8
    return mixed.astype(np.uint8)


def plot_curves(rows: list[dict], path: str | Path, title: str = "training") -> Path:
    """Loss per epoch (one line per stage, on the run's global epoch axis) and validation mIoU.

    ``rows``: the per-epoch records of ``log.jsonl``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_iou) = plt.subplots(1, 2, figsize=(11, 4))
    for stage in sorted({r["stage"] for r in rows}):
        part = [r for r in rows if r["stage"] == stage]
        x = [r["run_epoch"] for r in part]
        ax_loss.plot(x, [r["loss"] for r in part], label=f"stage {stage}")
        val = [r for r in part if r.get("val_miou") is not None]
        if val:
            ax_iou.plot(
                [r["run_epoch"] for r in val],
                [r["val_miou"] for r in val],
                "o-",
                label=f"stage {stage}",
            )
    ax_loss.set(xlabel="epoch (whole run)", ylabel="weighted cross-entropy", title="train loss")
    ax_iou.set(xlabel="epoch (whole run)", ylabel="mIoU", title="validation mIoU", ylim=(0, 1))
    for ax in (ax_loss, ax_iou):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)
    return path


def legend(names: Sequence[str], palette: Sequence[Sequence[int]], width: int) -> np.ndarray:
    """A strip of colour swatches with class names, ``width`` pixels wide."""
    from PIL import Image, ImageDraw

    cell_w, cell_h = 120, 16
    per_row = max(1, width // cell_w)
    rows = -(-len(names) // per_row)
    strip = Image.new("RGB", (width, rows * cell_h), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for i, (name, color) in enumerate(zip(names, palette, strict=True)):
        x, y = (i % per_row) * cell_w, (i // per_row) * cell_h
        draw.rectangle([x + 2, y + 3, x + 14, y + 13], fill=tuple(color), outline=(0, 0, 0))
        draw.text((x + 18, y + 2), name, fill=(0, 0, 0))
    return np.asarray(strip)


def plot_confusion(
    confusion: np.ndarray,
    names: Sequence[str],
    path: str | Path,
    title: str = "",
    *,
    replace: bool = True,
) -> Path:
    """Row-normalised confusion matrix (ground truth rows, predicted columns) as a heatmap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mat = np.asarray(confusion, dtype=np.float64)
    norm = mat / np.maximum(mat.sum(1, keepdims=True), 1)
    n = len(names)
    fig, ax = plt.subplots(figsize=(0.45 * n + 3, 0.45 * n + 2))
    im = ax.imshow(norm[:n, :n], cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(n), names, rotation=90)
    ax.set_yticks(range(n), names)
    ax.set(xlabel="predicted", ylabel="ground truth", title=title or "confusion (row-normalised)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100), replace=replace)
    plt.close(fig)
    return path
