"""Behaviour cloning with truncated BPTT over recorded sequences (CPU, one GPU, or DDP).

Batches are built from ``batch_size`` *lanes*. Each lane walks through its
share of the sequences window by window (``window`` frames at a time) and
carries the recurrent state from one window to the next of the same
sequence, detached (truncated BPTT): the core learns from the state it will
really have after hundreds of frames, not only from a fresh start. When a
lane's sequence ends inside a window, the rest of the window is masked and
the lane starts its next sequence from a fresh state.

Every frame feeds its own Δt to the core. Photometric augmentation
(brightness, contrast, colour balance) is drawn once per sequence, as a
camera's exposure changes slowly, plus per-frame pixel noise.

Distributed: run under ``torchrun``; each rank takes every ``world``-th
sequence, gradients are averaged by DistributedDataParallel (gloo on CPU,
NCCL on GPUs), rank 0 writes checkpoints and metrics.
"""

from __future__ import annotations

import csv
import json
import math
import os
import pickle
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lnn_nav.data.dataset import SequenceDataset, one_camera
from lnn_nav.models.checkpoint import load_policy, save_policy
from lnn_nav.models.encoder import EncoderConfig
from lnn_nav.models.policy import LiquidPolicy, PolicyConfig

#: Core kinds ``lnn-nav train --core`` accepts (see :func:`lnn_nav.models.factory.build_core`).
MODEL_KINDS = ("cfc-ncp", "cfc", "ltc", "lstm", "gru", "cnn")


@dataclass
class TrainConfig:
    data: list[str]
    out: str
    model: str = "cfc-ncp"
    core_options: dict[str, Any] = field(default_factory=dict)
    epochs: int = 30
    batch_size: int = 16  # lanes (sequences in flight)
    window: int = 32  # frames per truncated-BPTT window
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    grad_clip: float = 1.0
    val_fraction: float = 0.1
    patience: int = 6  # epochs without validation improvement before stopping
    seed: int = 0
    threads: int = 0  # torch intra-op threads (0: torch's default)
    augment: bool = True
    # "basic": brightness, contrast, colour balance; "strong": also hue, saturation, gamma, light haze and
    # blur (STRONG_AUGMENT); "mixed": strong on half the sequences (MIXED_STRONG_P), basic on the rest;
    # "dim": mixed with a quarter of the sequences at low light (DIM_P, DIM_AUGMENT).
    # Why: a controller that sees only summer midday colours crashes in haze and at other seasons (the
    # shipped CfC-NCP's urban fog was 0 %).
    augment_profile: str = "basic"
    # Encoder input normalisation ("fixed" mean/std, or "frame": each frame's own statistics; see
    # EncoderConfig.input_norm). None: "fixed" for a new encoder, the source's with --init-encoder.
    input_norm: str | None = None
    # The frame norm's floor on a frame's spread (EncoderConfig.input_norm_floor). None: the encoder's default
    # for a new encoder, the source's with --init-encoder.
    input_norm_floor: float | None = None
    pixel_noise: float = 0.02
    use_goal: bool = True
    use_imu: bool = False
    command_scale: tuple[float, float, float, float] = (4.0, 3.0, 1.0, 1.5)
    feature_dim: int = 32
    normalization: str = "group"  # encoder conv normalisation: GroupNorm leaves the mean-command plateau ~10x sooner
    max_steps_per_epoch: int = 0  # 0: one pass over the training sequences
    init: str | None = None  # start from these weights (DAgger rounds)
    # Start only the camera encoder from this checkpoint; the core (model, core_options) and head are new.
    # Why: the encoder is most of a controller's weights and of its training time; a new core (another
    # kind, a wider NCP) can then be trained on a vision front end that already works.
    init_encoder: str | None = None
    # Frames weighted 1 + steer_weight * (|vy| + |yaw rate|) of the label, each in units of its command scale.
    # Why: a squared loss pulls an ambiguous frame's command to the mean of its labels, and the learners
    # under-steer past obstacles (crash diagnosis); weighting the turning frames pulls it back towards them.
    steer_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.model not in MODEL_KINDS:
            raise ValueError(f"model must be one of {', '.join(MODEL_KINDS)}, got {self.model!r}")
        if self.window < 2 or self.batch_size < 1 or self.epochs < 1:
            raise ValueError("window >= 2, batch_size >= 1 and epochs >= 1 are required")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not (math.isfinite(self.steer_weight) and self.steer_weight >= 0.0):
            raise ValueError(f"steer_weight must be finite and >= 0, got {self.steer_weight}")
        if self.augment_profile not in AUGMENT_PROFILES:
            raise ValueError(
                f"augment_profile must be one of {', '.join(AUGMENT_PROFILES)}, got {self.augment_profile!r}"
            )
        if self.init and self.init_encoder:
            raise ValueError(
                "init (the whole controller) and init_encoder (its camera encoder only) exclude each other; give one"
            )


