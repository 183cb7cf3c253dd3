#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): CUDA equivalence, MFU at gpt2_small, the simulator on CUDA.
#   bash benchmarks/gpu_check.sh [out_dir] [gpu_check.py options]
# Uses the python3 that holds a CUDA build of torch. When that interpreter lacks the suite's other
# packages (a GPU image without Hydra), put their wheels in .whl/ (benchmarks/gpu_wheels.sh makes
# them) and they are installed into a scratch directory first. Under 8 minutes on one H100/H200.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-.}"; shift || true
PY="${PYTHON:-python3}"
if ! "$PY" -c "import hydra, omegaconf" 2>/dev/null; then
  if [ -d .whl ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/mpbench-site .whl/*.whl
    export PYTHONPATH="/tmp/mpbench-site${PYTHONPATH:+:$PYTHONPATH}"
  else
    echo "gpu_check: $PY lacks hydra-core and omegaconf, and there is no .whl/ to install them from" >&2; exit 2
  fi
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
PYTHONUNBUFFERED=1 timeout 470 "$PY" -m benchmarks.gpu_check --out "$out" "$@"
