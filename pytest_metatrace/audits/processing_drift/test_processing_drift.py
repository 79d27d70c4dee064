"""Processing drift: how far each processing class moves the embedding of the same photo.

For every image and every processing class, the cosine distance between its
embedding under that class and under ``jpeg95_444`` (the reference: every
non-JPEG operation ends with that re-encode). A large distance means the
encoder sees the processing; the probes and kNN audits then ask whether that
is readable and whether it moves semantics. Informational by default; set a
threshold such as ``drift.jpeg75_420=0.05`` to gate it.
"""

from __future__ import annotations

import pytest

from pytest_metatrace import DRIFT_CLASSES, Dataset, Embeddings, Encoder, Recorder, processing_drift

__all__ = ["pytestmark", "test_processing_drift"]

#: This module is the processing-drift audit: its spec declares the gate keys.
pytestmark = pytest.mark.metatrace_audit("processing_drift")


@pytest.mark.parametrize("processing", DRIFT_CLASSES)
def test_processing_drift(
    metatrace_encoder: Encoder,
    metatrace_dataset: Dataset,
    metatrace_embeddings: Embeddings,
    metatrace_record: Recorder,
    processing: str,
) -> None:
    result = processing_drift(metatrace_embeddings, metatrace_dataset, processing)
    (record,) = result.to_records(encoder=metatrace_encoder.id, dataset=metatrace_dataset.id)
    metatrace_record.gate(record, f"drift.{processing}", what=f"{processing} drift")
    metatrace_record.assert_gates()