class _Data:
    """Several dataset folders seen as one list of sequences ``(dataset index, start, length)``."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.sets = [SequenceDataset(p) for p in paths]
        sizes = {(d.height, d.width) for d in self.sets}
        if len(sizes) != 1:
            raise ValueError(f"datasets have different image sizes {sorted(sizes)}; rebuild them with one --size")
        self.height, self.width = sizes.pop()
        #: The training camera's horizontal field of view (deg), recorded in the checkpoint; None if unknown.
        self.camera_hfov_deg = one_camera((d.camera_hfov_deg, str(d.path)) for d in self.sets)
        self.sequences: list[tuple[int, int, int]] = [
            (k, int(s), int(n)) for k, d in enumerate(self.sets) for s, n in zip(d.seq_start, d.seq_length)
        ]
        if not self.sequences:
            raise ValueError(f"no sequences in {', '.join(paths)}")

    def frames(self, seq: tuple[int, int, int], offset: int, count: int) -> dict[str, np.ndarray]:
        k, start, _ = seq
        d = self.sets[k]
        sl = slice(start + offset, start + offset + count)
        return {
            "image": np.array(d.images[sl]),
            "command": d.command[sl],
            "goal": d.goal[sl],
            "imu": d.imu[sl],
            "dt": d.dt[sl],
        }


def split_sequences(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Disjoint train/validation sequence indices (whole sequences: no frame of a val flight is trained on)."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_fraction)) if n > 1 else 0
    if val_fraction > 0 and n > 1:
        n_val = max(n_val, 1)
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


#: Photometric augmentation profiles (``TrainConfig.augment_profile``).
AUGMENT_PROFILES = ("basic", "strong", "mixed", "dim")

#: The ``strong`` profile's ranges, drawn once per sequence (a camera's exposure and the air change slowly).
#: Haze stays a uniform blend of at most 0.3 towards a sky colour: the fog preset (0.05 /m) veils a
#: trunk 10-20 m away by 40-63 %, so it stays beyond what training sees (``lnn_nav.sim.presets.TRUE_SHIFTS``).
STRONG_AUGMENT: dict[str, tuple[float, float]] = {
    "exposure": (0.6, 1.4),  # log-uniform overall gain
    "channel_gain": (0.85, 1.15),  # colour balance, per channel
    "contrast": (0.6, 1.3),
    "bias": (-0.06, 0.06),
    "saturation": (0.4, 1.4),  # 0 (grayscale) with probability GRAYSCALE_P
    "hue": (-0.5, 0.5),  # rad, rotation in the YIQ chroma plane
    "gamma": (0.7, 1.4),  # log-uniform
    "haze": (0.0, 0.3),  # blend towards a sky colour, with probability HAZE_P
    "blur": (0.3, 1.0),  # Gaussian sigma (pixels), with probability BLUR_P
    "noise": (0.0, 0.03),  # per-frame pixel noise std
}
GRAYSCALE_P, HAZE_P, BLUR_P = 0.1, 0.5, 0.3
#: The ``mixed`` profile draws a sequence's change from the strong ranges with this probability and from
#: the basic ones otherwise. Why: the strong profile carries winter and fog but costs forest flights in
#: distribution (the network never sees unaltered colours); half the sequences keep them.
MIXED_STRONG_P = 0.5
#: The ``dim`` profile: ``mixed``, with a low-light sequence drawn instead with probability DIM_P: the strong
#: changes, then an exposure, contrast and sensor noise of a camera at dusk or under a dark canopy (a dusk
#: forest frame's spread is a third of a midday one's, a trunk's contrast with what lies behind it an eighth),
#: and a warm or cool cast. Why: the forest at dusk is the controllers' weakest visual condition (48-60 %);
#: its crashes are trunks straight ahead, in view.
DIM_P = 0.25
DIM_AUGMENT: dict[str, tuple[float, float]] = {
    "exposure": (0.25, 0.6),  # log-uniform overall gain
    "contrast": (0.3, 0.7),
    "tint": (-0.15, 0.15),  # red up and blue down by this much (warm), or the reverse (cool)
    "noise": (0.01, 0.04),
}

# RGB <-> YIQ (NTSC): luma plus a chroma plane in which a rotation turns the hue.
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


class _Augment:
    """Photometric change fixed per lane's sequence, plus per-frame noise; images float [0, 1].

    ``basic``: brightness, contrast and colour balance. ``strong`` adds hue,
    saturation (sometimes grayscale), gamma, a light haze towards a sky colour
    and blur, all drawn per sequence (:data:`STRONG_AUGMENT`). ``mixed``: each
    sequence is strong with probability :data:`MIXED_STRONG_P`, basic otherwise.
    ``dim``: ``mixed``, but a sequence is a low-light one with probability
    :data:`DIM_P` (:data:`DIM_AUGMENT`).
    """

    def __init__(
        self, lanes: int, rng: np.random.Generator, enabled: bool, noise: float, profile: str = "basic"
    ) -> None:
        if profile not in AUGMENT_PROFILES:
            raise ValueError(f"augment profile must be one of {', '.join(AUGMENT_PROFILES)}, got {profile!r}")
        self.rng, self.enabled, self.noise = rng, enabled, noise
        self.strong = profile in ("strong", "mixed", "dim")  # some lanes may carry strong changes
        self.mixed = profile in ("mixed", "dim")
        self.dim = profile == "dim"
        self.gain = np.ones((lanes, 3), np.float32)
        self.contrast = np.ones(lanes, np.float32)
        self.bias = np.zeros(lanes, np.float32)
        self.colour = np.tile(np.eye(3, dtype=np.float32), (lanes, 1, 1))  # hue/saturation matrix per lane
        self.gamma = np.ones(lanes, np.float32)
        self.haze = np.zeros(lanes, np.float32)
        self.haze_colour = np.full((lanes, 3), 0.75, np.float32)
        self.blur = np.zeros(lanes, np.float32)
        self.lane_noise = np.full(lanes, noise, np.float32)

    def redraw(self, lane: int) -> None:
        if not self.enabled:
            return
        if self.dim and self.rng.random() < DIM_P:
            self._redraw_strong(lane)
            self._redraw_dim(lane)
            return
        if self.mixed and self.rng.random() >= MIXED_STRONG_P:
            # A basic lane: the strong-only changes back to identity, the basic profile's noise.
            self.colour[lane] = np.eye(3, dtype=np.float32)
            self.gamma[lane], self.haze[lane], self.blur[lane] = 1.0, 0.0, 0.0
            self.lane_noise[lane] = self.noise
            self._redraw_basic(lane)
            return
        if not self.strong:
            self._redraw_basic(lane)
            return
        self._redraw_strong(lane)

    def _redraw_basic(self, lane: int) -> None:
        # The basic profile's draws, in their original order (a seed gives the runs it always gave).
        self.gain[lane] = self.rng.uniform(0.9, 1.1, 3) * self.rng.uniform(0.75, 1.25)
        self.contrast[lane] = self.rng.uniform(0.75, 1.25)
        self.bias[lane] = self.rng.uniform(-0.05, 0.05)

    def _redraw_strong(self, lane: int) -> None:
        r, a = self.rng, STRONG_AUGMENT
        self.gain[lane] = r.uniform(*a["channel_gain"], 3) * _log_uniform(r, *a["exposure"])
        self.contrast[lane] = r.uniform(*a["contrast"])
        self.bias[lane] = r.uniform(*a["bias"])
        saturation = 0.0 if r.random() < GRAYSCALE_P else r.uniform(*a["saturation"])
        hue = r.uniform(*a["hue"])
        c, s = saturation * math.cos(hue), saturation * math.sin(hue)
        chroma = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
        self.colour[lane] = (_YIQ_TO_RGB @ chroma @ _RGB_TO_YIQ).astype(np.float32)
        self.gamma[lane] = _log_uniform(r, *a["gamma"])
        self.haze[lane] = r.uniform(*a["haze"]) if r.random() < HAZE_P else 0.0
        # Grey-blue to grey-white skies.
        self.haze_colour[lane] = r.uniform(0.6, 0.9) + r.uniform(-0.04, 0.08) * np.array([-1.0, 0.0, 1.0])
        self.blur[lane] = r.uniform(*a["blur"]) if r.random() < BLUR_P else 0.0
        self.lane_noise[lane] = r.uniform(*a["noise"])

    def _redraw_dim(self, lane: int) -> None:
        r, a = self.rng, DIM_AUGMENT
        tint = r.uniform(*a["tint"])
        self.gain[lane] = _log_uniform(r, *a["exposure"]) * np.array([1.0 + tint, 1.0, 1.0 - tint], np.float32)
        self.contrast[lane] = r.uniform(*a["contrast"])
        self.bias[lane] = 0.0
        self.lane_noise[lane] = r.uniform(*a["noise"])

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """``images`` uint8 ``[B, T, 3, H, W]`` -> float ``[B, T, 3, H, W]``."""
        x = images.float().div_(255.0)
        if not self.enabled:
            return x
        device = x.device

        def lane(values: np.ndarray, *dims: int) -> Tensor:
            return torch.from_numpy(values).to(device).view(values.shape[0], *dims)

        # In place wherever the tensor is this call's own: a batch is ~10 MB of floats, and each new one
        # costs fresh pages from the OS (the out-of-place chain took ~30 % of a training step). Same
        # operations in the same order: bit for bit the out-of-place results.
        if self.strong:
            haze = lane(self.haze, 1, 1, 1, 1)
            x.mul_(1.0 - haze).add_(haze * lane(self.haze_colour, 1, 3, 1, 1))
            # [B, 1, 3, 3] @ [B, T, 3, H*W]: a batched matmul (einsum took 30x longer here).
            x = (lane(self.colour, 1, 3, 3) @ x.reshape(*x.shape[:3], -1)).reshape(x.shape)
        gain = lane(self.gain, 1, 3, 1, 1)
        contrast = lane(self.contrast, 1, 1, 1, 1)
        bias = lane(self.bias, 1, 1, 1, 1)
        mean = x.mean(dim=(2, 3, 4), keepdim=True)
        x.sub_(mean).mul_(contrast).add_(mean)
        x.mul_(gain).add_(bias)
        if self.strong:
            x.clamp_(0.0, 1.0).pow_(lane(self.gamma, 1, 1, 1, 1))
            x = _blur_lanes(x, self.blur)
        if self.noise > 0:
            # Drawn from the seeded CPU generator wherever the batch lives, so a
            # seed gives the same noise on a GPU as on the CPU.
            std = lane(self.lane_noise, 1, 1, 1, 1) if self.strong else self.noise
            x.add_(torch.randn(x.shape, generator=generator).to(device, non_blocking=True).mul_(std))
        return x.clamp_(0.0, 1.0)


def _blur_lanes(x: Tensor, sigmas: np.ndarray) -> Tensor:
    """Gaussian blur (separable, 5 taps, reflected edges) of each lane ``[T, 3, H, W]`` whose sigma > 0.

    Writes into ``x`` (each lane's result is computed from padded copies before it is stored)."""
    if not (sigmas > 0).any():
        return x
    taps = torch.arange(-2, 3, dtype=x.dtype, device=x.device)
    for b in np.flatnonzero(sigmas > 0):
        k = torch.exp(-0.5 * (taps / float(sigmas[b])) ** 2)
        k = k / k.sum()
        frames = x[b]  # [T, 3, H, W]
        c = frames.shape[1]
        horizontal = k.view(1, 1, 1, 5).expand(c, 1, 1, 5)
        vertical = k.view(1, 1, 5, 1).expand(c, 1, 5, 1)
        y = nn.functional.pad(frames, (2, 2, 0, 0), mode="reflect")
        y = nn.functional.conv2d(y, horizontal, groups=c)
        y = nn.functional.pad(y, (0, 0, 2, 2), mode="reflect")
        x[b] = nn.functional.conv2d(y, vertical, groups=c)
    return x


class LaneBatcher:
    """Stateful truncated-BPTT batches: ``next()`` -> inputs ``[B, T, ...]``, mask ``[B, T]``, fresh ``[B]``."""

    def __init__(
        self, data: _Data, indices: list[int], lanes: int, window: int, rng: np.random.Generator, augment: _Augment
    ) -> None:
        if not indices:
            raise ValueError("no training sequences (is the dataset empty, or val_fraction too large?)")
        self.data, self.indices, self.window, self.rng, self.augment = data, indices, window, rng, augment
        self.lanes = lanes
        self.queue: list[int] = []
        self.current: list[int | None] = [None] * lanes
        self.offset = [0] * lanes
        self.passes = 0

    def _next_sequence(self) -> int:
        if not self.queue:
            self.queue = list(self.rng.permutation(self.indices))
            self.passes += 1
        return int(self.queue.pop())

    def next(self) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        B, T = self.lanes, self.window
        h, w = self.data.height, self.data.width
        out: dict[str, np.ndarray] = {
            "image": np.zeros((B, T, 3, h, w), np.uint8),
            "command": np.zeros((B, T, 4), np.float32),
            "goal": np.zeros((B, T, 4), np.float32),
            "imu": np.zeros((B, T, 6), np.float32),
            "dt": np.full((B, T), 1.0 / 15.0, np.float32),
        }
        mask = np.zeros((B, T), np.float32)
        fresh = np.zeros(B, bool)
        for lane in range(B):
            current = self.current[lane]
            if current is None:
                current = self.current[lane] = self._next_sequence()
                self.offset[lane] = 0
                fresh[lane] = True
                self.augment.redraw(lane)
            seq = self.data.sequences[current]
            count = min(T, seq[2] - self.offset[lane])
            frames = self.data.frames(seq, self.offset[lane], count)
            for key, value in frames.items():
                out[key][lane, :count] = value
            mask[lane, :count] = 1.0
            self.offset[lane] += count
            if self.offset[lane] >= seq[2]:
                self.current[lane] = None
        return out, mask, fresh


def _build_policy(cfg: TrainConfig, height: int, width: int, camera_hfov_deg: float | None) -> LiquidPolicy:
    encoder = EncoderConfig(
        height=height,
        width=width,
        feature_dim=cfg.feature_dim,
        output_activation="tanh",
        normalization=cfg.normalization,
        input_norm=cfg.input_norm or "fixed",
        input_norm_floor=EncoderConfig.input_norm_floor if cfg.input_norm_floor is None else cfg.input_norm_floor,
    )
    config = PolicyConfig(
        encoder=encoder,
        core=cfg.model,
        core_options=dict(cfg.core_options),
        use_imu=cfg.use_imu,
        use_goal=cfg.use_goal,
        command_scale=cfg.command_scale,
        camera_hfov_deg=camera_hfov_deg,
    )
    return LiquidPolicy(config)


def _policy_with_encoder(cfg: TrainConfig, camera_hfov_deg: float | None, log: Any) -> LiquidPolicy:
    """A new controller (``cfg``'s core, head and inputs) whose encoder is ``cfg.init_encoder``'s, trained.

    At the source's frame size; :func:`_at_data_size` resamples it to the datasets'.
    """
    if cfg.init_encoder is None:
        raise ValueError("_policy_with_encoder needs cfg.init_encoder (the checkpoint to take the encoder from)")
    source = load_policy(cfg.init_encoder)
    encoder = source.encoder
    if cfg.input_norm is not None and cfg.input_norm != encoder.config.input_norm:
        # The trained convolutions adapt to the new input statistics during training.
        log(f"encoder input normalisation {encoder.config.input_norm} -> {cfg.input_norm}")
        encoder.config = replace(encoder.config, input_norm=cfg.input_norm)
    if cfg.input_norm_floor is not None and cfg.input_norm_floor != encoder.config.input_norm_floor:
        log(f"encoder input norm floor {encoder.config.input_norm_floor} -> {cfg.input_norm_floor}")
        encoder.config = replace(encoder.config, input_norm_floor=cfg.input_norm_floor)
    enc = encoder.config
    policy = _build_policy(
        replace(cfg, feature_dim=enc.feature_dim, normalization=enc.normalization),
        enc.height,
        enc.width,
        camera_hfov_deg,
    )
    # Same EncoderConfig as the source's (activation, channels, ... included).
    policy.encoder = encoder
    policy.config = replace(policy.config, encoder=enc)
    log(
        f"encoder ({sum(p.numel() for p in encoder.parameters())} parameters) from {cfg.init_encoder} "
        f"(a {source.config.core} controller); new {cfg.model} core and head"
    )
    return policy


def _at_data_size(policy: LiquidPolicy, start: str, height: int, width: int, log: Any) -> LiquidPolicy:
    """``policy``, taking the datasets' ``height`` x ``width`` frames.

    A start trained at another size keeps its convolutions and has its encoder's
    bottleneck resampled (:meth:`ConvEncoder.resized`), so training continues at
    the data's resolution instead of starting the chain again.
    """
    enc = policy.config.encoder
    if (enc.height, enc.width) != (height, width):
        log(
            f"{start} was trained on {enc.width}x{enc.height} frames; the datasets hold {width}x{height}: "
            f"resampling its encoder's bottleneck to train at {width}x{height}"
        )
        policy.resize_input(height, width)
    return policy


def _reset_lanes(state: Any, fresh: Tensor, initial: Any) -> Any:
    """Detach ``state`` (truncate BPTT) and restart the lanes in ``fresh`` from ``initial``."""
    if isinstance(state, tuple):
        return tuple(_reset_lanes(s, fresh, i) for s, i in zip(state, initial))
    keep = (~fresh).to(state.dtype).view(-1, *([1] * (state.dim() - 1)))
    return state.detach() * keep + initial * (1 - keep)


#: The command axes ``steer_weight`` looks at: lateral velocity and yaw rate, the two that steer round obstacles.
_STEER_AXES = (1, 3)


def frame_weights(target: Tensor, scale: Tensor, steer_weight: float) -> Tensor:
    """Per-frame loss weight ``1 + steer_weight * (|vy| / s_vy + |yaw rate| / s_yaw)`` of the labels."""
    if steer_weight == 0.0:
        return torch.ones(target.shape[:-1], dtype=target.dtype, device=target.device)
    axes = list(_STEER_AXES)
    return 1.0 + steer_weight * (target[..., axes].abs() / scale[axes]).sum(dim=-1)


def _loss(pred: Tensor, target: Tensor, mask: Tensor, scale: Tensor, steer_weight: float = 0.0) -> Tensor:
    """Weighted mean squared error per command axis, each in units of its command scale, over unmasked frames.

    The weights' mean is divided out, so steer_weight 0 is the plain mean and the
    loss stays in the same units whatever the weight.
    """
    err = ((pred - target) / scale) ** 2
    w = frame_weights(target, scale, steer_weight) * mask
    return (err.mean(dim=-1) * w).sum() / w.sum().clamp(min=1e-12)


def _to_tensors(batch: dict[str, np.ndarray], device: torch.device) -> dict[str, Tensor]:
    return {k: torch.from_numpy(v).to(device) for k, v in batch.items()}


@torch.no_grad()
def evaluate(
    policy: LiquidPolicy,
    data: _Data,
    indices: list[int],
    device: torch.device,
    max_frames: int = 20000,
    steer_weight: float = 0.0,
) -> float:
    """Loss over whole validation sequences, each from a fresh state (as flown), weighted as in training."""
    policy.eval()
    scale = policy.command_scale
    total, weight = 0.0, 0.0
    frames = 0
    for i in indices:
        seq = data.sequences[i]
        f = _to_tensors(data.frames(seq, 0, seq[2]), device)
        extras = {}
        if policy.config.use_goal:
            extras["goal"] = f["goal"][None]
        if policy.config.use_imu:
            extras["imu"] = f["imu"][None]
        pred, _ = policy(f["image"][None].float() / 255.0, f["dt"][None], None, **extras)
        err = ((pred[0] - f["command"]) / scale) ** 2
        w = frame_weights(f["command"], scale, steer_weight)
        total += float((err.mean(dim=-1) * w).sum())
        weight += float(w.sum())
        frames += seq[2]
        if frames >= max_frames:
            break
    policy.train()
    return total / max(weight, 1e-12) if frames else 0.0


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend=backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


def train(cfg: TrainConfig, progress: bool = True, log: Any = print) -> dict[str, Any]:
    """Train a policy; returns a summary (best validation loss, epochs, paths). Rank 0 writes ``cfg.out``."""
    from tqdm import tqdm

    rank, world = _distributed()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed + rank)
    rng = np.random.default_rng(cfg.seed + 1000 * rank)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    out = Path(cfg.out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)

    data = _Data(cfg.data)
    # Dataset identities (name + content digest), not this machine's paths, go into the checkpoints.
    trained_on = [d.identity() for d in data.sets] if rank == 0 else []
    train_idx, val_idx = split_sequences(len(data.sequences), cfg.val_fraction, cfg.seed)
    shard = train_idx[rank::world]
    quiet_log = log if rank == 0 else (lambda _msg: None)  # one process speaks
    if cfg.init:
        # Continue a trained controller (DAgger): its own architecture, whatever the config's defaults.
        policy = _at_data_size(load_policy(cfg.init), cfg.init, data.height, data.width, quiet_log)
        trained_with = policy.config.camera_hfov_deg
        if data.camera_hfov_deg is not None and data.camera_hfov_deg != trained_with:
            # The result is trained for the data's camera, whatever the start saw.
            if trained_with is not None:
                quiet_log(
                    f"fine-tuning a controller trained with a {trained_with:.1f} deg camera on "
                    f"{data.camera_hfov_deg:.1f} deg data; the new checkpoint records "
                    f"{data.camera_hfov_deg:.1f} deg"
                )
            policy.config = replace(policy.config, camera_hfov_deg=data.camera_hfov_deg)
        policy = policy.to(device)
    elif cfg.init_encoder:
        policy = _policy_with_encoder(cfg, data.camera_hfov_deg, quiet_log)
        policy = _at_data_size(policy, cfg.init_encoder, data.height, data.width, quiet_log).to(device)
    else:
        policy = _build_policy(cfg, data.height, data.width, data.camera_hfov_deg).to(device)
    model: nn.Module = policy
    if world > 1:
        model = nn.parallel.DistributedDataParallel(policy, device_ids=[local_rank] if device.type == "cuda" else None)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    frames_per_step = cfg.batch_size * cfg.window * world
    total_frames = sum(data.sequences[i][2] for i in train_idx)
    steps_per_epoch = max(1, math.ceil(total_frames / frames_per_step))
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    total_steps = steps_per_epoch * cfg.epochs

    def lr_at(step: int) -> float:
        # Linear warm-up, then cosine decay to 5 % of the peak.
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        t = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
        return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))

    augment = _Augment(cfg.batch_size, rng, cfg.augment, cfg.pixel_noise, cfg.augment_profile)
    batcher = LaneBatcher(data, shard, cfg.batch_size, cfg.window, rng, augment)
    start_epoch, step, best, stale = 0, 0, math.inf, 0
    history: list[dict[str, Any]] = []
    resume_path = out / "resume.pt"
    if resume_path.is_file():
        # weights_only: the file holds tensors, numbers, strings and the rng's state as plain dicts,
        # so no code in it runs on load (a resume.pt from elsewhere is as safe as a checkpoint).
        try:
            saved = torch.load(resume_path, map_location=device, weights_only=True)
        except pickle.UnpicklingError as err:
            raise ValueError(
                f"{resume_path} holds more than tensors and plain data ({err}); it was not written "
                "by this version of lnn-nav train: delete it to start over"
            ) from err
        if saved["config"] != _comparable(cfg):
            raise ValueError(
                f"{resume_path} was written by a different training configuration; "
                f"use a new --out or delete it to start over"
            )
        policy.load_state_dict(saved["policy"])
        optimizer.load_state_dict(saved["optimizer"])
        start_epoch, step, best, stale = saved["epoch"], saved["step"], saved["best"], saved["stale"]
        history = saved["history"]
        rng.bit_generator.state = saved["rng"]
        log(f"resumed from {resume_path} at epoch {start_epoch}")
    gen = torch.Generator().manual_seed(cfg.seed + rank)
    scale = policy.command_scale
    metrics_path = out / "metrics.csv"
    writer = None
    if rank == 0:
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(out / "tensorboard"))
        except ImportError:  # pragma: no cover - tensorboard is a pinned dependency
            log("tensorboard is not installed: metrics go to metrics.csv only")
        (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=1))
        log(
            f"{cfg.model}: {sum(p.numel() for p in policy.parameters())} parameters; "
            f"{len(train_idx)} training / {len(val_idx)} validation sequences, {total_frames} training frames; "
            f"{steps_per_epoch} steps/epoch of {frames_per_step} frames; {world} process(es) on {device}"
        )
        from lnn_nav.rollouts.flights import DEFAULT_CAMERA_HFOV  # what evaluation flies a checkpoint without one

        hfov = policy.config.camera_hfov_deg
        log(
            f"camera: {hfov:.1f} deg horizontal field of view, recorded in the checkpoint"
            if hfov is not None
            else "camera: unknown (no CameraInfo in the datasets' bags); the checkpoint records none and is flown "
            f"with {DEFAULT_CAMERA_HFOV:g} deg in simulation"
        )
    state = policy.initial_state(cfg.batch_size, device=device)
    initial = policy.initial_state(cfg.batch_size, device=device)
    started = time.perf_counter()
    policy.train()
    for epoch in range(start_epoch, cfg.epochs):
        running, count = 0.0, 0
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            unit="step",
            disable=not progress or rank != 0,
            leave=False,
        )
        for _ in bar:
            raw, mask_np, fresh_np = batcher.next()
            batch = _to_tensors(raw, device)
            images = augment(batch["image"], gen)
            mask = torch.from_numpy(mask_np).to(device)
            state = _reset_lanes(state, torch.from_numpy(fresh_np).to(device), initial)
            extras = {}
            if cfg.use_goal:
                extras["goal"] = batch["goal"]
            if cfg.use_imu:
                extras["imu"] = batch["imu"]
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            pred, state = model(images, batch["dt"], state, **extras)
            loss = _loss(pred, batch["command"], mask, scale, cfg.steer_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = float(nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip))
            optimizer.step()
            step += 1
            running += float(loss.detach())
            count += 1
            bar.set_postfix(loss=f"{running / count:.4f}")
            if writer is not None and step % 10 == 0:
                writer.add_scalar("train/loss", float(loss.detach()), step)
                writer.add_scalar("train/grad_norm", grad_norm, step)
                writer.add_scalar("train/lr", lr_at(step), step)
        train_loss = running / max(count, 1)
        if world > 1:
            t = torch.tensor([train_loss], device=device)
            torch.distributed.all_reduce(t)
            train_loss = float(t) / world
        val_loss = evaluate(policy, data, val_idx, device, steer_weight=cfg.steer_weight) if val_idx else train_loss
        improved = val_loss < best - 1e-6
        if improved:
            best, stale = val_loss, 0
        else:
            stale += 1
        row = {
            "epoch": epoch + 1,
            "step": step,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "lr": lr_at(step),
            "seconds": time.perf_counter() - started,
        }
        history.append(row)
        if rank == 0:
            meta = {"trained_on": trained_on, "epoch": epoch + 1, "val_loss": val_loss, "model": cfg.model}
            save_policy(policy, out / "last.safetensors", meta)
            if improved:
                save_policy(policy, out / "best.safetensors", meta)
            new = not metrics_path.exists()
            with metrics_path.open("a", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=list(row))
                if new:
                    w.writeheader()
                w.writerow(row)
            if writer is not None:
                writer.add_scalar("epoch/train_loss", train_loss, epoch + 1)
                writer.add_scalar("epoch/val_loss", val_loss, epoch + 1)
                writer.flush()
            torch.save(
                {
                    "config": _comparable(cfg),
                    "policy": policy.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "epoch": epoch + 1,
                    "step": step,
                    "best": best,
                    "stale": stale,
                    "history": history,
                    "rng": rng.bit_generator.state,
                },
                resume_path,
            )
            log(
                f"epoch {epoch + 1}: train {train_loss:.4f}  val {val_loss:.4f}{'  (best)' if improved else ''}  "
                f"lr {lr_at(step):.2e}  {row['seconds']:.0f} s"
            )
        if stale >= cfg.patience:
            if rank == 0:
                log(f"early stop: no validation improvement for {cfg.patience} epochs")
            break
    if writer is not None:
        writer.close()
    if world > 1:
        torch.distributed.barrier()
    return {
        "best_val_loss": best,
        "epochs": len(history),
        "history": history,
        "best": str(out / "best.safetensors"),
        "last": str(out / "last.safetensors"),
        "seconds": time.perf_counter() - started,
    }


def _comparable(cfg: TrainConfig) -> dict[str, Any]:
    """The fields that must match to resume (epochs may grow: continuing a finished run is allowed)."""
    d = asdict(cfg)
    d.pop("epochs")
    return d
