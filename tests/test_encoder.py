"""Specification of the convolutional image encoder."""

from __future__ import annotations

import pytest
import torch

from lnn_nav.models.encoder import ConvEncoder, EncoderConfig

SMALL = EncoderConfig(height=48, width=64)


def test_default_encoder_maps_a_96x128_frame_to_feature_dim() -> None:
    encoder = ConvEncoder()
    features = encoder(torch.rand(2, 3, 96, 128))
    assert features.shape == (2, EncoderConfig().feature_dim)


def test_default_encoder_is_small() -> None:
    params = sum(p.numel() for p in ConvEncoder().parameters())
    assert params < 250_000
    assert params * 4 < 1_000_000  # float32 bytes: well under 1 MB


def test_feature_maps_has_one_map_per_convolution() -> None:
    maps = ConvEncoder(SMALL).feature_maps(torch.rand(1, 3, 48, 64))
    assert len(maps) == len(SMALL.channels)
    assert [m.shape[1] for m in maps] == list(SMALL.channels)


def test_analytic_output_size_matches_the_last_feature_map() -> None:
    for config in (SMALL, EncoderConfig(), EncoderConfig(height=37, width=51)):
        last = ConvEncoder(config).feature_maps(torch.rand(1, 3, config.height, config.width))[-1]
        assert tuple(last.shape[-2:]) == config.output_hw()


def test_uint8_frames_are_scaled_to_unit_range() -> None:
    encoder = ConvEncoder(SMALL)
    frame = torch.randint(0, 256, (2, 3, 48, 64), dtype=torch.uint8)
    torch.testing.assert_close(encoder(frame), encoder(frame.float() / 255.0))


def test_wrong_image_size_names_the_expected_shape() -> None:
    with pytest.raises(ValueError, match=r"expected images \[B, 3, 48, 64\].*got \[1, 3, 96, 128\]"):
        ConvEncoder(SMALL)(torch.rand(1, 3, 96, 128))


def test_wrong_channel_count_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"\[B, 3, 48, 64\]"):
        ConvEncoder(SMALL)(torch.rand(1, 1, 48, 64))


def test_integer_images_other_than_uint8_are_rejected() -> None:
    with pytest.raises(TypeError, match="uint8"):
        ConvEncoder(SMALL)(torch.zeros(1, 3, 48, 64, dtype=torch.int64))


@pytest.mark.parametrize("normalization", ["batch", "group"])
def test_normalization_layers_follow_each_convolution(normalization: str) -> None:
    config = EncoderConfig(height=48, width=64, normalization=normalization)
    encoder = ConvEncoder(config).eval()
    norm = torch.nn.BatchNorm2d if normalization == "batch" else torch.nn.GroupNorm
    assert sum(isinstance(m, norm) for m in encoder.modules()) == len(config.channels)
    assert encoder(torch.rand(2, 3, 48, 64)).shape == (2, config.feature_dim)


def test_config_rejects_layer_lists_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="same non-zero length"):
        EncoderConfig(channels=(8, 8), kernels=(5,), strides=(2, 2))


def test_config_rejects_an_unknown_normalization() -> None:
    with pytest.raises(ValueError, match="expected one of none, batch, group"):
        EncoderConfig(normalization="layer")


def test_config_round_trips_through_a_dict() -> None:
    config = EncoderConfig(height=48, width=64, dropout=0.1, normalization="group")
    assert EncoderConfig.from_dict(config.to_dict()) == config


def test_tanh_output_bounds_features_and_round_trips():
    import torch

    from lnn_nav.models.encoder import ConvEncoder, EncoderConfig

    cfg = EncoderConfig(height=24, width=32, output_activation="tanh", normalization="group")
    enc = ConvEncoder(cfg)
    with torch.no_grad():
        enc.bottleneck.weight.mul_(100.0)  # features that would otherwise be huge
        out = enc(torch.rand(3, 3, 24, 32))
    assert out.abs().max() <= 1.0 and out.abs().max() > 0.9
    assert EncoderConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="output_activation"):
        EncoderConfig(output_activation="relu")


