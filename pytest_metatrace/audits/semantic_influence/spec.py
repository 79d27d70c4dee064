"""The kNN semantic-influence audit's spec: what it gates, declares and renders (stdlib only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_metatrace.processing.groups import PARAMETER_GROUPS
from pytest_metatrace.spec import AuditSpec, GateFamily, MetricSpec, SectionSpec

if TYPE_CHECKING:
    from pytest_metatrace.settings import Settings

#: The two gaps the audit gates, as record metrics.
GAP_METRICS = ("pos_same_gap", "neg_same_gap")
_REASON = (
    "a processing change should not move semantic kNN accuracy by more than 5 points in either "
    "direction (paper Sec. 4.1, Fig. 8)"
)


def choices(settings: Settings) -> list[dict[str, str]]:
    """The kNN audit's protocol choices, for the report's provenance."""
    from pytest_metatrace.audits.semantic_influence.analysis import UNIFORM_SEEDS

    return [
        {
            "topic": "kNN semantic influence",
            "choice": f"k = {settings.knn_k}, cosine similarity, unweighted majority vote; equal "
            "similarities ranked by lower training index, tied votes to the label of the "
            "best-ranked neighbour among them; uniform: np.random.default_rng(seed).integers(0, "
            f"K, N_train) for seeds base..base+{UNIFORM_SEEDS - 1}, one draw for positives and "
            "negatives; averaged over every ordered pair (p_i, p_j), i != j",
            "reason": "docs/protocol.md §5; ties must be broken deterministically for the fast "
            "path to equal the naive construction exactly",
        }
    ]


SPEC = AuditSpec(
    name="semantic_influence",
    title="Semantic influence (kNN)",
    summary="kNN accuracy under all-same, all-diff, pos-same, neg-same and uniform databases",
    paper="Sec. 4.1, Fig. 2, 8, 9",
    order=30,
    tests=("test_semantic_influence",),
    gates=tuple(
        GateFamily(
            f"knn.*.{metric}",
            "a gap between two accuracies",
            -1.0,
            1.0,
            default="0.05",
            reason=_REASON,
            bounds=(-1.0, 1.0),
            tolerance=0.01,
            tolerance_reason="1 point of kNN accuracy gap: a fifth of the 5-point default "
            "threshold",
        )
        for metric in GAP_METRICS
    ),
    gate_keys=tuple(f"knn.{g}.{m}" for g in PARAMETER_GROUPS for m in GAP_METRICS),
    choices="pytest_metatrace.audits.semantic_influence.spec:choices",
    results={
        "semantic_influence": "pytest_metatrace.audits.semantic_influence.results:SemanticDetails"
    },
    sections=(
        SectionSpec(
            "semantic_influence",
            "Semantic influence (kNN)",
            "section.html.j2",
            "pytest_metatrace.audits.semantic_influence.section:semantic_context",
            order=30,
        ),
    ),
    metrics=(
        MetricSpec("semantic_influence", "pos_same_gap", "higher", "pos-same gap", chance="none"),
        MetricSpec("semantic_influence", "neg_same_gap", "higher", "neg-same gap", chance="none"),
        MetricSpec("semantic_influence", "knn_accuracy", "none", "kNN accuracy"),
    ),
)
