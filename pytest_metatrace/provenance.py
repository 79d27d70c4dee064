"""The run's protocol choices for the report's provenance section.

The core choices (processing, preprocessing, masking, decoding, splits,
device, the shared probe engine, intervals) are written here from the
constants the code uses; each audit adds its own through its spec's
``choices`` function. Imported at the end of a session (it may import numpy).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_metatrace.settings import Settings
    from pytest_metatrace.spec import AuditRegistry

__all__ = ["core_choices", "session_choices"]

Choice = dict[str, str]


def core_choices(settings: Settings) -> list[Choice]:
    """The choices every audit shares, from the settings and the engines' constants."""
    from pytest_metatrace.analysis import sgd
    from pytest_metatrace.processing.groups import PARAMETER_GROUPS
    from pytest_metatrace.processing.ops import INTERP_SCALE_RANGE, PROCESSING_CLASSES

    low, high = INTERP_SCALE_RANGE
    slots = sum(len(g.classes) for g in PARAMETER_GROUPS.values())
    lr, wd = sgd.LR_RANGE, sgd.WD_RANGE
    return [
        {
            "topic": "Processing order",
            "choice": "Pillow processing on the full-resolution decoded RGB image, then the "
            "encoder's resize / crop / normalize (docs/protocol.md §1)",
            "reason": "as in the paper",
        },
        {
            "topic": "Processing classes",
            "choice": f"{len(PROCESSING_CLASSES)} distinct operations, {slots} class slots over "
            f"the {len(PARAMETER_GROUPS)} groups: jpeg95_444 is the 'none' class of sharpening "
            "and resizing",
            "reason": "docs/protocol.md §1 table and groups",
        },
        {
            "topic": "Interpolation scale",
            "choice": f"s = {low:g} + {high - low:g} * u, u from SHA-256(seed={settings.seed}, "
            "image content digest); sizes int(W*s), int(H*s), at least 1 pixel",
            "reason": "the research code's stateful RNG depends on worker order; a pure function "
            "of (seed, image) gives identical pixels on any worker count or machine",
        },
        {
            "topic": "Encoder resize policy",
            "choice": settings.resize_policy,
            "reason": "native = the encoder's own crop_pct (paper text); crop-size = shorter side "
            "straight to the crop size (research code). Part of the encoder fingerprint.",
        },
        {
            "topic": "Center mask ratio",
            "choice": f"{settings.mask_ratio:g} of the crop's area, margins rounded half up",
            "reason": "paper text 0.90 (default), research code 0.95",
        },
        {
            "topic": "Image decoding",
            "choice": "EXIF orientation applied; alpha flattened on white; 16-bit scaled by bit "
            "depth; CMYK/grey/palette converted by Pillow; truncated, float and over-sized "
            f"(> {settings.max_pixels:,} px) images skipped and listed",
            "reason": "every conversion is counted per dataset; nothing is changed silently",
        },
        {
            "topic": "Splits",
            "choice": f"stratified by semantic label, seed {settings.seed}, test fraction "
            f"{settings.test_fraction}; group-disjoint (StratifiedGroupKFold) when a group "
            "column exists",
            "reason": "a probe must not learn a photographer instead of a camera "
            "(docs/protocol.md §4)",
        },
        {
            "topic": "Device and precision",
            "choice": f"device {settings.device}, precision {settings.precision} (auto = bf16 "
            "autocast on CUDA, fp32 on CPU)",
            "reason": "both change the numbers, so both key the embedding cache",
        },
        {
            "topic": "Linear probe",
            "choice": f"mode {settings.probe_mode}: L2-normalized float32 features, linear "
            f"layer with bias, cross-entropy, SGD momentum {sgd.DEFAULT_MOMENTUM:g} with weight "
            f"decay on weight and bias, batch {sgd.DEFAULT_BATCH_SIZE}, or "
            f"min({sgd.DEFAULT_BATCH_SIZE}, ceil(N/{sgd.DEFAULT_MIN_STEPS_PER_EPOCH})) on N < "
            f"{sgd.DEFAULT_BATCH_SIZE * sgd.DEFAULT_MIN_STEPS_PER_EPOCH} training samples so "
            f"that every epoch takes at least {sgd.DEFAULT_MIN_STEPS_PER_EPOCH} steps, "
            f"{settings.probe_epochs} epochs, CosineAnnealingLR stepped per epoch (eta_min 0); "
            f"{settings.probe_trials} trials at scrambled Sobol points over lr [{lr[0]:g}, "
            f"{lr[1]:g}] x weight decay [{wd[0]:g}, {wd[1]:g}] (log), trained together in one "
            f"batched computation, best validation top-1 on a stratified "
            f"{sgd.VAL_FRACTION:.0%} split (ties: lower loss, then the earlier trial); "
            "identical seeded init and shuffles for every trial",
            "reason": "docs/protocol.md §4; the paper's code uses TPE, and any search at least "
            "as good on validation is allowed: Sobol matched TPE on hold-out (bench/README.md). "
            "The small-set batch: with batch 1024 a set under 1024 images takes one step per "
            "epoch and the probe under-trains; 4 steps bring it within 1 point of converged "
            "L-BFGS logistic regression (bench/README.md); the protocol is unchanged from 4096",
        },
        {
            "topic": "Confidence intervals and gates",
            "choice": "a gate compares the lower end of its 95% gate interval over the test "
            "images (each image carries the mean of its scores over classes, pairs and seeds): "
            "Clopper-Pearson for 0/1 scores, a betting confidence sequence for other scores "
            "within the gate family's bounds; a gate that could not fail at its number of test "
            "images is undecided, neither passed nor failed; the audits' percentile bootstrap "
            "is kept as a descriptive interval (provenance.descriptive_interval)",
            "reason": "test images are the independent unit; both intervals keep the false-fail "
            "rate at or below 2.5% at every test-set size (simulated in bench/README.md, 'Gate "
            "intervals'), which the bootstrap does not at tens of images; the betting interval "
            "holds for any score within the bounds, so it is wide where they are wide (the "
            "margin gap)",
        },
    ]


def session_choices(settings: Settings, registry: AuditRegistry) -> list[Choice]:
    """The core choices, then each registered audit's, in README order."""
    from pytest_metatrace.spec import resolve

    out = core_choices(settings)
    for spec in registry.specs():
        if spec.choices:
            out.extend(resolve(spec.choices)(settings))
    return out
