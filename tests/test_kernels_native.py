"""The torch-free policy runtime (csrc/policy_runtime.cpp): the extension's commands, its refusals, its file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lnn_nav.cbuild import compiler
from lnn_nav.kernels import native
from lnn_nav.kernels.native import NativeError, NativePolicy, export_weights, load_weights, save_weights
from lnn_nav.models import EncoderConfig, LiquidPolicy, PolicyConfig, load_policy

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(compiler() is None, reason="no C++ compiler to build the runtime")


def _frames(policy: LiquidPolicy, n: int, seed: int = 0) -> np.ndarray:
    enc = policy.config.encoder
    return np.random.default_rng(seed).integers(0, 256, size=(n, enc.height, enc.width, 3), dtype=np.uint8)


def _fly_both(policy: LiquidPolicy, steps: int = 8, goal: bool = False) -> tuple[list, list]:
    """Commands and states of the torch policy (fused step) and the runtime over the same frames."""
    policy.eval()
    runtime = NativePolicy(export_weights(policy))
    frames = _frames(policy, steps)
    rng = np.random.default_rng(1)
    state, h = None, None
    ours, theirs = [], []
    for i, frame in enumerate(frames):
        dt = float(rng.uniform(0.02, 0.2)) if i else 1.0 / 15
        g = rng.normal(size=4).astype(np.float32) if goal else None
        if g is not None:
            g[3] = abs(g[3]) * 8.0  # a distance, sometimes beyond the clip
        image = torch.from_numpy(frame).permute(2, 0, 1).unsqueeze(0)
        with torch.inference_mode():
            cmd, state = policy.step(image, dt, state, goal=None if g is None else torch.from_numpy(g)[None])
        command, h = runtime.step(frame, dt, h, goal=g)
        theirs.append((cmd[0].numpy().copy(), state[0].numpy().copy()))
        ours.append((command, h))
    return ours, theirs


@pytest.mark.parametrize("model", ["cfc_ncp", "cfc"])
def test_the_shipped_controllers_step_as_in_the_extension(model: str) -> None:
    policy = load_policy(ROOT / "models" / f"{model}.safetensors")
    ours, theirs = _fly_both(policy, goal=policy.config.use_goal)
    for (command, h), (ref_command, ref_h) in zip(ours, theirs):
        np.testing.assert_allclose(command, ref_command, rtol=0, atol=1e-5)
        np.testing.assert_allclose(h, ref_h, rtol=0, atol=1e-5)
    assert np.abs(ours[-1][0]).max() > 1e-3  # a policy that commands something


def test_a_goal_policy_clips_the_goal_distance_as_the_extension_does() -> None:
    torch.manual_seed(3)
    policy = LiquidPolicy(PolicyConfig(encoder=EncoderConfig(height=48, width=64), use_goal=True))
    ours, theirs = _fly_both(policy, goal=True)
    for (command, h), (ref_command, ref_h) in zip(ours, theirs):
        np.testing.assert_allclose(command, ref_command, rtol=0, atol=1e-5)
        np.testing.assert_allclose(h, ref_h, rtol=0, atol=1e-5)


def test_weights_round_trip_through_a_file_and_other_files_are_refused(tmp_path: Path) -> None:
    policy = load_policy(ROOT / "models" / "cfc_ncp.safetensors")
    weights = export_weights(policy)
    back = load_weights(save_weights(weights, tmp_path / "cfc_ncp.native.safetensors"))
    for name in ("encoder_meta", "encoder_eps", "encoder_packed", "core_meta", "core_packed"):
        np.testing.assert_array_equal(getattr(back, name), getattr(weights, name))
    assert (back.height, back.width, back.use_goal, back.goal_clip) == (48, 64, weights.use_goal, weights.goal_clip)
    # The camera it was trained with travels too (the native node checks CameraInfo against it).
    assert back.camera_hfov_deg == weights.camera_hfov_deg == policy.config.camera_hfov_deg == 90.0
    frame = _frames(policy, 1)[0]
    a, _ = NativePolicy(weights).step(frame, 0.1, goal=np.array([1.0, 0.0, 0.0, 5.0]) if weights.use_goal else None)
    b, _ = NativePolicy(back).step(frame, 0.1, goal=np.array([1.0, 0.0, 0.0, 5.0]) if back.use_goal else None)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="no lnn_nav_native metadata"):
        load_weights(ROOT / "models" / "cfc_ncp.safetensors")  # a checkpoint, not packed weights
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a native weights file"):
        load_weights(tmp_path / "junk.safetensors")
    with pytest.raises(FileNotFoundError):
        load_weights(tmp_path / "missing.safetensors")


def test_the_runtime_refuses_what_the_policy_would_refuse() -> None:
    torch.manual_seed(0)
    policy = LiquidPolicy(PolicyConfig(encoder=EncoderConfig(height=48, width=64), use_goal=True)).eval()
    weights = export_weights(policy)
    runtime = NativePolicy(weights)
    frame = _frames(policy, 1)[0]
    goal = np.array([1.0, 0.0, 0.0, 4.0])
    with pytest.raises(NativeError, match="uint8"):
        runtime.step(frame[:40], 0.1, goal=goal)
    with pytest.raises(NativeError, match="IMU/goal"):
        runtime.step(frame, 0.1)  # the goal is missing
    with pytest.raises(NativeError, match="dt"):
        runtime.step(frame, float("nan"), goal=goal)
    with pytest.raises(NativeError, match="state"):
        runtime.step(frame, 0.1, np.zeros(3), goal=goal)
    broken = native.NativeWeights(**{**weights.__dict__, "core_packed": weights.core_packed[:-1]})
    with pytest.raises(NativeError, match="core parameters do not match"):
        NativePolicy(broken)
    # A strided view (a crop of a wider frame, as a camera buffer with padded rows) reads as its copy.
    wide = np.random.default_rng(5).integers(0, 256, size=(48, 80, 3), dtype=np.uint8)
    a, _ = runtime.step(wide[:, 8:72], 0.1, goal=goal)
    b, _ = runtime.step(np.ascontiguousarray(wide[:, 8:72]), 0.1, goal=goal)
    np.testing.assert_array_equal(a, b)


def test_cores_other_than_cfc_are_named_not_exported() -> None:
    policy = LiquidPolicy(PolicyConfig(encoder=EncoderConfig(height=48, width=64), core="lstm"))
    with pytest.raises(ValueError, match="runs CfC cores"):
        export_weights(policy)


def test_a_process_without_torch_steps_the_weights_file(tmp_path: Path) -> None:
    policy = load_policy(ROOT / "models" / "cfc_ncp.safetensors")
    path = save_weights(export_weights(policy), tmp_path / "w.safetensors")
    native.load()  # built here first, so the child finds it in the cache
    frame = _frames(policy, 1)[0]
    np.save(tmp_path / "frame.npy", frame)
    goal = "np.array([3.0, 1.0, 0.0, 6.0])" if policy.config.use_goal else "None"
    script = (
        "import sys; sys.modules['torch'] = None\n"  # any import of torch fails
        "import numpy as np\n"
        "from lnn_nav.kernels.native import NativePolicy, load_weights\n"
        f"runtime = NativePolicy(load_weights({str(path)!r}))\n"
        f"cmd, h = runtime.step(np.load({str(tmp_path / 'frame.npy')!r}), 0.1, goal={goal})\n"
        "print(' '.join(repr(float(c)) for c in cmd))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    expected, _ = NativePolicy(load_weights(path)).step(
        frame, 0.1, goal=np.array([3.0, 1.0, 0.0, 6.0]) if policy.config.use_goal else None
    )
    assert [float(x) for x in done.stdout.split()] == [float(c) for c in expected]


def test_cli_export_native_writes_checked_weights_and_refuses_other_cores(tmp_path: Path, capsys) -> None:
    from lnn_nav.cli import main as cli_main
    from lnn_nav.models import save_policy

    torch.manual_seed(0)
    ckpt = save_policy(
        LiquidPolicy(PolicyConfig(encoder=EncoderConfig(height=48, width=64))), tmp_path / "p.safetensors"
    )
    assert cli_main(["export", str(ckpt), "--format", "native", "--out", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    assert "native runtime vs PyTorch over 5 chained steps: max |diff|" in out  # exit 0: within 1e-5
    assert load_weights(tmp_path / "p.native.safetensors").core_meta.size > 0
    lstm = save_policy(
        LiquidPolicy(PolicyConfig(encoder=EncoderConfig(height=48, width=64), core="lstm")), tmp_path / "l.safetensors"
    )
    assert cli_main(["export", str(lstm), "--format", "native", "--out", str(tmp_path / "l")]) == 2
    assert "runs CfC cores" in capsys.readouterr().err


def test_weights_whose_layout_would_overflow_are_refused_not_run() -> None:
    # A file's layout values go through int sums in the shared parsers: an output slice at 2^31 - 3 would
    # wrap past the check and read far outside the state. Refused at creation.
    torch.manual_seed(0)
    weights = export_weights(LiquidPolicy(PolicyConfig(encoder=EncoderConfig(height=48, width=64))).eval())
    core_meta = weights.core_meta.copy()
    core_meta[4] = 2**31 - 3  # out_start
    with pytest.raises(NativeError, match="out of range"):
        NativePolicy(native.NativeWeights(**{**weights.__dict__, "core_meta": core_meta}))
    encoder_meta = weights.encoder_meta.copy()
    encoder_meta[-4] = -1  # the last layer's kernel
    with pytest.raises(NativeError, match="out of range"):
        NativePolicy(native.NativeWeights(**{**weights.__dict__, "encoder_meta": encoder_meta}))


def test_one_runtime_stepped_from_two_threads_gives_each_its_own_commands() -> None:
    import threading

    policy = load_policy(ROOT / "models" / "cfc.safetensors")
    runtime = NativePolicy(export_weights(policy))
    frames = _frames(policy, 2)
    goal = np.array([1.0, 0.0, 0.0, 4.0]) if policy.config.use_goal else None
    expected = [runtime.step(f, 0.1, goal=goal)[0] for f in frames]
    wrong = []

    def fly(k: int) -> None:
        for _ in range(200):
            cmd, _ = runtime.step(frames[k], 0.1, goal=goal)
            if not np.array_equal(cmd, expected[k]):
                wrong.append(k)

    threads = [threading.Thread(target=fly, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong


def test_the_runtime_is_built_with_the_extensions_flags() -> None:
    # The same commands need the same flags: the two copies of them must not drift apart.
    from lnn_nav.kernels.build import CPU_FLAGS
    from lnn_nav.nodes import native as node

    assert native.FLAGS[: len(CPU_FLAGS)] == CPU_FLAGS
    assert node.RUNTIME_FLAGS[: len(CPU_FLAGS)] == CPU_FLAGS
