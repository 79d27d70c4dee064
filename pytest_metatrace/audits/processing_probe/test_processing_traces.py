"""Processing traces: can a linear probe read the processing back from the embedding? (Sec. 3.1)

For each parameter group (JPEG 6 classes, sharpening 3, resizing 3,
interpolation 4), every training image is processed with one class drawn
uniformly at random, every test image with every class; a linear probe
(docs/protocol.md §4: SGD, 30-trial search, 100 epochs, cosine decay) is
trained on the embeddings and scored on the test set, averaged over 10 seeds
of the draw (hyper-parameters tuned on the first).

The gate: ``probe.<group>``, an accuracy (``0.6``) or a gain over chance
(``chance+0.3``); it fails when the lower end of the accuracy's 95% interval
is above it. Defaults and why: ``pytest_metatrace/audits/processing_probe/spec.py``.
"""

from __future__ import annotations

import pytest

from pytest_metatrace import (
    PARAMETER_GROUPS,
    Dataset,
    Embeddings,
    Encoder,
    ProbeInputError,
    Recorder,
    Settings,
    processing_probe,
)

__all__ = ["pytestmark", "test_processing_trace"]

#: This module is the processing-probe audit: its spec declares the gate keys.
pytestmark = pytest.mark.metatrace_audit("processing_probe")


@pytest.mark.parametrize("group", list(PARAMETER_GROUPS))
def test_processing_trace(
    metatrace_encoder: Encoder,
    metatrace_dataset: Dataset,
    metatrace_embeddings: Embeddings,
    metatrace_record: Recorder,
    metatrace_settings: Settings,
    group: str,
) -> None:
    title = PARAMETER_GROUPS[group].title
    try:
        result = processing_probe(
            metatrace_embeddings, metatrace_dataset, group, metatrace_settings
        )
    except ProbeInputError as exc:  # e.g. a dataset too small for the validation split
        message = f"cannot run the {title} probe on {metatrace_dataset.id}: {exc}"
        pytest.fail(message, pytrace=False)
    (record,) = result.to_records(
        encoder=metatrace_encoder.id, dataset=metatrace_dataset.id, parameter=group
    )
    metatrace_record.gate(record, f"probe.{group}", what=f"{title} trace")
    metatrace_record.assert_gates()
