#!/usr/bin/env bash
# GPU check: onnx-lrp on onnxruntime's CUDAExecutionProvider, against its CPU results and against
# Zennit on CUDA. Run from anywhere on a machine with an NVIDIA GPU and a CUDA build of torch:
#
#   tools/gpu_check.sh                 # tests marked gpu, then the benchmark at batch 1 and 32
#   WHEELS=dir tools/gpu_check.sh      # install onnxruntime-gpu / zennit from wheels in dir (offline)
#   QUICK=1 tools/gpu_check.sh         # ResNet-50 only, 3 runs
#
# onnxruntime-gpu must match the CUDA major version of the machine (1.31 is built for CUDA 13);
# its CUDA and cuDNN libraries come from torch's nvidia-* wheels, loaded by importing torch first.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SITE=${SITE:-/tmp/onnx-lrp-gpu-site}
mkdir -p "$SITE"
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"

has_cuda_ep() {
    "$PY" -c "import torch, onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())" 2>/dev/null
}

if ! has_cuda_ep; then
    echo "== installing onnxruntime-gpu into $SITE"
    if [ -n "${WHEELS:-}" ]; then
        "$PY" -m pip install -q --no-deps --no-index --target "$SITE" "$WHEELS"/onnxruntime_gpu-*.whl
    else
        "$PY" -m pip install -q --no-deps --target "$SITE" onnxruntime-gpu
    fi
fi
"$PY" -c "import zennit" 2>/dev/null || "$PY" -m pip install -q --no-deps --target "$SITE" \
    ${WHEELS:+--no-index --find-links "$WHEELS"} zennit==0.5.1

echo "== environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" - <<'PYEOF'
import torch, onnxruntime as ort, onnx
print(f"torch {torch.__version__} cuda={torch.cuda.is_available()}, onnxruntime {ort.__version__} "
      f"{ort.get_available_providers()}, onnx {onnx.__version__}")
if "CUDAExecutionProvider" not in ort.get_available_providers():
    raise SystemExit("onnxruntime offers no CUDAExecutionProvider: install the onnxruntime-gpu build for this CUDA")
PYEOF

echo "== tests marked gpu"
"$PY" -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py

echo "== benchmark on CUDA"
if [ -n "${QUICK:-}" ]; then
    "$PY" tools/bench.py --device cuda --models resnet50 --batches 1 32 --runs 3
else
    "$PY" tools/bench.py --device cuda --batches 1 32
fi
