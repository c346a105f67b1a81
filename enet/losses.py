"""Class weights as pure functions of a class histogram, and the weighted cross-entropy.

All weight vectors cover every output channel, the void channel included (weight 0 there).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import UsageError

__all__ = [
    "SEED_DECODER_WEIGHTS",
    "SEED_ENCODER_WEIGHTS",
    "class_weights",
    "enet_weights",
    "median_frequency_weights",
    "weighted_cross_entropy",
]

# SPEC 3.2 (identical to erfnet_pytorch train/main.py, which the seed copies): 19 classes + void.
SEED_ENCODER_WEIGHTS: tuple[float, ...] = (
    2.3653597831726,
    4.4237880706787,
    2.9691488742828,
    5.3442072868347,
    5.2983593940735,
    5.2275490760803,
    5.4394111633301,
    5.3659925460815,
    3.4170460700989,
    5.2414722442627,
    4.7376127243042,
    5.2286224365234,
    5.455126285553,
    4.3019247055054,
    5.4264230728149,
    5.4331531524658,
    5.433765411377,
    5.4631009101868,
    5.3947434425354,
    0.0,
)
SEED_DECODER_WEIGHTS: tuple[float, ...] = (
    2.8149201869965,
    6.9850029945374,
    3.7890393733978,
    9.9428062438965,
    9.7702074050903,
    9.5110931396484,
    10.311357498169,
    10.026463508606,
    4.6323022842407,
    9.5608062744141,
    7.8698215484619,
    9.5168733596802,
    10.373730659485,
    6.6616044044495,
    10.260489463806,
    10.287888526917,
    10.289801597595,
    10.405355453491,
    10.138095855713,
    0.0,
)


def enet_weights(histogram: np.ndarray, c: float = 1.02, void: int | None = None) -> np.ndarray:
    """ENet's ``1 / ln(c + p)`` with ``p`` a class's share of ALL pixels, void included
    (paper section 5.2; road gets p ~ 0.33 on Cityscapes). Void gets weight 0."""
    hist = np.asarray(histogram, dtype=np.float64)
    weights = 1.0 / np.log(c + hist / hist.sum())
    if void is not None:
        weights[void] = 0.0
    return weights


def median_frequency_weights(
    histogram: np.ndarray, present_pixels: np.ndarray, void: int | None = None
) -> np.ndarray:
    """SegNet's median-frequency balancing: ``freq(c) = pixels of c / pixels of the images
    that contain c``, weight = ``median(freq) / freq(c)``; absent classes and void get 0."""
    hist = np.asarray(histogram, dtype=np.float64)
    present = np.asarray(present_pixels, dtype=np.float64)
    valid = (hist > 0) & (present > 0)
    if void is not None:
        valid[void] = False
    freq = np.zeros_like(hist)
    freq[valid] = hist[valid] / present[valid]
    weights = np.zeros_like(hist)
    if valid.any():
        weights[valid] = np.median(freq[valid]) / freq[valid]
    return weights


def class_weights(
    table: dict, choice: str, *, stage: int, num_classes: int, void: int | None
) -> Tensor:
    """The weight vector a training stage uses, from a prepared set's weight ``table``
    (``manifest["weights"]``): ``choice`` names one of its vectors, or "uniform", or "auto"
    (the seed's encoder/decoder tables where the set has them, else ENet's)."""
    if choice == "auto":
        seed_key = "seed_encoder" if stage < 3 else "seed_decoder"
        choice = seed_key if seed_key in table else "enet"
    if choice == "uniform":
        w = np.ones(num_classes)
        if void is not None:
            w[void] = 0.0
    elif isinstance(table.get(choice), (list, tuple)):
        w = np.asarray(table[choice], dtype=np.float64)
    else:
        known = sorted(k for k, v in table.items() if isinstance(v, (list, tuple)))
        raise UsageError(f"unknown class weights {choice!r}; this dataset has {known} or uniform")
    if len(w) != num_classes:
        raise UsageError(f"weights {choice!r} have {len(w)} entries, the model has {num_classes}")
    return torch.tensor(w, dtype=torch.float32)


def weighted_cross_entropy(logits: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """``sum_i w[y_i] CE_i / sum_i w[y_i]`` in fp32 (SPEC 4.3), as ``F.cross_entropy(weight=)``
    computes it, but 0 instead of NaN for a batch with only zero-weight (void) pixels."""
    per_pixel = F.cross_entropy(logits.float(), target, weight=weight, reduction="none")
    return per_pixel.sum() / weight[target].sum().clamp_min(torch.finfo(torch.float32).tiny)
