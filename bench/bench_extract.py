"""Extraction benchmark (issue 2, item 10): run by hand, results in bench/README.md.

    python bench/bench_extract.py [--encoder lite0] [--data demo] [--workers N] [--out bench/out]

On the demo set with the default encoder, in one process:
(a) processing-only time (decode + 14 processing classes + the encoder's
    resize/crop, single process), forward-only time (the same pixels, batched),
    and a full cold extraction through the real pipeline (DataLoader workers,
    cache writes); ratio = extraction wall / (processing + forward);
(b) a cold and a warm run of the drift audit as a user runs it (`pytest
    audits/test_processing_drift.py`, fresh cache dir), wall times and ratio;
(c) peak memory (max RSS) of the extraction and of each pytest run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from pytest_metatrace.data import load_dataset
from pytest_metatrace.embeddings import EmbeddingStore, Extractor, View
from pytest_metatrace.embeddings._malloc import tune_malloc_for_inference
from pytest_metatrace.encoders import create_encoder
from pytest_metatrace.processing import get_processing, list_processing

REPO = Path(__file__).resolve().parents[1]


def _maxrss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def bench_extraction(args: argparse.Namespace, cache: Path) -> dict:
    encoder = create_encoder(args.encoder, device=args.device)
    if encoder.device.type == "cpu":
        # what Extractor does for CPU encoders; applied first so all phases share it
        tune_malloc_for_inference()
    dataset = load_dataset(args.data, cache_dir=cache)
    views = [View(p) for p in list_processing()]
    items = dataset.items[: args.limit] if args.limit else dataset.items

    # processing only: what the DataLoader workers do, in this process
    t0 = time.perf_counter()
    pixels = []
    for item in items:
        img, _ = item.source.load()
        for view in views:
            out = get_processing(view.processing).apply(img, seed=0, image_key=item.digest)
            pixels.append(encoder.preprocessor(out, None))
    t_process = time.perf_counter() - t0

    # forward only: the same pixels, batched
    t0 = time.perf_counter()
    for i in range(0, len(pixels), args.batch_size):
        batch = torch.stack(pixels[i : i + args.batch_size])
        if encoder.device.type == "cuda":
            batch = batch.pin_memory()
        encoder.embed(batch)
    if encoder.device.type == "cuda":
        torch.cuda.synchronize()
    t_forward = time.perf_counter() - t0
    n = len(pixels)
    del pixels

    # the real pipeline, cold
    from pytest_metatrace.data.dataset import Dataset

    subset = Dataset(id=dataset.id, name=dataset.name, kind=dataset.kind, items=list(items))
    store = EmbeddingStore(
        cache / "bench", encoder_fingerprint=encoder.fingerprint, compute_key="bench"
    )
    extractor = Extractor(
        encoder,
        store,
        lock_dir=cache / "locks",
        batch_size=args.batch_size,
        num_workers=None if args.workers < 0 else args.workers,
    )
    t0 = time.perf_counter()
    stats = extractor.ensure(subset, views)
    t_extract = time.perf_counter() - t0
    return {
        "encoder": args.encoder,
        "device": str(encoder.device),
        "precision": encoder.precision,
        "images": len(items),
        "embeddings": n,
        "workers": extractor.num_workers,
        "batch_size": args.batch_size,
        "processing_only_s": round(t_process, 2),
        "forward_only_s": round(t_forward, 2),
        "sum_s": round(t_process + t_forward, 2),
        "extraction_wall_s": round(t_extract, 2),
        "ratio_wall_over_sum": round(t_extract / (t_process + t_forward), 3),
        "extraction_rate_per_s": round(n / t_extract, 1),
        "computed": stats.computed,
        "peak_rss_mb": round(_maxrss_mb(), 0),
    }


def bench_cold_warm(args: argparse.Namespace, cache: Path) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(REPO / "audits" / "test_processing_drift.py"),
        "-q",
        "-p",
        "no:cacheprovider",
        f"--metatrace-encoder={args.encoder}",
        f"--metatrace-data={args.data}",
        f"--metatrace-device={args.device}",
        f"--metatrace-cache-dir={cache / 'audit'}",
        "--metatrace-report=none",
    ]
    out = {}
    for phase in ("cold", "warm"):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        out[f"{phase}_s"] = round(time.perf_counter() - t0, 2)
        if proc.returncode != 0:
            raise SystemExit(f"{phase} run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        out[f"{phase}_summary"] = [ln for ln in proc.stdout.splitlines() if "embeddings" in ln]
    out["peak_rss_children_mb"] = round(_maxrss_mb(resource.RUSAGE_CHILDREN), 0)
    out["speedup_warm"] = round(out["cold_s"] / out["warm_s"], 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="lite0")
    parser.add_argument("--data", default="demo")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=-1, help="-1: the plugin's default")
    parser.add_argument("--limit", type=int, default=0, help="only the first N images")
    parser.add_argument("--skip-audit", action="store_true", help="skip the cold/warm runs")
    parser.add_argument("--out", default=str(REPO / "bench" / "out"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = {
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "extraction": bench_extraction(args, Path(tmp)),
        }
        if not args.skip_audit:
            result["audit"] = bench_cold_warm(args, Path(tmp))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    path = Path(args.out) / f"extract-{args.encoder}-{args.data}-{int(time.time())}.json"
    path.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
