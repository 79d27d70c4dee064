"""The processing-probe audit's spec: what it gates, declares and renders (stdlib only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_metatrace.processing.groups import PARAMETER_GROUPS
from pytest_metatrace.spec import AuditSpec, GateFamily, MetricSpec, SectionSpec

if TYPE_CHECKING:
    from pytest_metatrace.settings import Settings

_CLIP = (
    "the paper (Sec. 3.1, Fig. 4) finds CLIP-type encoders above 80% on JPEG, sharpening and "
    "resizing and self-supervised DINO/DINOv2 the weakest; the default sits between, so "
    "CLIP-level traces fail and weak ones pass"
)


#: Baseline tolerance of every probe accuracy (README "Gating").
PROBE_TOLERANCE = 0.02
PROBE_TOLERANCE_REASON = (
    "2 points of top-1 accuracy (one test image in 50): the thresholds sit 10 points and more "
    "between CLIP-level and weak traces, so a smaller change does not move an encoder across them"
)


def _probe_gate(group: str, default: str, reason: str) -> GateFamily:
    return GateFamily(
        f"probe.{group}",
        "an accuracy (a fraction)",
        0.0,
        1.0,
        chance=True,
        default=default,
        reason=reason,
        tolerance=PROBE_TOLERANCE,
        tolerance_reason=PROBE_TOLERANCE_REASON,
    )


def choices(settings: Settings) -> list[dict[str, str]]:
    """The processing probes' protocol choices, for the report's provenance."""
    return [
        {
            "topic": "Processing probes",
            "choice": f"{settings.probe_seeds} seeds of the training draw "
            "(np.random.default_rng(seed).integers(0, K, N_train)), hyper-parameters tuned on "
            "the first; every test image under every class; std over seeds with ddof 0",
            "reason": "docs/protocol.md §4 (paper Sec. 3.1); the paper does not say which std",
        }
    ]


SPEC = AuditSpec(
    name="processing_probe",
    title="Processing probes",
    summary="linear-probe top-1 for reading JPEG (6 classes), sharpening (3), resizing (3) and "
    "interpolation (4) back from embeddings; 10 seeds",
    paper="Sec. 3.1, Fig. 4",
    order=20,
    tests=("test_processing_traces",),
    gates=(
        _probe_gate("jpeg", "0.60", _CLIP),
        _probe_gate("sharpening", "0.70", _CLIP),
        _probe_gate("resizing", "0.70", _CLIP),
        _probe_gate(
            "interpolation",
            "0.50",
            "interpolation is the hardest parameter for every encoder (paper Fig. 4), hence a "
            "lower bar than the other groups",
        ),
    ),
    gate_keys=tuple(f"probe.{g}" for g in PARAMETER_GROUPS),
    choices="pytest_metatrace.audits.processing_probe.spec:choices",
    results={"processing_probe": "pytest_metatrace.audits.processing_probe.results:ProbeDetails"},
    sections=(
        SectionSpec(
            "processing_probe",
            "Processing probes",
            "section.html.j2",
            "pytest_metatrace.audits.processing_probe.section:probe_context",
            order=20,
        ),
    ),
    metrics=(MetricSpec("processing_probe", "top1", "higher", "probe top-1"),),
)
