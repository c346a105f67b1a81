"""ENet (Paszke et al. 2016, arXiv 1606.02147) in the two variants users meet in practice.

``variant="seed"`` is the MindSpore port whose numbers we target (SPEC section 2): per-channel
PReLU, element-wise dropout, 1x5 before 5x1, bilinear x2 in the decoder main branch, and the
three MindSpore op semantics (asymmetric bilinear, bottom/right ``same`` max-pool padding,
``same`` 3x3 s2 transposed conv that drops the last row/column).

``variant="pytorch-enet"`` is davidtvs/PyTorch-ENet (and the paper's decoder): one shared PReLU
weight per module, ``Dropout2d``, 5x1 before 1x5, max-unpool with the downsampling indices.

Both share one module tree, so state-dict keys differ only where the architectures do.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "BOTTLENECKS",
    "VARIANTS",
    "ENet",
    "check_input_size",
    "classifier_keys",
    "nearest_valid_sizes",
    "transfer_encoder",
]

Variant = Literal["seed", "pytorch-enet"]
VARIANTS: tuple[str, ...] = ("seed", "pytorch-enet")

#: The encoder downsamples three times, so every input side must divide by this.
SIZE_MULTIPLE = 8

# SPEC 2.1: dropout is 0.01 in stage 1 (1.0 included) and 0.1 from 2.0 on, decoder included.
STAGE1_DROPOUT = 0.01
LATER_DROPOUT = 0.1


@dataclass(frozen=True)
class BlockSpec:
    """One row of the paper's Table 1 for the repeated 128-channel stages."""

    kind: Literal["regular", "dilated", "asymmetric"]
    arg: int = 1  # dilation for "dilated", kernel size for "asymmetric"


# Stages 2 and 3 after 2.0 (paper Table 1); stage 2 numbers blocks from 1, stage 3 from 0,
# as both PyTorch-ENet and the seed do, which fixes the state-dict names.
STAGE_2_3_BLOCKS: tuple[BlockSpec, ...] = (
    BlockSpec("regular"),
    BlockSpec("dilated", 2),
    BlockSpec("asymmetric", 5),
    BlockSpec("dilated", 4),
    BlockSpec("regular"),
    BlockSpec("dilated", 8),
    BlockSpec("asymmetric", 5),
    BlockSpec("dilated", 16),
)


