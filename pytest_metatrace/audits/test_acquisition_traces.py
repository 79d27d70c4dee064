"""Acquisition traces: what does the encoder know about the camera (paper Sec. 3.2)?

Data: ``--metatrace-exif-data=DIR`` (photos labelled by their EXIF) or
``--metatrace-acquisition-data`` (default ``city100``: the same 100 postcards
shot by a Nikon D5500 and an iPhone X; ``city100-samesize`` is the resize
control). Per acquisition target the data supports (smartphone, make,
model, ...): a linear probe on centre-masked embeddings
(``--metatrace-mask-ratio``, default 0.90) trained on a balanced,
group-disjoint split (Fig. 6); the share of each image's top-k neighbours
with its label, next to chance (Table 2); the mask sweep (Fig. 5) and a
t-SNE map (Fig. 7). Targets that cannot run are listed with the reason.

Gates: ``probe.<target>`` (probe accuracy) and ``agreement.<target>``
(agreement at k = 10); they fail when the lower end of the 95% interval is
above the threshold. Defaults: :data:`pytest_metatrace.gating.DEFAULT_THRESHOLDS`.
"""

from __future__ import annotations

import pytest

from pytest_metatrace.analysis.acquisition import (
    TARGETS,
    plan_targets,
    run_acquisition_probe,
    target_labels,
)
from pytest_metatrace.analysis.acquisition_data import (
    load_acquisition_dataset,
    masked_features,
)
from pytest_metatrace.analysis.agreement import neighbour_agreement
from pytest_metatrace.analysis.mask_sweep import SWEEP_RATIOS, embedding_map, run_mask_sweep
from pytest_metatrace.analysis.probe import LinearProbe
from pytest_metatrace.analysis.processing_probe import probe_from_settings
from pytest_metatrace.gate_keys import builtin_gate_keys
from pytest_metatrace.settings import Settings

#: The gate keys this audit produces (thresholds for other keys are usage errors).
pytestmark = pytest.mark.metatrace_gates(*builtin_gate_keys("acquisition"))


def _probe(settings: Settings, trial_share: int = 1) -> LinearProbe:
    # The sweep's probes search 1/6 of the trials: it shows a trend over six ratios.
    return probe_from_settings(settings, trial_share=trial_share)


@pytest.fixture(scope="session")
def acquisition_dataset(pytestconfig, metatrace_settings):
    """The acquisition audit's photos (EXIF folder, manifest or the built-in City100)."""
    from pytest_metatrace.data import DatasetError
    from pytest_metatrace.state import STATE_KEY, cache_dir, make_progress

    state = pytestconfig.stash[STATE_KEY]
    try:
        dataset = load_acquisition_dataset(
            metatrace_settings,
            cache_dir=cache_dir(pytestconfig),
            registry=state.dataset_registry(pytestconfig),
            progress=make_progress(pytestconfig),
        )
    except (DatasetError, ValueError, OSError) as exc:
        pytest.fail(f"cannot load the acquisition data: {exc}", pytrace=False)
    state.datasets[dataset.id] = dataset.describe()
    if dataset.skipped:
        names = "; ".join(f"{s.path}: {s.reason}" for s in dataset.skipped[:10])
        more = len(dataset.skipped) - 10
        names += f" (and {more} more, listed in the report)" if more > 0 else ""
        make_progress(pytestconfig).write(
            f"metatrace: {dataset.id}: skipped {len(dataset.skipped)} photo(s): {names}"
        )
    return dataset


@pytest.fixture(scope="session")
def acquisition_features(acquisition_dataset, metatrace_embeddings, metatrace_settings):
    """Embeddings of every photo: unmasked (None) and per mask ratio, extracted in one pass."""
    ratios = {None, metatrace_settings.mask_ratio, *SWEEP_RATIOS}
    return masked_features(metatrace_embeddings, acquisition_dataset, ratios)


@pytest.fixture(scope="session")
def acquisition_plan(acquisition_dataset, metatrace_settings):
    """Which targets run, with their balanced group-disjoint splits."""
    return plan_targets(
        acquisition_dataset.items,
        group_column=acquisition_dataset.group_column,
        min_per_class=metatrace_settings.min_per_class,
        test_per_class=metatrace_settings.test_per_class,
        seed=metatrace_settings.seed,
    )


def test_acquisition_targets(
    metatrace_encoder, acquisition_dataset, acquisition_plan, metatrace_record
):
    for record in acquisition_plan.to_records(
        encoder=metatrace_encoder.id, dataset=acquisition_dataset.id
    ):
        metatrace_record(record)
    if not acquisition_plan.splits:
        reasons = "; ".join(f"{t}: {r}" for t, r in acquisition_plan.unavailable.items())
        pytest.fail(
            f"no acquisition target can run on {acquisition_dataset.id}: {reasons}", pytrace=False
        )


