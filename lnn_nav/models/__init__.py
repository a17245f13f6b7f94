"""Liquid cores (CfC, wired CfC/NCP, LTC), wirings, baselines, encoder and policy.

Nothing here imports ROS or the simulator.
"""

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
