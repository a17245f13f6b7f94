"""Import trained ``ncps.torch`` models (CfC, wired CfC, LTC) with their weights.

The converted model computes the same function as the ncps module, for the
same inputs and timespans (tested to 1e-5 in float32). Two ncps behaviours are
carried over on purpose, because the weights were trained with them:

* wired CfC: every layer is densely recurrent (``recurrence="dense"``), the
  wiring's own recurrent synapses are not used (ncps issue #53);
* dense CfC with a one-layer backbone: ncps never applies its backbone
  dropout there (it adds dropout only after layers 2+), so the import has
  none either. With deeper backbones ours drops after every layer. Dropout
  only acts in training mode; evaluation outputs are identical.

Where ncps is simply broken, the converted model does the right thing, so
outputs agree wherever ncps itself is correct:

* a ``[B, T]`` timespans tensor is mixed with the unit axis in ncps (its
  issues #81-#85); ours keeps one Δt per sample (agreement for scalar Δt or
  ``B == 1``);
* a wired CfC on a one-layer wiring returns every neuron in ncps although it
  reports ``output_dim`` outputs; ours returns the motor neurons.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
from torch import nn

from .cfc import CfC, CfCCell, WiredCfCCell
from .core import RecurrentCore
from .ltc import LTC
from .memory import MemoryCell
from .wirings import ExplicitWiring, Wiring


def from_ncps(module: nn.Module) -> RecurrentCore:
    """Convert an ``ncps.torch.CfC`` (dense or wired) or ``ncps.torch.LTC``.

    Raises ``ImportError`` if ncps is not installed and ``TypeError`` for a
    module of another type (cells must be wrapped in their ncps layer first).
    """
    try:
        import ncps.torch as ncps_torch
    except ImportError as err:  # pragma: no cover - ncps is a test/bench dependency
        raise ImportError("from_ncps needs the 'ncps' package: pip install ncps") from err

    if isinstance(module, ncps_torch.CfC):
        converted: RecurrentCore = _convert_cfc(module)
    elif isinstance(module, ncps_torch.LTC):
        converted = _convert_ltc(module)
    else:
        raise TypeError(
            f"from_ncps converts ncps.torch.CfC and ncps.torch.LTC modules, got "
            f"{type(module).__module__}.{type(module).__name__}"
        )
    reference = next(module.parameters())
    converted.to(device=reference.device, dtype=reference.dtype)
    converted.train(module.training)
    return converted


def _wiring_from_ncps(wiring: Any) -> Wiring:
    return ExplicitWiring(
        adjacency_matrix=np.asarray(wiring.adjacency_matrix),
        sensory_adjacency_matrix=np.asarray(wiring.sensory_adjacency_matrix),
        output_dim=int(wiring.output_dim),
        layers=[list(wiring.get_neurons_of_layer(i)) for i in range(wiring.num_layers)],
        neuron_types=[wiring.get_type_of_neuron(i) for i in range(wiring.units)],
        name=f"ncps.{type(wiring).__name__}",
    )


def _activation_name(backbone: nn.Sequential) -> str:
    names = {"LeCun": "lecun_tanh", "Tanh": "tanh", "ReLU": "relu", "SiLU": "silu", "GELU": "gelu"}
    for layer in backbone:
        if type(layer).__name__ in names:
            return names[type(layer).__name__]
    raise ValueError("could not identify the ncps backbone activation")


@torch.no_grad()
def _copy(dst: torch.Tensor, src: torch.Tensor, name: str) -> None:
    if dst.shape != src.shape:
        raise ValueError(f"ncps tensor {name} has shape {list(src.shape)}, expected {list(dst.shape)}")
    dst.copy_(src.detach().to(dtype=dst.dtype, device=dst.device))


# ncps has no type information: its modules are read as Any (attributes looked up at run time).
def _copy_cfc_cell(dst: CfCCell, src: Any, prefix: str) -> None:
    heads = ["ff1"] + ([] if dst.mode == "pure" else ["ff2", "time_a", "time_b"])
    for head in heads:
        _copy(getattr(dst, head).weight, getattr(src, head).weight, f"{prefix}.{head}.weight")
        _copy(getattr(dst, head).bias, getattr(src, head).bias, f"{prefix}.{head}.bias")
    if dst.mode == "pure":
        _copy(dst.w_tau, src.w_tau, f"{prefix}.w_tau")
        _copy(dst.A, src.A, f"{prefix}.A")
    if dst.backbone_layers:
        src_linears: list[nn.Linear] = [m for m in src.backbone if isinstance(m, nn.Linear)]
        for i, (d, s) in enumerate(zip(dst.backbone, src_linears)):
            d = cast(nn.Linear, d)  # CfCCell.backbone holds Linears only
            _copy(d.weight, s.weight, f"{prefix}.backbone[{i}].weight")
            _copy(d.bias, s.bias, f"{prefix}.backbone[{i}].bias")


def _copy_memory(dst: MemoryCell | None, src: Any) -> None:
    assert dst is not None, "mixed_memory cores have a memory cell"
    _copy(dst.input_map.weight, src.input_map.weight, "lstm.input_map.weight")
    _copy(dst.input_map.bias, src.input_map.bias, "lstm.input_map.bias")
    _copy(dst.recurrent_map.weight, src.recurrent_map.weight, "lstm.recurrent_map.weight")


def _convert_cfc(module: Any) -> CfC:
    rnn = module.rnn_cell
    proj_size = module.proj_size
    if getattr(module, "wired_mode", False):
        ncps_layers = [getattr(rnn, f"layer_{i}") for i in range(rnn.num_layers)]
        ours = CfC(
            int(module.input_size),
            _wiring_from_ncps(module.wiring),
            proj_size=proj_size,
            return_sequences=module.return_sequences,
            batch_first=module.batch_first,
            mixed_memory=module.use_mixed,
            mode=ncps_layers[0].mode,
            recurrence="dense",
        )
        assert isinstance(ours.cell, WiredCfCCell)  # a wiring makes a wired CfC
        for i, (layer, src) in enumerate(zip(ours.cell.cells, ncps_layers)):
            dst = cast(CfCCell, layer)  # a wired cell's layers, each with its wiring's mask
            _copy_cfc_cell(dst, src, f"rnn_cell.layer_{i}")
            if not torch.equal(cast(torch.Tensor, dst.sparsity_mask).cpu(), src.sparsity_mask.detach().cpu().float()):
                raise ValueError(f"sparsity mask of ncps layer {i} does not match its wiring")
    else:
        dropout = next((m.p for m in rnn.modules() if isinstance(m, nn.Dropout)), 0.0)
        if rnn.backbone_layers == 1:
            dropout = 0.0  # ncps never drops with a one-layer backbone
        backbone_units = rnn.backbone[0].out_features if rnn.backbone_layers > 0 else 0
        ours = CfC(
            int(module.input_size),
            int(rnn.hidden_size),
            proj_size=proj_size,
            return_sequences=module.return_sequences,
            batch_first=module.batch_first,
            mixed_memory=module.use_mixed,
            mode=rnn.mode,
            activation=_activation_name(rnn.backbone) if rnn.backbone_layers > 0 else "lecun_tanh",
            backbone_units=backbone_units,
            backbone_layers=rnn.backbone_layers,
            backbone_dropout=dropout,
        )
        assert isinstance(ours.cell, CfCCell)  # a dense CfC
        _copy_cfc_cell(ours.cell, rnn, "rnn_cell")
    if module.use_mixed:
        _copy_memory(ours.memory, module.lstm)
    if proj_size is not None:
        assert ours.proj is not None
        _copy(ours.proj.weight, module.fc.weight, "fc.weight")
        _copy(ours.proj.bias, module.fc.bias, "fc.bias")
    return ours


_LTC_TENSORS = (
    "gleak",
    "vleak",
    "cm",
    "sigma",
    "mu",
    "w",
    "erev",
    "sensory_sigma",
    "sensory_mu",
    "sensory_w",
    "sensory_erev",
    "sparsity_mask",
    "sensory_sparsity_mask",
    "input_w",
    "input_b",
    "output_w",
    "output_b",
)


def _convert_ltc(module: Any) -> LTC:
    cell = module.rnn_cell
    ours = LTC(
        int(module.input_size),
        _wiring_from_ncps(module._wiring),
        return_sequences=module.return_sequences,
        batch_first=module.batch_first,
        mixed_memory=module.use_mixed,
        input_mapping=cell._input_mapping,
        output_mapping=cell._output_mapping,
        ode_unfolds=cell._ode_unfolds,
        epsilon=cell._epsilon,
        implicit_param_constraints=cell._implicit_param_constraints,
    )
    for name in _LTC_TENSORS:
        dst = getattr(ours.cell, name)
        if dst is None:
            continue
        _copy(dst, cell._params[name], f"rnn_cell.{name}")
    if module.use_mixed:
        _copy_memory(ours.memory, module.lstm)
    return ours
