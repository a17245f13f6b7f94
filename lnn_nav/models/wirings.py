"""Wirings: which neuron talks to which (NCP, AutoNCP, FullyConnected, Random).

A wiring is two signed adjacency matrices (+1 excitatory, -1 inhibitory,
0 no synapse) and an ordered list of layers. The generation algorithms follow
the Neural Circuit Policies paper (Lechner et al., Nature Machine Intelligence
2020) and draw random numbers in the same order as the ``ncps`` package, so an
``NCP``/``AutoNCP``/``FullyConnected`` built with the same seed has the same
synapses as its ncps twin. ``Random`` deliberately differs: ncps draws each
sensory synapse's polarity twice (the second draw overwrites the first and
shifts the random stream); here each synapse is drawn once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

NEURON_TYPES = ("motor", "command", "inter")


class Wiring:
    """A built or unbuilt wiring of ``units`` neurons.

    Neurons ``0 .. output_dim-1`` are the motor (output) neurons. ``layers``
    lists neuron indices in the order signals flow (sensory side first).
    """

    def __init__(self, units: int, output_dim: int | None = None) -> None:
        if units < 1:
            raise ValueError(f"a wiring needs at least one neuron, got units={units}")
        output_dim = units if output_dim is None else output_dim
        if not 1 <= output_dim <= units:
            raise ValueError(f"output_dim must be in [1, {units}], got {output_dim}")
        self.units = units
        self.output_dim = output_dim
        self.input_dim: int | None = None
        self.adjacency_matrix = np.zeros((units, units), dtype=np.int32)
        self.sensory_adjacency_matrix: np.ndarray | None = None

    # -- structure ----------------------------------------------------------
    @property
    def layers(self) -> list[list[int]]:
        return [list(range(self.units))]

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def get_neurons_of_layer(self, layer_id: int) -> list[int]:
        layers = self.layers
        if not 0 <= layer_id < len(layers):
            raise ValueError(f"layer {layer_id} does not exist; the wiring has {len(layers)}")
        return layers[layer_id]

    def neuron_type(self, neuron_id: int) -> str:
        return "motor" if neuron_id < self.output_dim else "inter"

    def is_built(self) -> bool:
        return self.input_dim is not None

    def build(self, input_dim: int) -> Wiring:
        """Fix the number of sensory inputs and create the sensory synapses."""
        if self.input_dim is not None:
            if self.input_dim != input_dim:
                raise ValueError(f"wiring was built for {self.input_dim} inputs, cannot rebuild for {input_dim}")
            return self
        if input_dim < 1:
            raise ValueError(f"input_dim must be >= 1, got {input_dim}")
        self.input_dim = input_dim
        self.sensory_adjacency_matrix = np.zeros((input_dim, self.units), dtype=np.int32)
        self._build_sensory()
        return self

    def _build_sensory(self) -> None:
        """Subclasses add their sensory synapses here."""

    # -- synapses -----------------------------------------------------------
    def add_synapse(self, src: int, dest: int, polarity: int) -> None:
        self._check_neuron(src, "source")
        self._check_neuron(dest, "destination")
        self._check_polarity(polarity)
        self.adjacency_matrix[src, dest] = polarity

    def add_sensory_synapse(self, src: int, dest: int, polarity: int) -> None:
        if self.sensory_adjacency_matrix is None or self.input_dim is None:
            raise ValueError("sensory synapses can only be added after build(input_dim)")
        if not 0 <= src < self.input_dim:
            raise ValueError(f"sensory source {src} out of range for {self.input_dim} inputs")
        self._check_neuron(dest, "destination")
        self._check_polarity(polarity)
        self.sensory_adjacency_matrix[src, dest] = polarity

    def _check_neuron(self, idx: int, role: str) -> None:
        if not 0 <= idx < self.units:
            raise ValueError(f"{role} neuron {idx} out of range for {self.units} units")

    @staticmethod
    def _check_polarity(polarity: int) -> None:
        if polarity not in (-1, 1):
            raise ValueError(f"synapse polarity must be -1 or +1, got {polarity}")

    @property
    def synapse_count(self) -> int:
        return int(np.abs(self.adjacency_matrix).sum())

    @property
    def sensory_synapse_count(self) -> int:
        if self.sensory_adjacency_matrix is None:
            return 0
        return int(np.abs(self.sensory_adjacency_matrix).sum())

    # -- serialisation ------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild this exact wiring (JSON-serialisable)."""
        if not self.is_built():
            raise ValueError("only a built wiring can be serialised; call build(input_dim)")
        assert self.sensory_adjacency_matrix is not None
        return {
            "kind": type(self).__name__,
            "units": self.units,
            "output_dim": self.output_dim,
            "input_dim": self.input_dim,
            "layers": self.layers,
            "neuron_types": [self.neuron_type(i) for i in range(self.units)],
            "adjacency_matrix": self.adjacency_matrix.tolist(),
            "sensory_adjacency_matrix": self.sensory_adjacency_matrix.tolist(),
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Wiring:
        """Rebuild a wiring from :meth:`to_dict` (matrices are taken as stored)."""
        return ExplicitWiring(
            adjacency_matrix=np.asarray(data["adjacency_matrix"], dtype=np.int32),
            sensory_adjacency_matrix=np.asarray(data["sensory_adjacency_matrix"], dtype=np.int32),
            output_dim=int(data["output_dim"]),
            layers=[list(map(int, layer)) for layer in data["layers"]],
            neuron_types=list(data.get("neuron_types", [])) or None,
            name=str(data.get("kind", "ExplicitWiring")),
        )

    def __repr__(self) -> str:
        sizes = "/".join(str(len(layer)) for layer in self.layers)
        return (
            f"{type(self).__name__}(units={self.units}, outputs={self.output_dim}, "
            f"inputs={self.input_dim}, layers={sizes}, synapses={self.synapse_count}, "
            f"sensory_synapses={self.sensory_synapse_count})"
        )


class ExplicitWiring(Wiring):
    """A wiring given by its matrices: for checkpoints and models imported from ncps."""

    def __init__(
        self,
        adjacency_matrix: np.ndarray,
        sensory_adjacency_matrix: np.ndarray,
        output_dim: int,
        layers: Sequence[Sequence[int]] | None = None,
        neuron_types: Sequence[str] | None = None,
        name: str = "ExplicitWiring",
    ) -> None:
        adjacency = np.asarray(adjacency_matrix, dtype=np.int32)
        sensory = np.asarray(sensory_adjacency_matrix, dtype=np.int32)
        if adjacency.ndim != 2 or adjacency.shape[0] != adjacency.shape[1]:
            raise ValueError(f"adjacency_matrix must be square, got shape {adjacency.shape}")
        units = adjacency.shape[0]
        if sensory.ndim != 2 or sensory.shape[1] != units:
            raise ValueError(f"sensory_adjacency_matrix must be [inputs, {units}], got shape {sensory.shape}")
        for name_, m in (("adjacency_matrix", adjacency), ("sensory_adjacency_matrix", sensory)):
            if not np.isin(m, (-1, 0, 1)).all():
                raise ValueError(f"{name_} may only hold -1, 0 and +1")
        super().__init__(units, output_dim)
        self.adjacency_matrix = adjacency.copy()
        self.input_dim = sensory.shape[0]
        self.sensory_adjacency_matrix = sensory.copy()
        self._layers = [list(layer) for layer in layers] if layers else [list(range(units))]
        flat = sorted(i for layer in self._layers for i in layer)
        if flat != list(range(units)):
            raise ValueError(f"layers must partition the {units} neurons exactly once")
        self._neuron_types = list(neuron_types) if neuron_types else None
        self.name = name

    @property
    def layers(self) -> list[list[int]]:
        return [list(layer) for layer in self._layers]

    def neuron_type(self, neuron_id: int) -> str:
        if self._neuron_types is not None:
            return self._neuron_types[neuron_id]
        return super().neuron_type(neuron_id)


class FullyConnected(Wiring):
    """Every neuron connects to every neuron (and, once built, every input to every neuron)."""

    def __init__(
        self,
        units: int,
        output_dim: int | None = None,
        erev_init_seed: int = 1111,
        self_connections: bool = True,
    ) -> None:
        super().__init__(units, output_dim)
        self.self_connections = self_connections
        self.seed = erev_init_seed
        self._rng = np.random.default_rng(erev_init_seed)
        # Polarity +1 twice as likely as -1, as in ncps.
        for src in range(units):
            for dest in range(units):
                if src == dest and not self_connections:
                    continue
                self.add_synapse(src, dest, int(self._rng.choice([-1, 1, 1])))

    def _build_sensory(self) -> None:
        assert self.input_dim is not None
        for src in range(self.input_dim):
            for dest in range(self.units):
                self.add_sensory_synapse(src, dest, int(self._rng.choice([-1, 1, 1])))


class Random(Wiring):
    """Synapses drawn uniformly at random with a given sparsity, polarity drawn once each."""

    def __init__(
        self,
        units: int,
        output_dim: int | None = None,
        sparsity_level: float = 0.0,
        random_seed: int = 1111,
    ) -> None:
        if not 0.0 <= sparsity_level < 1.0:
            raise ValueError(f"sparsity_level must be in [0, 1), got {sparsity_level}")
        super().__init__(units, output_dim)
        self.sparsity_level = sparsity_level
        self.seed = random_seed
        self._rng = np.random.default_rng(random_seed)
        count = int(np.round(units * units * (1 - sparsity_level)))
        pairs = [(s, d) for s in range(units) for d in range(units)]
        for src, dest in self._rng.choice(pairs, size=count, replace=False):
            self.add_synapse(int(src), int(dest), int(self._rng.choice([-1, 1, 1])))

    def _build_sensory(self) -> None:
        assert self.input_dim is not None
        count = int(np.round(self.input_dim * self.units * (1 - self.sparsity_level)))
        pairs = [(s, d) for s in range(self.input_dim) for d in range(self.units)]
        for src, dest in self._rng.choice(pairs, size=count, replace=False):
            self.add_sensory_synapse(int(src), int(dest), int(self._rng.choice([-1, 1, 1])))


class NCP(Wiring):
    """Neural Circuit Policy: sensory -> inter -> command (recurrent) -> motor.

    Neuron indices: motor ``[0, m)``, command ``[m, m+c)``, inter ``[m+c, m+c+i)``
    (the ncps layout, so state vectors line up with ncps models).
    """

    def __init__(
        self,
        inter_neurons: int,
        command_neurons: int,
        motor_neurons: int,
        sensory_fanout: int,
        inter_fanout: int,
        recurrent_command_synapses: int,
        motor_fanin: int,
        seed: int = 22222,
    ) -> None:
        for name, value in (
            ("inter_neurons", inter_neurons),
            ("command_neurons", command_neurons),
            ("motor_neurons", motor_neurons),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if motor_fanin > command_neurons:
            raise ValueError(f"motor_fanin={motor_fanin} exceeds the {command_neurons} command neurons")
        if sensory_fanout > inter_neurons:
            raise ValueError(f"sensory_fanout={sensory_fanout} exceeds the {inter_neurons} inter neurons")
        if inter_fanout > command_neurons:
            raise ValueError(f"inter_fanout={inter_fanout} exceeds the {command_neurons} command neurons")
        super().__init__(inter_neurons + command_neurons + motor_neurons, motor_neurons)
        self.seed = seed
        # RandomState (not default_rng) keeps the same stream as ncps for the same seed.
        self._rng = np.random.RandomState(seed)
        self.num_inter, self.num_command, self.num_motor = (
            inter_neurons,
            command_neurons,
            motor_neurons,
        )
        self.sensory_fanout = sensory_fanout
        self.inter_fanout = inter_fanout
        self.recurrent_command_synapses = recurrent_command_synapses
        self.motor_fanin = motor_fanin
        self.motor_neurons = list(range(motor_neurons))
        self.command_neurons = list(range(motor_neurons, motor_neurons + command_neurons))
        self.inter_neurons = list(range(motor_neurons + command_neurons, self.units))

    @property
    def layers(self) -> list[list[int]]:
        return [list(self.inter_neurons), list(self.command_neurons), list(self.motor_neurons)]

    def neuron_type(self, neuron_id: int) -> str:
        if neuron_id < self.num_motor:
            return "motor"
        if neuron_id < self.num_motor + self.num_command:
            return "command"
        return "inter"

    def _build_sensory(self) -> None:
        # The order of the four stages matters: it fixes the random stream.
        self._connect_feedforward(
            list(range(self.input_dim or 0)), self.inter_neurons, self.sensory_fanout, sensory=True
        )
        self._connect_feedforward(self.inter_neurons, self.command_neurons, self.inter_fanout)
        for _ in range(self.recurrent_command_synapses):
            src = self._rng.choice(self.command_neurons)
            dest = self._rng.choice(self.command_neurons)
            self.add_synapse(int(src), int(dest), int(self._rng.choice([-1, 1])))
        self._connect_motor()

    def _connect_feedforward(self, sources: list[int], targets: list[int], fanout: int, sensory: bool = False) -> None:
        """Each source synapses onto ``fanout`` targets; unreached targets get mean fan-in."""
        add = self.add_sensory_synapse if sensory else self.add_synapse
        unreached = list(targets)
        for src in sources:
            for dest in self._rng.choice(targets, size=fanout, replace=False):
                if dest in unreached:
                    unreached.remove(dest)
                add(int(src), int(dest), int(self._rng.choice([-1, 1])))
        mean_fanin = int(np.clip(int(len(sources) * fanout / len(targets)), 1, len(sources)))
        for dest in unreached:
            for src in self._rng.choice(sources, size=mean_fanin, replace=False):
                add(int(src), int(dest), int(self._rng.choice([-1, 1])))

    def _connect_motor(self) -> None:
        """Each motor neuron gets ``motor_fanin`` commands; unused commands get mean fan-out."""
        unused = list(self.command_neurons)
        for dest in self.motor_neurons:
            for src in self._rng.choice(self.command_neurons, size=self.motor_fanin, replace=False):
                if src in unused:
                    unused.remove(src)
                self.add_synapse(int(src), int(dest), int(self._rng.choice([-1, 1])))
        mean_fanout = int(np.clip(int(self.num_motor * self.motor_fanin / self.num_command), 1, self.num_motor))
        for src in unused:
            for dest in self._rng.choice(self.motor_neurons, size=mean_fanout, replace=False):
                self.add_synapse(int(src), int(dest), int(self._rng.choice([-1, 1])))


class AutoNCP(NCP):
    """An NCP sized from two numbers: total neurons and outputs (plus sparsity)."""

    def __init__(self, units: int, output_size: int, sparsity_level: float = 0.5, seed: int = 22222) -> None:
        if output_size >= units - 2:
            raise ValueError(
                f"output_size must be less than units - 2 (got units={units}, "
                f"output_size={output_size}): inter and command layers need a neuron each"
            )
        if not 0.1 <= sparsity_level <= 0.9:
            raise ValueError(f"sparsity_level must be in [0.1, 0.9], got {sparsity_level}")
        density = 1.0 - sparsity_level
        inter_and_command = units - output_size
        command = max(int(0.4 * inter_and_command), 1)
        inter = inter_and_command - command
        self.sparsity_level = sparsity_level
        super().__init__(
            inter_neurons=inter,
            command_neurons=command,
            motor_neurons=output_size,
            sensory_fanout=max(int(inter * density), 1),
            inter_fanout=max(int(command * density), 1),
            recurrent_command_synapses=max(int(command * density * 2), 1),
            motor_fanin=max(int(command * density), 1),
            seed=seed,
        )
