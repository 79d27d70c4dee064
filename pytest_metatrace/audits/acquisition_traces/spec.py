"""The acquisition audit's spec: gates, options, data, provenance and sections (stdlib only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_metatrace.options import RELATIVE, non_negative_int, option, positive_int
from pytest_metatrace.spec import AuditSpec, DataSpec, GateFamily, MetricSpec, SectionSpec

if TYPE_CHECKING:
    from pytest_metatrace.settings import Settings

#: Acquisition targets in the paper's order (Fig. 6).
TARGETS = (
    "smartphone",
    "make",
    "model",
    "model_smartphone",
    "exposure",
    "aperture",
    "iso",
    "focal_length",
)

_PACKAGE = "pytest_metatrace.audits.acquisition_traces"

#: Baseline tolerances (README "Gating"), in the records' unit (fractions).
_TOLERANCE = 0.02
_PROBE_TOLERANCE_REASON = (
    "2 points of top-1 accuracy (one test image in 50): the thresholds sit 15 points over "
    "chance, so a smaller change does not move an encoder across them"
)
_AGREEMENT_TOLERANCE_REASON = (
    "2 points of neighbour agreement: a fifth of the 10-point margin over chance the default "
    "gates, and less than Table 2's steps between encoders (DINOv2 to ConvNeXt-L to DINO)"
)


@dataclass(frozen=True)
class AcquisitionSettings:
    """The acquisition audit's options (``settings.of(AcquisitionSettings)``)."""

    acquisition_data: str = option(
        "city100",
        "data of the acquisition audit: city100 (built-in camera/phone pairs), city100-samesize "
        "(resize control: both sides at 840x600), or a CSV manifest / folder whose metadata "
        "columns hold make, model, smartphone, exposure, aperture, iso, focal_length; paths "
        f"{RELATIVE}",
        metavar="SPEC",
        path="spec",
        names=("city100", "city100-samesize", "demo"),
    )
    exif_data: str | None = option(
        None,
        "folder of photos straight from cameras and phones, labelled by their EXIF, for the "
        "acquisition audit (first sub-folder = group, e.g. photographer); overrides "
        f"--metatrace-acquisition-data; {RELATIVE}",
        metavar="DIR",
        path="file",
    )
    smartphone_table: str | None = option(
        None,
        "CSV make,model,smartphone (model a regex, smartphone yes/no) whose rows take "
        f"precedence over the built-in smartphone table; {RELATIVE}",
        metavar="CSV",
        path="file",
    )
    min_per_class: int = option(
        10,
        "acquisition probes keep classes with at least this many images (paper: 5000)",
        convert=positive_int,
        metavar="N",
    )
    test_per_class: int = option(
        0,
        "acquisition probes hold out this many test images per class (paper: 500; 0 = a "
        "quarter of the smallest kept class)",
        convert=non_negative_int,
        metavar="N",
    )
    sweep_data: str = option(
        "auto",
        "the mask sweep's semantic curve: auto (default: the acquisition data's pairs when it "
        "has them - City100: recall@1 of the other device's photo of the same postcard, no "
        "extra forwards - else kNN on the demo set), pairs, none (skip the sweep), or a "
        f"labelled set (demo, a folder, a manifest) for a kNN curve; paths {RELATIVE}",
        metavar="SPEC",
        path="spec",
        names=("auto", "pairs", "none", "demo", "city100", "city100-samesize"),
    )
    agreement_own_group: str = option(
        "exclude",
        "neighbour agreement on grouped photos (photographer, owner, scene): exclude (default) "
        "leaves each query's own-group neighbours out, since they agree on content; include "
        "counts them (both figures are reported either way)",
        choices=("exclude", "include"),
        protocol=True,
    )


def choices(settings: Settings) -> list[dict[str, str]]:
    """The acquisition audit's protocol choices, for the report's provenance."""
    from pytest_metatrace.audits.acquisition_traces.agreement import AGREEMENT_K
    from pytest_metatrace.audits.acquisition_traces.mask_sweep import (
        PAIR_TIE_RULE,
        SWEEP_RATIOS,
        TIE_RULE,
    )

    own = settings.of(AcquisitionSettings)
    ratios = ", ".join(f"{r:g}" for r in SWEEP_RATIOS)
    return [
        {
            "topic": "Acquisition probes",
            "choice": f"classes with at least {own.min_per_class} images; "
            f"{own.test_per_class or 'a quarter of the smallest class'} test images per "
            "class, whole groups at a time in a seeded order, surplus test images dropped (not "
            "moved to training); the rest undersampled to the minority class; hyper-parameters "
            "tuned on the probe's stratified 20% validation share of the training side; a "
            "target whose classes split the images exactly like an earlier one is listed, not "
            "re-run",
            "reason": "docs/protocol.md §4 at a user's scale (paper: 5,000 / 500 / 200); groups "
            "(photographer, owner, scene) never on both sides",
        },
        {
            "topic": "Acquisition data",
            "choice": "City100 labels from the device folder; EXIF folders: group = first "
            "sub-folder; smartphone from the built-in make / model table unless "
            "--metatrace-smartphone-table overrides it; city100-samesize = Nikon photos "
            "downscaled to 840x600 with Pillow LANCZOS before the encoder",
            "reason": "City100 ships without EXIF; the resize control separates a device trace "
            "from the encoder's different resize of the two native sizes",
        },
        {
            "topic": "Neighbour agreement",
            "choice": "agreement at k = "
            + ", ".join(str(k) for k in AGREEMENT_K)
            + ": cosine on unmasked embeddings, the query excluded"
            + (
                ", and on grouped photos every photo of the query's own group too"
                if own.agreement_own_group == "exclude"
                else "; own-group neighbours counted (--metatrace-agreement-own-group=include)"
            )
            + "; equal similarities ranked by lower index; chance = mean over queries of the "
            "same-label share among the query's candidates, (n_c - m_gc)/(N - n_g) with its "
            "group left out, (n_c - 1)/(N - 1) without; the figure under the other rule and "
            "the share of own-group neighbours are reported beside it",
            "reason": "docs/protocol.md §7 (paper Table 2); a group's photos share a "
            "photographer or a subject (City100: the postcard's twin from the other device), so "
            "they agree on content, not on the camera",
        },
        {
            "topic": "Mask sweep",
            "choice": f"ratios {ratios}; semantic curve: "
            + {
                "auto": "the acquisition data's pairs when it has them (recall@1 of each "
                "photo's twin among the other device's photos, chance 1/candidates), else kNN "
                "on the demo set",
                "pairs": "the acquisition data's pairs (recall@1 of each photo's twin among the "
                "other device's photos, chance 1/candidates)",
                "none": "switched off",
            }.get(own.sweep_data, f"kNN on {own.sweep_data}")
            + f"; kNN: {TIE_RULE}; twin retrieval: {PAIR_TIE_RULE}; the sweep's probes search "
            "a sixth of the probe trials (the audit's own probe searches all of them)",
            "reason": "docs/protocol.md §3 and §5 (paper Fig. 5); pairs measure content on the "
            "audit's own natural photos from embeddings it already extracts at every ratio",
        },
    ]


