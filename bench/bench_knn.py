"""Benchmark of the kNN semantic-influence engine (issue 4), run by hand.

    python bench/bench_knn.py                      # audit-sized: 20k train x 5k test x 512-d, K=6
    python bench/bench_knn.py --n-train 2000 --n-test 500 --naive-images 5   # quick look

Times the five setups of docs/protocol.md §5 on synthetic embeddings and
measures the engine's peak memory (CPU: peak RSS above the baseline, reset
through /proc/self/clear_refs; CUDA: the allocator's peak). Then times a naive
per-test-image construction (every mixed database built explicitly for each
query, NumPy float32) on a few test images, extrapolates it per image to the
whole test set, and checks that the naive predictions agree with the engine's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_metatrace.audits.semantic_influence.influence import (
    KnnInfluence,
    resolve_device,
    uniform_draw,
)


def synthetic(
    n_train: int, n_test: int, dim: int, n_classes: int, n_labels: int, seed: int
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray], np.ndarray, list[str]]:
    """Embeddings = label centroid + image noise + class trace + version noise (float32)."""
    rng = np.random.default_rng(seed)
    classes = [f"class{c}" for c in range(n_classes)]
    centroids = rng.standard_normal((n_labels, dim), dtype=np.float32)
    traces = 0.5 * rng.standard_normal((n_classes, dim), dtype=np.float32)

    def embed(n: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        labels = rng.integers(0, n_labels, n)
        base = centroids[labels] + 3.0 * rng.standard_normal((n, dim), dtype=np.float32)
        out = {}
        for c, name in enumerate(classes):
            version = 0.3 * rng.standard_normal((n, dim), dtype=np.float32)
            out[name] = base + traces[c] + version
        return out, labels

    train, train_labels = embed(n_train)
    test, test_labels = embed(n_test)
    return train, train_labels, test, test_labels, classes


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def run_engine(args: argparse.Namespace, data: Any) -> tuple[Any, dict[str, Any]]:
    device = resolve_device(args.device)
    engine = KnnInfluence(
        k=args.k,
        seeds=tuple(range(args.seeds)),
        device=device,
        chunk_size=args.chunk_size,
        memory_budget_mb=args.memory_budget_mb,
        keep_predictions=True,
    )
    baseline = _rss_kib("VmRSS")
    can_reset = _reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    result = engine.evaluate(*data)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall = time.perf_counter() - start
    n_train, dim = data[0][data[4][0]].shape
    n_cls = len(data[4])
    memory = {
        "predicted_bytes": 4 * n_cls * n_train * dim
        + result.chunk_size * n_train * (4 * n_cls + 9),
    }
    if device.type == "cuda":
        memory["cuda_peak_allocated_bytes"] = int(torch.cuda.max_memory_allocated(device))
    if can_reset:
        memory["peak_rss_above_baseline_bytes"] = (_rss_kib("VmHWM") - baseline) * 1024
    return result, {"wall_s": wall, "memory": memory}


def naive_image(
    t: int,
    tr: list[np.ndarray],
    te: list[np.ndarray],
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    k: int,
    draws: np.ndarray,
) -> dict[tuple[str, int, int], int]:
    """Every database of test image t built explicitly; returns predictions per (setup, i, j|s)."""
    n_cls, n_train = len(tr), len(train_labels)
    positive = (train_labels == test_labels[t])[:, None]
    stacked = np.stack(tr)
    rows = np.arange(n_train)

    def predict(db: np.ndarray, q: np.ndarray) -> int:
        sims = db @ q
        # Exact top-k with the engine's tie rule: everything >= the k-th value,
        # ordered by (similarity desc, index asc).
        kth = np.partition(sims, n_train - k)[n_train - k]
        cand = np.flatnonzero(sims >= kth)
        top = cand[np.lexsort((cand, -sims[cand]))][:k]
        labels = train_labels[top].tolist()
        votes = Counter(labels)
        best = max(votes.values())
        return next(label for label in labels if votes[label] == best)

    out = {}
    for i in range(n_cls):
        q = te[i][t]
        # all_same / all_diff need no construction: they are whole class blocks.
        out[("all_same", i, -1)] = predict(tr[i], q)
        for j in range(n_cls):
            if j == i:
                continue
            out[("all_diff", i, j)] = predict(tr[j], q)
            out[("pos_same", i, j)] = predict(np.where(positive, tr[i], tr[j]), q)
            out[("neg_same", i, j)] = predict(np.where(positive, tr[j], tr[i]), q)
        for s, draw in enumerate(draws):
            out[("uniform", i, s)] = predict(stacked[draw, rows], q)
    return out


def run_naive(args: argparse.Namespace, data: Any, result: Any) -> dict[str, Any]:
    train, train_labels, test, test_labels, classes = data
    n_cls, n_test = len(classes), len(test_labels)

    def unit(x: np.ndarray) -> np.ndarray:
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    # Normalization is done once, outside the timing, in the naive's favour.
    tr = [unit(train[c]) for c in classes]
    te = [unit(test[c]) for c in classes]
    codes = {v: c for c, v in enumerate(result.label_values)}
    draws = np.stack([uniform_draw(s, n_cls, len(train_labels)) for s in range(args.seeds)])
    images = np.linspace(0, n_test - 1, args.naive_images).round().astype(int)
    agree = total = 0
    start = time.perf_counter()
    for t in images:
        preds = naive_image(int(t), tr, te, train_labels, test_labels, args.k, draws)
        for (setup, i, j), label in preds.items():
            if setup == "uniform":
                engine = result.predictions["uniform"][i, j, t]
            elif setup == "all_same":
                engine = result.predictions["all_same"][i, (i + 1) % n_cls, t]
            else:
                engine = result.predictions[setup][i, j, t]
            agree += int(engine == codes[label])
            total += 1
    wall = time.perf_counter() - start
    per_image = wall / len(images)
    return {
        "images": len(images),
        "wall_s": wall,
        "per_image_s": per_image,
        "extrapolated_s": per_image * n_test,
        "predictions_compared": total,
        "agreement": agree / total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=20_000)
    parser.add_argument("--n-test", type=int, default=5_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=6)
    parser.add_argument("--labels", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=10, help="uniform seeds 0..n-1")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--memory-budget-mb", type=float, default=1024)
    parser.add_argument("--naive-images", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", type=Path, default=None, help="write the numbers here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    load_before = os.getloadavg()[0]
    data = synthetic(args.n_train, args.n_test, args.dim, args.classes, args.labels, seed=0)
    result, fast = run_engine(args, data)
    naive = run_naive(args, data, result) if args.naive_images > 0 else None
    report = {
        "config": {k: v for k, v in vars(args).items() if k != "json"},
        "machine": {
            "cpu_threads": torch.get_num_threads(),
            "device": result.device,
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "python": platform.python_version(),
            "torch": torch.__version__,
            # other processes competing for the cores make the timings slower
            "load_avg_1m_before_after": [load_before, os.getloadavg()[0]],
        },
        "chunk_size": result.chunk_size,
        "engine": fast,
        "accuracy": {name: result.accuracy(name) for name in result.setups},
        "pos_same_gap": result.pos_same_gap,
        "neg_same_gap": result.neg_same_gap,
        "naive": naive,
        "speedup": naive["extrapolated_s"] / fast["wall_s"] if naive else None,
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
