"""The gate interval: exact values, betting against a plain re-implementation, refusals,
the fewest test images a gate needs, and its error rate by (reduced) simulation.

The full table (n up to 1000, 4000 test sets per cell) is bench/bench_intervals.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest

import pytest_metatrace
from pytest_metatrace.analysis import intervals
from pytest_metatrace.analysis.intervals import (
    METHOD_BETTING,
    METHOD_CLOPPER_PEARSON,
    IntervalError,
    decidability,
    gate_interval,
    gate_lower_ends,
    interval_provenance,
    min_decidable_n,
)
from pytest_metatrace.analysis.stats import Interval, bootstrap_mean

ALPHA1 = 0.025

# --------------------------------------------------------------------------- Clopper-Pearson


@pytest.mark.parametrize(
    ("k", "n"), [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (47, 50), (140, 150), (999, 1000)]
)
def test_zero_one_scores_get_the_exact_clopper_pearson_interval(k, n):
    scores = np.r_[np.ones(k), np.zeros(n - k)]
    iv = gate_interval(scores)
    ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    assert iv.method == METHOD_CLOPPER_PEARSON
    assert (iv.n, iv.level, iv.estimate) == (n, 0.95, k / n)
    assert iv.low == pytest.approx(ref.low, abs=1e-12)
    assert iv.high == pytest.approx(ref.high, abs=1e-12)


def test_clopper_pearson_on_signs_maps_the_bounds():
    # paired differences of 0/1 scores that are all discordant: +-1 at bounds (-1, 1)
    d = np.r_[np.ones(18), -np.ones(2)]
    iv = gate_interval(d, bounds=(-1, 1))
    ref = binomtest(18, 20).proportion_ci(confidence_level=0.95, method="exact")
    assert iv.method == METHOD_CLOPPER_PEARSON
    assert iv.estimate == pytest.approx(0.8)
    assert iv.low == pytest.approx(2 * ref.low - 1, abs=1e-12)
    assert iv.high == pytest.approx(2 * ref.high - 1, abs=1e-12)


def test_two_right_images_are_not_a_significant_hundred_percent():
    # the example: two test images both right gave [100%, 100%]
    iv = gate_interval([1.0, 1.0])
    assert iv.low == pytest.approx(math.sqrt(ALPHA1))  # 0.158: P(2 of 2 | p) = p^2 = 2.5%
    assert iv.high == 1.0
    assert bootstrap_mean([1.0, 1.0]).low == 1.0  # what the percentile bootstrap said


def test_level_is_two_sided():
    scores = np.r_[np.ones(30), np.zeros(10)]
    ref = binomtest(30, 40).proportion_ci(confidence_level=0.8, method="exact")
    assert gate_interval(scores, level=0.8).low == pytest.approx(ref.low, abs=1e-12)


# --------------------------------------------------------------------------- betting


def _oracle_betting_lower(x: np.ndarray, grid_step: float) -> float:
    """WSR 2023 hedged-capital lower end, written as plain loops over a grid of m.

    Same constants as the module (bet limits and weights, prior weight, the
    fixed orders), independent arithmetic: returns the largest grid m below
    the first candidate mean that is not excluded.
    """
    n = len(x)
    xs = np.sort(x)
    arrangements = [[float(xs[i]) for i in order] for order in intervals._orders(n)]
    w = intervals._PRIOR_WEIGHT
    bets = []
    for arr in arrangements:
        lam, s_x, s_d = [], 0.0, 0.0
        var_prev = 0.25
        for t, xt in enumerate(arr, start=1):
            lam.append(math.sqrt(2 * math.log(1 / ALPHA1) / (n * var_prev)))
            s_x += xt
            mu_t = (0.5 * w + s_x) / (t + w)
            s_d += (xt - mu_t) ** 2
            var_prev = (0.25 * w + s_d) / (t + w)
        bets.append(lam)
    previous = 0.0
    for m in np.arange(grid_step, 1.0, grid_step):
        capital = 0.0
        for arr, lam in zip(arrangements, bets):
            for c, weight in intervals._TRUNCATIONS:
                k = 1.0
                for xt, lt in zip(arr, lam):
                    k *= 1.0 + min(lt, c / m) * (xt - m)
                capital += weight / len(arrangements) * k
        if capital < 1 / ALPHA1:
            return previous
        previous = float(m)
    return previous


@pytest.mark.parametrize(
    "scores",
    [
        [5 / 6, 1, 1, 4 / 6, 1, 5 / 6, 1, 1, 0.5, 1, 5 / 6, 1],  # a probe's mean over 6 classes
        [0.7] * 15,  # constant, inside the bounds
        [0.02, 0.05, 0.01, 0.04, 0.03, 0.02, 0.06, 0.01] * 3,  # tight, near the lower bound
    ],
)
def test_betting_lower_end_matches_a_plain_implementation(scores):
    x = np.asarray(scores, dtype=float)
    step = 1e-3
    want = _oracle_betting_lower(x, step)
    iv = gate_interval(x)
    assert iv.method == METHOD_BETTING
    assert want <= iv.low <= want + step + 1e-9


def test_betting_interval_properties():
    rng = np.random.default_rng(4)
    x = rng.binomial(6, rng.beta(8, 2, 80)) / 6
    iv = gate_interval(x)
    assert iv.method == METHOD_BETTING
    assert iv.low < x.mean() < iv.high
    assert iv == gate_interval(x[::-1])  # the set of scores decides, not their order
    assert iv == gate_interval(list(x))  # deterministic
    flipped = gate_interval(1 - x)  # the upper end is the lower end of the reflected scores
    assert flipped.low == pytest.approx(1 - iv.high, abs=1e-9)
    assert flipped.high == pytest.approx(1 - iv.low, abs=1e-9)
    shifted = gate_interval(2 * x - 1, bounds=(-1, 1))  # bounds are an affine map
    assert shifted.low == pytest.approx(2 * iv.low - 1, abs=1e-9)


def test_betting_narrows_with_n_and_adapts_to_spread():
    widths = [gate_interval(np.full(n, 0.7)).low for n in (20, 200, 2000)]
    assert widths[0] < widths[1] < widths[2] < 0.7
    assert widths[2] > 0.69  # a constant sample pins the mean down quickly
    rng = np.random.default_rng(0)
    drift = rng.gamma(2.0, 0.005, 300)  # cosine distances of ~0.01 in bounds (0, 2)
    iv = gate_interval(drift, bounds=(0, 2))
    assert 0.005 < iv.low < drift.mean()  # decides a 0.005 drift threshold at n = 300


def test_scores_not_at_the_bounds_are_not_binary():
    # 0/1 values inside bounds (-1, 1) are differences, not hits: betting
    assert gate_interval([0.0, 1.0, 1.0], bounds=(-1, 1)).method == METHOD_BETTING
    assert gate_interval([0.0, 0.5, 1.0]).method == METHOD_BETTING


def test_vectorized_lower_ends_equal_the_interval():
    rng = np.random.default_rng(1)
    rows = np.vstack(
        [
            rng.binomial(1, 0.8, (3, 40)).astype(float),
            rng.binomial(6, 0.8, (3, 40)) / 6,
        ]
    )
    lows = gate_lower_ends(rows)
    want = [gate_interval(r).low for r in rows]
    np.testing.assert_allclose(lows, want, rtol=0, atol=1e-12)


def test_float_noise_at_the_bounds_is_accepted():
    iv = gate_interval([1.0000001, 0.5, 0.9], bounds=(0, 1))
    assert iv.high <= 1.0 + 1e-6


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("scores", "kwargs", "message"),
    [
        ([], {}, "zero test images"),
        ([0.5, float("nan")], {}, "not finite .* position 1"),
        ([0.5, float("inf")], {}, "not finite"),
        ([0.5, 1.2], {}, r"outside the bounds \(0, 1\), e.g. 1.2"),
        ([-0.3], {}, "outside the bounds"),
        ([[0.5, 0.5]], {}, "one score per test image"),
        (["a"], {}, "must be numbers"),
        ([0.5], {"bounds": (1, 0)}, "lower < upper"),
        ([0.5], {"bounds": (0, float("inf"))}, "finite"),
        ([0.5], {"bounds": (0,)}, "two numbers"),
        ([0.5], {"level": 1.0}, r"confidence level must lie in \(0, 1\)"),
        ([0.5], {"level": "high"}, "confidence level"),
    ],
)
def test_refusals_say_what_is_wrong(scores, kwargs, message):
    with pytest.raises(IntervalError, match=message):
        gate_interval(scores, **kwargs)


def test_interval_error_is_a_value_error():
    assert issubclass(IntervalError, ValueError)
    with pytest.raises(IntervalError, match="one sample per row"):
        gate_lower_ends([0.5, 0.5])


# --------------------------------------------------------------------------- Interval JSON


def test_interval_round_trips_and_reads_old_and_newer_documents():
    iv = gate_interval([1, 0, 1, 1])
    assert Interval.from_dict(iv.to_dict()) == iv
    assert Interval(**iv.to_dict()) == iv
    old = {"estimate": 0.5, "low": 0.4, "high": 0.6, "level": 0.95, "n": 10}
    assert Interval.from_dict(old).method == ""
    assert Interval(**old).method == ""
    newer = {**iv.to_dict(), "one_sided": True}
    assert Interval.from_dict(newer) == iv
    with pytest.raises(ValueError, match="needs high, low"):
        Interval.from_dict({"estimate": 0.5, "level": 0.95, "n": 3})


# --------------------------------------------------------------------------- decidability


def test_min_decidable_n_binary():
    # 0.025 ** (1 / n) > 0.9  <=>  n > 35.01
    assert min_decidable_n(0.9) == 36
    assert gate_interval(np.ones(36)).low > 0.9 >= gate_interval(np.ones(35)).low
    assert min_decidable_n(0.8, bounds=(-1, 1)) == 36  # the same point of the range
    assert min_decidable_n(0.5) == 6
    assert min_decidable_n(-0.1) == 1
    assert min_decidable_n(1.0) is None
    assert min_decidable_n(0.9, level=0.8) < 36


def test_min_decidable_n_betting():
    need = min_decidable_n(0.9, binary=False)
    assert need is not None and need > min_decidable_n(0.9)  # betting pays for generality
    lows = intervals._betting_lower(np.ones((2, need)), ALPHA1)
    before = intervals._betting_lower(np.ones((1, need - 1)), ALPHA1)
    assert lows[0] > 0.9 >= before[0]
    assert min_decidable_n(1.0, binary=False) is None
    with pytest.raises(IntervalError, match="finite"):
        min_decidable_n(float("nan"))


def test_decidability_names_the_numbers():
    few = decidability(np.ones(20), 0.9)
    assert (few.n, few.need, few.method, few.decidable) == (20, 36, METHOD_CLOPPER_PEARSON, False)
    assert few.message() == "too few test images to decide: 20, need at least 36"
    enough = decidability(np.r_[np.ones(39), 0.5], 0.9)
    assert enough.method == METHOD_BETTING
    assert enough.need == min_decidable_n(0.9, binary=False)
    never = decidability([1.0, 1.0], 1.0)
    assert not never.decidable and "no number of test images" in never.message()


# --------------------------------------------------------------------------- provenance


def test_provenance_says_what_is_guaranteed_and_why():
    cp = interval_provenance(METHOD_CLOPPER_PEARSON)
    bet = interval_provenance(METHOD_BETTING)
    assert "Clopper-Pearson" in cp and "2.5%" in cp and "exact" in cp
    assert "Waudby-Smith & Ramdas" in bet and "2.5%" in bet and "every number" in bet
    assert "5.0%" in interval_provenance(METHOD_BETTING, level=0.9)
    boot = interval_provenance(bootstrap_mean([0.1, 0.2]).method)
    assert boot.startswith("Percentile bootstrap over 2 test images") and "not guaranteed" in boot
    with pytest.raises(IntervalError, match="unknown interval method 'bca'"):
        interval_provenance("bca")


def test_gate_interval_is_exported():
    assert pytest_metatrace.gate_interval is gate_interval
    assert pytest_metatrace.IntervalError is IntervalError


# --------------------------------------------------------------------------- calibration

REPS = 2000
# A cell fails the promise when its false-fail rate exceeds 2.5% by three simulation SEs.
LIMIT = ALPHA1 + 3 * math.sqrt(ALPHA1 * (1 - ALPHA1) / REPS)


def _draw(kind: str, truth: float, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "0/1":
        return rng.binomial(1, truth, (REPS, n)).astype(float)
    if kind == "mean of 6":  # heterogeneous images, then 6 scores each (bench model)
        return rng.binomial(6, rng.beta(10 * truth, 10 * (1 - truth), (REPS, n))) / 6
    u = rng.random((REPS, n))  # paired 0/1 differences (bench model)
    q_neg, q_tie = 0.1 * (1 - truth), 0.8 * (1 - truth)
    return np.where(u < q_neg, -1.0, np.where(u < q_neg + q_tie, 0.0, 1.0))


@pytest.mark.parametrize(
    ("kind", "n", "truth"),
    [
        ("0/1", 10, 0.5),
        ("0/1", 10, 0.95),
        ("0/1", 50, 0.8),
        ("0/1", 150, 0.95),
        ("mean of 6", 10, 0.5),
        ("mean of 6", 10, 0.95),
        ("mean of 6", 50, 0.8),
        ("mean of 6", 150, 0.95),
        ("paired", 25, 0.5),
        ("paired", 150, 0.8),
    ],
)
def test_false_fail_rate_at_the_threshold_is_at_most_two_and_a_half_percent(kind, n, truth):
    rng = np.random.default_rng([16, n, round(truth * 100), len(kind)])
    bounds = (-1.0, 1.0) if kind == "paired" else (0.0, 1.0)
    lows = gate_lower_ends(_draw(kind, truth, n, rng), bounds=bounds)
    false_fail = float(np.mean(lows > truth))
    assert false_fail <= LIMIT, f"{kind} n={n} true={truth}: {false_fail:.2%} > {LIMIT:.2%}"


def test_the_percentile_bootstrap_breaks_the_promise_where_the_gate_keeps_it():
    rng = np.random.default_rng(7)
    x = rng.binomial(1, 0.95, (400, 25)).astype(float)
    boot = np.mean([bootstrap_mean(row).low > 0.95 for row in x])
    assert boot > 0.15  # every all-right test set gives [100%, 100%]: 0.95**25 = 28%
    assert np.mean(gate_lower_ends(x) > 0.95) == 0.0


@pytest.mark.parametrize(
    ("kind", "n", "truth", "power"),
    [("0/1", 150, 0.95, 0.9), ("mean of 6", 50, 0.95, 0.75), ("mean of 6", 150, 0.8, 0.95)],
)
def test_a_trace_well_above_its_threshold_fails_the_gate(kind, n, truth, power):
    rng = np.random.default_rng([3, n])
    lows = gate_lower_ends(_draw(kind, truth, n, rng))
    assert np.mean(lows > truth - 0.1) >= power
