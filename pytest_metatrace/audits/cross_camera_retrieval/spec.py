"""The cross-camera retrieval audit's spec: gates, options, data and section (stdlib only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_metatrace.options import RELATIVE, crop_area, option
from pytest_metatrace.spec import AuditSpec, DataSpec, GateFamily, MetricSpec, SectionSpec

if TYPE_CHECKING:
    from pytest_metatrace.settings import Settings

_PACKAGE = "pytest_metatrace.audits.cross_camera_retrieval"


@dataclass(frozen=True)
class RetrievalSettings:
    """The retrieval audit's options (``settings.of(RetrievalSettings)``)."""

    pairs: str = option(
        "city100",
        "paired photos for the cross-camera retrieval audit: 'city100' (built-in camera/phone "
        "pairs), a folder (<subject>/<camera type>.jpg), a CSV manifest (path,subject,camera) "
        "or hf:OWNER/NAME[@SPLIT] (e.g. hf:CTU-OU/PairCams, needs the 'pairs' extra); paths "
        f"{RELATIVE}",
        metavar="SPEC",
        path="spec",
        names=("city100",),
    )
    pairs_camera: tuple[str, ...] = option(
        (),
        "map photo file names (or Hugging Face camera models) to camera types, PATTERN=TYPE, "
        "repeatable, first match wins (e.g. 'iphone*=smartphone'); default: the file name's "
        "stem",
        multiple=True,
        metavar="PATTERN=TYPE",
    )
    pairs_crop: float = option(
        0.02,
        "the harder retrieval protocol: share of each photo's area kept by a centre crop of "
        "both photos of a pair (1 disables it; whole frames saturate recall@1 on easy pairs)",
        convert=crop_area,
        metavar="AREA",
    )


def choices(settings: Settings) -> list[dict[str, str]]:
    """The retrieval audit's protocol choices, for the report's provenance."""
    from pytest_metatrace.audits.cross_camera_retrieval.analysis import TIE_RULE

    own = settings.of(RetrievalSettings)
    crop = "off" if own.pairs_crop >= 1.0 else f"{own.pairs_crop:g} of each photo's area"
    return [
        {
            "topic": "Cross-camera retrieval",
            "choice": "a query's positive is its subject's photo of the other camera type, "
            "searched among 'same' (the positive and every other photo of the query's type) and "
            "'different' (every photo of the positive's type), the query excluded; cosine "
            f"similarity; {TIE_RULE}; gaps = different - same, per query camera type; the "
            f"harder protocol's centre crop: {crop}, both photos of a pair alike",
            "reason": "docs/protocol.md §6 (paper Sec. 4.2, Fig. 10); whole frames saturate "
            "recall@1 on easy pairs, the crop keeps less content so a camera trace shows",
        }
    ]


SPEC = AuditSpec(
    name="cross_camera_retrieval",
    title="Cross-camera retrieval",
    summary="near-duplicate retrieval of a subject's photo from another camera type: recall@1, "
    "rank and similarity margin (positive minus hardest negative) with same-camera vs "
    "other-camera negatives, on whole frames and on centre crops",
    paper="Sec. 4.2, Fig. 10",
    order=50,
    tests=("test_cross_camera_retrieval",),
    settings=RetrievalSettings,
    gates=(
        GateFamily(
            "retrieval.recall_gap",
            "a gap between two recalls",
            -1.0,
            1.0,
            default="0.10",
            reason="the paper (Sec. 4.2, Fig. 10) sees CLIP-type encoders fall from "
            "near-perfect recall@1 to below 0.85, a gap above 0.15; a gap of 0.10 is a trace a "
            "near-duplicate search feels (one query in ten lost to a same-camera photo)",
            bounds=(-1.0, 1.0),
            tolerance=0.02,
            tolerance_reason="2 points of recall@1 (two of City100's 100 queries): a fifth of "
            "the 0.10 default threshold",
        ),
        GateFamily(
            "retrieval.margin_gap",
            "a gap between two cosine similarities",
            -2.0,
            2.0,
            default="0.05",
            reason="in cosine similarity: a sixth of lite0's mean whole-frame City100 margin "
            "(0.30); lite0's gaps are 0.004-0.009 on whole frames and 0.04-0.08 on the 2% "
            "centre crops (bench/README.md)",
            bounds=(-2.0, 2.0),
            tolerance=0.01,
            tolerance_reason="0.01 of cosine similarity: a fifth of the 0.05 default threshold, "
            "about lite0's whole-frame gap (0.004-0.009)",
        ),
    ),
    gate_keys=("retrieval.recall_gap", "retrieval.margin_gap"),
    choices=f"{_PACKAGE}.spec:choices",
    results={"cross_camera_retrieval": f"{_PACKAGE}.analysis:RetrievalResult"},
    sections=(
        SectionSpec(
            "cross_camera_retrieval",
            "Cross-camera retrieval",
            "section.html.j2",
            f"{_PACKAGE}.section:retrieval_context",
            order=50,
        ),
    ),
    data=(
        DataSpec(
            "metatrace_pairs",
            f"{_PACKAGE}.data:load_pairs_data",
            "the paired photos of --metatrace-pairs",
        ),
    ),
    metrics=(
        MetricSpec("cross_camera_retrieval", "recall_gap", "higher", "recall@1 gap", "none"),
        MetricSpec("cross_camera_retrieval", "margin_gap", "higher", "margin gap", "none"),
        MetricSpec("cross_camera_retrieval", "mrr_gap", "higher", "MRR gap", "none"),
        MetricSpec("cross_camera_retrieval", "recall_at_1_*", "none"),
    ),
)
