"""Policy checkpoints: one ``.safetensors`` file holding tensors and the JSON config.

Layout: every entry of the policy's ``state_dict`` (parameters and buffers,
so sparsity masks and normalisation constants travel too) as a tensor, and
the safetensors header metadata (string -> string) with

- ``lnn_nav_format``: the layout version, ``"1"``;
- ``config``: JSON of :class:`PolicyConfig`, with ``core_options`` expanded
  to the core's full configuration so the file alone rebuilds the model;
- ``metadata``: JSON of the caller's metadata (run, dataset, git commit, ...).

Loading runs no code from the file (safetensors holds raw tensors only).
Anything missing, corrupt or mismatched raises :class:`CheckpointError`
naming the file and what differs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from .errors import CheckpointError
from .factory import core_config
from .policy import LiquidPolicy, PolicyConfig

FORMAT_VERSION = "1"
PathLike = str | os.PathLike

# Buffers that training updates; every other buffer is fixed by the config and
# defines the architecture, e.g. a wiring's sparsity mask. (Frozen parameters
# are not: fine-tuning freezes weights that a checkpoint may still change.)
_RUNNING_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")
# Keys of core_config() that the policy itself decides, not the core's options.
_POLICY_DECIDED = ("kind", "input_size", "output_size")
_MAX_LISTED = 8
_ABSENT = object()


def checkpoint_config(policy: LiquidPolicy) -> dict[str, Any]:
    """The config as saved: the policy config with the core's full options."""
    config = policy.config.to_dict()
    full = core_config(policy.core)
    config["core_options"] = {k: v for k, v in full.items() if k not in _POLICY_DECIDED}
    return config


def save_policy(policy: LiquidPolicy, path: PathLike, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write ``policy`` to one ``.safetensors`` file and return its path."""
    path = Path(path)
    try:
        header = {
            "lnn_nav_format": FORMAT_VERSION,
            "config": json.dumps(checkpoint_config(policy), sort_keys=True),
            "metadata": json.dumps(dict(metadata or {}), sort_keys=True),
        }
    except TypeError as err:
        raise ValueError(f"checkpoint config and metadata must be JSON-serialisable: {err}") from err
    # Copies: safetensors refuses shared storage (tied weights) and non-CPU tensors.
    tensors = {name: t.detach().to("cpu").contiguous().clone() for name, t in policy.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename, so an interrupted save never leaves a truncated file under the real name.
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        save_file(tensors, tmp, metadata=header)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def with_output_gain(
    src: PathLike, dst: PathLike, gain: Sequence[float], metadata: Mapping[str, Any] | None = None
) -> Path:
    """Copy checkpoint ``src`` to ``dst`` with :attr:`PolicyConfig.output_gain` set to ``gain``.

    The weights are untouched; the metadata keeps the source's, records
    where the gain was applied (``output_gain_of``) and adds ``metadata``.
    """
    policy = load_policy(src)
    _, stored = read_checkpoint_info(src)
    # PolicyConfig validates the gain (four values), so the cast only states what it checks.
    config = replace(policy.config, output_gain=cast(tuple[float, float, float, float], tuple(gain)))
    policy.config = config
    policy.output_gain = torch.tensor(config.output_gain, dtype=policy.output_gain.dtype)
    return save_policy(policy, dst, metadata={**stored, "output_gain_of": str(src), **dict(metadata or {})})


def read_checkpoint_info(path: PathLike) -> tuple[PolicyConfig, dict[str, Any]]:
    """The config and user metadata stored in a checkpoint, without building the model."""
    path = Path(path)
    header, _ = _read(path, with_tensors=False)
    config = _policy_config(_json_field(header, "config", path), path)
    return config, _json_field(header, "metadata", path)


def load_policy(
    path: PathLike,
    map_location: str | torch.device = "cpu",
    expected: PolicyConfig | None = None,
) -> LiquidPolicy:
    """Rebuild the policy a checkpoint describes and load its weights (in eval mode).

    ``expected``: a config the checkpoint must agree with; every field it sets
    (for ``core_options``, only the options it names) is compared, and any
    difference is a :class:`CheckpointError` naming the fields.
    """
    path = Path(path)
    header, tensors = _read(path, with_tensors=True)
    stored = _json_field(header, "config", path)
    if expected is not None:
        _check_config(stored, expected.to_dict(), path, "the expected config")
    config = _policy_config(stored, path)
    try:
        policy = LiquidPolicy(config)
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(f"checkpoint {path}: cannot build the policy its config describes: {err}") from err
    # A checkpoint saved from a .half()/.double() model loads in that precision.
    float_dtypes = {t.dtype for t in tensors.values() if t.dtype.is_floating_point}
    if len(float_dtypes) == 1:
        policy = policy.to(float_dtypes.pop())
    _load_tensors(policy, tensors, path)
    return policy.to(map_location).eval()


def load_state_into(policy: LiquidPolicy, path: PathLike) -> LiquidPolicy:
    """Load a checkpoint's weights into an existing policy of the same configuration."""
    path = Path(path)
    header, tensors = _read(path, with_tensors=True)
    stored = _json_field(header, "config", path)
    _check_config(stored, checkpoint_config(policy), path, "the model")
    device = next(policy.parameters()).device
    _load_tensors(policy, {k: v.to(device) for k, v in tensors.items()}, path)
    return policy


def _read(path: Path, with_tensors: bool) -> tuple[dict[str, str], dict[str, Tensor]]:
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file; expected a .safetensors file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            header = handle.metadata() or {}
            tensors = {k: handle.get_tensor(k) for k in handle.keys()} if with_tensors else {}
    except (SafetensorError, OSError, RuntimeError, ValueError) as err:
        raise CheckpointError(
            f"checkpoint {path} is not a readable safetensors file (truncated or corrupt?): {err}"
        ) from err
    version = header.get("lnn_nav_format")
    if version is None:
        raise CheckpointError(
            f"{path} is a safetensors file but not an lnn_nav checkpoint (no 'lnn_nav_format' in its metadata)"
        )
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version!r}; this lnn_nav reads version {FORMAT_VERSION!r}"
        )
    return header, tensors


