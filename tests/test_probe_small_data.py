"""The probe converges on small training sets (issue 8, item 16).

With the protocol's batch of 1024, a training set of fewer than 1024 samples
takes one SGD step per epoch (100 in all) and the probe under-reads a trace.
The batch now shrinks to ``ceil(N / min_steps_per_epoch)`` there; large sets
keep the protocol exactly. bench/README.md has the same comparison on the
demo set and City100 with real embeddings.
"""

from __future__ import annotations

import numpy as np
import pytest

# Imported at collection, before any pytester run could import (and drop) them:
# numpy's C parts cannot be imported twice in one process.
import sklearn.linear_model  # noqa: F401

from pytest_metatrace.analysis.probe import (
    DEFAULT_MIN_STEPS_PER_EPOCH,
    LinearProbe,
    ProbeInputError,
    effective_batch_size,
)


@pytest.mark.parametrize(
    ("n", "batch", "steps", "expected"),
    [
        (120, 1024, 4, 30),  # the demo set's search split: 4 steps of 30
        (150, 1024, 4, 38),  # ceil(150 / 4)
        (4096, 1024, 4, 1024),  # from 4 x 1024 on: the protocol's batch exactly
        (1_281_167, 1024, 4, 1024),  # ImageNet-size: untouched
        (3, 1024, 4, 1),
        (120, 1024, 1, 120),  # min_steps_per_epoch=1: the protocol everywhere
    ],
)
def test_effective_batch_size(n: int, batch: int, steps: int, expected: int) -> None:
    assert effective_batch_size(n, batch, steps) == expected


def test_effective_batch_size_refuses_nonsense() -> None:
    with pytest.raises(ProbeInputError, match="min_steps_per_epoch"):
        effective_batch_size(10, 1024, 0)
    with pytest.raises(ProbeInputError, match="min_steps_per_epoch must be a positive integer"):
        LinearProbe(min_steps_per_epoch=0).check_params()


def test_default_rule_and_provenance() -> None:
    probe = LinearProbe()
    assert DEFAULT_MIN_STEPS_PER_EPOCH == 4
    assert probe.get_params()["min_steps_per_epoch"] == 4
    assert probe.batch_size_for(150) == 38 and probe.batch_size_for(10_000) == 1024


def _weak_signal(n: int, n_test: int, seed: int) -> tuple[np.ndarray, ...]:
    # 512-d, 6 classes, a weak linear signal under a decaying spectrum: like a
    # processing trace in real embeddings, where the one-step rule fell short.
    rng = np.random.default_rng(seed)
    dim, n_classes = 512, 6
    scales = 1.0 / np.sqrt(1.0 + np.arange(dim) / 8.0)
    directions = rng.normal(size=(n_classes, dim)) * scales
    y = np.arange(n) % n_classes
    y_test = np.arange(n_test) % n_classes
    x = rng.normal(size=(n, dim)) * scales + 0.2 * directions[y]
    x_test = rng.normal(size=(n_test, dim)) * scales + 0.2 * directions[y_test]
    return x.astype(np.float32), y, x_test.astype(np.float32), y_test


@pytest.mark.parametrize("seed", [1, 2])
def test_small_set_probe_lands_within_a_point_of_converged_lbfgs(seed: int) -> None:
    # 160 training samples, 3000 test samples (so that 1 point is 30 samples, not noise).
    x, y, x_test, y_test = _weak_signal(160, 3000, seed)
    kw = {"device": "cpu", "seed": 0}
    lbfgs = LinearProbe(mode="lbfgs", **kw).fit(x, y).evaluate(x_test, y_test).top1
    probe = LinearProbe(**kw).fit(x, y).evaluate(x_test, y_test).top1
    one_step = LinearProbe(min_steps_per_epoch=1, **kw).fit(x, y).evaluate(x_test, y_test).top1
    assert abs(probe - lbfgs) <= 0.01, (probe, lbfgs)
    # The old rule (batch 1024: one step per epoch) under-reads the same trace.
    assert lbfgs - one_step > 0.01, (one_step, lbfgs)
