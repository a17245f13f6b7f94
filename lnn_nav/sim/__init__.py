"""Embedded simulator: world specs, quadrotor flight, Warp cameras, Gymnasium envs, expert.

Nothing here imports ROS.
"""
