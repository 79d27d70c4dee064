"""Cross-camera retrieval: does a photo find its twin taken by another camera? (Sec. 4.2).

Each subject is photographed once by each of two camera types (built in:
City100, Nikon D5500 vs iPhone X). A query's positive is its subject's other
photo; it is searched among ``same`` (the positive plus every other photo of
the query's camera type) and ``different`` (every photo of the positive's
type), the query excluded (docs/protocol.md §6). An encoder that carries a
camera trace pulls the query towards its own camera type, so ``same`` is
harder: the gaps ``different - same`` of recall@1 and of the similarity
margin (positive minus hardest negative) measure the trace.

Two protocols: ``whole`` (the paper's, whole frames; recall@1 saturates on
easy pairs) and ``crop`` (the centre crop keeping ``--metatrace-pairs-crop``
of each photo's area, both photos alike: less content, the trace shows).

Gates: ``retrieval.recall_gap`` and ``retrieval.margin_gap`` per query camera
type, on the lower end of the 95% interval over queries (defaults in
:data:`pytest_metatrace.gating.DEFAULT_THRESHOLDS`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pytest_metatrace.analysis.retrieval import CrossCameraRetrieval
from pytest_metatrace.audits._retrieval_support import failure_gallery, load_pairs_for, pairs_view
from pytest_metatrace.data.pairs import PairedDataset
from pytest_metatrace.gate_keys import builtin_gate_keys

if TYPE_CHECKING:
    from pytest_metatrace.embeddings import Embeddings
    from pytest_metatrace.encoders import Encoder
    from pytest_metatrace.fixtures import Recorder
    from pytest_metatrace.settings import Settings

PROTOCOLS = ("whole", "crop")
#: The gate keys this audit produces (thresholds for other keys are usage errors).
pytestmark = pytest.mark.metatrace_gates(*builtin_gate_keys("retrieval"))


@pytest.fixture(scope="session")
def metatrace_pairs(request: pytest.FixtureRequest) -> PairedDataset:
    """The paired photos of ``--metatrace-pairs`` (loaded once per session)."""
    return load_pairs_for(request.config)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cross_camera_retrieval(
    metatrace_encoder: Encoder,
    metatrace_pairs: PairedDataset,
    metatrace_embeddings: Embeddings,
    metatrace_record: Recorder,
    metatrace_settings: Settings,
    pytestconfig: pytest.Config,
    protocol: str,
) -> None:
    """Retrieval gaps of one protocol, both query camera types, gated."""
    crop = metatrace_settings.pairs_crop if protocol == "crop" else 1.0
    if protocol == "crop" and crop == 1.0:
        pytest.skip("--metatrace-pairs-crop=1 disables the crop protocol")
    dataset = pairs_view(pytestconfig, metatrace_pairs, crop)
    vectors = metatrace_embeddings(dataset, "all", None)
    side_a, side_b = metatrace_pairs.sides(dataset)
    result = CrossCameraRetrieval(
        seed=metatrace_settings.seed, device=metatrace_embeddings.encoder.device.type
    ).evaluate(
        vectors[side_a],
        vectors[side_b],
        cameras=metatrace_pairs.cameras,
        subjects=metatrace_pairs.subjects,
    )
    records = result.to_records(encoder=metatrace_encoder.id, dataset=dataset.id, protocol=protocol)
    for record in records:
        camera = record.details["query_camera"]
        if record.metric == "recall_gap":
            gallery = failure_gallery(metatrace_pairs, dataset, result.query(camera))
            record.details["failures"] = gallery
        if record.metric in ("recall_gap", "margin_gap"):
            what = f"{camera} queries, {protocol} frames: {record.metric} (different − same)"
            metatrace_record.gate(record, f"retrieval.{record.metric}", what=what)
        else:
            metatrace_record(record)
    metatrace_record.assert_gates()
