# Sourced by the GPU-machine scripts (device_check.sh, device_train_check.sh)
# from the repository root, with PY set: the environment both build and run in.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
# Built libraries stay off $OUT (they are large and only needed here).
export LNN_NAV_KERNEL_CACHE=${LNN_NAV_KERNEL_CACHE:-/tmp/lnn_nav_kernel_cache}
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
# Build for this GPU only (the full arch list is CI's job).
ARCH=$("$PY" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())" 2>/dev/null || echo "9.0")
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$ARCH}
