"""Paired image/label transforms: the seed's ``MyCoTransform`` (SPEC 3.4) and its eval preset.

Input: H x W x 3 uint8 RGB and H x W uint8 class ids (void already mapped to its channel, so
the seed's step 7, 255 -> 19, happened when the data was prepared). Output: a 3 x h x w uint8
image tensor and an h x w (or h/8 x w/8) int64 label tensor. Dividing by 255 happens on the
training device (SPEC 3.4 step 5), where it is free and the batch moves 4x fewer bytes.

Deviation from the seed, by design: prepared Cityscapes is stored at 1024x512, so blur and
crop act on that resolution instead of 2048x1024. The blur radius is scaled by
``source_scale`` (stored width / source width) so it covers the same scene extent, and crop
boxes are the same fractions of the frame; the crop is then upsampled instead of downsampled.
Prepare at ``--size 2048x1024`` to reproduce the seed's pixel path exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageFilter
from torch import Tensor

__all__ = ["SegmentationTransform", "eval_transform", "train_transform"]


def _uniform(generator: torch.Generator | None, low: float = 0.0, high: float = 1.0) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


@dataclass(frozen=True)
class SegmentationTransform:
    """Blur -> random crop -> resize -> h-flip -> (encoder) label at 1/``label_stride``.

    Args:
        size: output (width, height).
        augment: apply blur, crop and flip (training); otherwise only resize.
        crop_ratio: (low, high) of the crop ratio r, box = (W/r, H/r); low == high fixes it
            (stage 1: 1.2; stages 2-3: U[1.0, 1.3)).
        crop_p, flip_p: probabilities of a crop and of a horizontal flip.
        blur_radius: the Gaussian blur radius is U[0, blur_radius) * source_scale; 0 disables.
        source_scale: stored resolution / original resolution (0.5 for Cityscapes at 1024).
        label_stride: 8 for the encoder stages (labels resized again by nearest, step 6).
    """

    size: tuple[int, int]
    augment: bool = False
    crop_ratio: tuple[float, float] = (1.0, 1.3)
    crop_p: float = 0.5
    flip_p: float = 0.5
    blur_radius: float = 1.0
    source_scale: float = 1.0
    label_stride: int = 1

    def __call__(
        self, image: np.ndarray, label: np.ndarray, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """``generator`` makes the draw a pure function of its seed (training seeds it per
        sample and epoch, so worker count and resumption do not change the augmentation)."""
        g = generator
        img = Image.fromarray(np.asarray(image))
        lbl = Image.fromarray(np.asarray(label))
        if self.augment:
            if self.blur_radius > 0:
                radius = _uniform(g) * self.blur_radius * self.source_scale
                img = img.filter(ImageFilter.GaussianBlur(radius))
            if _uniform(g) < self.crop_p:
                ratio = _uniform(g, *self.crop_ratio)
                w, h = img.size
                cw, ch = int(w / ratio), int(h / ratio)
                x, y = int(_uniform(g) * (w - cw)), int(_uniform(g) * (h - ch))
                box = (x, y, x + cw, y + ch)
                img, lbl = img.crop(box), lbl.crop(box)
        if img.size != self.size:
            # PIL bilinear antialiases when shrinking; PIL nearest samples pixel centres.
            img = img.resize(self.size, Image.BILINEAR)
            lbl = lbl.resize(self.size, Image.NEAREST)
        if self.augment and _uniform(g) < self.flip_p:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
            lbl = lbl.transpose(Image.FLIP_LEFT_RIGHT)
        if self.label_stride > 1:
            w, h = self.size
            lbl = lbl.resize((w // self.label_stride, h // self.label_stride), Image.NEAREST)
        # HWC memory seen as CHW: a channels_last batch once stacked, no copy here.
        image_t = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)
        label_t = torch.from_numpy(np.array(lbl, dtype=np.int64))
        return image_t, label_t


def train_transform(
    size: tuple[int, int],
    stage: int,
    source_scale: float = 1.0,
    crop_ratio: tuple[float, float] | None = None,
    augment: bool = True,
) -> SegmentationTransform:
    """The seed's training preset for ``stage`` (1: crop ratio fixed at 1.2, encoder labels;
    2: ratio U[1.0, 1.3), encoder labels; 3: ratio U[1.0, 1.3), full-resolution labels)."""
    ratio = crop_ratio or ((1.2, 1.2) if stage == 1 else (1.0, 1.3))
    return SegmentationTransform(
        size,
        augment=augment,
        crop_ratio=tuple(ratio),
        source_scale=source_scale,
        label_stride=8 if stage in (1, 2) else 1,
    )


def eval_transform(size: tuple[int, int], encoder_only: bool = False) -> SegmentationTransform:
    """Evaluation: resize only (steps 3, 5, 6, 7)."""
    return SegmentationTransform(size, augment=False, label_stride=8 if encoder_only else 1)
