"""Architecture: parameter counts (SPEC 2.4), shapes, modes, sizes and the MindSpore op
semantics checked against arrays MindSpore itself produced."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from enet.model import (
    ENet,
    InitialBlock,
    SameConvTranspose2d,
    check_input_size,
    max_pool3x3s2_same,
    transfer_encoder,
    upsample2x_asymmetric,
)

from .conftest import MINDSPORE, require


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("variant", "classes", "encoder_only", "expected"),
    [
        ("seed", 20, False, 358_039),
        ("seed", 20, True, 326_059),
        ("pytorch-enet", 20, False, 351_804),
        ("pytorch-enet", 19, False, 351_660),
    ],
)
def test_parameter_counts_match_spec(variant, classes, encoder_only, expected):
    assert n_params(ENet(classes, variant, encoder_only)) == expected


def test_seed_encoder_alone_has_spec_count():
    assert n_params(ENet(20, "seed").encoder) == 323_479


@pytest.mark.parametrize("variant", ["seed", "pytorch-enet"])
@pytest.mark.parametrize("size", [(64, 128), (72, 200), (120, 88), (8, 16)])
def test_output_shapes(variant, size):
    h, w = size
    x = torch.rand(2, 3, h, w)
    with torch.no_grad():
        assert ENet(19, variant).eval()(x).shape == (2, 19, h, w)
        assert ENet(7, variant, encoder_only=True).eval()(x).shape == (2, 7, h // 8, w // 8)


@pytest.mark.parametrize("variant", ["seed", "pytorch-enet"])
def test_eval_is_deterministic_and_train_uses_dropout(variant):
    torch.manual_seed(0)
    model = ENet(20, variant)
    x = torch.rand(1, 3, 64, 96)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))


@pytest.mark.parametrize("variant", ["seed", "pytorch-enet"])
@pytest.mark.parametrize("encoder_only", [False, True])
def test_train_mode_gives_every_parameter_a_gradient(variant, encoder_only):
    torch.manual_seed(0)
    model = ENet(5, variant, encoder_only).train()
    out = model(torch.rand(2, 3, 32, 48))
    out.square().mean().backward()
    without = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert without == []


@pytest.mark.parametrize(
    ("h", "w", "fragment"),
    [(500, 1024, "height 500 -> 496 or 504"), (512, 1001, "width 1001 -> 1000 or 1008")],
)
def test_bad_sizes_name_the_nearest_valid_ones(h, w, fragment):
    with pytest.raises(ValueError, match=fragment):
        check_input_size(h, w)
    with pytest.raises(ValueError, match=f"got {h}x{w}"):
        ENet(20)(torch.rand(1, 3, h, w))


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="unknown ENet variant 'paper'"):
        ENet(20, "paper")


@pytest.mark.parametrize("variant", ["seed", "pytorch-enet"])
def test_transfer_encoder_copies_weights_and_statistics(variant):
    torch.manual_seed(0)
    encoder_pred = ENet(20, variant, encoder_only=True)
    encoder_pred.train()(torch.rand(2, 3, 32, 32))  # move BN running statistics
    full = ENet(20, variant)
    decoder_before = {k: v.clone() for k, v in full.decoder.state_dict().items()}
    transfer_encoder(encoder_pred, full)
    for key, value in encoder_pred.encoder.state_dict().items():
        assert torch.equal(full.encoder.state_dict()[key], value), key
    assert full.encoder.initial_block.batch_norm.running_mean.abs().sum() > 0
    for key, value in full.decoder.state_dict().items():
        assert torch.equal(decoder_before[key], value), key
    with pytest.raises(ValueError, match="variant"):
        transfer_encoder(encoder_pred, ENet(20, "seed" if variant != "seed" else "pytorch-enet"))


# --- MindSpore op semantics (reference/mindspore/mindspore_op_semantics.npz) -------------


@pytest.fixture(scope="module")
def ops():
    return np.load(require(MINDSPORE / "mindspore_op_semantics.npz"))


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


@pytest.mark.parametrize("shape", ["2x3x5x7", "1x64x8x16", "1x16x9x17", "1x4x1x1", "1x2x4x6"])
def test_asymmetric_bilinear_matches_mindspore(ops, shape):
    out = upsample2x_asymmetric(_t(ops[f"resize_in_{shape}"]))
    expected = _t(ops[f"resize_out_{shape}_ac0_hp0"])
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    # The obvious PyTorch spelling (half-pixel) is measurably different on real sizes.
    if shape != "1x4x1x1":
        naive = torch.nn.functional.interpolate(
            _t(ops[f"resize_in_{shape}"]), scale_factor=2, mode="bilinear", align_corners=False
        )
        assert (naive - expected).abs().max() > 1e-2


@pytest.mark.parametrize("shape", ["1x3x8x10", "1x3x9x11", "1x3x64x128", "1x3x72x136"])
def test_same_max_pool_matches_mindspore(ops, shape):
    out = max_pool3x3s2_same(_t(ops[f"mp_in_{shape}"]))
    assert torch.equal(out, _t(ops[f"mp_out_{shape}"]))


@pytest.mark.parametrize("shape", ["1x16x6x8", "1x16x5x7"])
def test_same_transposed_conv_matches_mindspore(ops, shape):
    weight = _t(ops[f"tc3_w_{shape}"])
    conv = SameConvTranspose2d(weight.shape[0], weight.shape[1], 3, stride=2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(weight)
        out = conv(_t(ops[f"tc3_in_{shape}"]))
    torch.testing.assert_close(out, _t(ops[f"tc3_out_{shape}"]), atol=5e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", ["seed", "pytorch-enet"])
def test_initial_block_exports_its_concat_as_an_equal_sum(variant):
    block = InitialBlock(variant)
    x = torch.rand(2, 3, 24, 40)
    with torch.no_grad():
        block.conv.weight.normal_()
        concat = torch.cat((block.conv(x), block._pool(x)), dim=1)
        summed = block._concat_as_sum(x)
    assert summed.shape == (2, 16, 12, 20)
    torch.testing.assert_close(summed, concat, atol=1e-5, rtol=0)
    assert torch.equal(summed[:, 13:], block._pool(x))  # the pool's channels, untouched
