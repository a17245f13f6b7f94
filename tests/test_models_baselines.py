"""Baselines and the core factory share the liquid cores' interface."""

from __future__ import annotations

import json

import pytest
import torch

from lnn_nav.models import (
    CORE_KINDS,
    FeedForwardCore,
    GRUCore,
    LSTMCore,
    build_core,
    core_config,
    core_from_config,
)


@pytest.mark.parametrize("kind", CORE_KINDS)
def test_every_core_kind_steps_like_its_sequence(kind):
    torch.manual_seed(0)
    core = build_core(kind, 10, 4).eval()
    x, ts = torch.randn(3, 8, 10), torch.rand(3, 8) + 0.05
    seq, final = core(x, timespans=ts)
    assert seq.shape == (3, 8, 4)
    state = core.initial_state(3)
    for t in range(8):
        out, state = core.step(x[:, t], state, ts[:, t])
        torch.testing.assert_close(out, seq[:, t], atol=1e-5, rtol=0)
    for a, b in zip(state if isinstance(state, tuple) else (state,), final if isinstance(final, tuple) else (final,)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", CORE_KINDS)
def test_core_config_is_json_and_rebuilds_the_same_architecture(kind):
    core = build_core(kind, 7, 4)
    config = json.loads(json.dumps(core_config(core)))
    rebuilt = core_from_config(config)
    assert rebuilt.state_dict().keys() == core.state_dict().keys()
    rebuilt.load_state_dict(core.state_dict())
    x = torch.randn(2, 3, 7)
    torch.testing.assert_close(rebuilt(x)[0], core(x)[0])


def test_stored_wiring_wins_over_seed():
    core = build_core("cfc-ncp", 7, 4, seed=1)
    config = core_config(core)
    config["seed"] = 2  # a changed seed must not silently change the synapses
    rebuilt = core_from_config(config)
    assert (rebuilt.wiring.adjacency_matrix == core.wiring.adjacency_matrix).all()


def test_unknown_kind_and_option_are_named():
    with pytest.raises(ValueError, match="unknown core 'transformer'"):
        build_core("transformer", 4, 4)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['unit'\]"):
        build_core("cfc", 4, 4, unit=8)


def test_time_input_feeds_dt_to_discrete_baselines():
    torch.manual_seed(1)
    for cls in (LSTMCore, GRUCore):
        core = cls(3, 8, proj_size=2, time_input=True)
        x = torch.randn(1, 4, 3)
        assert not torch.allclose(core(x, timespans=0.1)[0], core(x, timespans=1.0)[0])
        plain = cls(3, 8, proj_size=2)
        torch.testing.assert_close(plain(x, timespans=0.1)[0], plain(x, timespans=1.0)[0])


def test_feedforward_core_has_no_memory():
    core = FeedForwardCore(3, 8, output_size=2)
    x = torch.randn(1, 5, 3)
    seq, state = core(x)
    assert state.shape == (1, 0)
    # each output depends on its own frame only
    torch.testing.assert_close(seq[:, 3], core(x[:, 3:4])[0][:, 0])


def test_lstm_state_is_h_c_tuple():
    core = LSTMCore(3, 8)
    _, (h, c) = core(torch.randn(2, 4, 3))
    assert h.shape == c.shape == (2, 8)


def test_stored_wiring_that_contradicts_units_is_refused():
    config = core_config(build_core("cfc-ncp", 7, 4))
    config["units"] = 32
    with pytest.raises(ValueError, match="19 neurons but the config says units=32"):
        core_from_config(config)