def _section(audit: str, title: str, context: str, order: int) -> SectionSpec:
    return SectionSpec(audit, title, "section.html.j2", f"{_PACKAGE}.section:{context}", order)


SPEC = AuditSpec(
    name="acquisition_traces",
    title="Acquisition traces",
    summary="on real camera / phone photos: linear-probe top-1 for smartphone-or-not, make, "
    "model, model among phones, exposure, aperture, ISO, focal length, on centre-masked photos; "
    "share of top-k neighbours (k = 10, 25, 50) with the same label vs chance, own-group "
    "neighbours left out; the mask sweep; a t-SNE map",
    paper="Sec. 3.2, Fig. 5, 6, 7, Table 2",
    order=40,
    tests=("test_acquisition_traces",),
    settings=AcquisitionSettings,
    gates=(
        GateFamily(
            "probe.smartphone",
            "an accuracy (a fraction)",
            0.0,
            1.0,
            chance=True,
            default="0.65",
            reason="on centre-masked photos CLIP-type encoders tell a phone from a camera at "
            ">70% against 50% chance (paper Sec. 3.2, Fig. 6); 0.65 fails that level and "
            "passes encoders near chance",
            tolerance=_TOLERANCE,
            tolerance_reason=_PROBE_TOLERANCE_REASON,
        ),
        *(
            GateFamily(
                f"probe.{target}",
                "an accuracy (a fraction)",
                0.0,
                1.0,
                chance=True,
                default="chance+0.15",
                reason="the smartphone probe's margin over its own chance, for targets with "
                "more classes",
                tolerance=_TOLERANCE,
                tolerance_reason=_PROBE_TOLERANCE_REASON,
            )
            for target in TARGETS[1:]
        ),
        GateFamily(
            "agreement.*",
            "an agreement (a fraction)",
            0.0,
            1.0,
            chance=True,
            default="chance+0.10",
            reason="Table 2 at k = 10: CLIP ViT-L/14@336 70.1% (about 20 points over chance), "
            "SigLIP 58.6%, DINO 58.0%, ConvNeXt-L 56.8%, DINOv2 54.0%; chance+0.10 fails "
            "CLIP-level agreement and passes the others",
            tolerance=_TOLERANCE,
            tolerance_reason=_AGREEMENT_TOLERANCE_REASON,
        ),
    ),
    gate_keys=tuple(f"{kind}.{t}" for kind in ("probe", "agreement") for t in TARGETS),
    choices=f"{_PACKAGE}.spec:choices",
    results={
        "acquisition_probe": f"{_PACKAGE}.targets:AcquisitionProbeResult",
        "neighbour_agreement": f"{_PACKAGE}.agreement:NeighbourAgreement",
        "mask_sweep": f"{_PACKAGE}.mask_sweep:MaskSweep",
        "embedding_map": f"{_PACKAGE}.mask_sweep:EmbeddingMap",
    },
    sections=(
        _section("acquisition_targets", "Acquisition targets", "targets_context", 40),
        _section("acquisition_probe", "Acquisition probes (Fig. 6)", "probe_context", 41),
        _section("neighbour_agreement", "Neighbour agreement (Table 2)", "agreement_context", 42),
        _section("mask_sweep", "Mask sweep (Fig. 5)", "sweep_context", 43),
        _section("embedding_map", "Embedding map (Fig. 7)", "map_context", 44),
    ),
    data=(
        DataSpec(
            "metatrace_acquisition_data",
            f"{_PACKAGE}.data:load_acquisition_data",
            "the acquisition photos (--metatrace-exif-data, else --metatrace-acquisition-data)",
        ),
        DataSpec(
            "metatrace_sweep_data",
            f"{_PACKAGE}.data:load_sweep_data",
            "the mask sweep's labelled set (--metatrace-sweep-data; auto: demo, used only when "
            "the acquisition data has no pairs)",
        ),
    ),
    fixtures=f"{_PACKAGE}.fixtures",
    metrics=(
        MetricSpec("acquisition_probe", "top1", "higher", "probe top-1"),
        MetricSpec("neighbour_agreement", "agreement@*", "higher", "neighbour agreement"),
        MetricSpec("acquisition_targets", "*", "none"),
        MetricSpec("mask_sweep", "*", "none"),
        MetricSpec("embedding_map", "*", "none"),
    ),
)
