"""``enet finetune-int8``: train a checkpoint on its own int8 rounding, so that its int8
export picks the class its fp32 model picks.

Post-training quantisation (``enet export --int8``) rounds every convolution's input to
uint8. ENet's margins between classes are small, so each rounding moves some pixels to
another class. Here every step runs two forwards of the same weights: fp32, and one that
rounds the tensors the int8 export rounds (``Int8Emulation``). Both learn the labels, and a
symmetric KL divergence pulls the two together. The weights of every int8 convolution stay
on their per-channel int8 grid in both forwards (straight-through), so the result is
snapped, as ``enet snap`` would leave it. BatchNorm stays frozen (running statistics, no
dropout), so the calibrated ranges stay valid; they are measured again after each epoch.

The emulation rounds the residual stream as well, at the input of every block (what
ONNX Runtime's QDQ does by default), and, as the scheme says, each block's branch before its
add. A model tuned this way also agrees with the faster ``--int8-residual int8`` export.
Measured on the shipped CamVid model: see results/camvid/README.md.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..checkpoint import (
    model_from_checkpoint,
    read_checkpoint,
    resolve_checkpoint,
    save_changed_weights,
)
from ..data.classes import check_same_classes
from ..data.dataset import PreparedDataset
from ..data.transforms import SegmentationTransform
from ..errors import UsageError
from ..fileio import check_output_file
from ..losses import class_weights
from ..metrics import same_class_pixels
from ..model import BOTTLENECKS, InitialBlock
from ..runtime import batch_to_input, resolve_device
from .quantize import (
    TUNED_INT8_SCHEME,
    Int8Scheme,
    int8_convolutions,
    int8_weight_scale,
    output_axis,
)

__all__ = ["Int8Emulation", "finetune_for_int8"]

#: Share of values left outside an activation's uint8 range at each end: ``quantize_int8``
#: calibrates ranges at the 99.99th percentile.
RANGE_TAIL = 1e-4
#: Values sampled per calibrated tensor and batch (torch.quantile takes at most 2^24).
SAMPLES_PER_BATCH = 200_000


class _WeightOnGrid(nn.Module):
    """A convolution's weight on its symmetric per-output-channel grid of ``weight_max``
    steps either side of zero; gradients pass straight through."""

    def __init__(self, axis: int, weight_max: int) -> None:
        super().__init__()
        self.axis, self.weight_max = axis, weight_max

    def forward(self, weight: Tensor) -> Tensor:
        scale = int8_weight_scale(weight, self.axis, self.weight_max)
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(
            weight, scale, zero, self.axis, -self.weight_max, self.weight_max
        )


class Int8Emulation:
    """What ``enet export --int8`` does to a model, in PyTorch and differentiable.

    The weights of the int8 convolutions (``int8_convolutions``) go on their int8 grid,
    always. With ``rounding`` on, the input of each int8 convolution is rounded to uint8, and
    so is the input of each block whose first convolution is int8 (its shortcut then reads
    it rounded, as with ``--int8-residual int8``), and with ``scheme.branches="int8"`` the
    output of each block's branch (its ``ext_regul``, the last module before the add).
    Ranges: asymmetric, at the ``RANGE_TAIL`` quantiles of the values ``calibrate`` saw.
    ``finish`` leaves the weights snapped and the model as it was otherwise."""

    def __init__(self, model: nn.Module, scheme: Int8Scheme = TUNED_INT8_SCHEME) -> None:
        self.model = model
        self.convolutions = int8_convolutions(model, scheme.fp32_convs)
        for name in self.convolutions:
            conv = model.get_submodule(name)
            grid = _WeightOnGrid(output_axis(conv), scheme.weight_max)
            parametrize.register_parametrization(conv, "weight", grid)
        points = dict.fromkeys(self.convolutions)
        branches: list[str] = []
        for name, module in model.named_modules():
            if isinstance(module, BOTTLENECKS):
                if f"{name}.ext_conv1.0" in points:
                    points[name] = None
                if scheme.branches == "int8":
                    branches.append(f"{name}.ext_regul")
            if isinstance(module, InitialBlock):  # it reads the 8-bit image as it is
                points.pop(f"{name}.conv", None)
        self.ranges: dict[str, tuple[float, int]] = {}
        self.rounding = False
        self._samples: dict[str, list[Tensor]] | None = None
        self._hooks = [
            model.get_submodule(name).register_forward_pre_hook(
                lambda _m, args, name=name: (self._round(name, args[0]), *args[1:])
            )
            for name in points
        ] + [
            model.get_submodule(name).register_forward_hook(
                lambda _m, _args, out, name=name: self._round(name, out)
            )
            for name in branches
        ]

    def _round(self, name: str, x: Tensor) -> Tensor:
        """``x`` rounded to its uint8 range while ``rounding``; sampled while calibrating."""
        if self._samples is not None:
            flat = x.detach().flatten()
            pick = torch.randint(0, flat.numel(), (min(SAMPLES_PER_BATCH, flat.numel()),))
            self._samples.setdefault(name, []).append(flat[pick.to(flat.device)])
        elif self.rounding:
            scale, zero = self.ranges[name]
            return torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255)
        return x

    def calibrate(self, batches: Iterable[Tensor]) -> None:
        """Measure every rounded tensor's uint8 range on ``batches`` (model inputs)."""
        self._samples = {}
        try:
            with torch.no_grad():
                for x in batches:
                    self.model(x)
            for name, samples in self._samples.items():
                values = torch.cat(samples).float()
                q = torch.tensor([RANGE_TAIL, 1 - RANGE_TAIL], device=values.device)
                low, high = torch.quantile(values, q).tolist()
                low, high = min(low, 0.0), max(high, 0.0)  # zero stays exact
                scale = max(high - low, 1e-8) / 255
                self.ranges[name] = (scale, min(max(round(-low / scale), 0), 255))
        finally:
            self._samples = None

    def finish(self) -> None:
        """Remove the emulation; the int8 convolutions keep their weights on the grid."""
        for hook in self._hooks:
            hook.remove()
        for name in self.convolutions:
            conv = self.model.get_submodule(name)
            parametrize.remove_parametrizations(conv, "weight", leave_parametrized=True)


