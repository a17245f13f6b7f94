"""Figures people would rather look at than read: wiring diagrams, neuron traces."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..models.wirings import Wiring

_LAYER_COLOURS = {"sensory": "#9aa64a", "inter": "#3a78b5", "command": "#7e57c2", "motor": "#e8882b"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: drones, CI and SSH sessions have no display
    import matplotlib.pyplot as plt

    return plt


def plot_wiring(wiring: Wiring, path: Path, title: str = "") -> Path:
    """Layered drawing: sensory inputs, then each wiring layer; green +, red - synapses."""
    assert wiring.sensory_adjacency_matrix is not None, "build the wiring first"
    plt = _pyplot()
    columns = [list(range(wiring.input_dim or 0))] + wiring.layers
    # node -> (column, height) in the drawing
    pos_sensory: dict[int, tuple[int, float]] = {}
    pos_neuron: dict[int, tuple[int, float]] = {}
    for col, members in enumerate(columns):
        ys = np.linspace(0.0, 1.0, len(members) + 2)[1:-1]
        for member, y in zip(members, ys):
            (pos_sensory if col == 0 else pos_neuron)[member] = (col, y)

    fig, ax = plt.subplots(figsize=(7.5, 5.0))
    for matrix, sources in ((wiring.sensory_adjacency_matrix, pos_sensory), (wiring.adjacency_matrix, pos_neuron)):
        for src, dest in zip(*np.nonzero(matrix)):
            (x0, y0), (x1, y1) = sources[src], pos_neuron[dest]
            colour = "#2e9d4d" if matrix[src, dest] > 0 else "#c8453c"
            if (x0, y0) == (x1, y1):
                ax.plot([x0], [y0], marker="o", ms=14, mfc="none", mec=colour, alpha=0.5)
                continue
            bend = 0.15 if x0 == x1 else 0.0  # lateral synapses arc instead of overlapping
            xs = np.linspace(x0, x1, 20)
            ys = np.linspace(y0, y1, 20) + bend * np.sin(np.linspace(0, np.pi, 20))
            xs = xs + (bend * np.sin(np.linspace(0, np.pi, 20)) if x0 == x1 else 0)
            ax.plot(xs, ys, color=colour, lw=0.6, alpha=0.45)
    for _idx, (x, y) in pos_sensory.items():
        ax.scatter([x], [y], s=60, color=_LAYER_COLOURS["sensory"], zorder=3)
    for idx, (x, y) in pos_neuron.items():
        kind = wiring.neuron_type(idx)
        ax.scatter([x], [y], s=160, color=_LAYER_COLOURS.get(kind, "#555555"), zorder=3)
        ax.annotate(str(idx), (x, y), ha="center", va="center", fontsize=6, color="white", zorder=4)
    names = ["sensory"] + [wiring.neuron_type(layer[0]) for layer in wiring.layers]
    ax.set_xticks(range(len(columns)), [f"{n}\n({len(c)})" for n, c in zip(names, columns)])
    ax.set_yticks([])
    ax.set_title(title or repr(wiring), fontsize=9)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def plot_neuron_traces(
    times: np.ndarray,
    states: np.ndarray,
    neuron_labels: Sequence[str],
    path: Path,
    title: str = "",
) -> Path:
    """One trace per neuron over (irregular) time; ``states`` is ``[T, N]``."""
    plt = _pyplot()
    known = [g for g in ("inter", "command", "motor") if g in neuron_labels]
    groups = known + sorted(set(neuron_labels) - set(known))
    fig, axes = plt.subplots(len(groups), 1, figsize=(8, 1.8 * len(groups) + 0.6), sharex=True, squeeze=False)
    for ax, group in zip(axes[:, 0], groups):
        for n, label in enumerate(neuron_labels):
            if label == group:
                ax.plot(times, states[:, n], lw=1.0, color=_LAYER_COLOURS.get(group))
        ax.set_ylabel(group)
        ax.grid(alpha=0.3)
    for t in times:
        axes[-1, 0].axvline(t, ymin=0, ymax=0.05, color="k", lw=0.4)
    axes[-1, 0].set_xlabel("time (s); ticks at the bottom mark the (irregular) frame times")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
