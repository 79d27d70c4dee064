"""Bootstrap intervals, records and their JSON form, and progress lines."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pytest_metatrace.analysis.stats import bootstrap_mean, bootstrap_mean_diff
from pytest_metatrace.progress import Progress
from pytest_metatrace.results import GateOutcome, Record, jsonable


def test_constant_scores_give_a_degenerate_interval():
    iv = bootstrap_mean(np.ones(50))
    assert (iv.estimate, iv.low, iv.high, iv.n) == (1.0, 1.0, 1.0, 50)


def test_interval_brackets_the_mean_and_is_seeded():
    rng = np.random.default_rng(3)
    x = rng.random(200)
    a, b = bootstrap_mean(x, seed=7), bootstrap_mean(x, seed=7)
    assert a == b
    assert a.low < x.mean() < a.high
    assert a.estimate == pytest.approx(x.mean())
    assert bootstrap_mean(x, seed=8) != a


def test_interval_width_matches_the_binomial_standard_error():
    # 400 fair coin flips: the 95% interval should be about +-1.96 * 0.025 wide
    x = np.array([0, 1] * 200, dtype=float)
    iv = bootstrap_mean(x, n_boot=4000)
    assert iv.high - iv.low == pytest.approx(2 * 1.96 * 0.025, rel=0.1)
    narrow = bootstrap_mean(x, level=0.5, n_boot=4000)
    assert narrow.high - narrow.low < iv.high - iv.low


def test_paired_difference_is_tighter_than_independent_intervals():
    rng = np.random.default_rng(0)
    base = rng.random(300)  # per-image difficulty, shared by both settings
    a = base + 0.02
    b = base + rng.normal(0, 0.005, 300)
    paired = bootstrap_mean_diff(a, b)
    assert paired.low > 0  # the 2-point shift is detected
    assert paired.estimate == pytest.approx(float(np.mean(a - b)))
    ia, ib = bootstrap_mean(a), bootstrap_mean(b)
    assert ia.low < ib.high  # separately, the two intervals overlap
    assert paired.high - paired.low < (ia.high - ia.low) / 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((np.zeros((3, 2)),), "one value per item"),
        ((np.zeros(0),), "zero items"),
    ],
)
def test_interval_input_errors(args, message):
    with pytest.raises(ValueError, match=message):
        bootstrap_mean(*args)


def test_interval_level_and_shape_checks():
    with pytest.raises(ValueError, match="confidence level"):
        bootstrap_mean(np.ones(3), level=1.0)
    with pytest.raises(ValueError, match="same shape"):
        bootstrap_mean_diff(np.ones(3), np.ones(4))


def test_jsonable_makes_strict_json():
    data = {
        "nan": float("nan"),
        "inf": -math.inf,
        "np": np.float32(0.5),
        "arr": np.arange(3),
        "tuple": (1, (2, 3)),
        4: "int key",
    }
    out = jsonable(data)
    assert out == {
        "nan": None,
        "inf": None,
        "np": 0.5,
        "arr": [0, 1, 2],
        "tuple": [1, [2, 3]],
        "4": "int key",
    }
    json.dumps(out, allow_nan=False)


def test_record_round_trips_through_json():
    rec = Record(
        audit="processing_probe",
        metric="top1",
        value=0.7,
        encoder="e",
        dataset="d",
        parameter="jpeg",
        interval={"low": 0.6, "high": 0.8, "level": 0.95},
        chance=1 / 6,
        gate=GateOutcome("probe.jpeg", 0.6, "0.6", "default", "interval low", True, "ok"),
        details={"confusion": np.eye(2, dtype=int), "missing": float("nan")},
    )
    data = json.loads(rec.to_json())
    assert data["details"] == {"confusion": [[1, 0], [0, 1]], "missing": None}
    back = Record.from_dict(data)
    assert back.gate == rec.gate
    assert back.to_dict() == rec.to_dict()


def test_progress_is_rate_limited_and_reports_rate_and_eta():
    now = [0.0]
    lines: list[str] = []
    updates: list[str] = []
    progress = Progress(lines.append, update=updates.append, interval=5.0, clock=lambda: now[0])
    progress.start("embedding demo", 100)
    for _ in range(10):
        now[0] += 1.0
        progress.advance(5)  # 5 per second
    progress.finish()
    assert lines[0] == "metatrace: embedding demo: 0/100"
    # one redraw every 5 s: at t=5 (25 done) and t=10 (50 done)
    assert updates == [
        "metatrace: embedding demo: 25/100 (25%), 5.0 img/s, ETA 15s",
        "metatrace: embedding demo: 50/100 (50%), 5.0 img/s, ETA 10s",
    ]
    assert lines[-1] == "metatrace: embedding demo: done, 50 in 10s (5.0 img/s)"