def nearest_valid_sizes(n: int) -> tuple[int, int]:
    """The multiples of 8 just below and above ``n`` (equal when ``n`` is one)."""
    low = max(SIZE_MULTIPLE, n // SIZE_MULTIPLE * SIZE_MULTIPLE)
    high = -(-n // SIZE_MULTIPLE) * SIZE_MULTIPLE
    return low, max(high, SIZE_MULTIPLE)


def check_input_size(height: int, width: int) -> None:
    """Raise ``ValueError`` naming the nearest valid sizes when H or W is not a multiple of 8.

    The decoder adds a x2-upsampled main branch to a transposed-conv branch three times, so
    the sizes only meet when each side divides by 8 (SPEC 8.5).
    """
    bad = [(name, n) for name, n in (("height", height), ("width", width)) if n % SIZE_MULTIPLE]
    if bad:
        hints = ", ".join(
            f"{name} {n} -> {' or '.join(str(v) for v in sorted(set(nearest_valid_sizes(n))))}"
            for name, n in bad
        )
        raise ValueError(
            f"ENet input must have height and width divisible by {SIZE_MULTIPLE}, "
            f"got {height}x{width} (HxW); nearest valid: {hints}. "
            "Pad or resize the image first (enet infer pads automatically)."
        )


def _activation(variant: Variant, channels: int, relu: bool) -> nn.Module:
    if relu:
        return nn.ReLU()
    return nn.PReLU(channels if variant == "seed" else 1, init=0.25)


DROPOUT_KINDS = ("auto", "element", "channel")


def _dropout(variant: Variant, p: float) -> nn.Module:
    """Seed: element-wise; PyTorch-ENet / paper: whole channels (``Dropout2d``)."""
    return nn.Dropout(p) if variant == "seed" else nn.Dropout2d(p)


def _conv_bn_act(
    variant: Variant,
    in_ch: int,
    out_ch: int,
    kernel: int | tuple[int, int],
    *,
    relu: bool,
    stride: int = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int = 1,
    act: bool = True,
) -> nn.Sequential:
    """conv (no bias) -> BN -> activation, the unit every bottleneck is built from."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride, padding, dilation, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if act:
        layers.append(_activation(variant, out_ch, relu))
    return nn.Sequential(*layers)


def _replicate_edges(x: Tensor, dim: int, before: int, after: int) -> Tensor:
    """Repeat the first/last slice along ``dim``; a concat, which (unlike replication_pad2d)
    every backend and torch.compile handles in any memory format."""
    if not before and not after:
        return x
    n = x.shape[dim]
    return torch.cat(
        [x.narrow(dim, 0, 1)] * before + [x] + [x.narrow(dim, n - 1, 1)] * after, dim=dim
    )


def _export_op(name: str, impl: Callable[..., Tensor], shape: Callable[..., tuple]) -> None:
    """Register ``impl`` as the custom op ``enet::<name>``, which the modules call only under
    ``torch.onnx.export`` and enet.deploy.export writes as one ONNX op (``export._translations``);
    ``shape`` gives torch.export the output's shape from the inputs."""
    op = torch.library.custom_op(f"enet::{name}", impl, mutates_args=())
    op.register_fake(lambda *inputs: inputs[0].new_empty(shape(*inputs)))


def max_pool3x3s2_same(x: Tensor) -> Tensor:
    """MindSpore ``MaxPool2d(3, 2, pad_mode="same")``: TF SAME padding, odd element after.

    For even sides that is one row/column at the bottom/right only (PyTorch's ``padding=1``
    pads both sides: same shape, other values). Replicating the edge equals -inf padding for
    a max, since the edge itself lies in every window that sees the pad, and stays finite
    under quantisation. Under ``torch.onnx.export`` (sides are even there: ENet's inputs are
    multiples of 8) it is one custom op, written as ONNX's MaxPool with end pads.
    """
    if torch.onnx.is_in_onnx_export() and x.shape[-2] % 2 == 0 and x.shape[-1] % 2 == 0:
        return torch.ops.enet.max_pool3x3s2_same(x)
    return _max_pool3x3s2_same(x)


def _max_pool3x3s2_same(x: Tensor) -> Tensor:
    for dim in (-2, -1):
        n = x.shape[dim]
        total = max((math.ceil(n / 2) - 1) * 2 + 3 - n, 0)
        x = _replicate_edges(x, dim, total // 2, total - total // 2)
    return F.max_pool2d(x, 3, 2)


_export_op(
    "max_pool3x3s2_same",
    _max_pool3x3s2_same,
    lambda x: (*x.shape[:2], (x.shape[2] + 1) // 2, (x.shape[3] + 1) // 2),
)


class SameConvTranspose2d(nn.ConvTranspose2d):
    """MindSpore ``Conv2dTranspose(k=3, stride=2, pad_mode="same")``: the full transposed conv
    (2H+1) with its LAST row and column dropped. PyTorch-ENet's ``padding=1, output_padding=1``
    drops the first ones instead (differs by up to 31 on the seed's weights, SPEC 2.3).
    Under ``torch.onnx.export``: one ONNX ConvTranspose with end pads, not a crop of the
    logits (the crop cost OpenVINO a copy of them)."""

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        export = torch.onnx.is_in_onnx_export()
        same = torch.ops.enet.conv_transpose3x3s2_same if export else _conv_transpose3x3s2_same
        out = same(x, self.weight)
        return out if self.bias is None else out + self.bias[:, None, None]


def _conv_transpose3x3s2_same(x: Tensor, weight: Tensor) -> Tensor:
    h, w = x.shape[-2:]
    return F.conv_transpose2d(x, weight, stride=2)[..., : 2 * h, : 2 * w]


_export_op(
    "conv_transpose3x3s2_same",
    _conv_transpose3x3s2_same,
    lambda x, weight: (x.shape[0], weight.shape[1], 2 * x.shape[2], 2 * x.shape[3]),
)


class InitialBlock(nn.Module):
    """3x3 s2 conv (13 ch) beside a 3x3 s2 max-pool (3 ch), concatenated -> BN -> act."""

    def __init__(self, variant: Variant, out_channels: int = 16) -> None:
        super().__init__()
        self.variant = variant
        self.conv = nn.Conv2d(3, out_channels - 3, 3, stride=2, padding=1, bias=False)
        self.batch_norm = nn.BatchNorm2d(out_channels)
        self.out_activation = _activation(variant, out_channels, relu=False)

    def _pool(self, x: Tensor) -> Tensor:
        if self.variant == "pytorch-enet":
            return F.max_pool2d(x, 3, 2, padding=1)
        return max_pool3x3s2_same(x)

    def forward(self, x: Tensor) -> Tensor:
        if torch.onnx.is_in_onnx_export():
            out = self._concat_as_sum(x)
        else:
            out = torch.cat((self.conv(x), self._pool(x)), dim=1)
        return self.out_activation(self.batch_norm(out))

    def _concat_as_sum(self, x: Tensor) -> Tensor:
        """The concat written as a sum (exact: it adds zeros): the conv with zero filters for
        the pool's channels, plus the pool behind zero channels. OpenVINO keeps a 13 + 3
        channel concat in a plain layout and reorders everything around it (the next
        max-pool alone took 6 ms): the sum takes ~6% off its fp32 time at 1024x512."""
        pooled = self._pool(x)
        weight = F.pad(self.conv.weight, (0, 0, 0, 0, 0, 0, 0, pooled.shape[1]))
        conv = F.conv2d(x, weight, stride=self.conv.stride, padding=self.conv.padding)
        return conv + F.pad(pooled, (0, 0, 0, 0, self.conv.out_channels, 0))


class RegularBottleneck(nn.Module):
    """Identity shortcut + (1x1 reduce, middle conv, 1x1 expand, dropout); add; activate.

    The middle conv is a 3x3 (optionally dilated) or an asymmetric k x 1 / 1 x k pair whose
    order is the variant's: the seed applies 1xk first, PyTorch-ENet kx1 first.
    """

    def __init__(
        self,
        variant: Variant,
        channels: int,
        spec: BlockSpec,
        dropout: float,
        relu: bool = False,
    ) -> None:
        super().__init__()
        inner = channels // 4
        self.ext_conv1 = _conv_bn_act(variant, channels, inner, 1, relu=relu)
        if spec.kind == "asymmetric":
            k, pad = spec.arg, spec.arg // 2
            first, second = ((1, k), (0, pad)), ((k, 1), (pad, 0))
            if variant == "pytorch-enet":
                first, second = second, first
            self.ext_conv2 = nn.Sequential(
                *_conv_bn_act(variant, inner, inner, first[0], relu=relu, padding=first[1]),
                *_conv_bn_act(variant, inner, inner, second[0], relu=relu, padding=second[1]),
            )
        else:
            d = spec.arg if spec.kind == "dilated" else 1
            self.ext_conv2 = _conv_bn_act(
                variant, inner, inner, 3, relu=relu, padding=d, dilation=d
            )
        self.ext_conv3 = _conv_bn_act(variant, inner, channels, 1, relu=relu)
        self.ext_regul = _dropout(variant, dropout)
        self.out_activation = _activation(variant, channels, relu)

    def forward(self, x: Tensor) -> Tensor:
        ext = self.ext_regul(self.ext_conv3(self.ext_conv2(self.ext_conv1(x))))
        return self.out_activation(x + ext)


class DownsamplingBottleneck(nn.Module):
    """2x2 max-pool + zero channels beside (2x2 s2, 3x3, 1x1, dropout); add; activate.

    Returns the pool indices too when ``keep_indices`` (PyTorch-ENet's max-unpool decoder).
    """

    def __init__(
        self, variant: Variant, in_ch: int, out_ch: int, dropout: float, keep_indices: bool
    ) -> None:
        super().__init__()
        inner = in_ch // 4
        self.keep_indices = keep_indices
        self.pad_channels = out_ch - in_ch
        self.ext_conv1 = _conv_bn_act(variant, in_ch, inner, 2, relu=False, stride=2)
        self.ext_conv2 = _conv_bn_act(variant, inner, inner, 3, relu=False, padding=1)
        self.ext_conv3 = _conv_bn_act(variant, inner, out_ch, 1, relu=False)
        self.ext_regul = _dropout(variant, dropout)
        self.out_activation = _activation(variant, out_ch, relu=False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.keep_indices:
            main, indices = F.max_pool2d(x, 2, 2, return_indices=True)
        else:
            main, indices = F.max_pool2d(x, 2, 2), None
        main = F.pad(main, (0, 0, 0, 0, 0, self.pad_channels))
        ext = self.ext_regul(self.ext_conv3(self.ext_conv2(self.ext_conv1(x))))
        return self.out_activation(main + ext), indices


def upsample2x_asymmetric(x: Tensor) -> Tensor:
    """MindSpore ``ResizeBilinear`` x2 (asymmetric: out[2i]=x[i], out[2i+1]=mean(x[i], x[i+1]),
    the last neighbour clamped), rows then columns (SPEC 2.2, reference/mindspore README).

    Not ``F.interpolate(align_corners=False)``, which samples half-pixel centres. PyTorch has
    no asymmetric mode, but ONNX's Resize has: under ``torch.onnx.export`` this becomes one
    custom op that enet.deploy.export writes as that Resize (the interleaving below, exported op by
    op, took a fifth of OpenVINO's time at 1024x512).
    """
    if torch.onnx.is_in_onnx_export():
        return torch.ops.enet.upsample2x_asymmetric(x)
    return _interleave_upsample2x(x)


def _interleave_upsample2x(x: Tensor) -> Tensor:
    h, w = x.shape[-2:]
    below = torch.cat((x.narrow(2, 1, h - 1), x.narrow(2, h - 1, 1)), dim=2)
    x = torch.stack((x, (x + below) * 0.5), dim=3).flatten(2, 3)  # N, C, 2H, W
    right = torch.cat((x.narrow(3, 1, w - 1), x.narrow(3, w - 1, 1)), dim=3)
    return torch.stack((x, (x + right) * 0.5), dim=4).flatten(3, 4)  # N, C, 2H, 2W


_export_op(
    "upsample2x_asymmetric",
    _interleave_upsample2x,
    lambda x: (*x.shape[:2], 2 * x.shape[2], 2 * x.shape[3]),
)


class UpsamplingBottleneck(nn.Module):
    """1x1 + BN then x2 upsampling beside (1x1, 2x2 s2 tconv, 1x1 no act, dropout); add; ReLU."""

    def __init__(self, variant: Variant, in_ch: int, out_ch: int, dropout: float) -> None:
        super().__init__()
        inner = in_ch // 4
        self.unpool = variant == "pytorch-enet"
        self.main_conv1 = _conv_bn_act(variant, in_ch, out_ch, 1, relu=True, act=False)
        self.ext_conv1 = _conv_bn_act(variant, in_ch, inner, 1, relu=True)
        self.ext_tconv1 = nn.Sequential(
            nn.ConvTranspose2d(inner, inner, 2, stride=2, bias=False),
            nn.BatchNorm2d(inner),
            nn.ReLU(),
        )
        # PyTorch-ENet 7cd31d4 and the seed: no activation after the 1x1 expansion.
        self.ext_conv2 = _conv_bn_act(variant, inner, out_ch, 1, relu=True, act=False)
        self.ext_regul = _dropout(variant, dropout)
        self.out_activation = nn.ReLU()

    def forward(self, x: Tensor, indices: Tensor | None, size: torch.Size) -> Tensor:
        main = self.main_conv1(x)
        if self.unpool:
            main = F.max_unpool2d(main, indices, 2, 2, output_size=size[-2:])
        else:
            main = upsample2x_asymmetric(main)
        ext = self.ext_regul(self.ext_conv2(self.ext_tconv1(self.ext_conv1(x))))
        return self.out_activation(main + ext)


#: ENet's blocks with a shortcut: each ends ``out_activation(main + ext)``, its branch's last
#: module being ``ext_regul``.
BOTTLENECKS = (RegularBottleneck, DownsamplingBottleneck, UpsamplingBottleneck)


class Encoder(nn.Module):
    """Initial block and stages 1-3: 3xHxW -> 128 x H/8 x W/8."""

    def __init__(self, variant: Variant, dropout: tuple[float, float]) -> None:
        super().__init__()
        unpool = variant == "pytorch-enet"
        early, later = dropout
        self.initial_block = InitialBlock(variant)
        self.downsample1_0 = DownsamplingBottleneck(variant, 16, 64, early, unpool)
        for i in range(1, 5):
            self.add_module(
                f"regular1_{i}", RegularBottleneck(variant, 64, BlockSpec("regular"), early)
            )
        self.downsample2_0 = DownsamplingBottleneck(variant, 64, 128, later, unpool)
        for stage, first in ((2, 1), (3, 0)):
            for i, spec in enumerate(STAGE_2_3_BLOCKS, start=first):
                self.add_module(
                    f"{spec.kind}{stage}_{i}", RegularBottleneck(variant, 128, spec, later)
                )

    def forward(self, x: Tensor) -> tuple[Tensor, list[tuple[Tensor | None, torch.Size]]]:
        """Features and, per downsampling block, (pool indices or None, its input size)."""
        skips: list[tuple[Tensor | None, torch.Size]] = []
        for block in self.children():
            if isinstance(block, DownsamplingBottleneck):
                size = x.shape
                x, indices = block(x)
                skips.append((indices, size))
            else:
                x = block(x)
        return x, skips


class Decoder(nn.Module):
    """Stages 4-5 and the final 3x3 s2 transposed conv: 128 x H/8 x W/8 -> C x H x W."""

    def __init__(self, variant: Variant, num_classes: int, dropout: float) -> None:
        super().__init__()
        regular = BlockSpec("regular")
        self.upsample4_0 = UpsamplingBottleneck(variant, 128, 64, dropout)
        self.regular4_1 = RegularBottleneck(variant, 64, regular, dropout, relu=True)
        self.regular4_2 = RegularBottleneck(variant, 64, regular, dropout, relu=True)
        self.upsample5_0 = UpsamplingBottleneck(variant, 64, 16, dropout)
        self.regular5_1 = RegularBottleneck(variant, 16, regular, dropout, relu=True)
        if variant == "seed":
            self.fullconv = SameConvTranspose2d(16, num_classes, 3, stride=2, bias=False)
        else:
            self.fullconv = nn.ConvTranspose2d(
                16, num_classes, 3, stride=2, padding=1, output_padding=1, bias=False
            )

    def forward(self, x: Tensor, skips: list[tuple[Tensor | None, torch.Size]]) -> Tensor:
        (indices1, size1), (indices2, size2) = skips
        x = self.upsample4_0(x, indices2, size2)
        x = self.regular4_2(self.regular4_1(x))
        x = self.upsample5_0(x, indices1, size1)
        return self.fullconv(self.regular5_1(x))


class ENet(nn.Module):
    """ENet for semantic segmentation; logits at input resolution (or 1/8 if encoder_only).

    Args:
        num_classes: output channels; 20 for the seed's Cityscapes setting (19 + void).
        variant: ``"seed"`` (default, the MindSpore port) or ``"pytorch-enet"``.
        encoder_only: the encoder plus a 1x1 prediction head with bias (training stages 1-2,
            SPEC 4.1), giving ``num_classes x H/8 x W/8`` logits.
        dropout: rates in stage 1 and from block 2.0 on (decoder included), SPEC 2.2.
        dropout_kind: ``"auto"`` (the variant's own), ``"element"`` or ``"channel"``. Dropout
            only acts in training; channel masks need ~1/(H*W) of the random numbers, which
            is most of a CPU training step's cost with element-wise masks.

    Input: ``N x 3 x H x W`` RGB in [0, 1] (no mean/std), H and W divisible by 8.
    """

    def __init__(
        self,
        num_classes: int = 20,
        variant: Variant = "seed",
        encoder_only: bool = False,
        dropout: tuple[float, float] = (STAGE1_DROPOUT, LATER_DROPOUT),
        dropout_kind: str = "auto",
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown ENet variant {variant!r}; choose one of {VARIANTS}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if dropout_kind not in DROPOUT_KINDS:
            raise ValueError(f"dropout_kind must be one of {DROPOUT_KINDS}, got {dropout_kind!r}")
        self.num_classes = num_classes
        self.variant: Variant = variant
        self.encoder_only = encoder_only
        self.encoder = Encoder(variant, dropout)
        if encoder_only:
            self.pred = nn.Conv2d(128, num_classes, 1, bias=True)
        else:
            self.decoder = Decoder(variant, num_classes, dropout[1])
        if dropout_kind != "auto":
            kind = nn.Dropout if dropout_kind == "element" else nn.Dropout2d
            for name, module in list(self.named_modules()):
                if isinstance(module, (nn.Dropout, nn.Dropout2d)):
                    parent, _, attr = name.rpartition(".")
                    setattr(self.get_submodule(parent), attr, kind(module.p))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform conv weights, zero biases, BN 1/0, PReLU 0.25 (SPEC 2.2 Init)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()
            elif isinstance(m, nn.PReLU):
                nn.init.constant_(m.weight, 0.25)

    def forward(self, x: Tensor) -> Tensor:
        check_input_size(x.shape[-2], x.shape[-1])
        features, skips = self.encoder(x)
        if self.encoder_only:
            return self.pred(features)
        return self.decoder(features, skips)


def classifier_keys(model: ENet) -> list[str]:
    """The state-dict entries of the layer that maps features to classes: the last
    transposed convolution of a full ENet, the 1x1 head of an encoder."""
    prefix = "pred." if model.encoder_only else "decoder.fullconv."
    return [k for k in model.state_dict() if k.startswith(prefix)]


def transfer_encoder(source: ENet, target: ENet) -> ENet:
    """Copy every ``encoder.*`` entry (BN running statistics included) from ``source`` into
    ``target``, strictly; the target's decoder and the source's head are left alone.

    This is how training stage 3 starts from stage 2 (SPEC 4.6).
    """
    if source.variant != target.variant:
        raise ValueError(
            f"cannot move encoder weights from variant {source.variant!r} to {target.variant!r}"
        )
    target.encoder.load_state_dict(source.encoder.state_dict(), strict=True)
    return target
