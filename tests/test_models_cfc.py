"""CfC cell and layer: equations, Δt semantics, wiring masks, gradients, shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lnn_nav.models import AutoNCP, CfC, CfCCell, FullyConnected, WiredCfCCell


def _set_linear(layer: torch.nn.Linear, weight: list, bias: list) -> None:
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        layer.bias.copy_(torch.tensor(bias))


def _scalar_cell(mode: str) -> CfCCell:
    """A 1-input, 1-neuron cell with no backbone and hand-set weights."""
    cell = CfCCell(1, 1, mode=mode, backbone_layers=0)
    _set_linear(cell.ff1, [[0.5, -0.25]], [0.1])
    if mode == "pure":
        with torch.no_grad():
            cell.w_tau.fill_(-0.3)
            cell.A.fill_(2.0)
    else:
        _set_linear(cell.ff2, [[-0.4, 0.2]], [0.05])
        _set_linear(cell.time_a, [[0.3, 0.1]], [0.05])
        _set_linear(cell.time_b, [[0.7, -0.6]], [0.0])
    return cell


X, H, DT = 0.8, -0.5, 0.35
Z1 = 0.5 * X - 0.25 * H + 0.1
Z2 = -0.4 * X + 0.2 * H + 0.05
TA = 0.3 * X + 0.1 * H + 0.05  # > 0: the gate opens as Δt grows
TB = 0.7 * X - 0.6 * H
GATE = 1.0 / (1.0 + math.exp(-(TA * DT + TB)))


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("default", math.tanh(Z1) * (1 - GATE) + GATE * math.tanh(Z2)),
        ("no_gate", math.tanh(Z1) + GATE * math.tanh(Z2)),
        ("pure", -2.0 * math.exp(-DT * (0.3 + abs(Z1))) * Z1 + 2.0),
    ],
)
def test_cell_matches_hand_computed_closed_form(mode, expected):
    cell = _scalar_cell(mode)
    out = cell(torch.tensor([[X]]), torch.tensor([[H]]), torch.tensor([[DT]]))
    assert out.item() == pytest.approx(expected, abs=1e-6)


def test_default_mode_interpolates_between_heads_as_dt_grows():
    # The time gate σ(a·Δt + b) with a > 0 tends to 1: h' tends to tanh(ff2).
    cell = _scalar_cell("default")
    x, h = torch.tensor([[X]]), torch.tensor([[H]])
    late = cell(x, h, torch.tensor([[1e4]])).item()
    assert late == pytest.approx(math.tanh(Z2), abs=1e-6)


def test_pure_mode_decays_to_A_for_long_dt():
    cell = _scalar_cell("pure")
    out = cell(torch.tensor([[X]]), torch.tensor([[H]]), torch.tensor([[1e3]]))
    assert out.item() == pytest.approx(2.0, abs=1e-6)


def test_lecun_tanh_backbone_is_applied():
    cell = CfCCell(2, 3, backbone_units=5, backbone_layers=1)
    x, h, ts = torch.randn(4, 2), torch.randn(4, 3), torch.ones(4, 1)
    z = 1.7159 * torch.tanh(0.666 * cell.backbone[0](torch.cat([x, h], 1)))
    expected = torch.tanh(cell.ff1(z)) * (1 - torch.sigmoid(cell.time_a(z) + cell.time_b(z)))
    expected = expected + torch.sigmoid(cell.time_a(z) + cell.time_b(z)) * torch.tanh(cell.ff2(z))
    torch.testing.assert_close(cell(x, h, ts), expected)


@pytest.mark.parametrize("units", [16, "ncp"])
@pytest.mark.parametrize("mode", ["default", "pure", "no_gate"])
def test_batch_with_per_sample_dt_equals_samples_run_one_by_one(units, mode):
    torch.manual_seed(0)
    core = CfC(5, AutoNCP(12, 3) if units == "ncp" else units, mode=mode, mixed_memory=True)
    x = torch.randn(4, 6, 5)
    ts = torch.rand(4, 6) * 2 + 0.01
    batched, (h, c) = core(x, timespans=ts)
    for b in range(4):
        single, (hb, cb) = core(x[b : b + 1], timespans=ts[b : b + 1])
        torch.testing.assert_close(batched[b : b + 1], single, atol=1e-6, rtol=0)
        torch.testing.assert_close(h[b : b + 1], hb, atol=1e-6, rtol=0)


def test_timespan_layouts_agree():
    torch.manual_seed(1)
    core = CfC(3, 8)
    x = torch.randn(2, 4, 3)
    ts = torch.full((2, 4), 0.5)
    reference, _ = core(x, timespans=ts)
    for layout in (0.5, torch.tensor(0.5), ts.unsqueeze(-1)):
        out, _ = core(x, timespans=layout)
        torch.testing.assert_close(out, reference)


def test_default_timespans_are_one():
    core = CfC(3, 8)
    x = torch.randn(2, 4, 3)
    torch.testing.assert_close(core(x)[0], core(x, timespans=torch.ones(2, 4))[0])


def test_dt_changes_the_output():
    core = CfC(3, 8)
    x = torch.randn(1, 4, 3)
    assert not torch.allclose(core(x, timespans=0.1)[0], core(x, timespans=2.0)[0])


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.ones(3, 4), r"\[B, T\]=\[2, 4\]"),
        (torch.ones(2, 5), "do not fit"),
        (torch.tensor([[0.1, float("nan"), 0.1, 0.1]] * 2), "NaN"),
        (-0.1, "negative"),
    ],
)
def test_bad_timespans_are_rejected(bad, message):
    core = CfC(3, 8)
    with pytest.raises(ValueError, match=message):
        core(torch.randn(2, 4, 3), timespans=bad)


@pytest.mark.parametrize("units", [12, "ncp"])
def test_step_by_step_equals_sequence(units):
    torch.manual_seed(2)
    core = CfC(4, AutoNCP(12, 3) if units == "ncp" else units, proj_size=2 if units == 12 else None)
    x, ts = torch.randn(3, 9, 4), torch.rand(3, 9) + 0.05
    seq, h_seq = core(x, timespans=ts)
    state = None
    for t in range(9):
        out, state = core.step(x[:, t], state, ts[:, t])
        torch.testing.assert_close(out, seq[:, t], atol=1e-6, rtol=0)
    torch.testing.assert_close(state, h_seq, atol=1e-6, rtol=0)


def test_return_sequences_false_gives_last_output():
    core = CfC(4, 6, return_sequences=False)
    x = torch.randn(2, 5, 4)
    last, _ = core(x)
    core.return_sequences = True
    seq, _ = core(x)
    torch.testing.assert_close(last, seq[:, -1])


def test_unbatched_and_time_major_inputs():
    core = CfC(4, 6)
    x = torch.randn(5, 4)
    out, h = core(x, timespans=torch.rand(5) + 0.1)
    assert out.shape == (5, 6) and h.shape == (6,)
    tm = CfC(4, 6, batch_first=False)
    tm.load_state_dict(core.state_dict())
    xb = torch.randn(2, 5, 4)
    ts = torch.rand(2, 5) + 0.1
    torch.testing.assert_close(tm(xb.transpose(0, 1), timespans=ts.T)[0].transpose(0, 1), core(xb, timespans=ts)[0])


def test_proj_size_sets_output_width():
    core = CfC(4, 10, proj_size=3)
    assert core.output_size == 3
    assert core(torch.randn(2, 5, 4))[0].shape == (2, 5, 3)


def test_mixed_memory_state_is_a_tuple():
    core = CfC(4, 10, mixed_memory=True)
    _, state = core(torch.randn(2, 3, 4))
    assert isinstance(state, tuple) and [s.shape for s in state] == [(2, 10), (2, 10)]
    with pytest.raises(ValueError, match="tuple of 2"):
        core(torch.randn(2, 3, 4), torch.zeros(2, 10))


def test_wrong_input_width_and_state_shape_are_explained():
    core = CfC(4, 10)
    with pytest.raises(ValueError, match="built for 4 input features, got 5"):
        core(torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match=r"state must be \[2, 10\]"):
        core(torch.randn(2, 3, 4), torch.zeros(2, 9))
    with pytest.raises(TypeError, match="floating-point"):
        core(torch.ones(2, 3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="expects input"):
        core(torch.randn(4))


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown CfC mode 'fast'"):
        CfC(4, 10, mode="fast")


def test_backbone_options_are_refused_with_a_wiring():
    with pytest.raises(ValueError, match="backbone_units"):
        CfC(4, AutoNCP(12, 3), backbone_units=32)


def test_wired_cell_follows_wiring_recurrence():
    wiring = AutoNCP(19, 4, seed=3).build(8)
    cell = WiredCfCCell(8, wiring, recurrence="wiring")
    inter, command, motor = wiring.layers
    cmd = cell.cells[1]
    mask = cmd.sparsity_mask.T.numpy()  # [inputs + hidden, hidden]
    feed, recur = mask[: len(inter)], mask[len(inter) :]
    np.testing.assert_array_equal(feed, np.abs(wiring.adjacency_matrix[np.ix_(inter, command)]))
    expected = np.abs(wiring.adjacency_matrix[np.ix_(command, command)])
    np.fill_diagonal(expected, 1)
    np.testing.assert_array_equal(recur, expected)
    # inter and motor layers have no lateral synapses in an NCP: only self-state
    np.testing.assert_array_equal(cell.cells[0].sparsity_mask.T.numpy()[8:], np.eye(len(inter)))


def test_wired_cell_dense_recurrence_is_ncps_behaviour():
    wiring = AutoNCP(19, 4, seed=3).build(8)
    cell = WiredCfCCell(8, wiring, recurrence="dense")
    for sub, layer in zip(cell.cells, wiring.layers):
        recur = sub.sparsity_mask.T.numpy()[-len(layer) :]
        assert (recur == 1).all()


def test_absent_synapses_carry_no_gradient_signal():
    # Changing an input that has no synapse to a neuron must not move it.
    wiring = AutoNCP(12, 3, seed=0).build(6)
    core = CfC(6, wiring)
    cut = int(np.nonzero((wiring.sensory_adjacency_matrix == 0).any(axis=1))[0][0])
    x = torch.randn(1, 1, 6)
    base, _ = core(x)
    x2 = x.clone()
    x2[..., cut] += 5.0
    out, h = core(x2)
    inter = wiring.layers[0]
    unreached = [i for i, n in enumerate(inter) if wiring.sensory_adjacency_matrix[cut, n] == 0]
    _, h_base = core(x)
    # state layout is [inter | command | motor]; ff1/ff2 are masked, the time
    # gates are dense (as in ncps), so compare the masked heads directly
    cell = core.cell.cells[0]
    z, z2 = torch.cat([x[:, 0], torch.zeros(1, len(inter))], 1), torch.cat([x2[:, 0], torch.zeros(1, len(inter))], 1)
    masked = lambda z: torch.nn.functional.linear(z, cell.ff1.weight * cell.sparsity_mask, cell.ff1.bias)  # noqa: E731
    torch.testing.assert_close(masked(z)[:, unreached], masked(z2)[:, unreached])


def test_gradcheck_cfc_float64():
    torch.manual_seed(3)
    core = CfC(3, AutoNCP(8, 2), mixed_memory=True).double()
    x = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    ts = (torch.rand(2, 3, dtype=torch.float64) + 0.1).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, ts: core(x, timespans=ts)[0], (x, ts))


@pytest.mark.parametrize("mode", ["default", "pure", "no_gate"])
def test_gradcheck_dense_cfc_modes_float64(mode):
    torch.manual_seed(4)
    core = CfC(3, 4, mode=mode, backbone_units=6, backbone_layers=2, proj_size=2).double()
    x = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    ts = (torch.rand(2, 3, dtype=torch.float64) + 0.1).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, ts: core(x, timespans=ts)[0], (x, ts))


def test_same_seed_same_weights():
    torch.manual_seed(9)
    a = CfC(4, 10)
    torch.manual_seed(9)
    b = CfC(4, 10)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name


def test_single_layer_wiring_outputs_its_motor_neurons():
    # ncps returns all six neurons here while reporting output_size=2.
    core = CfC(3, FullyConnected(6, 2))
    out, h = core(torch.randn(2, 4, 3))
    assert core.output_size == 2
    assert out.shape == (2, 4, 2) and h.shape == (2, 6)
    torch.testing.assert_close(out[:, -1], h[:, :2])
