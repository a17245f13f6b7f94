"""Build any core by name from a JSON-serialisable config, and back."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from .baselines import FeedForwardCore, GRUCore, LSTMCore
from .cfc import CfC
from .core import RecurrentCore
from .ltc import LTC
from .wirings import AutoNCP, FullyConnected, Wiring

# Defaults per kind. Sizes follow the liquid-drone paper's scale: a 19-neuron
# NCP (Lechner et al. 2020 / Chahine et al. 2023) and baselines of comparable
# or larger capacity.
CORE_DEFAULTS: dict[str, dict[str, Any]] = {
    "cfc-ncp": {
        "units": 19,
        "sparsity": 0.5,
        "seed": 22222,
        "mode": "default",
        "recurrence": "wiring",
        "mixed_memory": False,
    },
    "cfc": {
        "units": 64,
        "backbone_units": 128,
        "backbone_layers": 1,
        "backbone_dropout": 0.0,
        "mode": "default",
        "activation": "lecun_tanh",
        "mixed_memory": False,
    },
    "ltc": {"units": 19, "wiring": "ncp", "sparsity": 0.5, "seed": 22222, "ode_unfolds": 6, "mixed_memory": False},
    "lstm": {"units": 64, "time_input": False},
    "gru": {"units": 64, "time_input": False},
    "cnn": {"units": 64, "layers": 1, "time_input": False},
}
CORE_KINDS = tuple(CORE_DEFAULTS)


def _wiring(opts: dict[str, Any], input_size: int, output_size: int, kind: str) -> Wiring:
    """The stored wiring if the config has one, else a fresh one from the seed."""
    stored = opts.get("wiring_matrices")
    if stored is not None:
        wiring = Wiring.from_dict(stored)
        if wiring.input_dim != input_size or wiring.output_dim != output_size:
            raise ValueError(
                f"stored wiring is for {wiring.input_dim} inputs / {wiring.output_dim} outputs, "
                f"the core needs {input_size} / {output_size}"
            )
        if wiring.units != opts["units"]:
            raise ValueError(f"stored wiring has {wiring.units} neurons but the config says units={opts['units']}")
        return wiring
    if kind == "ltc" and opts["wiring"] == "fully_connected":
        return FullyConnected(opts["units"], output_size, erev_init_seed=opts["seed"]).build(input_size)
    if kind == "ltc" and opts["wiring"] != "ncp":
        raise ValueError(f"unknown ltc wiring '{opts['wiring']}'; expected 'ncp' or 'fully_connected'")
    return AutoNCP(opts["units"], output_size, opts["sparsity"], opts["seed"]).build(input_size)


def _cfc_ncp(i: int, o: int, opts: dict[str, Any]) -> RecurrentCore:
    return CfC(
        i,
        _wiring(opts, i, o, "cfc-ncp"),
        mode=opts["mode"],
        recurrence=opts["recurrence"],
        mixed_memory=opts["mixed_memory"],
    )


def _cfc(i: int, o: int, opts: dict[str, Any]) -> RecurrentCore:
    return CfC(
        i,
        opts["units"],
        proj_size=o,
        mixed_memory=opts["mixed_memory"],
        mode=opts["mode"],
        activation=opts["activation"],
        backbone_units=opts["backbone_units"],
        backbone_layers=opts["backbone_layers"],
        backbone_dropout=opts["backbone_dropout"],
    )


def _ltc(i: int, o: int, opts: dict[str, Any]) -> RecurrentCore:
    return LTC(i, _wiring(opts, i, o, "ltc"), mixed_memory=opts["mixed_memory"], ode_unfolds=opts["ode_unfolds"])


_BUILDERS: dict[str, Callable[[int, int, dict[str, Any]], RecurrentCore]] = {
    "cfc-ncp": _cfc_ncp,
    "cfc": _cfc,
    "ltc": _ltc,
    "lstm": lambda i, o, opts: LSTMCore(i, opts["units"], proj_size=o, time_input=opts["time_input"]),
    "gru": lambda i, o, opts: GRUCore(i, opts["units"], proj_size=o, time_input=opts["time_input"]),
    "cnn": lambda i, o, opts: FeedForwardCore(
        i, opts["units"], output_size=o, layers=opts["layers"], time_input=opts["time_input"]
    ),
}


def build_core(kind: str, input_size: int, output_size: int, **options: Any) -> RecurrentCore:
    """Build a core of ``kind`` mapping ``input_size`` features to ``output_size`` outputs.

    ``options`` override :data:`CORE_DEFAULTS` for that kind; an unknown option
    is an error (a typo must not silently fall back to a default). The result
    carries ``core.config`` so :func:`core_config` can rebuild it exactly.
    """
    if kind not in CORE_DEFAULTS:
        raise ValueError(f"unknown core '{kind}'; expected one of {', '.join(CORE_KINDS)}")
    allowed = set(CORE_DEFAULTS[kind]) | ({"wiring_matrices"} if kind in ("cfc-ncp", "ltc") else set())
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for core '{kind}'; allowed: {sorted(allowed)}")
    opts = {**CORE_DEFAULTS[kind], **options}
    core = _BUILDERS[kind](input_size, output_size, opts)
    if core.output_size != output_size:
        raise ValueError(f"core '{kind}' produces {core.output_size} outputs, {output_size} asked")
    wiring = getattr(core, "wiring", None)
    if wiring is not None:
        opts["wiring_matrices"] = wiring.to_dict()
    core.config = {"kind": kind, "input_size": input_size, "output_size": output_size, **opts}
    return core


def core_config(core: RecurrentCore) -> dict[str, Any]:
    """The JSON-serialisable config :func:`build_core` needs to rebuild ``core``.

    For wired cores it includes the wiring matrices, so a rebuilt core has the
    same synapses even if the wiring generator changes in a later version.
    """
    config = getattr(core, "config", None)
    if config is None:
        raise ValueError(f"{type(core).__name__} was not made by build_core; it has no config")
    return copy.deepcopy(config)


def core_from_config(config: dict[str, Any]) -> RecurrentCore:
    """Inverse of :func:`core_config`."""
    cfg = dict(config)
    try:
        kind, input_size, output_size = cfg.pop("kind"), cfg.pop("input_size"), cfg.pop("output_size")
    except KeyError as missing:
        raise ValueError(f"core config lacks {missing}") from None
    return build_core(kind, int(input_size), int(output_size), **cfg)
