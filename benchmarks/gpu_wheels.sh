#!/usr/bin/env bash
# Wheels of the pure-Python packages benchmarks/gpu_check.sh needs beyond a CUDA torch image
# (Hydra and OmegaConf, at the lock file's versions), into .whl/ (git-ignored), for a GPU machine
# that cannot reach a package index.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
for name in hydra-core omegaconf antlr4-python3-runtime; do
  version=$(grep -i "^$name==" requirements.lock | cut -d= -f3)
  .venv/bin/pip wheel -q --no-deps -w .whl "$name==$version"
done
ls .whl
