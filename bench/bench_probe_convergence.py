"""Benchmark: does the protocol probe converge on small sets? (issue 8, item 16)

Run as a pytest module with the plugin's fixtures (the encoder, the data and
the embedding cache of the audits), one test per parameter group:

    pytest bench/bench_probe_convergence.py -p no:randomly -s \\
        --metatrace-cache-dir=/tmp/cache [--metatrace-data=city100]

For every processing group (and, in ``test_acquisition_probe_convergence``,
every acquisition target of the camera set) it trains, on the SAME training
draws and the SAME validation split, three probes and scores them on the
same test set:

- ``protocol_1024``: the protocol's SGD with batch 1024 everywhere
  (``min_steps_per_epoch=1``, the probe before issue 8);
- ``protocol``: the probe as the audits run it now (batch
  ``min(1024, ceil(N / 4))``);
- ``lbfgs``: scikit-learn's L-BFGS logistic regression run to convergence,
  ``C`` tuned on the same validation split (the reference).

It prints one line per group and, with ``METATRACE_BENCH_JSON=path``, appends
one JSON line per group (top-1 and wall time of each probe);
``METATRACE_BENCH_STEPS=4,16`` adds probes with other ``min_steps_per_epoch``.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from pytest_metatrace import PARAMETER_GROUPS, Dataset, Embeddings, Settings
from pytest_metatrace.analysis.probe import LinearProbe
from pytest_metatrace.audits.processing_probe.analysis import run_processing_probe


def _probes() -> dict[str, LinearProbe]:
    probes = {
        "protocol_1024": LinearProbe(min_steps_per_epoch=1, device="cpu"),
        "protocol": LinearProbe(device="cpu"),
        "lbfgs": LinearProbe(mode="lbfgs", device="cpu"),
    }
    for steps in os.environ.get("METATRACE_BENCH_STEPS", "").split(","):
        if steps.strip():  # other small-data rules to compare, e.g. "4,16"
            probes[f"steps_{steps.strip()}"] = LinearProbe(
                min_steps_per_epoch=int(steps), device="cpu"
            )
    return probes


def _emit(row: dict[str, object]) -> None:
    print(json.dumps(row))
    out = os.environ.get("METATRACE_BENCH_JSON")
    if out:
        with open(out, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")


@pytest.mark.parametrize("group", list(PARAMETER_GROUPS))
def test_probe_convergence(
    metatrace_dataset: Dataset,
    metatrace_embeddings: Embeddings,
    metatrace_settings: Settings,
    group: str,
) -> None:
    """Processing probes on the audits' data (default ``demo``)."""
    classes = list(PARAMETER_GROUPS[group].classes)
    train = metatrace_embeddings.many(metatrace_dataset, "train", classes)
    test = metatrace_embeddings.many(metatrace_dataset, "test", classes)
    row: dict[str, object] = {"dataset": metatrace_dataset.id, "group": group}
    for name, probe in _probes().items():
        probe.seed = metatrace_settings.seed
        start = time.perf_counter()
        result = run_processing_probe(
            {c: train[c] for c in classes},
            {c: test[c] for c in classes},
            classes,
            probe=probe,
            seeds=metatrace_settings.probe_seeds,
            base_seed=metatrace_settings.seed,
        )
        row[name] = round(float(result.top1_mean), 4)
        row[f"{name}_s"] = round(time.perf_counter() - start, 2)
        row[f"{name}_params"] = result.hyperparameters
    row["n_train"] = int(next(iter(train.values())).shape[0])
    _emit(row)


def test_acquisition_probe_convergence(
    pytestconfig: pytest.Config, metatrace_embeddings: Embeddings, metatrace_settings: Settings
) -> None:
    """The same comparison for the acquisition probe on the camera set (default ``city100``)."""
    from pytest_metatrace import masked_features, plan_targets, run_acquisition_probe
    from pytest_metatrace.audits.acquisition_traces.data import load_acquisition_dataset
    from pytest_metatrace.state import STATE_KEY, cache_dir, make_progress

    settings = metatrace_settings
    dataset = load_acquisition_dataset(
        settings,
        cache_dir=cache_dir(pytestconfig),
        registry=pytestconfig.stash[STATE_KEY].dataset_registry(pytestconfig),
        progress=make_progress(pytestconfig),
    )
    ratio = settings.mask_ratio
    features = masked_features(metatrace_embeddings, dataset, (ratio,))[ratio]
    plan = plan_targets(
        dataset.items,
        group_column=dataset.group_column,
        min_per_class=settings.min_per_class,
        test_per_class=settings.test_per_class,
        seed=settings.seed,
    )
    ids = [it.id for it in dataset.items]
    for target, split in plan.splits.items():
        row: dict[str, object] = {"dataset": dataset.id, "target": target}
        for name, probe in _probes().items():
            probe.seed = settings.seed
            start = time.perf_counter()
            result = run_acquisition_probe(
                np.asarray(features), split, probe, ids=ids, mask_ratio=ratio, seed=settings.seed
            )
            row[name] = round(float(result.top1), 4)
            row[f"{name}_s"] = round(time.perf_counter() - start, 2)
            row[f"{name}_params"] = result.hyperparameters
        row["n_train"] = len(split.train)
        _emit(row)
