"""VisualBackProp saliency for the CNN encoder: which pixels the features are computed from.

VisualBackProp (Bojarski et al., "VisualBackProp: efficient visualization of
CNNs for autonomous driving", ICRA 2018, arXiv:1611.05418) is the saliency
method of the NCP driving and liquid-drone papers (Lechner et al. 2020;
Chahine et al. 2023). For each convolution block the feature maps (after the
ReLU) are averaged over channels; starting from the deepest, the averaged map
is scaled up to the previous block's resolution by a deconvolution with an
all-ones kernel of that convolution's size, stride and padding, multiplied
pointwise with the previous block's averaged map, and so on down to the
input. The result, normalised to [0, 1] per image, marks the pixels that
contribute most to the deepest feature maps the bottleneck reads.

It costs one encoder pass plus a few tiny transposed convolutions, cheap
enough to run live in the controller node (``publish_saliency``).
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lnn_nav.models.encoder import ConvEncoder
from lnn_nav.models.inputs import resize_rgb

__all__ = ["encoder_of", "overlay", "saliency_overlays", "visual_backprop"]

_TINY = 1e-12


def encoder_of(model: nn.Module) -> ConvEncoder:
    """The :class:`ConvEncoder` of a policy (its ``encoder``), or ``model`` itself if it is one."""
    encoder = model if isinstance(model, ConvEncoder) else getattr(model, "encoder", None)
    if not isinstance(encoder, ConvEncoder):
        raise TypeError(
            f"VisualBackProp needs a ConvEncoder or a policy with one as .encoder, got {type(model).__name__}"
        )
    return encoder


def _conv_geometry(block: nn.Module) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    conv = next((m for m in block.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise TypeError(f"encoder block has no Conv2d: {block}")
    if tuple(conv.dilation) != (1, 1) or not isinstance(conv.padding, tuple):
        raise ValueError(
            f"VisualBackProp needs undilated convolutions with numeric padding, got dilation "
            f"{conv.dilation} and padding {conv.padding!r}"
        )
    return tuple(conv.kernel_size), tuple(conv.stride), tuple(conv.padding)  # type: ignore[return-value]


def _scale_up(mask: Tensor, block: nn.Module, size: tuple[int, int]) -> Tensor:
    """``mask`` ``[B, 1, h, w]`` -> ``[B, 1, *size]`` through the all-ones deconvolution of ``block``'s conv."""
    kernel, stride, padding = _conv_geometry(block)
    # A strided conv maps several input sizes to one output size: output_padding picks ours.
    natural = [(n - 1) * s - 2 * p + k for n, s, p, k in zip(mask.shape[-2:], stride, padding, kernel)]
    extra = tuple(t - n for t, n in zip(size, natural))
    if any(not 0 <= e < s for e, s in zip(extra, stride)):
        raise ValueError(
            f"cannot deconvolve a {list(mask.shape[-2:])} map to {list(size)} with kernel {kernel}, "
            f"stride {stride}, padding {padding}: the feature maps do not come from this convolution"
        )
    ones = torch.ones(1, 1, *kernel, dtype=mask.dtype, device=mask.device)
    return F.conv_transpose2d(mask, ones, stride=stride, padding=padding, output_padding=extra)


