"""Models imported from ncps compute what ncps computes (1e-5, float32)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

ncps_torch = pytest.importorskip("ncps.torch", reason="ncps is a test dependency (requirements/test.txt)")
ncps_wirings = pytest.importorskip("ncps.wirings")

from lnn_nav.models import LTC, AutoNCP, CfC, FullyConnected, from_ncps  # noqa: E402

MODES = ["default", "pure", "no_gate"]
IN = 6


def _ncps_wiring(kind: str):
    if kind == "autoncp":
        return ncps_wirings.AutoNCP(14, 3, seed=5)
    if kind == "ncp":
        return ncps_wirings.NCP(
            5, 4, 2, sensory_fanout=3, inter_fanout=2, recurrent_command_synapses=3, motor_fanin=2, seed=7
        )
    # One-layer wirings: ncps returns every neuron, so give them output_dim = units.
    if kind == "fully_connected":
        return ncps_wirings.FullyConnected(8)
    if kind == "random":
        return ncps_wirings.Random(8, sparsity_level=0.5, random_seed=3)
    raise AssertionError(kind)


def _inputs(batch: int = 1, steps: int = 7, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, steps, IN, generator=g), torch.rand(batch, steps, generator=g) * 2 + 0.05


def _assert_same(theirs, ours, x, ts, hx=None):
    theirs.eval()
    ours.eval()
    with torch.no_grad():
        y_ref, h_ref = theirs(x, hx, timespans=ts)
        y, h = ours(x, hx, timespans=ts)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=0)
    for a, b in zip(h if isinstance(h, tuple) else (h,), h_ref if isinstance(h_ref, tuple) else (h_ref,)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("mixed", [False, True])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backbone", [(0, None), (1, "lecun_tanh"), (2, "silu"), (1, "relu"), (1, "tanh"), (1, "gelu")])
def test_dense_cfc_matches_ncps(mode, mixed, backbone):
    layers, activation = backbone
    torch.manual_seed(1)
    theirs = ncps_torch.CfC(
        IN,
        10,
        proj_size=3,
        mode=mode,
        mixed_memory=mixed,
        activation=activation or "lecun_tanh",
        backbone_units=12,
        backbone_layers=layers,
        backbone_dropout=0.1 if layers > 1 else 0.0,
    )
    ours = from_ncps(theirs)
    assert isinstance(ours, CfC)
    _assert_same(theirs, ours, *_inputs())


@pytest.mark.parametrize("mixed", [False, True])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("wiring", ["autoncp", "ncp", "fully_connected", "random"])
def test_wired_cfc_matches_ncps(mode, mixed, wiring):
    torch.manual_seed(2)
    theirs = ncps_torch.CfC(IN, _ncps_wiring(wiring), mode=mode, mixed_memory=mixed)
    ours = from_ncps(theirs)
    assert ours.cell.recurrence == "dense"
    _assert_same(theirs, ours, *_inputs(seed=1))


@pytest.mark.parametrize("mixed", [False, True])
@pytest.mark.parametrize("wiring", ["autoncp", "ncp", "fully_connected", "random", 9])
def test_ltc_matches_ncps(wiring, mixed):
    torch.manual_seed(3)
    w = wiring if isinstance(wiring, int) else _ncps_wiring(wiring)
    theirs = ncps_torch.LTC(IN, w, mixed_memory=mixed)
    ours = from_ncps(theirs)
    assert isinstance(ours, LTC)
    _assert_same(theirs, ours, *_inputs(seed=2))


@pytest.mark.parametrize("mapping", ["affine", "linear"])
def test_ltc_mappings_and_explicit_constraints_match_ncps(mapping):
    torch.manual_seed(4)
    theirs = ncps_torch.LTC(
        IN,
        ncps_wirings.AutoNCP(10, 2),
        input_mapping=mapping,
        output_mapping=mapping,
        ode_unfolds=3,
        implicit_param_constraints=False,
    )
    _assert_same(theirs, from_ncps(theirs), *_inputs(seed=3))


def test_import_matches_for_a_batch_with_initial_state_and_default_dt():
    torch.manual_seed(5)
    theirs = ncps_torch.CfC(IN, ncps_wirings.AutoNCP(14, 3))
    x, _ = _inputs(batch=4)
    _assert_same(theirs, from_ncps(theirs), x, None, torch.randn(4, 14))


@pytest.mark.parametrize("kind", ["cfc", "wired", "ltc"])
def test_batched_timespans_equal_ncps_run_one_sample_at_a_time(kind):
    # ncps mixes the batch and unit axes for [B, T] timespans (issues #81-#85);
    # the right answer is each sample run on its own, which ncps does get right.
    torch.manual_seed(6)
    if kind == "cfc":
        theirs = ncps_torch.CfC(IN, 10)
    elif kind == "wired":
        theirs = ncps_torch.CfC(IN, ncps_wirings.AutoNCP(14, 3))
    else:
        theirs = ncps_torch.LTC(IN, ncps_wirings.AutoNCP(14, 3))
    ours = from_ncps(theirs).eval()
    x, ts = _inputs(batch=3, seed=4)
    with torch.no_grad():
        y, _ = ours(x, timespans=ts)
        for b in range(3):
            y_ref, _ = theirs(x[b : b + 1], timespans=ts[b : b + 1])
            torch.testing.assert_close(y[b : b + 1], y_ref, atol=1e-5, rtol=0)


def test_ncps_batched_timespans_bug_is_real():
    # Documents why we do not defer to ncps here: with B == units the
    # broadcast silently succeeds and gives a different (wrong) answer.
    torch.manual_seed(7)
    theirs = ncps_torch.CfC(IN, 4, backbone_units=8).eval()
    ours = from_ncps(theirs).eval()
    x, ts = _inputs(batch=4, seed=5)
    with torch.no_grad():
        wrong, _ = theirs(x, timespans=ts)
        right, _ = ours(x, timespans=ts)
    assert (wrong - right).abs().max() > 1e-3


def test_ncps_wiring_generator_is_reproduced_for_the_same_seed():
    for seed in (1, 22222):
        theirs = ncps_wirings.AutoNCP(19, 4, seed=seed)
        theirs.build(16)
        ours = AutoNCP(19, 4, seed=seed).build(16)
        np.testing.assert_array_equal(ours.adjacency_matrix, theirs.adjacency_matrix)
        np.testing.assert_array_equal(ours.sensory_adjacency_matrix, theirs.sensory_adjacency_matrix)
        fc_theirs = ncps_wirings.FullyConnected(7, 2, erev_init_seed=seed)
        fc_theirs.build(5)
        fc_ours = FullyConnected(7, 2, erev_init_seed=seed).build(5)
        np.testing.assert_array_equal(fc_ours.sensory_adjacency_matrix, fc_theirs.sensory_adjacency_matrix)


def test_imported_model_trains_like_the_original():
    # Same loss, same gradients w.r.t. the input: usable for fine-tuning.
    torch.manual_seed(8)
    theirs = ncps_torch.CfC(IN, ncps_wirings.AutoNCP(14, 3))
    ours = from_ncps(theirs)
    x, _ = _inputs(seed=6)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    theirs(xa)[0].square().sum().backward()
    ours(xb)[0].square().sum().backward()
    torch.testing.assert_close(xb.grad, xa.grad, atol=1e-5, rtol=0)


def test_from_ncps_refuses_other_modules():
    with pytest.raises(TypeError, match="ncps.torch.CfC and ncps.torch.LTC"):
        from_ncps(torch.nn.LSTM(3, 4))
