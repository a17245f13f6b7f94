"""Fused CfC kernels on CUDA: parity with the reference path and the graph-captured controller step.

Skipped without a GPU; benchmarks/device_check.sh runs them on the GPU machine.
"""

from __future__ import annotations

import pytest
import torch

from lnn_nav.kernels import load_cuda, reference
from lnn_nav.kernels.cuda_graph import GraphedPolicyStep
from lnn_nav.models import AutoNCP, CfC, LiquidPolicy, PolicyConfig

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
TOL = dict(rtol=1e-5, atol=1e-5)
MODES = ("default", "no_gate", "pure")


@pytest.fixture(scope="module", autouse=True)
def cuda_extension():
    if load_cuda() is None:
        pytest.fail("the CUDA extension did not build (see the log above)")


def _core(kind: str, mode: str) -> CfC:
    torch.manual_seed(3)
    if kind == "autoncp":
        return CfC(8, AutoNCP(19, 4, seed=5), mode=mode).cuda()
    if kind == "autoncp-dense":
        return CfC(8, AutoNCP(19, 4, seed=5), mode=mode, recurrence="dense").cuda()
    return CfC(8, 64, proj_size=4, mode=mode, backbone_units=128).cuda()


@pytest.mark.parametrize("kind", ["autoncp", "autoncp-dense", "dense"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("batch, steps", [(1, 1), (5, 16)])
def test_cuda_sequence_matches_reference(kind, mode, batch, steps):
    core = _core(kind, mode)
    x = torch.randn(batch, steps, 8, device="cuda", requires_grad=True)
    h0 = torch.randn(batch, core.state_size, device="cuda", requires_grad=True)
    ts = torch.rand(batch, steps, device="cuda") * 1.5

    def run():
        y, h = core(x, h0, ts)
        loss = (y * torch.linspace(-1, 1, y.numel(), device="cuda").view_as(y)).sum() + (h * h).sum()
        return (y.detach(), h.detach(), *torch.autograd.grad(loss, [x, h0, *core.parameters()]))

    got = run()
    with reference():
        want = run()
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("kind", ["autoncp", "dense"])
@pytest.mark.parametrize("mode", MODES)
def test_cuda_step_matches_reference(kind, mode):
    core = _core(kind, mode).eval()
    x = torch.randn(3, 8, device="cuda")
    h = torch.randn(3, core.state_size, device="cuda")
    dt = torch.rand(3, device="cuda")
    with torch.no_grad():
        got = core.step(x, h, dt)
        with reference():
            want = core.step(x, h, dt)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **TOL)


def test_cuda_opcheck():
    from lnn_nav.kernels import fused

    core = _core("autoncp", "default")
    layout = fused._plan(core).layout
    args = (
        torch.randn(2, 3, 8, device="cuda", requires_grad=True),
        torch.randn(2, core.state_size, device="cuda"),
        torch.rand(2, 3, device="cuda"),
        layout.pack(with_proj=False).detach().requires_grad_(),
        layout.meta_seq,
    )
    torch.library.opcheck(torch.ops.lnn_nav.cfc_sequence.default, args)


def test_graph_captured_policy_step_matches_eager_steps():
    torch.manual_seed(0)
    policy = LiquidPolicy(PolicyConfig()).cuda().eval()
    graphed = GraphedPolicyStep(policy)
    cfg = policy.config.encoder
    state = policy.initial_state(1, device=torch.device("cuda"))
    for i in range(5):
        image = torch.rand(1, cfg.in_channels, cfg.height, cfg.width, device="cuda")
        dt = 0.03 + 0.01 * i
        cmd = graphed(image, dt).clone()
        with torch.no_grad():
            want, state = policy.step(image, dt, state)
        torch.testing.assert_close(cmd, want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(graphed.state, state, rtol=1e-4, atol=1e-5)


def test_graph_step_refuses_bad_dt():
    policy = LiquidPolicy(PolicyConfig()).cuda().eval()
    graphed = GraphedPolicyStep(policy)
    cfg = policy.config.encoder
    with pytest.raises(ValueError, match="Δt"):
        graphed(torch.rand(1, cfg.in_channels, cfg.height, cfg.width, device="cuda"), float("nan"))
