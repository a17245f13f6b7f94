"""Liquid cores (CfC, wired CfC/NCP, LTC), wirings, baselines, encoder and policy.

Nothing here imports ROS or the simulator.
"""

from .activations import LeCunTanh
from .baselines import FeedForwardCore, GRUCore, LSTMCore
from .cfc import CfC, CfCCell, WiredCfCCell
from .core import RecurrentCore, State
from .factory import CORE_KINDS, build_core, core_config, core_from_config
from .ltc import LTC, LTCCell
from .memory import MemoryCell
from .ncps_compat import from_ncps
from .wirings import NCP, AutoNCP, ExplicitWiring, FullyConnected, Random, Wiring

__all__ = [
    "AutoNCP",
    "CORE_KINDS",
    "CfC",
    "CfCCell",
    "ExplicitWiring",
    "FeedForwardCore",
    "FullyConnected",
    "GRUCore",
    "LSTMCore",
    "LTC",
    "LTCCell",
    "LeCunTanh",
    "MemoryCell",
    "NCP",
    "Random",
    "RecurrentCore",
    "State",
    "Wiring",
    "WiredCfCCell",
    "build_core",
    "core_config",
    "core_from_config",
    "from_ncps",
]
