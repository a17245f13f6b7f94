"""The flight policy: image encoder -> recurrent core -> bounded velocity command."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
from torch import Tensor, nn

from ..kernels import fused_policy
from .cfc import CfC
from .core import RecurrentCore, State
from .encoder import ConvEncoder, EncoderConfig
from .factory import build_core
from .timespans import TimespanLike

#: IMU sample: linear acceleration x, y, z (m/s^2) then angular velocity x, y, z (rad/s), FLU.
IMU_SIZE = 6
#: Goal: unit direction to the goal in the body frame (FLU x, y, z), then distance in metres.
GOAL_SIZE = 4
#: Command: ``[vx, vy, vz, yaw_rate]``, body frame FLU (REP-103), m/s and rad/s.
COMMAND_SIZE = 4


@dataclass(frozen=True)
class PolicyConfig:
    """Everything needed to rebuild a :class:`LiquidPolicy` (weights aside).

    ``core`` is a :func:`~lnn_nav.models.factory.build_core` kind and
    ``core_options`` its keyword options (``units``, ``seed``, ...).
    ``command_scale`` bounds the output: ``|vx| <= s[0]``, ``|vy| <= s[1]``,
    ``|vz| <= s[2]``, ``|yaw_rate| <= s[3]``. ``output_gain`` ``g`` sharpens
    it inside those bounds: ``tanh(g * head(y)) * s`` (see :meth:`LiquidPolicy._command`).
    """

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    core: str = "cfc-ncp"
    core_options: dict[str, Any] = field(default_factory=dict)
    use_imu: bool = False
    use_goal: bool = False
    command_scale: tuple[float, float, float, float] = (2.0, 1.0, 1.0, 1.0)
    #: Behaviour cloning with a squared loss pulls a controller's commands towards
    #: their mean, so a cloned controller steers less than its teacher (the crash
    #: diagnosis of the shipped ones: it flew straight or turned away too gently
    #: while the expert would have turned at full rate). A gain above 1, calibrated
    #: in closed loop (`lnn-nav gain`), gives that back without leaving the envelope.
    output_gain: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    #: The goal distance enters the core as ``min(d, clip) / clip``: raw metres
    #: (up to ~100) would swamp the unit-scale features, and beyond a few metres
    #: only the direction matters for the next seconds of flight.
    goal_distance_clip: float = 10.0
    #: Horizontal field of view (deg) of the camera the training bags recorded (their
    #: CameraInfo). A controller flown through another lens sees obstacles at other
    #: bearings and sizes; evaluation flies this camera and the controller node warns on
    #: a mismatch. None: not recorded (checkpoints from before it, bags without CameraInfo).
    camera_hfov_deg: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.encoder, Mapping):
            object.__setattr__(self, "encoder", EncoderConfig.from_dict(self.encoder))
        object.__setattr__(self, "core_options", dict(self.core_options))
        scale = tuple(float(s) for s in self.command_scale)
        if len(scale) != COMMAND_SIZE or min(scale) <= 0:
            raise ValueError(
                f"command_scale needs {COMMAND_SIZE} positive values (max |vx|, |vy|, |vz|, "
                f"|yaw_rate|), got {self.command_scale}"
            )
        object.__setattr__(self, "command_scale", scale)
        gain = tuple(float(g) for g in self.output_gain)
        if len(gain) != COMMAND_SIZE or not all(0 < g < float("inf") for g in gain):
            raise ValueError(
                f"output_gain needs {COMMAND_SIZE} positive, finite values (vx, vy, vz, yaw_rate), "
                f"got {self.output_gain}"
            )
        object.__setattr__(self, "output_gain", gain)
        if not self.goal_distance_clip > 0:
            raise ValueError(f"goal_distance_clip must be > 0 m, got {self.goal_distance_clip}")
        if self.camera_hfov_deg is not None:
            hfov = float(self.camera_hfov_deg)
            if not 0 < hfov < 180:
                raise ValueError(f"camera_hfov_deg must be in (0, 180) degrees, got {self.camera_hfov_deg}")
            object.__setattr__(self, "camera_hfov_deg", hfov)

    @property
    def core_input_size(self) -> int:
        return self.encoder.feature_dim + IMU_SIZE * int(self.use_imu) + GOAL_SIZE * int(self.use_goal)

    def to_dict(self) -> dict:
        return {
            "encoder": self.encoder.to_dict(),
            "core": self.core,
            "core_options": dict(self.core_options),
            "use_imu": self.use_imu,
            "use_goal": self.use_goal,
            "command_scale": list(self.command_scale),
            "output_gain": list(self.output_gain),
            "goal_distance_clip": self.goal_distance_clip,
            # Left out when unknown: a checkpoint without it reads back the same.
            **({"camera_hfov_deg": self.camera_hfov_deg} if self.camera_hfov_deg is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PolicyConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown policy config field(s): {unknown}")
        return cls(**data)


class LiquidPolicy(nn.Module):
    """Camera (+ IMU, + goal) -> ``[vx, vy, vz, yaw_rate]`` through a recurrent core.

    ``forward`` runs whole sequences (training); ``step`` runs one frame
    (onboard). On the same data, in eval mode, they give the same commands.
    Images may be float in [0, 1] or uint8 in [0, 255] (converted here).
    NaN inputs are not screened: the controller node owns that fail-safe.
    """

    command_scale: Tensor  # buffers
    output_gain: Tensor

    def __init__(self, config: PolicyConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or PolicyConfig()
        self.encoder = ConvEncoder(config.encoder)
        self.core: RecurrentCore = build_core(config.core, config.core_input_size, COMMAND_SIZE, **config.core_options)
        # A Linear even when the core already ends in 4 motor neurons: one uniform head.
        self.head = nn.Linear(self.core.output_size, COMMAND_SIZE)
        self.register_buffer("command_scale", torch.tensor(config.command_scale))
        # Not in the state dict: the gain lives in the config, and checkpoints from before it still load.
        self.register_buffer("output_gain", torch.tensor(config.output_gain), persistent=False)

    def _apply(self, fn, recurse: bool = True):
        fused_policy.invalidate(self)  # .to()/.double() may replace the tensors the plan packs
        return super()._apply(fn, recurse)

    @classmethod
    def from_config(cls, config: PolicyConfig) -> LiquidPolicy:
        return cls(config)

    def resize_input(self, height: int, width: int) -> None:
        """Take ``height`` x ``width`` frames from now on (see :meth:`ConvEncoder.resized`); the core is untouched."""
        self.encoder = self.encoder.resized(height, width)
        self.config = replace(self.config, encoder=self.encoder.config)

    def initial_state(self, batch_size: int, device: torch.device | None = None) -> State:
        return self.core.initial_state(batch_size, device=device, dtype=self.head.weight.dtype)

    def forward(
        self,
        images: Tensor,
        timespans: TimespanLike = None,
        hx: State | None = None,
        imu: Tensor | None = None,
        goal: Tensor | None = None,
    ) -> tuple[Tensor, State]:
        """``images`` ``[B, T, C, H, W]``, ``timespans`` ``[B, T]`` (s) -> ``[B, T, 4]``, state."""
        if images.dim() != 5:
            raise ValueError(
                f"forward expects images [B, T, C, H, W], got {list(images.shape)}; use step() for single frames"
            )
        batch, seq_len = images.shape[:2]
        # One encoder pass over all B*T frames: the encoder has no memory.
        feats = self.encoder(images.reshape(batch * seq_len, *images.shape[2:]))
        feats = feats.reshape(batch, seq_len, -1)
        x = self._with_extras(feats, imu, goal, (batch, seq_len))
        y, state = self.core(x, hx, timespans)
        return self._command(y), state

    def step(
        self,
        image: Tensor,
        dt: TimespanLike = None,
        state: State | None = None,
        imu: Tensor | None = None,
        goal: Tensor | None = None,
    ) -> tuple[Tensor, State]:
        """``image`` ``[B, C, H, W]``, ``dt`` scalar/``[B]`` (s) -> ``[B, 4]``, new state.

        The passed ``state`` is left untouched; keep the returned one.
        """
        if image.dim() != 4:
            raise ValueError(f"step expects image [B, C, H, W], got {list(image.shape)}")
        if isinstance(self._modules["core"], CfC):  # the dict, not __getattr__: this runs every frame
            # Inference on the CPU with a CfC core: encoder, inputs, cell and head in one
            # C++ call (lnn_nav.kernels.fused_policy); None means the reference path below.
            fast = fused_policy.try_policy_step(self, image, dt, state, imu, goal)
            if fast is not None:
                return fast
        feats = self.encoder(image)
        x = self._with_extras(feats, imu, goal, (image.shape[0],))
        y, new_state = self.core.step(x, state, dt)
        return self._command(y), new_state

    def _command(self, y: Tensor) -> Tensor:
        # tanh keeps every command inside the vehicle's envelope, whatever the core emits.
        return torch.tanh(self.head(y) * self.output_gain) * self.command_scale

    def _with_extras(
        self,
        feats: Tensor,
        imu: Tensor | None,
        goal: Tensor | None,
        lead: tuple[int, ...],
    ) -> Tensor:
        parts = [feats]
        for name, value, used, size in (
            ("imu", imu, self.config.use_imu, IMU_SIZE),
            ("goal", goal, self.config.use_goal, GOAL_SIZE),
        ):
            if used and value is None:
                raise ValueError(f"this policy was built with use_{name}=True; pass {name}")
            if not used and value is not None:
                raise ValueError(
                    f"this policy was built with use_{name}=False; {name} was given "
                    f"(build it with use_{name}=True to feed {name})"
                )
            if value is None:
                continue
            want = [*lead, size]
            if list(value.shape) != want:
                raise ValueError(f"{name} must be {want}, got {list(value.shape)}")
            if not value.dtype.is_floating_point:
                raise TypeError(f"{name} must be floating point, got {value.dtype}")
            value = value.to(feats.dtype)
            if name == "goal":
                clip = self.config.goal_distance_clip
                value = torch.cat([value[..., :3], value[..., 3:].clamp(max=clip) / clip], dim=-1)
            parts.append(value)
        return torch.cat(parts, dim=-1) if len(parts) > 1 else feats
