"""The processing-drift audit's spec: what it gates, declares and renders (stdlib only)."""

from __future__ import annotations

from pytest_metatrace.processing.groups import PARAMETER_GROUPS
from pytest_metatrace.spec import AuditSpec, GateFamily, MetricSpec, SectionSpec

#: The view every class is compared with: every non-JPEG operation ends with this re-encode.
REFERENCE = "jpeg95_444"
#: The classes compared with the reference, in protocol order.
CLASSES = tuple(
    dict.fromkeys(c for g in PARAMETER_GROUPS.values() for c in g.classes if c != REFERENCE)
)

SPEC = AuditSpec(
    name="processing_drift",
    title="Processing drift",
    summary="mean cosine distance between an image's embedding under each processing class and "
    f"under {REFERENCE}",
    order=10,
    tests=("test_processing_drift",),
    gates=(
        GateFamily(
            "drift.*",
            "a cosine distance",
            0.0,
            2.0,
            reason="informational: how far a class moves embeddings says nothing about whether "
            "the change is readable or moves semantics (the probes and kNN audits ask that); set "
            "a threshold such as drift.jpeg75_420=0.05 to gate it",
            bounds=(0.0, 2.0),
            tolerance=0.001,
            tolerance_reason="0.001 of cosine distance: another batch size or machine moves drift "
            "by round-off (1e-6 to 1e-5), and 0.001 is a fiftieth of the 0.05 a gate on drift "
            "would use (drift.jpeg75_420=0.05)",
        ),
    ),
    gate_keys=tuple(f"drift.{c}" for c in CLASSES),
    results={"processing_drift": "pytest_metatrace.audits.processing_drift.analysis:DriftResult"},
    sections=(
        SectionSpec(
            "processing_drift",
            "Processing drift",
            "section.html.j2",
            "pytest_metatrace.audits.processing_drift.section:drift_context",
            order=10,
        ),
    ),
    metrics=(
        MetricSpec("processing_drift", "mean_cosine_distance", "higher", "drift", chance="none"),
    ),
)
