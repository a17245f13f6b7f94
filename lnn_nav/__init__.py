"""lnn_nav: liquid neural network (CfC / NCP) drone navigation for ROS 2."""

__version__ = "0.1.0"