def _symmetric_kl(a: Tensor, b: Tensor) -> Tensor:
    la, lb = F.log_softmax(a, 1), F.log_softmax(b, 1)
    return 0.5 * ((la.exp() * (la - lb)).sum(1) + (lb.exp() * (lb - la)).sum(1)).mean()


def _agreement(model: nn.Module, emulation: Int8Emulation, batches: list[Tensor]) -> float:
    """Share of pixels where the rounding forward picks the fp32 forward's class."""
    same = total = 0
    with torch.no_grad():
        for x in batches:
            emulation.rounding = False
            fp32 = model(x)
            emulation.rounding = True
            agree, pixels = same_class_pixels(model(x), fp32)
            same, total = same + agree, total + pixels
    emulation.rounding = False
    return same / total


def _spread_inputs(
    split: PreparedDataset, count: int, batch_size: int, device: torch.device, channels_last: bool
) -> list[Tensor]:
    """Up to ``count`` images spread over ``split``, in batches, as model inputs."""
    picked = range(0, len(split), max(len(split) // count, 1))[:count]
    images = torch.stack([torch.from_numpy(split[i][0]).permute(2, 0, 1) for i in picked])
    return [
        batch_to_input(b, device, channels_last=channels_last) for b in images.split(batch_size)
    ]


def _losses(
    model: nn.Module, emulation: Int8Emulation, x: Tensor, y: Tensor, weight: Tensor
) -> dict[str, Tensor]:
    """Both forwards' cross-entropy and the symmetric KL between them."""
    emulation.rounding = False
    fp32 = model(x)
    emulation.rounding = True
    int8 = model(x)
    emulation.rounding = False
    return {
        "ce_fp32": F.cross_entropy(fp32, y, weight=weight),
        "ce_int8": F.cross_entropy(int8, y, weight=weight),
        "kl": _symmetric_kl(fp32, int8),
    }


def finetune_for_int8(
    checkpoint: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    epochs: int = 2,
    lr: float = 5e-5,
    consistency: float = 1000.0,
    batch_size: int = 4,
    calibration_images: int = 40,
    device: str = "auto",
    seed: int = 0,
    progress: bool = True,
    scheme: Int8Scheme = TUNED_INT8_SCHEME,
    overwrite: bool = False,
) -> list[dict]:
    """Fine-tune ``checkpoint`` on the train split of the prepared set ``data`` and write the
    result (weights snapped to the int8 grid) to ``out``; returns one log row per epoch.

    Loss: cross-entropy of both forwards (the set's ENet class weights) plus
    ``consistency`` x the symmetric KL between them; Adam, ``lr`` on a cosine to zero; only
    horizontal flips (the model is already trained). Agreement between the two forwards is
    logged on up to 20 val images. ``scheme``: what the int8 export will round (recorded in
    the checkpoint, whose export follows it; the residual stream is always rounded here)."""
    if scheme.residual != "int8":
        raise UsageError("finetune-int8 trains for an int8 residual stream")
    check_output_file(out, overwrite=overwrite, inputs=[resolve_checkpoint(checkpoint), data])
    torch.manual_seed(seed)
    dev = resolve_device(device)
    ckpt = read_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt, checkpoint).to(dev).eval()  # BN, dropout frozen
    convolutions = len(int8_convolutions(model, 0))
    if scheme.fp32_convs > convolutions:
        raise UsageError(
            f"--fp32-convs {scheme.fp32_convs}: the model has {convolutions} convolutions"
        )
    channels_last = dev.type == "cpu"
    model = model.to(memory_format=torch.channels_last) if channels_last else model
    train = PreparedDataset(data, "train")
    check_same_classes(model.classes, train.classes, checkpoint, data)
    classes = train.classes
    weight = class_weights(
        train.manifest.get("weights", {}),
        "enet",
        stage=3,
        num_classes=classes.num_classes,
        void=classes.void,
    ).to(dev)
    loader = DataLoader(
        train,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),
    )
    if len(loader) == 0:
        raise UsageError(f"{data}: fewer train images than one batch of {batch_size}")

    def inputs(split: PreparedDataset, count: int) -> list[Tensor]:
        return _spread_inputs(split, count, batch_size, dev, channels_last)

    calibration = inputs(train, calibration_images)  # before the training transform is set
    train.transform = SegmentationTransform(train.size, augment=True, crop_p=0, blur_radius=0)
    val = PreparedDataset(data, "val") if "val" in train.manifest["splits"] else None
    check = inputs(val, 20) if val is not None else calibration
    emulation = Int8Emulation(model, scheme)
    emulation.calibrate(calibration)
    log = [{"epoch": 0, "agreement": _agreement(model, emulation, check)}]
    optimizer = torch.optim.Adam(model.parameters(), lr)
    steps, step = epochs * len(loader), 0
    start = time.time()
    for epoch in range(1, epochs + 1):
        totals = {"ce_fp32": 0.0, "ce_int8": 0.0, "kl": 0.0}
        bar = tqdm(loader, desc=f"finetune-int8 {epoch}/{epochs}", disable=not progress)
        for images, labels in bar:
            for group in optimizer.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
            x, y = batch_to_input(images, dev, channels_last=channels_last), labels.to(dev)
            parts = _losses(model, emulation, x, y, weight)
            loss = parts["ce_fp32"] + parts["ce_int8"] + consistency * parts["kl"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            for key, value in parts.items():
                totals[key] += value.item() / len(loader)
            bar.set_postfix(kl=f"{parts['kl'].item():.2e}")
        emulation.calibrate(calibration)
        row = {"epoch": epoch, **totals, "agreement": _agreement(model, emulation, check)}
        log.append(row | {"seconds": round(time.time() - start, 1)})
    emulation.finish()
    tuning = {
        "int8_finetune": f"enet finetune-int8 {Path(checkpoint).name} --data "
        f"{Path(data).name} --epochs {epochs} --lr {lr:g} --consistency {consistency:g} "
        f"--fp32-convs {scheme.fp32_convs} --weight-bits {scheme.weight_bits} "
        f"--branches {scheme.branches}",
        "int8_grid": f"{len(emulation.convolutions)} convolutions (enet finetune-int8)",
        **scheme.provenance(),
    }
    save_changed_weights(ckpt, model, out, tuning, replace=overwrite)
    return log
