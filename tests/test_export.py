"""Export of the single-step policy: ONNX (checked with onnxruntime) and TorchScript."""

from __future__ import annotations

import pytest
import torch

from lnn_nav.cli import main as cli_main
from lnn_nav.deploy.export import PolicyStep, check_onnx, example_inputs, export_onnx, export_torchscript
from lnn_nav.kernels import reference
from lnn_nav.models import EncoderConfig, LiquidPolicy, PolicyConfig, save_policy

SMALL = EncoderConfig(height=24, width=32, channels=(8, 8), kernels=(5, 3), strides=(2, 2), feature_dim=8)


def _policy(**kw) -> LiquidPolicy:
    torch.manual_seed(0)
    return LiquidPolicy(PolicyConfig(encoder=SMALL, **kw)).eval()


@pytest.mark.parametrize("core", ["cfc-ncp", "cfc"])
def test_onnx_step_matches_pytorch_in_onnxruntime(tmp_path, core):
    pytest.importorskip("onnxruntime")
    policy = _policy(core=core)
    path = export_onnx(policy, tmp_path / "policy.onnx")
    assert check_onnx(policy, path) < 1e-5


def test_onnx_graph_has_state_as_explicit_input_and_output(tmp_path):
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(export_onnx(_policy(use_imu=True), tmp_path / "p.onnx")))
    assert [i.name for i in model.graph.input] == ["image", "dt", "state_in", "imu"]
    assert [o.name for o in model.graph.output] == ["cmd", "state_out"]


def test_onnx_batch_axis_is_dynamic(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    policy = _policy()
    session = ort.InferenceSession(str(export_onnx(policy, tmp_path / "p.onnx")))
    image, dt, state = example_inputs(policy, batch=3)
    cmd, state_out = session.run(None, {"image": image.numpy(), "dt": dt.numpy(), "state_in": state.numpy()})
    assert cmd.shape == (3, 4) and state_out.shape == state.shape


def test_torchscript_step_matches_policy_step(tmp_path):
    policy = _policy()
    loaded = torch.jit.load(str(export_torchscript(policy, tmp_path / "p.pt")))
    image, dt, state = example_inputs(policy)
    image = torch.rand_like(image)
    cmd, new_state = loaded(image, dt, state)
    with torch.no_grad():
        want, want_state = policy.step(image, dt, state)
    torch.testing.assert_close(cmd, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(new_state, want_state, rtol=1e-5, atol=1e-5)


def test_mixed_memory_core_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="one state tensor"):
        PolicyStep(_policy(core="cfc-ncp", core_options={"mixed_memory": True}))


def test_cli_export_writes_both_formats(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    ckpt = tmp_path / "policy.safetensors"
    save_policy(_policy(), ckpt)
    assert cli_main(["export", str(ckpt), "--out", str(tmp_path / "out" / "policy")]) == 0
    assert (tmp_path / "out" / "policy.onnx").is_file()
    assert (tmp_path / "out" / "policy.pt").is_file()
    assert "max |diff|" in capsys.readouterr().out


def test_exported_step_is_the_reference_path():
    policy = _policy()
    inputs = example_inputs(policy)
    with torch.no_grad():
        fused_out = PolicyStep(policy)(*inputs)
        with reference():
            ref_out = PolicyStep(policy)(*inputs)
    for a, b in zip(fused_out, ref_out):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
