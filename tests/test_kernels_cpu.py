"""Fused CfC kernels on the CPU: same outputs and gradients as the reference path."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from small_policies import KINDS, small_core

from lnn_nav.kernels import fused, load_cpu, reference, why_not_fused
from lnn_nav.models import CfC

pytestmark = pytest.mark.skipif(load_cpu() is None, reason="the CPU extension did not build here")

TOL = dict(rtol=1e-5, atol=1e-5)
MODES = ("default", "no_gate", "pure")


def _both_paths(core, fn):
    fused_result = fn()
    with reference():
        reference_result = fn()
    return fused_result, reference_result


def _sequence_loss_and_grads(core, x, h0, ts):
    y, h = core(x, h0, ts)
    weights = torch.linspace(-1, 1, y.numel()).view_as(y)
    loss = (y * weights).sum() + (h * h).sum()
    grads = torch.autograd.grad(loss, [x, h0, *core.parameters()])
    return y.detach(), h.detach(), grads


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("batch, steps", [(1, 1), (3, 7)])
def test_sequence_outputs_and_gradients_match_reference(kind, mode, batch, steps):
    core = small_core(kind, mode)
    assert why_not_fused(core) is None
    gen = torch.Generator().manual_seed(batch * 100 + steps)
    x = torch.randn(batch, steps, 6, generator=gen, requires_grad=True)
    h0 = torch.randn(batch, core.state_size, generator=gen, requires_grad=True)
    ts = torch.rand(batch, steps, generator=gen) * 1.5  # one Δt per sample and step
    (y, h, grads), (y_ref, h_ref, grads_ref) = _both_paths(core, lambda: _sequence_loss_and_grads(core, x, h0, ts))
    torch.testing.assert_close(y, y_ref, **TOL)
    torch.testing.assert_close(h, h_ref, **TOL)
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("kind", ["autoncp", "dense-deep-proj"])
def test_long_sequence_gradients_match_reference(kind):
    # 3 x 100 (sample, step) pairs: more than the backward gathers before one
    # weight-gradient matrix product, so the partial flushes are exercised.
    core = small_core(kind, "default")
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(3, 100, 6, generator=gen, requires_grad=True)
    h0 = torch.randn(3, core.state_size, generator=gen, requires_grad=True)
    ts = torch.rand(3, 100, generator=gen)
    (y, h, grads), (y_ref, h_ref, grads_ref) = _both_paths(core, lambda: _sequence_loss_and_grads(core, x, h0, ts))
    torch.testing.assert_close(y, y_ref, **TOL)
    torch.testing.assert_close(h, h_ref, **TOL)
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("mode", MODES)
def test_saturated_activations_match_reference(mode):
    # Pre-activations far into tanh's and the sigmoid's flat tails, where the
    # kernels' float32 tanh is clamped.
    core = small_core("dense", mode).eval()
    with torch.no_grad():
        for p in core.parameters():
            p.mul_(20.0)
    x, h = torch.randn(4, 6) * 10, torch.randn(4, core.state_size) * 10
    with torch.inference_mode():
        (out, new_h), (out_ref, new_h_ref) = _both_paths(core, lambda: core.step(x, h, 0.3))
    torch.testing.assert_close(out, out_ref, **TOL)
    torch.testing.assert_close(new_h, new_h_ref, **TOL)


def test_wide_cells_at_large_batches_take_the_reference_path_for_sequences_and_their_steps():
    core = CfC(32, 64, backbone_units=128)  # 45k multiply-adds per step and sample
    macs = fused._plan(core).layout.macs_per_step
    small = fused.CPU_PER_SAMPLE_MAX_BATCH_MACS // macs
    for batch, fused_expected in ((small, True), (small + 1, False)):
        x, ts, h = torch.randn(batch, 2, 32), torch.ones(batch, 2, 1), core.initial_state(batch)
        assert (fused.try_run_sequence(core, x, h, ts) is not None) == fused_expected
        # The reference sequence loop steps through cell_step: that must not fuse either.
        assert (fused.try_cell_step(core, x[:, 0], h, ts[:, 0]) is not None) == fused_expected


def test_timespan_gradient_matches_reference():
    core = small_core("dense", "default")
    x = torch.randn(2, 4, 6)
    ts = (torch.rand(2, 4) + 0.1).requires_grad_()

    def grad():
        y, _ = core(x, None, ts)
        return torch.autograd.grad(y.sum(), ts)[0]

    got, want = _both_paths(core, grad)
    torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dt", [0.05, torch.tensor(0.3), "per-sample", "per-sample-column", None])
def test_inference_step_matches_reference(kind, mode, dt):
    core = small_core(kind, mode).eval()
    x, h = torch.randn(4, 6), torch.randn(4, core.state_size)
    if dt == "per-sample":
        dt = torch.rand(4)
    elif dt == "per-sample-column":
        dt = torch.rand(4, 1, dtype=torch.float64)
    with torch.inference_mode():
        (out, new_h), (out_ref, new_h_ref) = _both_paths(core, lambda: core.step(x, h, dt))
    torch.testing.assert_close(out, out_ref, **TOL)
    torch.testing.assert_close(new_h, new_h_ref, **TOL)


def test_step_with_gradients_matches_reference():
    core = small_core("autoncp", "default")
    x = torch.randn(2, 6, requires_grad=True)
    h = torch.randn(2, core.state_size)

    def run():
        out, new_h = core.step(x, h, torch.tensor([0.1, 0.7]))
        return torch.autograd.grad(out.sum() + new_h.pow(2).sum(), [x, *core.parameters()])

    for got, want in zip(*_both_paths(core, run)):
        torch.testing.assert_close(got, want, **TOL)


def test_sequence_equals_step_by_step():
    core = small_core("autoncp", "default").eval()
    x, ts = torch.randn(2, 5, 6), torch.rand(2, 5)
    with torch.no_grad():
        y, h = core(x, None, ts)
        state = core.initial_state(2)
        for t in range(5):
            out, state = core.step(x[:, t], state, ts[:, t])
            torch.testing.assert_close(out, y[:, t], **TOL)
    torch.testing.assert_close(state, h, **TOL)


@pytest.mark.parametrize("kind", ["autoncp", "dense-deep-proj", "dense"])
@pytest.mark.parametrize("mode", MODES)
def test_gradcheck_float64(kind, mode):
    core = small_core(kind, mode, features=3).double()
    layout = fused._plan(core).layout
    x = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, core.state_size, dtype=torch.float64, requires_grad=True)
    ts = (torch.rand(2, 3, dtype=torch.float64) + 0.1).requires_grad_()
    packed = layout.pack(with_proj=False).detach().requires_grad_()
    op = torch.ops.lnn_nav.cfc_sequence
    assert torch.autograd.gradcheck(lambda *a: op(*a, layout.meta_seq), (x, h0, ts, packed))


def test_opcheck_custom_op():
    core = small_core("autoncp", "pure")
    layout = fused._plan(core).layout
    args = (
        torch.randn(2, 3, 6, requires_grad=True),
        torch.randn(2, core.state_size),
        torch.rand(2, 3),
        layout.pack(with_proj=False).detach().requires_grad_(),
        layout.meta_seq,
    )
    torch.library.opcheck(torch.ops.lnn_nav.cfc_sequence.default, args)


def test_in_place_weight_update_is_seen_by_the_cached_step():
    core = small_core("autoncp", "default").eval()
    x, h = torch.randn(1, 6), torch.randn(1, core.state_size)
    with torch.no_grad():
        before, _ = core.step(x, h, 0.1)
        core.cell.cells[0].ff1.weight.add_(0.5)
        after, _ = core.step(x, h, 0.1)
        with reference():
            want, _ = core.step(x, h, 0.1)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, want, **TOL)


def test_dtype_conversion_repacks():
    core = small_core("dense", "default").eval()
    x, h = torch.randn(2, 6), torch.randn(2, core.state_size)
    with torch.no_grad():
        core.step(x, h, 0.1)
        core.double()
        out, _ = core.step(x.double(), h.double(), 0.1)
        with reference():
            want, _ = core.step(x.double(), h.double(), 0.1)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dt", [float("nan"), -0.1, torch.tensor([0.1, float("inf")])])
def test_bad_dt_still_raises_the_reference_error(dt):
    core = small_core("autoncp", "default").eval()
    with torch.no_grad(), pytest.raises(ValueError, match="timespans"):
        core.step(torch.randn(2, 6), core.initial_state(2), dt)


def test_wrong_input_width_still_raises_the_reference_error():
    core = small_core("autoncp", "default").eval()
    with torch.no_grad(), pytest.raises(ValueError, match="input features"):
        core.step(torch.randn(1, 5), core.initial_state(1), 0.1)


def test_unsupported_configurations_take_the_reference_path():
    memory = CfC(6, 8, mixed_memory=True)
    assert "mixed_memory" in why_not_fused(memory)
    dropout = CfC(6, 8, backbone_layers=2, backbone_dropout=0.3).train()
    assert "dropout" in why_not_fused(dropout)
    assert why_not_fused(dropout.eval()) is None
    y, _ = memory(torch.randn(2, 3, 6))
    assert y.shape == (2, 3, 8)


def test_reference_switch_env_var():
    code = "from lnn_nav.kernels import reference_forced; print(reference_forced())"
    env = {**os.environ, "LNN_NAV_REFERENCE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_missing_compiler_falls_back_with_one_warning(tmp_path):
    code = (
        "import logging, torch\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "from lnn_nav.models import CfC\n"
        "core = CfC(4, 5).eval()\n"
        "for _ in range(3):\n"
        "    core.step(torch.randn(1, 4), core.initial_state(1), 0.1)\n"
        "print('ok')\n"
    )
    env = {**os.environ, "LNN_NAV_KERNEL_CACHE": str(tmp_path), "CXX": str(tmp_path / "no-such-c++")}
    env.pop("LNN_NAV_REFERENCE", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    assert out.stderr.count("fused CfC kernels (lnn_nav_cfc_cpu) unavailable") == 1