def visual_backprop(model: nn.Module, images: Tensor) -> Tensor:
    """VisualBackProp saliency: ``images`` ``[B, C, H, W]`` (uint8, or float in [0, 1]) -> ``[B, H, W]`` in [0, 1].

    ``model`` is a :class:`ConvEncoder` or a policy holding one as
    ``encoder``. Each map is normalised on its own (1 at its most salient
    pixel); a map with no activation at all is zero. The encoder is run in
    eval mode without gradients and left in the mode it was in.
    """
    encoder = encoder_of(model)
    was_training = encoder.training
    encoder.eval()  # batch norm must not use (or update) batch statistics here
    try:
        with torch.no_grad():
            maps = encoder.feature_maps(images)
    finally:
        encoder.train(was_training)
    with torch.no_grad():
        averaged = []
        for fmap in maps:
            mean = fmap.float().mean(dim=1, keepdim=True)
            # Scaling each level by its maximum does not change the normalised result
            # (the product is only scaled), but keeps deep hierarchies away from under/overflow.
            averaged.append(mean / mean.amax(dim=(2, 3), keepdim=True).clamp_min(_TINY))
        mask = averaged[-1]
        for level in range(len(maps) - 1, -1, -1):
            height, width = averaged[level - 1].shape[-2:] if level > 0 else images.shape[-2:]
            mask = _scale_up(mask, encoder.convs[level], (height, width))
            if level > 0:
                mask = mask * averaged[level - 1]
        mask = mask[:, 0]
        low = mask.amin(dim=(1, 2), keepdim=True)
        span = mask.amax(dim=(1, 2), keepdim=True) - low
        return torch.where(span > _TINY, (mask - low) / span.clamp_min(_TINY), torch.zeros_like(mask))


def overlay(rgb: np.ndarray, saliency: np.ndarray | Tensor, alpha: float = 0.6) -> np.ndarray:
    """Saliency drawn over a frame: uint8 ``[H, W, 3]`` RGB and a ``[h, w]`` map in [0, 1] -> uint8 ``[H, W, 3]``.

    The map is resized to the frame (bilinear) and coloured with the jet
    colour map; each pixel blends towards its colour in proportion to its
    saliency (times ``alpha``), so unremarkable regions show the plain frame.
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected a uint8 [H, W, 3] RGB frame, got {rgb.dtype} {list(rgb.shape)}")
    if isinstance(saliency, Tensor):
        saliency = saliency.detach().to("cpu", torch.float32).numpy()
    saliency = np.asarray(saliency, dtype=np.float32)
    if saliency.ndim != 2:
        raise ValueError(f"expected a [H, W] saliency map, got shape {list(saliency.shape)}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    height, width = rgb.shape[:2]
    if saliency.shape != (height, width):
        saliency = cv2.resize(saliency, (width, height), interpolation=cv2.INTER_LINEAR)
    saliency = np.clip(np.nan_to_num(saliency), 0.0, 1.0)
    heat = cv2.cvtColor(
        cv2.applyColorMap(np.round(saliency * 255).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB
    )
    weight = (alpha * saliency)[..., None]
    blended = rgb.astype(np.float32) * (1.0 - weight) + heat.astype(np.float32) * weight
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def saliency_overlays(
    model: nn.Module, frames: Iterable[np.ndarray], batch_size: int = 32, alpha: float = 0.6
) -> list[np.ndarray]:
    """Camera frames (uint8 ``[H, W, 3]`` RGB, any size) -> one overlay per frame, at the frame's size.

    Frames are resized to the encoder's input as in training
    (:func:`lnn_nav.models.inputs.resize_rgb`) and run in batches of
    ``batch_size`` on the encoder's device. The overlays are ready for a GIF
    or video writer.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    encoder = encoder_of(model)
    cfg = encoder.config
    device = encoder.mean.device
    frames = [np.asarray(f) for f in frames]
    out: list[np.ndarray] = []
    for start in range(0, len(frames), batch_size):
        chunk = frames[start : start + batch_size]
        for f in chunk:
            if f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3:
                raise ValueError(f"expected uint8 [H, W, 3] RGB frames, got {f.dtype} {list(f.shape)}")
        small = np.stack([resize_rgb(f, cfg.height, cfg.width) for f in chunk])
        images = torch.from_numpy(np.ascontiguousarray(small.transpose(0, 3, 1, 2))).to(device)
        maps = visual_backprop(encoder, images).cpu().numpy()
        out.extend(overlay(f, m, alpha) for f, m in zip(chunk, maps))
    return out