def _json_field(header: Mapping[str, str], key: str, path: Path) -> dict[str, Any]:
    if key not in header:
        raise CheckpointError(f"checkpoint {path} has no '{key}' entry in its metadata")
    try:
        value = json.loads(header[key])
    except json.JSONDecodeError as err:
        raise CheckpointError(f"checkpoint {path}: its '{key}' metadata is not valid JSON: {err}") from err
    if not isinstance(value, dict):
        raise CheckpointError(
            f"checkpoint {path}: its '{key}' metadata must be a JSON object, got {type(value).__name__}"
        )
    return value


def _policy_config(stored: Mapping[str, Any], path: Path) -> PolicyConfig:
    try:
        return PolicyConfig.from_dict(stored)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} has an invalid config: {err}") from err


#: Policy config fields added after checkpoints had been shipped: absent from a file, they read as these.
_LATER_DEFAULTS: dict[str, Any] = {"output_gain": [1.0, 1.0, 1.0, 1.0]}


def _check_config(stored: Mapping[str, Any], want: Mapping[str, Any], path: Path, whom: str) -> None:
    stored = {**_LATER_DEFAULTS, **stored}
    if stored.get("core") != want.get("core"):
        # Options of different core kinds are not comparable; the kind says it all.
        raise CheckpointError(
            f"checkpoint {path} holds a {stored.get('core')!r} core but {whom} has {want.get('core')!r}"
        )
    diffs = [_describe(name, got, asked, whom) for name, got, asked in _differences(stored, want, "")]
    if diffs:
        raise CheckpointError(f"checkpoint {path} does not match {whom}: " + "; ".join(diffs[:_MAX_LISTED]))


def _differences(stored: Any, want: Any, prefix: str) -> list[tuple[str, Any, Any]]:
    """(dotted field, value in the file, wanted value) for each leaf of ``want`` that differs."""
    if isinstance(want, Mapping):
        stored = stored if isinstance(stored, Mapping) else {}
        out: list[tuple[str, Any, Any]] = []
        for key, value in want.items():
            out.extend(_differences(stored.get(key, _ABSENT), value, f"{prefix}{key}."))
        return out
    # JSON round trip so tuples and lists, 2 and 2.0 compare as the file stores them.
    if stored is _ABSENT or json.loads(json.dumps(stored)) != json.loads(json.dumps(want)):
        return [(prefix.rstrip("."), stored, want)]
    return []


def _describe(name: str, got: Any, asked: Any, whom: str) -> str:
    if got is _ABSENT:
        return f"{name} is absent in the file, {name}={json.dumps(asked)} in {whom}"
    got_text, asked_text = json.dumps(got), json.dumps(asked)
    if max(len(got_text), len(asked_text)) > 60:
        # Wiring matrices are long; the field name already says where to look.
        return f"{name} differs between the file and {whom}"
    return f"{name}={got_text} in the file, {name}={asked_text} in {whom}"


def _load_tensors(policy: LiquidPolicy, tensors: Mapping[str, Tensor], path: Path) -> None:
    model = policy.state_dict()
    missing = sorted(set(model) - set(tensors))
    unexpected = sorted(set(tensors) - set(model))
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {path} does not fit the model: missing tensors: "
            f"{missing[:_MAX_LISTED]}; unexpected tensors: {unexpected[:_MAX_LISTED]}"
        )
    fixed = _architecture_tensors(policy)
    problems: list[str] = []
    for name, want in model.items():
        got = tensors[name]
        if got.shape != want.shape:
            problems.append(
                f"tensor '{name}' has shape {list(got.shape)} in the file, the model expects {list(want.shape)}"
            )
        elif got.dtype != want.dtype:
            problems.append(f"tensor '{name}' is {got.dtype} in the file, the model expects {want.dtype}")
        elif name in fixed and not torch.equal(got.to(want.device), want):
            problems.append(
                f"tensor '{name}' differs from the model's; it is fixed by the architecture "
                f"(a wiring mask or a constant), so the file was written for a different "
                f"wiring or config"
            )
    if problems:
        raise CheckpointError(f"checkpoint {path}: " + "; ".join(problems[:_MAX_LISTED]))
    policy.load_state_dict(dict(tensors))


def _architecture_tensors(policy: LiquidPolicy) -> set:
    return {n for n, _ in policy.named_buffers() if not n.endswith(_RUNNING_STATISTICS)}
