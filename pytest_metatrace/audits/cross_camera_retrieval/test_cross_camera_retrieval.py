"""Cross-camera retrieval: does a photo find its twin taken by another camera? (Sec. 4.2).

Each subject is photographed once by each of two camera types (built in:
City100, Nikon D5500 vs iPhone X; the plugin hands them out as
``metatrace_pairs``). A query's positive is its subject's other photo; it is
searched among ``same`` (the positive plus every other photo of the query's
camera type) and ``different`` (every photo of the positive's type), the
query excluded (docs/protocol.md §6). An encoder that carries a camera trace
pulls the query towards its own camera type, so ``same`` is harder: the gaps
``different - same`` of recall@1 and of the similarity margin (positive minus
hardest negative) measure the trace.

Two protocols: ``whole`` (the paper's, whole frames; recall@1 saturates on
easy pairs) and ``crop`` (the centre crop keeping ``--metatrace-pairs-crop``
of each photo's area, both photos alike: less content, the trace shows).

Gates: ``retrieval.recall_gap`` and ``retrieval.margin_gap`` per query camera
type, on the lower end of the 95% interval over queries (defaults and why:
``pytest_metatrace/audits/cross_camera_retrieval/spec.py``).
"""

from __future__ import annotations

import pytest

from pytest_metatrace import (
    CrossCameraRetrieval,
    Embeddings,
    Encoder,
    PairedDataset,
    Recorder,
    RetrievalSettings,
    Settings,
    failure_gallery,
)

pytestmark = pytest.mark.metatrace_audit("cross_camera_retrieval")

PROTOCOLS = ("whole", "crop")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cross_camera_retrieval(
    metatrace_encoder: Encoder,
    metatrace_pairs: PairedDataset,
    metatrace_embeddings: Embeddings,
    metatrace_record: Recorder,
    metatrace_settings: Settings,
    protocol: str,
) -> None:
    """Retrieval gaps of one protocol, both query camera types, gated."""
    pairs = metatrace_pairs
    crop = metatrace_settings.of(RetrievalSettings).pairs_crop if protocol == "crop" else 1.0
    if protocol == "crop" and crop == 1.0:
        pytest.skip("--metatrace-pairs-crop=1 disables the crop protocol")
    dataset = pairs.dataset(crop)
    vectors = metatrace_embeddings(dataset, "all", None)
    side_a, side_b = pairs.sides(dataset)
    result = CrossCameraRetrieval(
        seed=metatrace_settings.seed, device=metatrace_embeddings.encoder.device.type
    ).evaluate(vectors[side_a], vectors[side_b], cameras=pairs.cameras, subjects=pairs.subjects)
    for record in result.to_records(
        encoder=metatrace_encoder.id, dataset=dataset.id, protocol=protocol
    ):
        camera = record.details["query_camera"]
        if record.metric == "recall_gap":
            record.details["failures"] = failure_gallery(pairs, dataset, result.query(camera))
        if record.metric in ("recall_gap", "margin_gap"):
            what = f"{camera} queries, {protocol} frames: {record.metric} (different − same)"
            metatrace_record.gate(record, f"retrieval.{record.metric}", what=what)
        else:
            metatrace_record(record)
    metatrace_record.assert_gates()
