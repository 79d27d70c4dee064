"""Acquisition traces: what does the encoder know about the camera (paper Sec. 3.2)?

Data: ``--metatrace-exif-data=DIR`` (photos labelled by their EXIF) or
``--metatrace-acquisition-data`` (default ``city100``: the same 100 postcards
shot by a Nikon D5500 and an iPhone X; ``city100-samesize`` is the resize
control), handed out by the plugin as ``metatrace_acquisition_data``. Per
acquisition target the data supports (smartphone, make, model, ...): a linear
probe on centre-masked embeddings (``--metatrace-mask-ratio``, default 0.90)
trained on a balanced, group-disjoint split (Fig. 6); the share of each
image's top-k neighbours with its label, next to chance (Table 2); the mask
sweep (Fig. 5) and a t-SNE map (Fig. 7). Targets that cannot run are listed
with the reason; a split that leans on one group (photographer, owner) is named
in the terminal and the report. Agreement leaves each photo's own-group
neighbours out (City100: its twin from the other device;
``--metatrace-agreement-own-group=include`` counts them). The sweep's semantic
curve is the recall@1 of each photo's twin on paired data (City100), else kNN
on a labelled set (``--metatrace-sweep-data``).

Gates: ``probe.<target>`` (probe accuracy) and ``agreement.<target>``
(agreement at k = 10); they fail when the lower end of the 95% interval is
above the threshold. Defaults and why: ``pytest_metatrace/audits/acquisition_traces/spec.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from pytest_metatrace import (
    ACQUISITION_TARGETS,
    SWEEP_RATIOS,
    AcquisitionSettings,
    AgreementUnavailable,
    Dataset,
    Embeddings,
    Encoder,
    Recorder,
    SemanticCurve,
    Settings,
    TargetPlan,
    choose_sweep_source,
    embedding_map,
    knn_curve,
    masked_features,
    neighbour_agreement,
    pair_curve,
    probe_from_settings,
    run_acquisition_probe,
    run_mask_sweep,
    target_labels,
)

pytestmark = pytest.mark.metatrace_audit("acquisition_traces")

#: embeddings of every photo per mask ratio (None: unmasked)
Features = dict[float | None, np.ndarray]


def test_acquisition_targets(
    metatrace_encoder: Encoder,
    metatrace_acquisition_data: Dataset,
    metatrace_acquisition_plan: TargetPlan,
    metatrace_record: Recorder,
) -> None:
    plan, data = metatrace_acquisition_plan, metatrace_acquisition_data
    for record in plan.to_records(encoder=metatrace_encoder.id, dataset=data.id):
        metatrace_record(record)
    if not plan.splits:
        reasons = "; ".join(f"{t}: {r}" for t, r in plan.unavailable.items())
        pytest.fail(f"no acquisition target can run on {data.id}: {reasons}", pytrace=False)


@pytest.mark.parametrize("target", ACQUISITION_TARGETS)
def test_acquisition_probe(
    metatrace_encoder: Encoder,
    metatrace_acquisition_data: Dataset,
    metatrace_acquisition_features: Features,
    metatrace_acquisition_plan: TargetPlan,
    metatrace_record: Recorder,
    metatrace_settings: Settings,
    target: str,
) -> None:
    plan, data = metatrace_acquisition_plan, metatrace_acquisition_data
    if target not in plan.splits:
        pytest.skip(f"{target}: {plan.unavailable[target]}")
    ratio = metatrace_settings.mask_ratio
    result = run_acquisition_probe(
        metatrace_acquisition_features[ratio],
        plan.splits[target],
        probe_from_settings(metatrace_settings),
        ids=[it.id for it in data.items],
        mask_ratio=ratio,
        seed=metatrace_settings.seed,
    )
    (record,) = result.to_records(encoder=metatrace_encoder.id, dataset=data.id)
    metatrace_record.gate(record, f"probe.{target}", what=f"{target} trace (masked {ratio:g})")
    metatrace_record.assert_gates()


@pytest.mark.parametrize("target", ACQUISITION_TARGETS)
def test_neighbour_agreement(
    metatrace_encoder: Encoder,
    metatrace_acquisition_data: Dataset,
    metatrace_acquisition_features: Features,
    metatrace_acquisition_plan: TargetPlan,
    metatrace_record: Recorder,
    metatrace_settings: Settings,
    target: str,
) -> None:
    plan, data = metatrace_acquisition_plan, metatrace_acquisition_data
    if target not in plan.splits:
        pytest.skip(f"{target}: {plan.unavailable[target]}")
    labels = target_labels(data.items, target)
    keep = [i for i, lab in enumerate(labels) if lab in plan.splits[target].classes]
    try:
        result = neighbour_agreement(
            metatrace_acquisition_features[None][keep],
            [str(labels[i]) for i in keep],
            target=target,
            ids=[data.items[i].id for i in keep],
            groups=[data.items[i].group for i in keep],
            group_column=data.group_column,
            own_group=metatrace_settings.of(AcquisitionSettings).agreement_own_group,
            seed=metatrace_settings.seed,
        )
    except AgreementUnavailable as exc:
        pytest.skip(f"{target}: {exc}")
    (record,) = result.to_records(encoder=metatrace_encoder.id, dataset=data.id)
    metatrace_record.gate(record, f"agreement.{target}", what=f"{target} neighbour agreement")
    metatrace_record.assert_gates()


def test_mask_sweep(
    metatrace_encoder: Encoder,
    metatrace_acquisition_data: Dataset,
    metatrace_acquisition_features: Features,
    metatrace_acquisition_plan: TargetPlan,
    metatrace_embeddings: Embeddings,
    metatrace_record: Recorder,
    metatrace_settings: Settings,
    request: pytest.FixtureRequest,
) -> None:
    plan, data, settings = (
        metatrace_acquisition_plan,
        metatrace_acquisition_data,
        metatrace_settings,
    )
    try:
        option = settings.of(AcquisitionSettings).sweep_data
        choice = choose_sweep_source(option, data.items, plan, dataset=data.id)
    except ValueError as exc:
        pytest.fail(str(exc), pytrace=False)
    if choice.source == "off":
        pytest.skip(f"mask sweep: {choice.reason}")
    if choice.pairs is not None:  # the photos' own pairs, already embedded at every ratio
        curve = pair_curve(
            metatrace_acquisition_features, choice.pairs, dataset=data.id, note=choice.reason
        )
    else:  # a labelled set, loaded and embedded only when it is needed
        sweep: Dataset = request.getfixturevalue("metatrace_sweep_data")
        curve = labelled_curve(sweep, metatrace_embeddings, settings, note=choice.reason)
    result = run_mask_sweep(
        curve,
        metatrace_acquisition_features,
        next(iter(plan.splits.values())),
        # The sweep shows a trend over six ratios: its probes search a sixth of the trials.
        lambda: probe_from_settings(settings, trial_share=6),
        chosen_ratio=settings.mask_ratio,
    )
    for record in result.to_records(encoder=metatrace_encoder.id, dataset=data.id):
        metatrace_record(record)


def labelled_curve(
    sweep: Dataset, embeddings: Embeddings, settings: Settings, *, note: str
) -> SemanticCurve:
    """kNN top-1 on a labelled set's train/test split at every sweep ratio."""
    split = embeddings.split(sweep)
    return knn_curve(
        masked_features(embeddings, sweep, SWEEP_RATIOS),
        sweep.label_indices(),
        (split.train, split.test),
        k=settings.knn_k,
        dataset=sweep.id,
        note=note,
    )


def test_embedding_map(
    metatrace_encoder: Encoder,
    metatrace_acquisition_data: Dataset,
    metatrace_acquisition_features: Features,
    metatrace_acquisition_plan: TargetPlan,
    metatrace_record: Recorder,
    metatrace_settings: Settings,
) -> None:
    plan, data = metatrace_acquisition_plan, metatrace_acquisition_data
    if not plan.splits:
        pytest.skip("no acquisition target to colour the map by")
    target = next(iter(plan.splits))
    labels = target_labels(data.items, target)
    keep = [i for i, lab in enumerate(labels) if lab is not None]
    result = embedding_map(
        metatrace_acquisition_features[None][keep],
        [str(labels[i]) for i in keep],
        [data.items[i].id for i in keep],
        target=target,
        seed=metatrace_settings.seed,
    )
    for record in result.to_records(encoder=metatrace_encoder.id, dataset=data.id):
        metatrace_record(record)
