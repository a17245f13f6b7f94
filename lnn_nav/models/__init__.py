"""Liquid cores (CfC, wired CfC/NCP, LTC), wirings, baselines, encoder, policy and saliency.

Nothing here imports ROS or the simulator. The names below load on first
use (module ``__getattr__``), so importing a light module of the package,
such as :mod:`lnn_nav.models.preprocess` (numpy + OpenCV), does not import
torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lnn_nav import lazy_exports

#: Re-exported name -> the module of this package that defines it.
_EXPORTS = {
    "LeCunTanh": "activations",
    "FeedForwardCore": "baselines",
    "GRUCore": "baselines",
    "LSTMCore": "baselines",
    "CfC": "cfc",
    "CfCCell": "cfc",
    "WiredCfCCell": "cfc",
    "load_policy": "checkpoint",
    "load_state_into": "checkpoint",
    "save_policy": "checkpoint",
    "RecurrentCore": "core",
    "State": "core",
    "ConvEncoder": "encoder",
    "EncoderConfig": "encoder",
    "CheckpointError": "errors",
    "CORE_KINDS": "factory",
    "build_core": "factory",
    "core_config": "factory",
    "core_from_config": "factory",
    "LTC": "ltc",
    "LTCCell": "ltc",
    "MemoryCell": "memory",
    "from_ncps": "ncps_compat",
    "LiquidPolicy": "policy",
    "PolicyConfig": "policy",
    "NCP": "wirings",
    "AutoNCP": "wirings",
    "ExplicitWiring": "wirings",
    "FullyConnected": "wirings",
    "Random": "wirings",
    "Wiring": "wirings",
}

if TYPE_CHECKING:
    from .activations import LeCunTanh
    from .baselines import FeedForwardCore, GRUCore, LSTMCore
    from .cfc import CfC, CfCCell, WiredCfCCell
    from .checkpoint import load_policy, load_state_into, save_policy
    from .core import RecurrentCore, State
    from .encoder import ConvEncoder, EncoderConfig
    from .errors import CheckpointError
    from .factory import CORE_KINDS, build_core, core_config, core_from_config
    from .ltc import LTC, LTCCell
    from .memory import MemoryCell
    from .ncps_compat import from_ncps
    from .policy import LiquidPolicy, PolicyConfig
    from .wirings import NCP, AutoNCP, ExplicitWiring, FullyConnected, Random, Wiring

__all__ = [
    "AutoNCP",
    "CORE_KINDS",
    "CfC",
    "CfCCell",
    "CheckpointError",
    "ConvEncoder",
    "EncoderConfig",
    "ExplicitWiring",
    "FeedForwardCore",
    "FullyConnected",
    "GRUCore",
    "LSTMCore",
    "LTC",
    "LTCCell",
    "LeCunTanh",
    "LiquidPolicy",
    "MemoryCell",
    "NCP",
    "PolicyConfig",
    "Random",
    "RecurrentCore",
    "State",
    "WiredCfCCell",
    "Wiring",
    "build_core",
    "core_config",
    "core_from_config",
    "from_ncps",
    "load_policy",
    "load_state_into",
    "save_policy",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
