"""Cross-camera retrieval on the built-in City100 pairs: whole frames vs centre crops.

Prints, per protocol and query camera type, recall@1 in the same / different
settings, the recall, margin and MRR gaps with 95% intervals (PROTOCOL
section 6), so that the harder protocol's default (--metatrace-pairs-crop)
can be checked on any encoder:

    python bench/bench_retrieval.py                      # lite0, crops 1 0.25 0.1 0.05 0.02
    python bench/bench_retrieval.py --encoder timm:resnet50 --crops 1 0.02
    python bench/bench_retrieval.py --mask               # centre-masked whole frames too
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from pytest_metatrace.audits.cross_camera_retrieval.analysis import CrossCameraRetrieval
from pytest_metatrace.data.pairs import load_pairs
from pytest_metatrace.embeddings import Embeddings
from pytest_metatrace.encoders import create_encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="lite0")
    parser.add_argument("--crops", type=float, nargs="+", default=[1.0, 0.25, 0.1, 0.05, 0.02])
    parser.add_argument("--mask", action="store_true", help="also whole frames, centre-masked 0.9")
    parser.add_argument("--cache-dir", default="/tmp/metatrace-bench-cache")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    cache = Path(args.cache_dir)
    pairs = load_pairs("city100", cache_dir=cache)
    encoder = create_encoder(args.encoder, device=args.device, cache_dir=cache / "weights")
    emb = Embeddings(encoder, cache_dir=cache, num_workers=0)
    runs: list[tuple[float, bool]] = [(c, False) for c in args.crops]
    if args.mask:
        runs.append((1.0, True))
    print(
        "| protocol | queries | recall@1 same | recall@1 different | recall gap [95% CI] "
        "| margin gap [95% CI] | MRR gap | s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for crop, masked in runs:
        dataset = pairs.dataset(crop)
        t0 = time.perf_counter()
        vectors = emb(dataset, "all", None, masked=masked)
        side_a, side_b = pairs.sides(dataset)
        result = CrossCameraRetrieval(device=args.device).evaluate(
            vectors[side_a], vectors[side_b], cameras=pairs.cameras, subjects=pairs.subjects
        )
        seconds = time.perf_counter() - t0
        name = ("whole frames" if crop == 1.0 else f"centre crop {crop:g}") + (
            ", centre mask 0.9" if masked else ""
        )
        for r in result.by_query:
            iv = r.intervals
            print(
                f"| {name} | {r.query_camera} | {r.recall('same'):.2f} | "
                f"{r.recall('different'):.2f} | {r.recall_gap:+.2f} "
                f"[{iv['recall_gap'].low:+.2f}, {iv['recall_gap'].high:+.2f}] | "
                f"{r.margin_gap:+.3f} [{iv['margin_gap'].low:+.3f}, {iv['margin_gap'].high:+.3f}] "
                f"| {r.mrr_gap:+.3f} | {seconds:.0f} |",
                flush=True,
            )
    emb.close()
    encoder.close()


if __name__ == "__main__":
    main()
