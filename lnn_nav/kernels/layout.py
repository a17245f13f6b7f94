"""From a CfC module to the fused kernels' inputs: the layout ints (``meta``) and flat parameters.

The layout is read by ``csrc/cfc_layout.h``; keep the two in step. Packing is
made of differentiable torch ops, so gradients reach the module's own
parameters (and a sparsity mask keeps absent synapses at zero gradient, as in
the reference).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import torch
from torch import Tensor, nn

if TYPE_CHECKING:  # lnn_nav.models.cfc imports the kernels: no import at run time
    from lnn_nav.models.cfc import CfC, CfCCell, WiredCfCCell

MODE_IDS = {"default": 0, "no_gate": 1, "pure": 2}
META_HEADER = 7
META_PER_LAYER = 4
MAX_LAYERS = 8
MAX_BACKBONE = 4


def activation_id(module: nn.Module) -> int | None:
    """Kernel id of a backbone activation module, ``None`` if the kernels lack it."""
    name = type(module).__name__
    if name == "GELU":
        return 4 if getattr(module, "approximate", "none") == "none" else None
    return {"LeCunTanh": 0, "Tanh": 1, "ReLU": 2, "SiLU": 3}.get(name)


@dataclass
class CfCLayout:
    """How one CfC core maps onto the fused kernels."""

    cells: tuple[CfCCell, ...]  # per layer (one for a dense CfC)
    proj: nn.Linear | None
    meta: list[int]  # with the output projection (onboard step)
    meta_seq: list[int]  # without it (sequences apply it to all steps at once)
    seq_size: int  # packed values before the projection
    has_dropout: bool
    out_start: int
    out_len: int
    state_size: int

    @property
    def macs_per_step(self) -> int:
        """Multiply-adds of one step for one sample (the cell's matrix products)."""
        return sum(size for size in _matrix_sizes(self.meta_seq))

    def parameters(self) -> list[Tensor]:
        tensors: list[Tensor] = []
        for cell in self.cells:
            tensors += list(cell.parameters())
            if cell.sparsity_mask is not None:
                tensors.append(cell.sparsity_mask)
        if self.proj is not None:
            tensors += list(self.proj.parameters())
        return tensors

    def pack(self, with_proj: bool = True) -> Tensor:
        """Flat parameters in kernel order (differentiable)."""
        parts: list[Tensor] = []
        for cell in self.cells:
            parts += _pack_cell(cell)
        if with_proj and self.proj is not None:
            parts += [self.proj.weight.t().reshape(-1), self.proj.bias.reshape(-1)]
        return torch.cat(parts)

    def outputs(self, states: Tensor) -> Tensor:
        """Core outputs from full states ``[..., S]``: motor slice, then projection."""
        out = states
        if self.out_start != 0 or self.out_len != self.state_size:
            out = states.narrow(-1, self.out_start, self.out_len)
        return self.proj(out) if self.proj is not None else out


def _masked(layer: nn.Linear, mask: Tensor | None) -> Tensor:
    return layer.weight if mask is None else layer.weight * mask


def _linears(layers: nn.ModuleList) -> list[nn.Linear]:
    """A CfC backbone's layers, typed: it holds Linears only."""
    return cast("list[nn.Linear]", list(layers))


def _pack_cell(cell: CfCCell) -> list[Tensor]:
    parts: list[Tensor] = []
    for linear in _linears(cell.backbone):
        parts += [linear.weight.t().reshape(-1), linear.bias]
    mask = cell.sparsity_mask
    if cell.mode == "pure":
        parts += [_masked(cell.ff1, mask).t().reshape(-1), cell.ff1.bias, cell.A.reshape(-1), cell.w_tau.reshape(-1)]
        return parts
    weight = torch.cat([_masked(cell.ff1, mask), _masked(cell.ff2, mask), cell.time_a.weight, cell.time_b.weight])
    bias = torch.cat([cell.ff1.bias, cell.ff2.bias, cell.time_a.bias, cell.time_b.bias])
    return parts + [weight.t().reshape(-1), bias]


def _cell_meta(cell: CfCCell, in_width: int) -> tuple[list[int], int]:
    """Per-layer meta ints and the number of packed values of one cell."""
    n = cell.hidden_size
    nb = len(cell.backbone)
    bu = _linears(cell.backbone)[0].out_features if nb else 0
    heads = 1 if cell.mode == "pure" else 4
    size, width = 0, in_width + n
    for linear in _linears(cell.backbone):
        size += width * bu + bu
        width = linear.out_features
    size += width * heads * n + heads * n + (2 * n if cell.mode == "pure" else 0)
    return [n, in_width, nb, bu], size


def build_layout(core: nn.Module) -> tuple[CfCLayout | None, str]:
    """The fused layout of a :class:`~lnn_nav.models.cfc.CfC`, or ``None`` and why not."""
    if getattr(core, "memory", None) is not None:
        return None, "mixed_memory (the LSTM memory cell runs on the reference path)"
    # The dispatch in fused.py passes the core as an nn.Module (the kernels sit below
    # lnn_nav.models); only a CfC is ever given, and typing it so checks what is read below.
    cfc = cast("CfC", core)
    cell = cfc.cell
    # Only a WiredCfCCell has per-layer cells. Told apart by attribute, not
    # isinstance (the classes cannot be imported here at run time), so the
    # casts below tell mypy which of the two cell types each branch holds.
    wired = hasattr(cell, "cells")
    wired_cell = cast("WiredCfCCell", cell)
    dense_cell = cast("CfCCell", cell)
    cells = cast("tuple[CfCCell, ...]", tuple(wired_cell.cells)) if wired else (dense_cell,)
    if len(cells) > MAX_LAYERS:
        return None, f"more than {MAX_LAYERS} wiring layers"
    act = 0
    has_dropout = False
    if not wired:
        if len(dense_cell.backbone) > MAX_BACKBONE:
            return None, f"more than {MAX_BACKBONE} backbone layers"
        if len(dense_cell.backbone):
            found = activation_id(dense_cell.backbone_activation)
            if found is None:
                return None, f"backbone activation {dense_cell.backbone_activation!r}"
            act = found
            widths = {linear.out_features for linear in _linears(dense_cell.backbone)}
            if len(widths) != 1:
                return None, "backbone layers of different widths"
        has_dropout = dense_cell.backbone_dropout is not None
    if wired:
        motor = [int(i) for i in wired_cell.motor_index.tolist()]
        if motor != list(range(motor[0], motor[0] + len(motor))):
            return None, "motor neurons not contiguous in the state"
        out_start, out_len = motor[0], len(motor)
    else:
        out_start, out_len = 0, dense_cell.hidden_size
    state_size = sum(c.hidden_size for c in cells)
    layers: list[int] = []
    seq_size, in_width = 0, cfc.input_size
    for c in cells:
        ints, size = _cell_meta(c, in_width)
        layers += ints
        seq_size += size
        in_width = c.hidden_size
    proj = cfc.proj
    header = [MODE_IDS[cfc.mode], act, len(cells), cfc.input_size, out_start, out_len]
    layout = CfCLayout(
        cells=cells,
        proj=proj,
        meta=header + [proj.out_features if proj is not None else 0] + layers,
        meta_seq=header + [0] + layers,
        seq_size=seq_size,
        has_dropout=has_dropout,
        out_start=out_start,
        out_len=out_len,
        state_size=state_size,
    )
    return layout, ""


def first_matrix(meta: Sequence[int]) -> tuple[int, int, int, int]:
    """``(weight offset, bias offset, F, U0)`` of layer 0's first matrix product.

    Its first ``F`` rows multiply the input; the sequence path computes them
    for every step in one matrix product (the input projection).
    """
    heads = 1 if meta[0] == MODE_IDS["pure"] else 4
    features = meta[3]
    n, _, nb, bu = meta[META_HEADER : META_HEADER + META_PER_LAYER]
    width = bu if nb else heads * n
    return 0, (features + n) * width, features, width


def _matrix_sizes(meta: Sequence[int]) -> list[int]:
    heads = 1 if meta[0] == MODE_IDS["pure"] else 4
    sizes = []
    for layer in range(meta[2]):
        n, in_width, nb, bu = meta[META_HEADER + META_PER_LAYER * layer :][:META_PER_LAYER]
        width = in_width + n
        for _ in range(nb):
            sizes.append(width * bu)
            width = bu
        sizes.append(width * heads * n)
    return sizes
