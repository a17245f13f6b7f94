#!/usr/bin/env bash
# One prepared check of the fused CfC kernels on a GPU machine without network:
# builds the CUDA (and CPU) extensions for the GPU present, runs the CUDA parity
# tests (outputs, gradients, opcheck, graph-captured controller step) and the
# kernel timings, and writes everything under $OUT. Budget: under 5 minutes.
#
#   OUT=/some/dir bash benchmarks/device_check.sh
#
# Needs a Python with a CUDA build of torch (PYTHON=..., default python3) and
# nvcc. Pure-Python packages it lacks (ncps, pytest, safetensors, pyyaml, ...)
# are installed offline from WHEELS=<folder of wheels> when given.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-reports/device_check}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
source benchmarks/device_env.sh

step() { echo "== $1 ($(date +%T))" | tee -a "$OUT/summary.txt"; }

step "environment"
{
  nvidia-smi || true
  command -v nvcc && nvcc --version
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available()); print(torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"
} > "$OUT/env.txt" 2>&1
tail -n 2 "$OUT/env.txt" | tee -a "$OUT/summary.txt"

if [ -n "${WHEELS:-}" ]; then
  step "offline install from $WHEELS"
  "$PY" -m pip install --no-index --find-links "$WHEELS" ncps pytest safetensors pyyaml ninja \
    > "$OUT/pip.txt" 2>&1 || echo "offline install incomplete, see pip.txt" | tee -a "$OUT/summary.txt"
fi

step "build extensions (TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST)"
LNN_NAV_KERNEL_VERBOSE=1 timeout 200 "$PY" -m lnn_nav.kernels.build --cuda > "$OUT/build.txt" 2>&1
echo "build exit $?" | tee -a "$OUT/summary.txt"
tail -n 3 "$OUT/build.txt" | tee -a "$OUT/summary.txt"

step "CUDA parity tests"
timeout 150 "$PY" -m pytest -q -rs tests/test_kernels_cuda.py > "$OUT/tests_cuda.txt" 2>&1
echo "tests exit $?" | tee -a "$OUT/summary.txt"
tail -n 3 "$OUT/tests_cuda.txt" | tee -a "$OUT/summary.txt"

step "timings (CPU and CUDA, same run)"
timeout 150 "$PY" benchmarks/kernel_latency.py --device all --iters 1000 --seq-iters 5 \
  --out "$OUT/kernel_latency.md" > "$OUT/bench.txt" 2>&1
echo "bench exit $?" | tee -a "$OUT/summary.txt"
cat "$OUT/bench.txt" | tee -a "$OUT/summary.txt"

# Warp's CUDA renderer. The warp-lang wheel is not carried: its warp.so alone is 299 MB, over the
# device tool's 64 MiB; measured only where the machine's Python already has Warp.
step "Warp CUDA renderer"
if "$PY" -c "import warp" > /dev/null 2>&1; then
  timeout 120 "$PY" benchmarks/sim_throughput.py --cuda --quick --out "$OUT/render_cuda.md" > "$OUT/render_cuda.txt" 2>&1
  echo "render exit $?" | tee -a "$OUT/summary.txt"
  cat "$OUT/render_cuda.txt" | tee -a "$OUT/summary.txt"
else
  echo "warp is not installed here and its wheel is too large to carry: CUDA renderer not measured" \
    | tee -a "$OUT/summary.txt"
fi
step "done"
