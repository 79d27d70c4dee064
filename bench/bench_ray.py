"""Ray backend overhead (issue 12, item 4): run by hand, results in bench/README.md.

    python bench/bench_ray.py [--encoder lite0] [--per-class 30] [--cpus 2] [--ray-first]

Extracts the 14 standard views of the demo set twice from an empty cache, in
one process: in process (the default path, SQLite store) and as a Ray Data job
on a local cluster of ``--cpus`` CPUs started here (shard store). Prints both
wall times (the Ray one with and without starting the cluster), their ratio,
the load average before each, and whether every embedding is bit-identical.
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--encoder", default="lite0")
    parser.add_argument("--per-class", type=int, default=30, help="demo images per class")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument("--ray-first", action="store_true", help="run the Ray job first")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import ray

    from pytest_metatrace.data.demo import demo_dataset
    from pytest_metatrace.embeddings import Embeddings
    from pytest_metatrace.encoders import create_encoder
    from pytest_metatrace.processing import list_processing

    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    factory = functools.partial(
        create_encoder, args.encoder, device="cpu", cache_dir=tmp / "weights"
    )
    encoder = factory()
    dataset = demo_dataset(per_class=args.per_class)
    views = list_processing()
    out: dict[str, object] = {"images": len(dataset.items), "views": len(views)}

    def in_process() -> dict[str | None, np.ndarray]:
        out["load_in_process"] = _load()
        t0 = time.perf_counter()
        got = Embeddings(encoder, cache_dir=tmp / "plain").many(dataset, "all", views)
        out["in_process_s"] = time.perf_counter() - t0
        return got

    if not args.ray_first:
        plain = in_process()
    out["load_ray"] = _load()
    t0 = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="WARNING")
    t1 = time.perf_counter()
    emb = Embeddings(
        encoder,
        cache_dir=tmp / "ray",
        store_url=str(tmp / "store"),
        ray_address="auto",
        encoder_factory=factory,
    )
    got = emb.many(dataset, "all", views)
    t2 = time.perf_counter()
    out["ray_init_s"] = t1 - t0
    out["ray_job_s"] = t2 - t1
    out["ray_total_s"] = t2 - t0
    ray.shutdown()
    if args.ray_first:
        plain = in_process()
    out["ratio_job"] = out["ray_job_s"] / out["in_process_s"]  # type: ignore[operator]
    out["ratio_total"] = out["ray_total_s"] / out["in_process_s"]  # type: ignore[operator]
    out["bit_identical"] = all(np.array_equal(plain[v], got[v]) for v in views)
    out["load_after"] = _load()
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