@pytest.mark.parametrize("target", TARGETS)
def test_acquisition_probe(
    metatrace_encoder,
    acquisition_dataset,
    acquisition_features,
    acquisition_plan,
    metatrace_record,
    metatrace_settings,
    target,
):
    if target not in acquisition_plan.splits:
        pytest.skip(f"{target}: {acquisition_plan.unavailable[target]}")
    ratio = metatrace_settings.mask_ratio
    result = run_acquisition_probe(
        acquisition_features[ratio],
        acquisition_plan.splits[target],
        _probe(metatrace_settings),
        ids=[it.id for it in acquisition_dataset.items],
        mask_ratio=ratio,
        seed=metatrace_settings.seed,
    )
    (record,) = result.to_records(encoder=metatrace_encoder.id, dataset=acquisition_dataset.id)
    metatrace_record.gate(record, f"probe.{target}", what=f"{target} trace (masked {ratio:g})")
    metatrace_record.assert_gates()


@pytest.mark.parametrize("target", TARGETS)
def test_neighbour_agreement(
    metatrace_encoder,
    acquisition_dataset,
    acquisition_features,
    acquisition_plan,
    metatrace_record,
    metatrace_settings,
    target,
):
    if target not in acquisition_plan.splits:
        pytest.skip(f"{target}: {acquisition_plan.unavailable[target]}")
    labels = target_labels(acquisition_dataset.items, target)
    keep = [i for i, lab in enumerate(labels) if lab in acquisition_plan.splits[target].classes]
    result = neighbour_agreement(
        acquisition_features[None][keep],
        [str(labels[i]) for i in keep],
        target=target,
        ids=[acquisition_dataset.items[i].id for i in keep],
        seed=metatrace_settings.seed,
    )
    (record,) = result.to_records(encoder=metatrace_encoder.id, dataset=acquisition_dataset.id)
    metatrace_record.gate(record, f"agreement.{target}", what=f"{target} neighbour agreement")
    metatrace_record.assert_gates()


@pytest.fixture(scope="session")
def sweep_dataset(pytestconfig, metatrace_settings):
    """The labelled set of the mask sweep's semantic curve (None: sweep switched off)."""
    from pytest_metatrace.data import DatasetError, load_dataset
    from pytest_metatrace.state import STATE_KEY, cache_dir

    spec = metatrace_settings.sweep_data
    if spec == "none":
        return None
    registry = pytestconfig.stash[STATE_KEY].dataset_registry(pytestconfig)
    try:
        return load_dataset(spec, cache_dir=cache_dir(pytestconfig), registry=registry)
    except DatasetError as exc:
        pytest.fail(f"--metatrace-sweep-data: {exc}", pytrace=False)


def test_mask_sweep(
    metatrace_encoder,
    acquisition_dataset,
    acquisition_features,
    acquisition_plan,
    sweep_dataset,
    metatrace_embeddings,
    metatrace_record,
    metatrace_settings,
):
    if sweep_dataset is None or not acquisition_plan.splits:
        pytest.skip("mask sweep switched off (--metatrace-sweep-data=none) or no target runs")
    split = metatrace_embeddings.split(sweep_dataset)
    result = run_mask_sweep(
        masked_features(metatrace_embeddings, sweep_dataset, SWEEP_RATIOS),
        sweep_dataset.label_indices(),
        (split.train, split.test),
        acquisition_features,
        next(iter(acquisition_plan.splits.values())),
        lambda: _probe(metatrace_settings, trial_share=6),
        semantic_dataset=sweep_dataset.id,
        knn_k=metatrace_settings.knn_k,
        chosen_ratio=metatrace_settings.mask_ratio,
    )
    for record in result.to_records(encoder=metatrace_encoder.id, dataset=acquisition_dataset.id):
        metatrace_record(record)


def test_embedding_map(
    metatrace_encoder,
    acquisition_dataset,
    acquisition_features,
    acquisition_plan,
    metatrace_record,
    metatrace_settings,
):
    if not acquisition_plan.splits:
        pytest.skip("no acquisition target to colour the map by")
    target = next(iter(acquisition_plan.splits))
    labels = target_labels(acquisition_dataset.items, target)
    keep = [i for i, lab in enumerate(labels) if lab is not None]
    result = embedding_map(
        acquisition_features[None][keep],
        [str(labels[i]) for i in keep],
        [acquisition_dataset.items[i].id for i in keep],
        target=target,
        seed=metatrace_settings.seed,
    )
    for record in result.to_records(encoder=metatrace_encoder.id, dataset=acquisition_dataset.id):
        metatrace_record(record)
