"""Wiring invariants: neuron counts, layers, fan-in/out, sparsity, seeds."""

from __future__ import annotations

import numpy as np
import pytest

from lnn_nav.models import NCP, AutoNCP, ExplicitWiring, FullyConnected, Random, Wiring


def test_autoncp_splits_neurons_into_inter_command_motor():
    wiring = AutoNCP(19, 4).build(16)
    inter, command, motor = wiring.layers
    # 15 non-motor neurons: 40 % command (6), the rest inter (9).
    assert (len(inter), len(command), len(motor)) == (9, 6, 4)
    assert motor == [0, 1, 2, 3]
    assert sorted(inter + command + motor) == list(range(19))
    assert [wiring.neuron_type(i) for i in (0, 4, 18)] == ["motor", "command", "inter"]


def test_ncp_sensory_inputs_reach_only_inter_neurons():
    wiring = AutoNCP(19, 4).build(16)
    inter = set(wiring.layers[0])
    targets = set(np.nonzero(wiring.sensory_adjacency_matrix)[1])
    assert targets <= inter
    assert targets == inter  # every inter neuron is reachable


def test_ncp_synapses_only_flow_forward_or_within_command_layer():
    wiring = AutoNCP(24, 3, sparsity_level=0.3, seed=5).build(10)
    inter, command, motor = (set(layer) for layer in wiring.layers)
    for src, dest in zip(*np.nonzero(wiring.adjacency_matrix)):
        allowed = (
            (src in inter and dest in command)
            or (src in command and dest in command)
            or (src in command and dest in motor)
        )
        assert allowed, f"unexpected synapse {src}->{dest}"


def test_ncp_fanout_and_fanin_match_parameters():
    wiring = NCP(
        inter_neurons=8,
        command_neurons=6,
        motor_neurons=2,
        sensory_fanout=3,
        inter_fanout=2,
        recurrent_command_synapses=4,
        motor_fanin=3,
        seed=1,
    ).build(5)
    sensory_out = np.abs(wiring.sensory_adjacency_matrix).sum(axis=1)
    assert (sensory_out >= 3).all()
    inter, command, motor = wiring.layers
    inter_out = np.abs(wiring.adjacency_matrix[np.ix_(inter, command)]).sum(axis=1)
    assert (inter_out >= 2).all()
    motor_in = np.abs(wiring.adjacency_matrix[np.ix_(command, motor)]).sum(axis=0)
    assert (motor_in >= 3).all()
    # every command neuron drives some motor neuron
    assert (np.abs(wiring.adjacency_matrix[np.ix_(command, motor)]).sum(axis=1) >= 1).all()


def test_polarities_are_plus_or_minus_one():
    wiring = AutoNCP(19, 4).build(16)
    assert set(np.unique(wiring.adjacency_matrix)) <= {-1, 0, 1}
    assert set(np.unique(wiring.sensory_adjacency_matrix)) <= {-1, 0, 1}
    assert {-1, 1} <= set(np.unique(wiring.adjacency_matrix))


def test_same_seed_same_wiring_different_seed_different_wiring():
    a = AutoNCP(19, 4, seed=7).build(16)
    b = AutoNCP(19, 4, seed=7).build(16)
    c = AutoNCP(19, 4, seed=8).build(16)
    assert np.array_equal(a.adjacency_matrix, b.adjacency_matrix)
    assert np.array_equal(a.sensory_adjacency_matrix, b.sensory_adjacency_matrix)
    assert not np.array_equal(a.adjacency_matrix, c.adjacency_matrix)


def test_fully_connected_has_every_synapse():
    wiring = FullyConnected(6, 2).build(3)
    assert wiring.synapse_count == 36
    assert wiring.sensory_synapse_count == 18
    no_self = FullyConnected(6, self_connections=False)
    assert no_self.synapse_count == 30
    assert (np.diag(no_self.adjacency_matrix) == 0).all()


@pytest.mark.parametrize("sparsity", [0.0, 0.25, 0.5, 0.9])
def test_random_wiring_has_requested_sparsity(sparsity):
    wiring = Random(10, 3, sparsity_level=sparsity, random_seed=3).build(7)
    assert wiring.synapse_count == int(np.round(100 * (1 - sparsity)))
    assert wiring.sensory_synapse_count == int(np.round(70 * (1 - sparsity)))


def test_random_wiring_draws_each_sensory_polarity_once():
    # ncps draws two polarities per sensory synapse (the second overwrites the
    # first); ours draws one, so replaying the stream with one draw per synapse
    # reproduces the matrix.
    wiring = Random(5, 2, sparsity_level=0.5, random_seed=11).build(4)
    rng = np.random.default_rng(11)
    pairs = [(s, d) for s in range(5) for d in range(5)]
    for _ in rng.choice(pairs, size=int(np.round(25 * 0.5)), replace=False):
        pass
    for _ in range(int(np.round(25 * 0.5))):
        rng.choice([-1, 1, 1])
    sensory_pairs = [(s, d) for s in range(4) for d in range(5)]
    chosen = rng.choice(sensory_pairs, size=int(np.round(20 * 0.5)), replace=False)
    expected = np.zeros((4, 5), dtype=np.int32)
    for src, dest in chosen:
        expected[src, dest] = rng.choice([-1, 1, 1])
    assert np.array_equal(wiring.sensory_adjacency_matrix, expected)


def test_wiring_round_trips_through_dict():
    wiring = AutoNCP(12, 3, seed=4).build(6)
    rebuilt = Wiring.from_dict(wiring.to_dict())
    assert isinstance(rebuilt, ExplicitWiring)
    assert rebuilt.layers == wiring.layers
    assert np.array_equal(rebuilt.adjacency_matrix, wiring.adjacency_matrix)
    assert np.array_equal(rebuilt.sensory_adjacency_matrix, wiring.sensory_adjacency_matrix)
    assert [rebuilt.neuron_type(i) for i in range(12)] == [wiring.neuron_type(i) for i in range(12)]


def test_rebuilding_with_another_input_size_is_refused():
    wiring = AutoNCP(12, 3).build(6)
    with pytest.raises(ValueError, match="built for 6 inputs"):
        wiring.build(7)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"units": 5, "output_size": 3}, "less than units - 2"),
        ({"units": 19, "output_size": 4, "sparsity_level": 0.95}, "sparsity_level"),
    ],
)
def test_autoncp_rejects_impossible_sizes(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AutoNCP(**kwargs)


def test_explicit_wiring_rejects_non_partition_layers():
    with pytest.raises(ValueError, match="partition"):
        ExplicitWiring(np.zeros((3, 3)), np.zeros((2, 3)), output_dim=1, layers=[[0, 1], [1]])


def test_unbuilt_wiring_cannot_be_serialised():
    with pytest.raises(ValueError, match="built"):
        AutoNCP(12, 3).to_dict()