@pytest.mark.parametrize("normalization", ["none", "group"])
def test_resized_encoder_keeps_the_convolutions_and_resamples_the_bottleneck(normalization: str) -> None:
    torch.manual_seed(0)
    small = ConvEncoder(EncoderConfig(height=48, width=64, normalization=normalization, feature_dim=12))
    big = small.resized(96, 128)
    assert (big.config.height, big.config.width) == (96, 128) and small.config.height == 48  # a copy
    assert big.config.output_hw() == (6, 8) and small.config.output_hw() == (3, 4)
    for a, b in zip(small.convs.parameters(), big.convs.parameters()):
        assert torch.equal(a, b)
    # The bottleneck reads a last map that is the old one upsampled 2x (nearest) as the old one.
    last = torch.randn(5, small.config.channels[-1], 3, 4)
    finer = torch.nn.functional.interpolate(last, scale_factor=2, mode="nearest")
    torch.testing.assert_close(big.bottleneck(finer.flatten(1)), small.bottleneck(last.flatten(1)))
    assert big(torch.rand(2, 3, 96, 128)).shape == (2, 12)
    with pytest.raises(ValueError, match=r"\[B, 3, 96, 128\]"):
        big(torch.rand(2, 3, 48, 64))


def test_frame_input_norm_cancels_global_brightness_contrast_and_colour_cast() -> None:
    from dataclasses import replace as _replace

    from lnn_nav.models.encoder import ConvEncoder, EncoderConfig

    torch.manual_seed(0)
    cfg = EncoderConfig(height=24, width=32, input_norm="frame")
    encoder = ConvEncoder(cfg).eval()
    frame = torch.rand(2, 3, 24, 32) * 0.6 + 0.2
    shifted = frame * 0.7 + torch.tensor([0.05, 0.02, -0.03]).view(1, 3, 1, 1)  # darker, lower contrast, a cast
    with torch.no_grad():
        assert torch.allclose(encoder(frame), encoder(shifted), atol=1e-4)
        fixed = ConvEncoder(_replace(cfg, input_norm="fixed")).eval()
        fixed.load_state_dict(encoder.state_dict())
        assert not torch.allclose(fixed(frame), fixed(shifted), atol=1e-3)
        # A uniform frame (lens cap) stays finite.
        assert torch.isfinite(encoder(torch.full((1, 3, 24, 32), 0.5))).all()
    with pytest.raises(ValueError, match="input_norm"):
        EncoderConfig(input_norm="auto")


def test_frame_input_norm_floor_scales_flat_frames_by_the_floor() -> None:
    """A frame flatter than the floor is divided by the floor, not by its own spread: a dark frame's
    features then differ from a bright one's, and the fused path leaves such an encoder to PyTorch."""
    from dataclasses import replace as _replace

    from lnn_nav.kernels import fused_policy
    from lnn_nav.models.encoder import ConvEncoder, EncoderConfig
    from lnn_nav.models.policy import LiquidPolicy, PolicyConfig

    torch.manual_seed(0)
    cfg = EncoderConfig(height=24, width=32, input_norm="frame", input_norm_floor=0.1)
    encoder = ConvEncoder(cfg).eval()
    frame = torch.rand(1, 3, 24, 32) * 0.6 + 0.2  # spread ~0.17: above the floor
    dark = frame * 0.3  # spread ~0.05: below it
    first = encoder.convs[0][0]
    with torch.no_grad():
        expected = []
        for x, divisor in ((frame, None), (dark, 0.1)):
            centred = x - x.mean(dim=(2, 3), keepdim=True)
            spread = centred.pow(2).mean().sqrt() if divisor is None else torch.tensor(divisor)
            expected.append(first(centred / spread))
        for x, want in zip((frame, dark), expected):
            torch.testing.assert_close(encoder.feature_maps(x)[0], torch.relu(want))  # Conv2d + ReLU blocks
        assert not torch.allclose(encoder(frame), encoder(dark), atol=1e-3)
        # The default floor (0.02) cancels the same darkening.
        default = ConvEncoder(_replace(cfg, input_norm_floor=0.02)).eval()
        default.load_state_dict(encoder.state_dict())
        assert torch.allclose(default(frame), default(dark), atol=1e-4)
    policy = LiquidPolicy(PolicyConfig(encoder=cfg, core="cfc-ncp", core_options={"units": 12})).eval()
    assert "floor" in (fused_policy.why_not_fused_policy(policy) or "")
    image = torch.rand(1, 3, 24, 32)
    command, _ = policy.step(image, torch.tensor([0.05]), policy.initial_state(1))  # the PyTorch encoder flies it
    assert torch.isfinite(command).all()
    for bad in (0.0, -0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="input_norm_floor"):
            EncoderConfig(input_norm="frame", input_norm_floor=bad)
