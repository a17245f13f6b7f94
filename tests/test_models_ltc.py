"""LTC cell and layer: the semi-implicit update, Δt, constraints, gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lnn_nav.models import LTC, AutoNCP, FullyConnected, LTCCell


def _reference_update(cell: LTCCell, x, v, dt):
    """The fused-Euler LTC update written out directly from the paper's equation."""
    pos = F.softplus
    x = x * cell.input_w + cell.input_b
    n = cell.state_size
    for _ in range(cell.ode_unfolds):
        i_syn_num = torch.zeros_like(v)
        i_syn_den = torch.zeros_like(v)
        for j in range(n):
            g = pos(cell.w[j]) * torch.sigmoid(cell.sigma[j] * (v[:, j : j + 1] - cell.mu[j]))
            g = g * cell.sparsity_mask[j]
            i_syn_num = i_syn_num + g * cell.erev[j]
            i_syn_den = i_syn_den + g
        for k in range(cell.sensory_size):
            g = pos(cell.sensory_w[k]) * torch.sigmoid(cell.sensory_sigma[k] * (x[:, k : k + 1] - cell.sensory_mu[k]))
            g = g * cell.sensory_sparsity_mask[k]
            i_syn_num = i_syn_num + g * cell.sensory_erev[k]
            i_syn_den = i_syn_den + g
        cm_t = pos(cell.cm) / (dt / cell.ode_unfolds)
        gl = pos(cell.gleak)
        v = (cm_t * v + gl * cell.vleak + i_syn_num) / (cm_t + gl + i_syn_den + cell.epsilon)
    return v


def test_ltc_cell_matches_equation_written_out():
    torch.manual_seed(0)
    cell = LTCCell(AutoNCP(8, 2, seed=1), in_features=3, ode_unfolds=4)
    x, v = torch.randn(2, 3), torch.randn(2, 8)
    dt = torch.tensor([[0.3], [1.7]])
    out, v_new = cell(x, v, dt)
    expected = _reference_update(cell, x, v, dt)
    torch.testing.assert_close(v_new, expected, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out, expected[:, :2] * cell.output_w + cell.output_b)


def test_ltc_state_stays_bounded_for_huge_steps():
    # The semi-implicit update is a convex combination: v stays inside the
    # hull of its previous value, v_leak and the reversal potentials.
    torch.manual_seed(1)
    core = LTC(3, AutoNCP(10, 2))
    x = torch.randn(2, 20, 3) * 10
    _, v = core(x, timespans=1e4)
    limit = max(1.0, core.cell.erev.abs().max().item(), core.cell.sensory_erev.abs().max().item())
    assert torch.isfinite(v).all() and v.abs().max().item() <= limit + 1e-4


def test_zero_dt_leaves_state_unchanged():
    torch.manual_seed(2)
    core = LTC(3, AutoNCP(10, 2))
    v0 = torch.randn(2, 10)
    _, v = core.step(torch.randn(2, 3), v0, 0.0)
    torch.testing.assert_close(v, v0, atol=1e-4, rtol=0)


def test_ltc_batch_with_per_sample_dt_equals_one_by_one():
    torch.manual_seed(3)
    core = LTC(4, AutoNCP(12, 3), mixed_memory=True)
    x, ts = torch.randn(3, 5, 4), torch.rand(3, 5) * 2 + 0.05
    batched, _ = core(x, timespans=ts)
    for b in range(3):
        single, _ = core(x[b : b + 1], timespans=ts[b : b + 1])
        torch.testing.assert_close(batched[b : b + 1], single, atol=1e-6, rtol=0)


def test_ltc_step_equals_sequence():
    torch.manual_seed(4)
    core = LTC(4, FullyConnected(7, 2))
    x, ts = torch.randn(2, 6, 4), torch.rand(2, 6) + 0.1
    seq, _ = core(x, timespans=ts)
    state = None
    for t in range(6):
        out, state = core.step(x[:, t], state, ts[:, t])
        torch.testing.assert_close(out, seq[:, t], atol=1e-6, rtol=0)


def test_more_unfolds_converge():
    # Finer unfolding of the same Δt approaches the ODE solution.
    torch.manual_seed(5)
    wiring = AutoNCP(10, 2, seed=2)
    ref = LTC(3, wiring, ode_unfolds=256)
    x = torch.randn(1, 1, 3)
    v0 = torch.randn(1, 10) * 0.5
    target = ref.step(x[:, 0], v0, 1.0)[1]
    errors = []
    for unfolds in (1, 4, 16):
        core = LTC(3, wiring, ode_unfolds=unfolds)
        core.load_state_dict(ref.state_dict())
        errors.append((core.step(x[:, 0], v0, 1.0)[1] - target).abs().max().item())
    assert errors[0] > errors[1] > errors[2]


def test_explicit_constraints_clamp_positive_parameters():
    core = LTC(3, AutoNCP(10, 2), implicit_param_constraints=False)
    with torch.no_grad():
        core.cell.w.fill_(-1.0)
        core.cell.cm.fill_(-1.0)
        core.cell.gleak.fill_(-1.0)
        core.cell.sensory_w.fill_(-1.0)
    core.apply_weight_constraints()
    for p in (core.cell.w, core.cell.cm, core.cell.gleak, core.cell.sensory_w):
        assert (p >= 0).all()


def test_implicit_constraints_keep_effective_weights_positive():
    core = LTC(3, AutoNCP(10, 2), implicit_param_constraints=True)
    with torch.no_grad():
        core.cell.w.fill_(-5.0)
    assert (core.cell._positive(core.cell.w) > 0).all()


def test_ltc_gradcheck_float64():
    torch.manual_seed(6)
    core = LTC(2, AutoNCP(6, 1), ode_unfolds=3).double()
    x = torch.randn(2, 3, 2, dtype=torch.float64, requires_grad=True)
    ts = (torch.rand(2, 3, dtype=torch.float64) + 0.2).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, ts: core(x, timespans=ts)[0], (x, ts))


def test_ltc_rejects_bad_options():
    with pytest.raises(ValueError, match="ode_unfolds"):
        LTC(3, 5, ode_unfolds=0)
    with pytest.raises(ValueError, match="input_mapping"):
        LTC(3, 5, input_mapping="cubic")


def test_ltc_with_integer_units_is_fully_connected():
    core = LTC(3, 5)
    assert core.wiring.synapse_count == 25 and core.output_size == 5
