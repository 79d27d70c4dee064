"""Sensitivity: the smallest processing step from jpeg95_444 the encoder detects (issue 19).

For each parameter (JPEG quality at 4:4:4, sharpening factor, downscale
factor) a search over a grid of steps asks, per step, whether a two-class
probe (reference vs the step; training images under one of the two at
random, test images under both) tells the step apart: detected when the
lower end of the paired accuracy's Clopper-Pearson interval exceeds 0.5 +
``--metatrace-sensitivity-margin`` (0.05). The record's value is the smallest
detected step. Opt-in: deselected unless this module is named on the command
line (``pytest audits/test_sensitivity.py``) or
``--metatrace-sensitivity=always``. Informational: see
``pytest_metatrace/audits/sensitivity/spec.py``.
"""

from __future__ import annotations

import pytest

from pytest_metatrace import (
    SENSITIVITY_PARAMETERS,
    Dataset,
    Embeddings,
    Encoder,
    ProbeInputError,
    Recorder,
    Settings,
    sensitivity,
)

__all__ = ["pytestmark", "test_sensitivity"]

#: This module is the sensitivity audit: its spec declares the gate keys.
pytestmark = pytest.mark.metatrace_audit("sensitivity")


@pytest.mark.parametrize("parameter", SENSITIVITY_PARAMETERS)
def test_sensitivity(
    metatrace_encoder: Encoder,
    metatrace_dataset: Dataset,
    metatrace_embeddings: Embeddings,
    metatrace_record: Recorder,
    metatrace_settings: Settings,
    parameter: str,
) -> None:
    try:
        result = sensitivity(metatrace_embeddings, metatrace_dataset, parameter, metatrace_settings)
    except ProbeInputError as exc:  # e.g. a dataset too small for the validation split
        message = f"cannot search {parameter} sensitivity on {metatrace_dataset.id}: {exc}"
        pytest.fail(message, pytrace=False)
    (record,) = result.to_records(encoder=metatrace_encoder.id, dataset=metatrace_dataset.id)
    metatrace_record.gate(record, f"sensitivity.{parameter}", what=f"{result.title} sensitivity")
    metatrace_record.assert_gates()
    if result.verdict == "undecided":
        need = f"need at least {result.need}"
        pytest.skip(f"too few test images to decide: {result.n_test_images}, {need}")
