"""The fused inference paths on the CPU against the reference, output for output (no timing here).

* The C++ encoder and whole policy step (``lnn_nav.kernels.fused_policy``):
  ``ConvEncoder.forward`` and ``LiquidPolicy.step`` in inference, for the shipped
  checkpoint and for random encoders (every normalisation, frame norm, odd sizes).
* ``CfC.forward`` in inference (``fused.try_forward``): the ncps-style T=1 call
  and short sequences at small batch, for every wiring kind and cell mode.

Both stay within 1e-5 of the reference, leave training (gradients) on the
reference path, can be switched off, and let the reference raise its errors
for bad input.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from small_policies import CORE_OPTIONS, KINDS, small_core

from lnn_nav.kernels import fused, fused_policy, load_cpu, reference
from lnn_nav.models import AutoNCP, CfC, load_policy
from lnn_nav.models.encoder import ConvEncoder, EncoderConfig
from lnn_nav.models.policy import GOAL_SIZE, IMU_SIZE, LiquidPolicy, PolicyConfig

pytestmark = pytest.mark.skipif(load_cpu() is None, reason="the CPU extension did not build here")

TOL = dict(rtol=1e-5, atol=1e-5)
SHIPPED = Path(__file__).resolve().parents[1] / "models" / "cfc_ncp.safetensors"


def _reference_step(policy, *args, **kwargs):
    with fused_policy.reference_encoder():
        return policy.step(*args, **kwargs)


def _frames(batch: int, cfg: EncoderConfig, seed: int, dtype=torch.uint8) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, cfg.in_channels, cfg.height, cfg.width)
    if dtype == torch.uint8:
        return torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8)
    return torch.rand(shape, generator=gen, dtype=dtype)


# ---------------------------------------------------------------- the shipped policy
@pytest.fixture(scope="module")
def shipped() -> LiquidPolicy:
    return load_policy(SHIPPED)  # shipped with the source: a missing file fails here, it is not skipped


def test_shipped_policy_takes_the_fused_step(shipped):
    assert fused_policy.why_not_fused_policy(shipped) is None


@pytest.mark.parametrize("mode", ["inference_mode", "no_grad"])
def test_shipped_policy_commands_match_the_reference_over_a_flight(shipped, mode):
    cfg = shipped.config.encoder
    gen = torch.Generator().manual_seed(1)
    context = torch.inference_mode if mode == "inference_mode" else torch.no_grad
    state = ref_state = None
    with context():
        for t in range(12):
            image = _frames(1, cfg, seed=t)
            goal = torch.cat(
                [
                    torch.nn.functional.normalize(torch.randn(1, 3, generator=gen), dim=1),
                    20 * torch.rand(1, 1, generator=gen),
                ],
                1,
            )
            dt = 0.02 + 0.06 * float(torch.rand(1, generator=gen))
            command, state = shipped.step(image, dt, state, goal=goal)
            ref_command, ref_state = _reference_step(shipped, image, dt, ref_state, goal=goal)
            torch.testing.assert_close(command, ref_command, **TOL)
            torch.testing.assert_close(state, ref_state, **TOL)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
@pytest.mark.parametrize("batch", [1, 3])
def test_shipped_policy_batches_and_frame_types_match_the_reference(shipped, dtype, batch):
    cfg = shipped.config.encoder
    image = _frames(batch, cfg, seed=batch, dtype=dtype)
    goal = torch.tensor([[0.6, 0.8, 0.0, 4.0]]).repeat(batch, 1)
    state = torch.randn(batch, shipped.core.state_size, generator=torch.Generator().manual_seed(2))
    dt = torch.full((batch,), 0.05)
    before = state.clone()
    with torch.inference_mode():
        command, new_state = shipped.step(image, dt, state, goal=goal)
        ref_command, ref_state = _reference_step(shipped, image, dt, state, goal=goal)
    torch.testing.assert_close(command, ref_command, **TOL)
    torch.testing.assert_close(new_state, ref_state, **TOL)
    assert torch.equal(state, before)  # the passed state is left untouched


def test_a_channels_last_view_of_camera_frames_matches(shipped):
    cfg = shipped.config.encoder
    hwc = torch.randint(0, 256, (1, cfg.height, cfg.width, 3), dtype=torch.uint8)
    image = hwc.permute(0, 3, 1, 2)  # the camera buffer as it is, no copy
    goal = torch.tensor([[1.0, 0.0, 0.0, 7.0]])
    with torch.inference_mode():
        command, _ = shipped.step(image, 0.05, None, goal=goal)
        ref_command, _ = _reference_step(shipped, image.contiguous(), 0.05, None, goal=goal)
    torch.testing.assert_close(command, ref_command, **TOL)


# ------------------------------------------------------------------ random encoders
ENCODERS = {
    "default-96x128": EncoderConfig(),
    "group-tanh": EncoderConfig(height=48, width=64, normalization="group", output_activation="tanh"),
    "batch": EncoderConfig(height=30, width=41, normalization="batch"),
    "frame-norm": EncoderConfig(height=24, width=32, input_norm="frame", normalization="group"),
    "odd-sizes": EncoderConfig(
        in_channels=2,
        height=13,
        width=17,
        channels=(5, 12, 40, 7),
        kernels=(3, 1, 5, 3),
        strides=(1, 3, 2, 1),
        feature_dim=11,
        mean=(0.3, 0.6),
        std=(0.2, 0.4),
        normalization="group",
    ),
    "single-layer-gray": EncoderConfig(
        in_channels=1, height=9, width=9, channels=(24,), kernels=(7,), strides=(4,), mean=(0.5,), std=(0.25,)
    ),
}


def _encoder(name: str) -> ConvEncoder:
    torch.manual_seed(len(name))
    encoder = ConvEncoder(ENCODERS[name])
    with torch.no_grad():
        for module in encoder.modules():
            if isinstance(module, (torch.nn.GroupNorm, torch.nn.BatchNorm2d)):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    return encoder.eval()


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_fused_encoder_matches_the_reference(name, dtype):
    encoder = _encoder(name)
    images = _frames(3, encoder.config, seed=7, dtype=dtype)
    with torch.inference_mode():
        fast = fused_policy.try_encode(encoder, images)
        assert fast is not None
        for batch in (1, 3):
            got = encoder(images[:batch])
            with fused_policy.reference_encoder():
                want = encoder(images[:batch])
            torch.testing.assert_close(got, want, **TOL)
    torch.testing.assert_close(fast, want, **TOL)


def test_a_uniform_frame_meets_the_frame_norm_floor():
    encoder = _encoder("frame-norm")
    images = torch.full((1, 3, 24, 32), 77, dtype=torch.uint8)
    with torch.inference_mode():
        got = encoder(images)
        with fused_policy.reference_encoder():
            want = encoder(images)
    torch.testing.assert_close(got, want, **TOL)


def test_a_nan_frame_gives_nan_on_both_paths():
    encoder = _encoder("group-tanh")
    images = torch.rand(1, 3, 48, 64)
    images[0, 1, 5, 5] = float("nan")
    with torch.inference_mode():
        got = encoder(images)
        with fused_policy.reference_encoder():
            want = encoder(images)
    assert torch.equal(torch.isnan(got), torch.isnan(want))


def test_weights_changed_in_place_are_repacked():
    encoder = _encoder("group-tanh")
    images = _frames(1, encoder.config, seed=3)
    with torch.inference_mode():
        before = encoder(images)
    with torch.no_grad():
        encoder.convs[1][0].weight.mul_(-1.5)
        encoder.bottleneck.bias.add_(0.3)
    with torch.inference_mode():
        after = encoder(images)
        with fused_policy.reference_encoder():
            want = encoder(images)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, want, **TOL)


def test_a_float64_encoder_runs_the_reference():
    encoder = _encoder("batch").double()
    images = _frames(2, encoder.config, seed=4)
    with torch.inference_mode():
        assert fused_policy.try_encode(encoder, images) is None
        assert encoder(images).dtype == torch.float64


# ------------------------------------------------------------- policies (CfC cores)
def _policy(kind: str, **config) -> LiquidPolicy:
    torch.manual_seed(5)
    config.setdefault("encoder", EncoderConfig(height=20, width=28, normalization="group", output_activation="tanh"))
    policy = LiquidPolicy(PolicyConfig(core=kind, core_options=CORE_OPTIONS[kind], **config))
    return policy.eval()


@pytest.mark.parametrize("kind", ["cfc-ncp", "cfc"])
@pytest.mark.parametrize("extras", [(False, False), (True, True), (True, False)])
def test_policy_step_matches_the_reference(kind, extras):
    use_imu, use_goal = extras
    policy = _policy(kind, use_imu=use_imu, use_goal=use_goal, command_scale=(2.0, 1.0, 0.5, 1.5))
    assert fused_policy.why_not_fused_policy(policy) is None
    gen = torch.Generator().manual_seed(9)
    inputs = {}
    if use_imu:
        inputs["imu"] = torch.randn(2, IMU_SIZE, generator=gen, dtype=torch.float64)
    if use_goal:
        inputs["goal"] = torch.tensor([[0.0, 1.0, 0.0, 30.0], [0.6, 0.0, 0.8, float("nan")]])
    image = _frames(2, policy.config.encoder, seed=1)
    with torch.inference_mode():
        state = ref_state = None
        for dt in (None, 0.1, torch.tensor(0.03), torch.tensor([[0.0], [0.2]])):
            command, state = policy.step(image, dt, state, **inputs)
            ref_command, ref_state = _reference_step(policy, image, dt, ref_state, **inputs)
            torch.testing.assert_close(command, ref_command, equal_nan=True, **TOL)
            torch.testing.assert_close(state, ref_state, equal_nan=True, **TOL)


def test_policy_with_a_projected_core_matches_the_reference():
    policy = _policy("cfc")
    policy.core = CfC(policy.core.input_size, 12, proj_size=6, backbone_units=10)
    policy.head = torch.nn.Linear(6, 4)
    policy.eval()
    image = _frames(1, policy.config.encoder, seed=2)
    with torch.inference_mode():
        command, state = policy.step(image, 0.05)
        ref_command, ref_state = _reference_step(policy, image, 0.05)
    torch.testing.assert_close(command, ref_command, **TOL)
    torch.testing.assert_close(state, ref_state, **TOL)


def test_a_replaced_output_gain_is_picked_up():
    policy = _policy("cfc-ncp")
    image = _frames(1, policy.config.encoder, seed=6)
    with torch.inference_mode():
        policy.step(image, 0.05)
        policy.output_gain = torch.tensor([3.0, 0.5, 1.0, 2.0])
        command, _ = policy.step(image, 0.05)
        ref_command, _ = _reference_step(policy, image, 0.05)
    torch.testing.assert_close(command, ref_command, **TOL)


def test_non_cfc_cores_use_the_fused_encoder_only():
    policy = _policy("gru")
    image = _frames(1, policy.config.encoder, seed=8)
    assert fused_policy.why_not_fused_policy(policy) == "the core is not a CfC"
    with torch.inference_mode():
        command, _ = policy.step(image, 0.05)
        ref_command, _ = _reference_step(policy, image, 0.05)
    torch.testing.assert_close(command, ref_command, **TOL)


def test_training_keeps_the_differentiable_reference_path(monkeypatch):
    policy = _policy("cfc-ncp", use_goal=True)
    image = _frames(2, policy.config.encoder, seed=3, dtype=torch.float32)
    goal = torch.tensor([[1.0, 0.0, 0.0, 3.0]]).repeat(2, 1)

    def grads(step_fn):
        policy.zero_grad()
        command, state = step_fn(image, 0.05, None, goal=goal)
        (command.square().sum() + state.sum()).backward()
        return command.detach(), [p.grad.clone() for p in policy.parameters() if p.grad is not None]

    command, got = grads(policy.step)
    ref_command, want = grads(lambda *a, **k: _reference_step(policy, *a, **k))
    torch.testing.assert_close(command, ref_command, rtol=0, atol=0)
    assert len(got) == len(want) > 0
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # In training mode (and with gradients) the C++ path is not even asked.
    monkeypatch.setattr(fused_policy, "_extension", lambda: pytest.fail("the fused path ran with gradients"))
    policy.train()
    images = _frames(2, policy.config.encoder, seed=4, dtype=torch.float32).unsqueeze(1)
    commands, _ = policy(images, torch.full((2, 1), 0.05), goal=goal.unsqueeze(1))
    assert commands.requires_grad
    with torch.no_grad():
        policy.step(image, 0.05, None, goal=goal)  # train mode: batch statistics, dropout -> reference


def test_the_switch_turns_the_fused_encoder_off(monkeypatch):
    policy = _policy("cfc-ncp")
    image = _frames(1, policy.config.encoder, seed=5)
    monkeypatch.setattr(fused_policy, "_extension", lambda: pytest.fail("the fused path ran while switched off"))
    with torch.inference_mode(), fused_policy.reference_encoder():
        assert fused_policy.why_not_fused_policy(policy) is not None
        policy.step(image, 0.05)
        policy.encoder(image)
    with torch.inference_mode(), reference():
        assert "reference path is forced" in str(fused_policy.why_not_fused_policy(policy))
        policy.step(image, 0.05)


def test_the_switch_reads_its_environment_variable():
    code = "from lnn_nav.kernels import fused_policy as f; print(f.reference_encoder_forced())"
    for value, expected in (("1", "True"), ("0", "False")):
        env = {**os.environ, "LNN_NAV_REFERENCE_ENCODER": value}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == expected


def _error(fn):
    try:
        fn()
    except (TypeError, ValueError) as err:
        return type(err), str(err)
    return None


@pytest.mark.parametrize(
    "case",
    [
        "wrong-size",
        "wrong-channels",
        "int32-image",
        "missing-goal",
        "goal-shape",
        "goal-int",
        "unexpected-imu",
        "nan-dt",
        "negative-dt",
        "dt-shape",
        "state-shape",
        "image-3d",
    ],
)
def test_bad_inputs_raise_the_reference_errors(case):
    policy = _policy("cfc-ncp", use_goal=True)
    cfg = policy.config.encoder
    image = _frames(1, cfg, seed=1)
    goal = torch.tensor([[1.0, 0.0, 0.0, 3.0]])
    args: dict = {"image": image, "dt": 0.05, "state": None, "goal": goal}
    if case == "wrong-size":
        args["image"] = torch.zeros(1, 3, cfg.height + 1, cfg.width, dtype=torch.uint8)
    elif case == "wrong-channels":
        args["image"] = torch.zeros(1, 4, cfg.height, cfg.width, dtype=torch.uint8)
    elif case == "int32-image":
        args["image"] = image.to(torch.int32)
    elif case == "missing-goal":
        args["goal"] = None
    elif case == "goal-shape":
        args["goal"] = torch.zeros(1, 3)
    elif case == "goal-int":
        args["goal"] = torch.zeros(1, 4, dtype=torch.int64)
    elif case == "unexpected-imu":
        args["imu"] = torch.zeros(1, IMU_SIZE)
    elif case == "nan-dt":
        args["dt"] = float("nan")
    elif case == "negative-dt":
        args["dt"] = torch.tensor([-0.1])
    elif case == "dt-shape":
        args["dt"] = torch.zeros(2)
    elif case == "state-shape":
        args["state"] = torch.zeros(1, policy.core.state_size + 1)
    elif case == "image-3d":
        args["image"] = image[0]
    with torch.inference_mode():
        got = _error(lambda: policy.step(**args))
        with fused_policy.reference_encoder():
            want = _error(lambda: policy.step(**args))
    assert want is not None
    assert got == want


def test_goal_size_constant_is_what_the_kernel_reads():
    assert (IMU_SIZE, GOAL_SIZE) == (6, 4)  # csrc/cfc_cpu.cpp policy_step: kImu, kGoal


# ----------------------------------------------------- CfC.forward in inference


def _forward_both(core, *args, **kwargs):
    with torch.inference_mode():
        fast = fused.try_forward(core, *args, **kwargs)
        got = core(*args, **kwargs)
        with reference():
            want = core(*args, **kwargs)
    assert fast is not None, "the fused forward did not take this call"
    return got, want


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["default", "no_gate", "pure"])
@pytest.mark.parametrize("batch, steps", [(1, 1), (3, 5), (11, 2)])
def test_inference_forward_matches_the_reference(kind, mode, batch, steps):
    core = small_core(kind, mode).eval()
    gen = torch.Generator().manual_seed(batch * 10 + steps)
    x = torch.randn(batch, steps, 6, generator=gen)
    h0 = torch.randn(batch, core.state_size, generator=gen)
    ts = torch.rand(batch, steps, generator=gen) * 1.5
    for args in ((x, h0, ts), (x, None, None), (x, h0, 0.25)):
        (y, h), (y_ref, h_ref) = _forward_both(core, *args)
        torch.testing.assert_close(y, y_ref, **TOL)
        torch.testing.assert_close(h, h_ref, **TOL)


@pytest.mark.parametrize(
    "layout", ["scalar-tensor", "[B,T]", "[B,T,1]", "[B] T=1", "[B,1] T=1", "[T] B=1", "float64", "int"]
)
def test_every_timespan_layout_matches_the_reference(layout):
    core = small_core("autoncp").eval()
    batch, steps = (1, 4) if layout == "[T] B=1" else (3, 1) if "T=1" in layout else (3, 4)
    x = torch.randn(batch, steps, 6)
    ts = {
        "scalar-tensor": torch.tensor(0.3),
        "[B,T]": torch.rand(batch, steps),
        "[B,T,1]": torch.rand(batch, steps, 1),
        "[B] T=1": torch.rand(batch),
        "[B,1] T=1": torch.rand(batch, 1),
        "[T] B=1": torch.rand(steps),
        "float64": torch.rand(batch, steps, dtype=torch.float64),
        "int": 2,
    }[layout]
    (y, h), (y_ref, h_ref) = _forward_both(core, x, None, ts)
    torch.testing.assert_close(y, y_ref, **TOL)
    torch.testing.assert_close(h, h_ref, **TOL)


def test_ncps_style_call_of_converted_models_matches_the_reference():
    ncps_torch = pytest.importorskip("ncps.torch")
    ncps_wirings = pytest.importorskip("ncps.wirings")
    from lnn_nav.models import from_ncps

    torch.manual_seed(0)
    for theirs in (ncps_torch.CfC(32, ncps_wirings.AutoNCP(19, 4)), ncps_torch.CfC(32, 64)):
        ours = from_ncps(theirs.eval()).eval()
        x = torch.randn(1, 1, 32)
        h = torch.randn(1, ours.state_size)
        dt = torch.tensor([[0.05]])
        (y, h1), (y_ref, h_ref) = _forward_both(ours, x, h, timespans=dt)
        torch.testing.assert_close(y, y_ref, **TOL)
        torch.testing.assert_close(h1, h_ref, **TOL)
        with torch.inference_mode():
            y_ncps, h_ncps = theirs(x, h, dt)
        torch.testing.assert_close(y, y_ncps, **TOL)
        torch.testing.assert_close(h1, h_ncps, **TOL)


def test_return_sequences_false_and_float64_cores_match():
    core = CfC(6, AutoNCP(10, 2, seed=3), return_sequences=False).eval()
    x = torch.randn(2, 3, 6)
    (y, h), (y_ref, h_ref) = _forward_both(core, x)
    assert y.shape == (2, 2)
    torch.testing.assert_close(y, y_ref, **TOL)
    core64 = small_core("dense").double().eval()
    x64 = torch.randn(2, 3, 6, dtype=torch.float64)
    (y, h), (y_ref, h_ref) = _forward_both(core64, x64, None, torch.rand(2, 3, dtype=torch.float64))
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)


def test_long_sequences_and_wide_batches_keep_the_sequence_kernel():
    core = small_core("dense").eval()
    macs = fused._plan(core).macs
    limit = fused.INFER_MAX_MACS // macs  # batch x steps
    widest = fused.CPU_PER_SAMPLE_MAX_BATCH_MACS // macs  # batch
    with torch.inference_mode():
        assert fused.try_forward(core, torch.randn(1, limit, 6), None, None) is not None
        assert fused.try_forward(core, torch.randn(1, limit + 1, 6), None, None) is None
        assert fused.try_forward(core, torch.randn(widest, 1, 6), None, None) is not None
        assert fused.try_forward(core, torch.randn(widest + 1, 1, 6), None, None) is None


@pytest.mark.parametrize("case", ["negative", "nan", "shape", "features", "int-input", "state-shape"])
def test_bad_forward_inputs_raise_the_reference_errors(case):
    core = small_core("autoncp").eval()
    x = torch.randn(2, 3, 6)
    args: list = [x, None, None]
    if case == "negative":
        args[2] = torch.full((2, 3), -1.0)
    elif case == "nan":
        args[2] = float("nan")
    elif case == "shape":
        args[2] = torch.ones(3, 2)
    elif case == "features":
        args[0] = torch.randn(2, 3, 5)
    elif case == "int-input":
        args[0] = torch.ones(2, 3, 6, dtype=torch.int64)
    elif case == "state-shape":
        args[1] = torch.zeros(2, core.state_size + 1)
    with torch.inference_mode():
        got = _error(lambda: core(*args))
        with reference():
            want = _error(lambda: core(*args))
    assert want is not None
    assert got == want


@pytest.mark.parametrize("kind", ["autoncp", "dense-deep-proj"])
def test_forward_with_gradients_keeps_the_differentiable_path(kind):
    core = small_core(kind)  # training mode, parameters require grad
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 1, 6, generator=gen, requires_grad=True)
    h0 = torch.randn(2, core.state_size, generator=gen)
    assert fused.try_forward(core, x, h0, 0.1) is None

    def run():
        y, h = core(x, h0, 0.1)
        return torch.autograd.grad((y * y).sum() + h.sum(), [x, *core.parameters()])

    got = run()
    with reference():
        want = run()
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **TOL)
