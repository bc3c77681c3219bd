"""LEDNet specifics: SS-nbt and downsampler blocks, encoder layout, the fixed APN, encoder weights."""

from __future__ import annotations

import pytest
import torch

from anoseg.errors import AnosegError
from anoseg.models import create_model
from anoseg.models.blocks import channel_shuffle, resize
from anoseg.models.lednet import APN, Downsampler, LEDNet, LEDNetEncoder, SSnbt


def _numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_channel_shuffle_interleaves_the_two_halves():
    x = torch.randn(2, 6, 3, 4)
    out = channel_shuffle(x, 2)
    # Output channel 2i comes from the first half's channel i, 2i+1 from the second half's.
    assert torch.equal(out[:, 0::2], x[:, :3])
    assert torch.equal(out[:, 1::2], x[:, 3:])


def test_ssnbt_is_residual_then_shuffled():
    block = SSnbt(8, dropout=0.3, dilation=2).eval()
    with torch.no_grad():  # silence both branches: their last BN outputs 0
        for branch in (block.left, block.right):
            branch[-1].bn.weight.zero_()
            branch[-1].bn.bias.zero_()
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        assert torch.equal(block(x), channel_shuffle(torch.relu(x), 2))


def test_ssnbt_branches_mirror_each_other_and_dilate_the_second_pair():
    block = SSnbt(16, dilation=5)
    convs = {side: [m for m in getattr(block, side).modules() if isinstance(m, torch.nn.Conv2d)]
             for side in ("left", "right")}
    assert [c.kernel_size for c in convs["left"]] == [(3, 1), (1, 3), (3, 1), (1, 3)]
    assert [c.kernel_size for c in convs["right"]] == [(1, 3), (3, 1), (1, 3), (3, 1)]
    assert [c.dilation for c in convs["left"]] == [(1, 1), (1, 1), (5, 1), (1, 5)]
    assert [c.dilation for c in convs["right"]] == [(1, 1), (1, 1), (1, 5), (5, 1)]
    assert all(c.groups == 1 and c.bias is not None and c.in_channels == 8 for c in convs["left"] + convs["right"])


def test_ssnbt_dropout_acts_in_training_only():
    torch.manual_seed(0)
    block = SSnbt(32, dropout=0.3, dilation=1)
    x = torch.randn(2, 32, 8, 8)
    block.train()
    assert not torch.equal(block(x), block(x))
    block.eval()
    with torch.no_grad():
        assert torch.equal(block(x), block(x))
    assert isinstance(SSnbt(32, dropout=0.0).dropout, torch.nn.Identity)


@pytest.mark.parametrize(("h", "w"), [(8, 12), (7, 9)])
def test_downsampler_concatenates_conv_and_pool(h, w):
    block = Downsampler(3, 16).eval()
    out = block(torch.randn(1, 3, h, w))
    assert out.shape == (1, 16, (h + 1) // 2, (w + 1) // 2)
    assert block.conv.out_channels == 13 and block.bn.num_features == 16


def test_encoder_layout_and_parameter_breakdown():
    encoder = LEDNetEncoder()
    assert encoder(torch.zeros(1, 3, 64, 96)).shape == (1, 128, 8, 12)
    blocks = list(encoder.layers)
    ssnbt = [b for b in blocks if isinstance(b, SSnbt)]
    assert [type(b).__name__ for b in blocks].count("Downsampler") == 3 and len(ssnbt) == 13
    assert [b.left[3].dilation[0] for b in ssnbt[5:]] == [1, 2, 5, 9, 2, 5, 9, 17]
    assert [b.dropout.p for b in ssnbt] == [0.03] * 5 + [0.3] * 8
    # docs/architectures/lednet.md: encoder 911,436; SS-nbt 6,400 / 25,088 / 99,328 at 32 / 64 / 128 channels.
    assert _numel(encoder) == 911_436
    assert [_numel(b) for b in (ssnbt[0], ssnbt[3], ssnbt[5])] == [6_400, 25_088, 99_328]
    assert all(m.eps == 1e-3 for m in LEDNet().modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_apn_emits_num_classes_with_the_reference_parameter_split():
    apn = APN(128, 20)  # the authors' hard-coded 20 outputs: decoder 11,647
    assert _numel(apn) == 11_647
    assert [_numel(m) for m in (apn.global_branch, apn.mid, apn.down1, apn.down2, apn.down3, apn.lateral2,
                                apn.lateral1)] == [2_620, 2_620, 6_275, 28, 24, 28, 52]
    model = LEDNet(num_classes=5).eval()
    assert model.decoder(torch.zeros(1, 128, 12, 20)).shape == (1, 5, 12, 20)


def test_apn_global_term_equals_the_authors_align_corners_resize():
    torch.manual_seed(0)
    apn = APN(16, 3).eval()
    x = torch.randn(2, 16, 16, 24)
    with torch.no_grad():
        g = resize(apn.global_branch(x), x.shape[-2:], align_corners=True)
        d1 = apn.down1(x)
        d2 = apn.down2(d1)
        t = resize(apn.down3(d2), (16 // 4, 24 // 4), align_corners=True) + apn.lateral2(d2)
        t = resize(t, (16 // 2, 24 // 2), align_corners=True) + apn.lateral1(d1)
        expected = resize(t, (16, 24), align_corners=True) * apn.mid(x) + g
        assert torch.allclose(apn(x), expected, atol=1e-6)


def test_output_follows_the_input_size_not_the_authors_fixed_512x1024():
    out = create_model("lednet", num_classes=2).eval()(torch.zeros(1, 3, 64, 160))
    assert out.shape == (1, 2, 64, 160)


def test_train_mode_returns_the_main_tensor():
    out = LEDNet(num_classes=3).train()(torch.randn(2, 3, 64, 96))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3, 64, 96)


def test_encoder_file_round_trip(tmp_path):
    torch.manual_seed(1)
    source = LEDNetEncoder()
    with torch.no_grad():
        source.layers[0].bn.running_mean.uniform_(-1, 1)
    torch.save(source.state_dict(), tmp_path / "encoder.pth")
    torch.manual_seed(2)
    model = create_model("lednet", backbone_weights=str(tmp_path / "encoder.pth"))
    for key, value in source.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[key], value), key


def test_encoder_file_with_wrong_shapes_is_a_user_error(tmp_path):
    state = LEDNetEncoder().state_dict()
    state["layers.0.conv.weight"] = torch.zeros(29, 4, 3, 3)
    torch.save(state, tmp_path / "wrong.pth")
    with pytest.raises(AnosegError, match=r"wrong\.pth have wrong shapes"):
        create_model("lednet", backbone_weights=str(tmp_path / "wrong.pth"))
    with pytest.raises(AnosegError, match="depth"):
        create_model("lednet", depth=3)
