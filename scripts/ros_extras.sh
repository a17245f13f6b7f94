#!/usr/bin/env bash
# Give a venv the parts of ROS 2 and PX4 that PyPI lacks, from the ros-extras bundle:
# `ros2 launch/run/topic/node` (launch, launch_ros, ros2cli wheels), and the message packages
# generated from source (composition_interfaces for launch_ros, tf2_msgs for TF, and the px4_msgs the
# offboard bridge uses). On a robot with ROS 2 installed from apt all of this is already there.
#
#   scripts/ros_extras.sh VENV [BUNDLE]
#
# BUNDLE: the ros-extras folder (default: $LNN_NAV_ROS_EXTRAS, else ../shared/ros-extras beside
# the repository). Without a bundle it says so and exits 0: the launch and PX4 tests then skip,
# each with that reason. Each part is installed once (stamps in VENV/.ros_extras/); about 6 min
# the first time (message generation: cmake + ninja, needs g++).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
VENV=$(cd "${1:?usage: ros_extras.sh VENV [BUNDLE]}" && pwd)
BUNDLE=${2:-${LNN_NAV_ROS_EXTRAS:-$here/../shared/ros-extras}}
if [ ! -d "$BUNDLE/wheels" ]; then
  echo "ros_extras: no ros-extras bundle at $BUNDLE: ros2 launch/CLI and px4_msgs not installed" \
       "(the launch and PX4 SITL tests will skip)"
  exit 0
fi
BUNDLE=$(cd "$BUNDLE" && pwd)
# The venv's ninja (requirements/base.txt) and python first: gen_msgs.sh builds with cmake + ninja.
export PATH="$VENV/bin:$PATH"
stamps=$VENV/.ros_extras
mkdir -p "$stamps"
# The px4_msgs the bridge (lnn_nav/nodes/px4_offboard.py) and its tests use; messages they reference come along.
PX4_MSGS="OffboardControlMode TrajectorySetpoint VehicleCommand VehicleCommandAck VehicleOdometry VehicleStatus
VehicleLocalPosition VehicleAttitude VehicleLandDetected VehicleControlMode"

if [ ! -f "$stamps/wheels" ]; then
  echo "ros_extras: launch, launch_ros and ros2cli wheels from $BUNDLE/wheels"
  "$VENV/bin/python" -m pip install -q -r "$here/requirements/ros-extras.txt"
  # --no-deps: their metadata names PyPI's unrelated `launch` package (the bundle's README).
  "$VENV/bin/python" -m pip install -q --no-deps "$BUNDLE"/wheels/*.whl
  touch "$stamps/wheels"
fi
for pkg in composition_interfaces tf2_msgs px4_msgs; do
  if [ ! -f "$stamps/$pkg" ]; then
    echo "ros_extras: generating $pkg (rosidl, cmake + ninja)"
    if [ "$pkg" = px4_msgs ]; then
      # shellcheck disable=SC2086
      "$BUNDLE/scripts/gen_msgs.sh" "$VENV" "$BUNDLE/msgs/$pkg" $PX4_MSGS
    else
      "$BUNDLE/scripts/gen_msgs.sh" "$VENV" "$BUNDLE/msgs/$pkg"
    fi
    touch "$stamps/$pkg"
  fi
done
echo "ros_extras: ready in $VENV (ros2 needs AMENT_PREFIX_PATH=$VENV)"
