"""Processing drift: how far each processing class moves the embedding of the same photo.

For every image and every processing class, the cosine distance between its
embedding under that class and under ``jpeg95_444`` (the reference: every
non-JPEG operation ends with that re-encode). A large distance means the
encoder sees the processing; the probes and kNN audits then ask whether that
is readable and whether it moves semantics. Informational by default; set a
threshold such as ``drift.jpeg75_420=0.05`` to gate it.
"""

from __future__ import annotations

import numpy as np
import pytest

from pytest_metatrace import Record, bootstrap_mean
from pytest_metatrace.processing import list_processing

REFERENCE = "jpeg95_444"


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)


@pytest.mark.parametrize("processing", [p for p in list_processing() if p != REFERENCE])
def test_processing_drift(
    metatrace_encoder, metatrace_dataset, metatrace_embeddings, metatrace_record, processing
):
    views = metatrace_embeddings.many(metatrace_dataset, "all", [REFERENCE, processing])
    split = metatrace_embeddings.split(metatrace_dataset)
    distance = 1.0 - np.sum(_unit(views[REFERENCE]) * _unit(views[processing]), axis=1)
    p05, p50, p95 = np.quantile(distance, [0.05, 0.5, 0.95])
    record = Record(
        audit="processing_drift",
        metric="mean_cosine_distance",
        value=float(distance.mean()),
        encoder=metatrace_encoder.id,
        dataset=metatrace_dataset.id,
        parameter=processing,
        unit="cosine distance",
        interval=bootstrap_mean(distance).to_dict(),
        scores=distance.tolist(),
        score_ids=[metatrace_dataset.items[i].id for i in split.indices("all")],
        details={
            "reference": REFERENCE,
            "quantiles": {"p05": p05, "p50": p50, "p95": p95},
            "n_images": int(distance.shape[0]),
        },
        provenance={"processing": [REFERENCE, processing]},
    )
    metatrace_record.gate(record, f"drift.{processing}", what=f"{processing} drift")
    metatrace_record.assert_gates()
