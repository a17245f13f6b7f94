"""Convolutional image encoder: camera frame -> a small feature vector."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
from torch import Tensor, nn

from ..kernels import fused_policy

NORMALIZATIONS = ("none", "batch", "group")
#: How a frame is normalised before the first convolution (``EncoderConfig.input_norm``).
INPUT_NORMS = ("fixed", "frame")


@dataclass(frozen=True)
class EncoderConfig:
    """Layout of :class:`ConvEncoder`.

    The default follows the trunk of the NCP driving and liquid-drone papers
    (Lechner et al. 2020; Chahine et al. 2023): strided 5x5 convolutions, then
    3x3 ones, ReLU, flatten, a linear bottleneck. Convolutions pad to "same"
    (``kernel // 2``) and the fourth one also strides, so a 96x128 frame ends
    as a 6x8 map: the flatten stays small and the bottleneck does not dominate
    the parameter count, and images down to a few pixels remain valid.
    ``mean``/``std`` are per-channel normalisation applied to images in [0, 1]
    (ImageNet statistics by default). ``input_norm="frame"`` instead removes
    each frame's own per-channel mean and divides by its standard deviation
    (over all channels and pixels): a global brightness, contrast or colour
    cast shift (dusk, exposure, haze) then leaves the first convolution's
    input unchanged. The divisor never falls below ``input_norm_floor`` (in
    units of the [0, 1] pixel range): a frame flatter than that is scaled by
    the floor instead, so the noise of a dark or uniform frame is not blown up
    to unit scale (a dusk forest frame's spread is 0.05-0.07, a midday one's
    0.13-0.15).
    """

    in_channels: int = 3
    height: int = 96
    width: int = 128
    channels: tuple[int, ...] = (16, 24, 32, 32, 16)
    kernels: tuple[int, ...] = (5, 5, 5, 3, 3)
    strides: tuple[int, ...] = (2, 2, 2, 2, 1)
    feature_dim: int = 32
    dropout: float = 0.0
    normalization: str = "none"
    #: "tanh" bounds the features: unbounded ones grow during training until
    #: they saturate the liquid core's tanh heads, and its output stops
    #: depending on the image. "none" keeps the plain linear bottleneck.
    output_activation: str = "none"
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    input_norm: str = "fixed"
    input_norm_floor: float = fused_policy.FRAME_NORM_FLOOR  # the C++ encoder's: others run PyTorch's

    def __post_init__(self) -> None:
        # JSON round trips hand back lists; keep the config hashable-looking and immutable.
        for name in ("channels", "kernels", "strides", "mean", "std"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        layers = {len(self.channels), len(self.kernels), len(self.strides)}
        if len(layers) != 1 or not self.channels:
            raise ValueError(
                f"channels, kernels and strides must have the same non-zero length, got "
                f"{len(self.channels)}, {len(self.kernels)} and {len(self.strides)}"
            )
        for name in ("in_channels", "height", "width", "feature_dim"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if min(self.channels + self.kernels + self.strides) < 1:
            raise ValueError("channels, kernels and strides must all be >= 1")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(
                f"normalization {self.normalization!r} is not supported; expected one of {', '.join(NORMALIZATIONS)}"
            )
        if self.input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {', '.join(INPUT_NORMS)}, got {self.input_norm!r}")
        if not (math.isfinite(self.input_norm_floor) and self.input_norm_floor > 0):
            raise ValueError(f"input_norm_floor must be a finite number > 0, got {self.input_norm_floor}")
        if self.output_activation not in ("none", "tanh"):
            raise ValueError(f"output_activation must be 'none' or 'tanh', got {self.output_activation!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise ValueError(
                f"mean and std need one value per input channel ({self.in_channels}), got "
                f"{len(self.mean)} and {len(self.std)}"
            )
        if min(self.std) <= 0:
            raise ValueError(f"std values must be > 0, got {self.std}")

    def output_hw(self) -> tuple[int, int]:
        """Spatial size of the last feature map (conv arithmetic, padding ``k // 2``)."""
        h, w = self.height, self.width
        for k, s in zip(self.kernels, self.strides):
            pad = k // 2
            h = (h + 2 * pad - k) // s + 1
            w = (w + 2 * pad - k) // s + 1
        return h, w

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EncoderConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown encoder config field(s): {unknown}")
        return cls(**data)


class ConvEncoder(nn.Module):
    """``[B, C, H, W]`` image (float in [0, 1], or uint8) -> ``[B, feature_dim]``."""

    mean: Tensor  # buffers
    std: Tensor

    def __init__(self, config: EncoderConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or EncoderConfig()
        self.feature_dim = config.feature_dim
        # Buffers, not constants: they travel with the checkpoint and follow .to(device).
        self.register_buffer("mean", torch.tensor(config.mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(config.std).view(1, -1, 1, 1))
        self.convs = nn.ModuleList()
        in_ch = config.in_channels
        for out_ch, k, s in zip(config.channels, config.kernels, config.strides):
            layer: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, k, stride=s, padding=k // 2)]
            if config.normalization == "batch":
                layer.append(nn.BatchNorm2d(out_ch))
            elif config.normalization == "group":
                layer.append(nn.GroupNorm(math.gcd(out_ch, 8), out_ch))
            layer.append(nn.ReLU())
            self.convs.append(nn.Sequential(*layer))
            in_ch = out_ch
        h, w = config.output_hw()
        self.dropout = nn.Dropout(config.dropout)
        self.bottleneck = nn.Linear(in_ch * h * w, config.feature_dim)

    def feature_maps(self, images: Tensor) -> list[Tensor]:
        """Activations after each convolution block (input for VisualBackProp)."""
        x = self._to_float(images)
        if self.config.input_norm == "frame":
            # Floor on the std: a uniform or dark frame (lens cap, white-out, dusk) must not blow its noise
            # up to unit scale.
            x = x - x.mean(dim=(2, 3), keepdim=True)
            x = x / x.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp(min=self.config.input_norm_floor)
        else:
            x = (x - self.mean) / self.std
        maps = []
        for conv in self.convs:
            x = conv(x)
            maps.append(x)
        return maps

    def forward(self, images: Tensor) -> Tensor:
        # Inference on the CPU (eval mode, no gradient wanted) takes the C++ encoder
        # (lnn_nav.kernels.fused_policy); everything else, and any input it does not
        # take as it is, the reference below.
        fast = fused_policy.try_encode(self, images)
        if fast is not None:
            return fast
        last = self.feature_maps(images)[-1]
        features = self.bottleneck(self.dropout(last.flatten(1)))
        return torch.tanh(features) if self.config.output_activation == "tanh" else features

    def _apply(self, fn, recurse: bool = True):
        fused_policy.invalidate(self)  # .to()/.double() may replace the tensors the plan packs
        return super()._apply(fn, recurse)

    def resized(self, height: int, width: int) -> ConvEncoder:
        """A copy of this encoder for ``height`` x ``width`` frames, to fine-tune at another resolution.

        The convolutions are size-agnostic and are copied as they are. The bottleneck
        reads the flattened last map, whose grid changes with the frame; its weights
        are resampled onto the new grid (nearest) and scaled by the ratio of the grid
        areas, so a last map that is a whole-number nearest upsampling of the old one
        gives the same features. Why: a trained controller can then continue at another
        resolution without training its whole chain again (docs/experiments.md, "Training at a finer
        resolution", records how far six epochs of that got).
        """
        cfg = replace(self.config, height=int(height), width=int(width))
        new = ConvEncoder(cfg).to(self.mean.device)
        (h0, w0), (h1, w1) = self.config.output_hw(), cfg.output_hw()
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("bottleneck.weight")}
        old = self.bottleneck.weight.detach()
        grid = old.reshape(old.shape[0], -1, h0, w0)
        if (h1, w1) != (h0, w0):
            grid = nn.functional.interpolate(grid, size=(h1, w1), mode="nearest")
            grid = grid * (h0 * w0) / (h1 * w1)
        state["bottleneck.weight"] = grid.reshape(old.shape[0], -1).contiguous()
        new.load_state_dict(state)
        return new

    def _to_float(self, images: Tensor) -> Tensor:
        cfg = self.config
        expected = [cfg.in_channels, cfg.height, cfg.width]
        if images.dim() != 4 or list(images.shape[1:]) != expected:
            raise ValueError(
                f"expected images [B, {cfg.in_channels}, {cfg.height}, {cfg.width}] "
                f"(channels, height, width from the EncoderConfig), got {list(images.shape)}"
            )
        if images.dtype == torch.uint8:
            # Raw camera frames: bring them to the [0, 1] range the normalisation assumes.
            return images.to(self.mean.dtype) / 255.0
        if not images.dtype.is_floating_point:
            raise TypeError(f"images must be uint8 in [0, 255] or floating point in [0, 1], got {images.dtype}")
        return images.to(self.mean.dtype)
