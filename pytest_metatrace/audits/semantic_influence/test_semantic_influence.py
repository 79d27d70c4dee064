"""Semantic influence: does processing move kNN semantic predictions? (paper Sec. 4.1)

For each parameter group, a kNN classifier labels test images processed with
p_i against five training databases: all-same (every image under p_i),
all-diff (under p_j), pos-same (same-label images under p_i, the others under
p_j), neg-same (the reverse) and uniform (a random class per image), averaged
over every ordered pair (p_i, p_j) and 10 seeds for uniform. The gates are on
the two gaps pos-same − all-same and all-same − neg-same: a large gap means
an image's processing pulls it towards images processed the same way,
whatever they show.

Thresholds: ``knn.<group>.pos_same_gap`` and ``knn.<group>.neg_same_gap``
(default 0.05, i.e. 5 points).
"""

from __future__ import annotations

import pytest

from pytest_metatrace import (
    PARAMETER_GROUPS,
    SEMANTIC_GAPS,
    Dataset,
    Embeddings,
    Encoder,
    KnnInputError,
    Recorder,
    Settings,
    semantic_influence,
)

__all__ = ["pytestmark", "test_semantic_influence"]

#: This module is the kNN semantic-influence audit: its spec declares the gate keys.
pytestmark = pytest.mark.metatrace_audit("semantic_influence")


@pytest.mark.parametrize("group", list(PARAMETER_GROUPS))
def test_semantic_influence(
    metatrace_encoder: Encoder,
    metatrace_dataset: Dataset,
    metatrace_embeddings: Embeddings,
    metatrace_record: Recorder,
    metatrace_settings: Settings,
    group: str,
) -> None:
    try:
        result = semantic_influence(
            metatrace_embeddings, metatrace_dataset, group, metatrace_settings
        )
    except KnnInputError as exc:  # e.g. one semantic class: every gap would be 0, a false pass
        refused = f"cannot run the kNN semantic-influence audit on {metatrace_dataset.id}: {exc}"
    else:
        refused = ""
    if refused:  # failed outside the except block: no "during handling" chain
        pytest.fail(refused, pytrace=False)
    accuracy, *gaps = result.to_records(encoder=metatrace_encoder.id, dataset=metatrace_dataset.id)
    metatrace_record(accuracy)
    for record in gaps:
        what = f"{PARAMETER_GROUPS[group].title} {SEMANTIC_GAPS[record.metric]}"
        metatrace_record.gate(record, f"knn.{group}.{record.metric}", what=what)
    metatrace_record.assert_gates()
