"""Session fixtures the acquisition audit derives from its data (registered by the plugin).

The photos themselves are the plugin's ``metatrace_acquisition_data`` fixture
(declared in the spec); these fixtures embed them once per encoder, at every
mask ratio the audit needs, and plan which targets can run; the plan's
confound warnings are named in the terminal (:func:`announce_confounds`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import numpy as np

    from pytest_metatrace.audits.acquisition_traces.targets import TargetPlan
    from pytest_metatrace.data import Dataset
    from pytest_metatrace.embeddings import Embeddings
    from pytest_metatrace.settings import Settings

__all__ = [
    "announce_confounds",
    "masked_features",
    "metatrace_acquisition_features",
    "metatrace_acquisition_plan",
]


def masked_features(
    embeddings: Embeddings, dataset: Dataset, ratios: tuple[float | None, ...]
) -> dict[float | None, np.ndarray]:
    """Embeddings of every item (dataset order) per mask ratio (None: unmasked), in one pass."""
    views = {r: embeddings.view(None, False if r is None else float(r)) for r in ratios}
    vectors = embeddings.views(dataset, list(views.values()))
    return {r: vectors[v] for r, v in views.items()}


@pytest.fixture(scope="session")
def metatrace_acquisition_features(
    metatrace_acquisition_data: Dataset,
    metatrace_embeddings: Embeddings,
    metatrace_settings: Settings,
) -> dict[float | None, np.ndarray]:
    """Embeddings of every photo: unmasked (None) and per mask ratio, extracted in one pass."""
    from pytest_metatrace.audits.acquisition_traces.mask_sweep import SWEEP_RATIOS

    ratios = tuple(dict.fromkeys((None, metatrace_settings.mask_ratio, *SWEEP_RATIOS)))
    return masked_features(metatrace_embeddings, metatrace_acquisition_data, ratios)


def announce_confounds(config: pytest.Config, plan: TargetPlan, dataset: str) -> None:
    """One terminal line per target whose split leans on one group (the report shows them too)."""
    from pytest_metatrace.state import make_progress

    write = make_progress(config).write
    for line in plan.confound_warnings.values():
        write(f"metatrace: acquisition data {dataset}: {line}")


@pytest.fixture(scope="session")
def metatrace_acquisition_plan(
    metatrace_acquisition_data: Dataset,
    metatrace_settings: Settings,
    request: pytest.FixtureRequest,
) -> TargetPlan:
    """Which targets run, with their balanced group-disjoint splits (confounds announced)."""
    from pytest_metatrace.audits.acquisition_traces.spec import AcquisitionSettings
    from pytest_metatrace.audits.acquisition_traces.targets import plan_targets

    own = metatrace_settings.of(AcquisitionSettings)
    plan = plan_targets(
        metatrace_acquisition_data.items,
        group_column=metatrace_acquisition_data.group_column,
        min_per_class=own.min_per_class,
        test_per_class=own.test_per_class,
        seed=metatrace_settings.seed,
    )
    announce_confounds(request.config, plan, metatrace_acquisition_data.id)
    return plan
