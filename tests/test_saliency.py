"""VisualBackProp saliency for the CNN encoder, and the overlays drawn from it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lnn_nav.models import ConvEncoder, EncoderConfig, LiquidPolicy, PolicyConfig
from lnn_nav.models.saliency import overlay, saliency_overlays, visual_backprop

H, W = 32, 48
RED = (slice(4, 13), slice(4, 13))  # rows, columns of the red square
GREEN = (slice(18, 29), slice(30, 43))  # an equally bright green square far from it


def _red_detector() -> ConvEncoder:
    """An encoder whose features come from the red channel only: a known answer for saliency.

    Block 1 copies the red channel (centre tap of each kernel, nothing else);
    the deeper blocks average positively. Black and green pixels give no
    activation anywhere, so only red regions can be salient.
    """
    torch.manual_seed(0)
    cfg = EncoderConfig(
        height=H,
        width=W,
        channels=(4, 4, 4),
        kernels=(3, 3, 3),
        strides=(2, 2, 1),
        feature_dim=4,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
    )
    encoder = ConvEncoder(cfg).eval()
    with torch.no_grad():
        first = encoder.convs[0][0]
        first.weight.zero_()
        first.weight[:, 0, 1, 1] = 1.0
        first.bias.zero_()
        for block in encoder.convs[1:]:
            conv = block[0]
            conv.weight.fill_(1.0 / conv.weight[0].numel())
            conv.bias.zero_()
        encoder.bottleneck.weight.fill_(1.0)
        encoder.bottleneck.bias.zero_()
    return encoder


def _scene(red: bool = True, green: bool = True) -> torch.Tensor:
    image = torch.zeros(1, 3, H, W)
    if red:
        image[0, 0, RED[0], RED[1]] = 1.0
    if green:
        image[0, 1, GREEN[0], GREEN[1]] = 1.0
    return image


def test_the_toy_encoder_output_depends_on_the_red_square_only():
    # The premise of the next test: the red region drives the output, the green one does not.
    encoder = _red_detector()
    with torch.no_grad():
        both, no_green, no_red = (encoder(_scene(r, g)) for r, g in ((True, True), (True, False), (False, True)))
    assert torch.equal(both, no_green)
    assert not torch.allclose(both, no_red)


def test_saliency_highlights_the_region_that_drives_the_output_and_nothing_else():
    saliency = visual_backprop(_red_detector(), _scene())[0]
    red = saliency[RED[0], RED[1]]
    assert red.max() == 1.0 and red.min() > 0 and red.mean() > 0.3
    # The last deconvolution (3x3 kernel) spreads the map by one input pixel; beyond that, zero.
    outside = torch.ones(H, W, dtype=torch.bool)
    outside[RED[0].start - 1 : RED[0].stop + 1, RED[1].start - 1 : RED[1].stop + 1] = False
    assert torch.all(saliency[outside] == 0)
    assert torch.all(saliency[GREEN[0], GREEN[1]] == 0)


def test_saliency_of_an_image_without_any_activation_is_zero_not_nan():
    saliency = visual_backprop(_red_detector(), _scene(red=False))
    assert torch.all(saliency == 0)


@pytest.mark.parametrize(("height", "width"), [(96, 128), (48, 64), (37, 53), (5, 7)])
def test_saliency_has_the_input_resolution_and_is_in_0_1(height, width):
    torch.manual_seed(1)
    policy = LiquidPolicy(PolicyConfig(encoder=EncoderConfig(height=height, width=width))).eval()
    images = torch.randint(0, 256, (3, 3, height, width), dtype=torch.uint8)
    saliency = visual_backprop(policy, images)
    assert saliency.shape == (3, height, width) and saliency.dtype == torch.float32
    assert torch.all(torch.isfinite(saliency))
    assert saliency.min() >= 0.0 and saliency.max() <= 1.0
    assert torch.allclose(saliency.amax(dim=(1, 2)), torch.ones(3))


def test_each_map_is_computed_on_its_own_and_the_encoder_mode_is_kept():
    torch.manual_seed(2)
    encoder = ConvEncoder(EncoderConfig(height=48, width=64, normalization="batch"))
    with torch.no_grad():  # non-trivial running statistics
        encoder(torch.rand(8, 3, 48, 64))
    encoder.train()
    images = torch.rand(4, 3, 48, 64)
    stats = encoder.convs[0][1].running_mean.clone()
    together = visual_backprop(encoder, images)
    alone = torch.cat([visual_backprop(encoder, images[i : i + 1]) for i in range(4)])
    assert torch.allclose(together, alone, atol=1e-6)
    assert encoder.training
    assert torch.equal(encoder.convs[0][1].running_mean, stats)


def test_a_module_without_a_conv_encoder_is_refused():
    with pytest.raises(TypeError, match="ConvEncoder"):
        visual_backprop(torch.nn.Linear(3, 3), torch.rand(1, 3, 8, 8))


def test_overlay_is_uint8_rgb_at_the_frame_size_and_leaves_unsalient_pixels_alone():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, size=(60, 80, 3), dtype=np.uint8)
    saliency = np.zeros((30, 40), dtype=np.float32)
    saliency[:, 30:] = 1.0
    out = overlay(frame, torch.from_numpy(saliency))
    assert out.dtype == np.uint8 and out.shape == frame.shape
    assert np.array_equal(out[:, :50], frame[:, :50])  # saliency 0 (bilinear edge at column 60)
    assert not np.array_equal(out[:, 62:], frame[:, 62:])


def test_overlay_rejects_frames_that_are_not_rgb8():
    with pytest.raises(ValueError, match="uint8"):
        overlay(np.zeros((4, 4, 3), dtype=np.float32), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="saliency"):
        overlay(np.zeros((4, 4, 3), dtype=np.uint8), np.zeros((1, 4, 4)))


def test_saliency_overlays_returns_one_picture_per_camera_frame_at_camera_size():
    torch.manual_seed(3)
    policy = LiquidPolicy(PolicyConfig(encoder=EncoderConfig(height=48, width=64))).eval()
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, size=(120, 160, 3), dtype=np.uint8) for _ in range(5)]
    pictures = saliency_overlays(policy, frames, batch_size=2)
    assert len(pictures) == 5
    assert all(p.dtype == np.uint8 and p.shape == (120, 160, 3) for p in pictures)
    single = saliency_overlays(policy, frames[3:4])
    assert np.array_equal(single[0], pictures[3])
