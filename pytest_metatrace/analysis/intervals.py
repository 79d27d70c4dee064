"""The one confidence interval every gate compares: valid at every test-set size.

A gate fails a release when the *lower end* of a two-sided 95% interval lies
above its threshold, so its promise is one-sided: a trace exactly at the
threshold fails at most 2.5% of the time. The percentile bootstrap does not
keep that at small n or near 0 and 1 (bench/README.md, "Gate intervals"), so
:func:`gate_interval` uses methods whose error rate is a theorem, not an
asymptotic hope:

* scores that take only the two bound values (0/1 hits, {-1, 1} signs) are
  binomial counts: the **Clopper-Pearson** exact interval (Clopper & Pearson,
  Biometrika 1934), 2.5% per tail;
* any other bounded scores (means over classes and seeds, paired
  differences, shares, similarities, distances): a **betting** interval for a
  bounded mean (Waudby-Smith & Ramdas, "Estimating means of bounded random
  variables by betting", JRSS-B 2023, §4: hedged capital, predictable plug-in
  bets tuned for a fixed n). For a candidate mean ``m`` a gambler who starts
  with 1 bets on ``x_i - m`` with bets that depend only on earlier scores; if
  the true mean were ``m`` the capital would be a nonnegative martingale, so by
  Markov's inequality it reaches 1/α with probability at most α. Every ``m``
  at which it does is excluded. Valid for every n and every distribution
  within the bounds; the price is width (a Markov bound, not a normal one).

Choices made here beyond the paper (validity holds for any predictable bets,
so these only change power): the capital is a weighted average of 12
capitals (3 bet truncations ``c/m`` x 4 orders of the scores), an average of
e-values being an e-value; the running variance estimate starts from the
paper's prior (1/4) with weight 0.02 instead of 1 observation, so that scores
with a small spread inside wide bounds (drift, margins) are bet on after a few
images instead of a few thousand.

Two points where the guarantee rests on simulation rather than a theorem:

* Order. The martingale argument needs the scores in an order unrelated to
  their values, and callers list them by image, often grouped by class. The
  scores are therefore sorted and bet on in 4 *random* orders, which makes
  the interval depend on the set of scores only; exact for orders drawn
  afresh, the orders are drawn once from a fixed seed so that the interval is
  deterministic, as a seeded bootstrap is.
* The switch. Clopper-Pearson is exact for scores that are 0/1 by nature; a
  score type that merely happens to sit at its bounds in one sample (a probe's
  mean over classes, every image right) gets it too. That part alone still
  errs at most 2.5%: with P(score = upper) = a <= mean and P(score = lower)
  = b <= 1 - a, a sample of k uppers and n - k lowers has probability
  C(n, k) a^k b^(n-k) <= the Binomial(n, a) probability of k. The union with
  the betting part is only bounded by 5%.

bench/bench_intervals.py measures the deterministic procedure as shipped,
switch included: at most 2.5% false-fail in every cell.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import betaincinv

from pytest_metatrace.analysis.stats import DEFAULT_LEVEL, Interval

__all__ = [
    "METHOD_BETTING",
    "METHOD_CLOPPER_PEARSON",
    "Decidability",
    "IntervalError",
    "decidability",
    "gate_interval",
    "gate_lower_ends",
    "interval_provenance",
    "min_decidable_n",
]

#: ``Interval.method`` of an exact binomial interval (scores only at the two bounds).
METHOD_CLOPPER_PEARSON = "clopper-pearson"
#: ``Interval.method`` of a betting interval for a bounded mean.
METHOD_BETTING = "betting"

#: Bet truncations and their weights in the averaged capital: at candidate mean
#: m a bet is at most c/m, so one score at the lower bound costs at most a factor
#: 1 - c. c near 1 wins near the upper bound and for tight scores in wide
#: bounds; the small-c shares insure against scores at the lower bound. Chosen
#: by power on the bench's score models (bench/README.md); any choice is valid.
_TRUNCATIONS = ((0.5, 0.1), (0.75, 0.2), (0.95, 0.7))
#: Fixed orders the (sorted) scores are bet on, averaged.
_N_ORDERS = 4
_ORDER_SEED = 2023
#: Weight (in observations) of the prior mean 1/2 and variance 1/4 in the
#: plug-in estimates that size the bets.
_PRIOR_WEIGHT = 0.02
#: Bisection steps: the end is found to 2**-36 of the bounds' range, rounded outward.
_BISECTION_STEPS = 36
#: Scores this far (relative to the range) outside the bounds are float noise
#: (a float32 cosine of 1.0000001) and are clipped; further out they are refused.
_BOUNDS_TOLERANCE = 1e-6
#: min_decidable_n searches up to this n; beyond it reports "never" (None).
_MAX_DECIDABLE_N = 10**6
#: Rows x scores per vectorized block (memory stays at a few tens of MB).
_BLOCK = 1 << 18


class IntervalError(ValueError):
    """Scores a gate interval cannot be computed from; the message says why and what to fix."""


# --------------------------------------------------------------------------- input checks


def _check_bounds_level(bounds: Sequence[float], level: float) -> tuple[float, float, float]:
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise IntervalError(f"bounds must be two numbers (lower, upper), got {bounds!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise IntervalError(
            f"bounds must be finite with lower < upper, got {bounds!r}; give the range the "
            "per-image scores can take, e.g. (0, 1) for accuracies, (-1, 1) for differences"
        )
    try:
        lev = float(level)
    except (TypeError, ValueError):
        lev = math.nan
    if not 0.0 < lev < 1.0:
        raise IntervalError(f"confidence level must lie in (0, 1), e.g. 0.95; got {level!r}")
    return lo, hi, (1.0 - lev) / 2.0


def _unit_scores(scores: ArrayLike, lo: float, hi: float, *, ndim: int) -> np.ndarray:
    """Scores mapped to [0, 1]; refuses what no interval can be computed from."""
    try:
        arr = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise IntervalError(f"scores must be numbers, one per test image: {exc}") from None
    if arr.ndim != ndim:
        shape = "one score per test image (1-D)" if ndim == 1 else "one sample per row (2-D)"
        raise IntervalError(f"expected {shape}, got an array of shape {arr.shape}")
    if arr.shape[-1] == 0:
        raise IntervalError(
            "cannot compute an interval over zero test images; the audit produced no scores"
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.flatnonzero(bad.ravel())[0]) % arr.shape[-1]
        raise IntervalError(
            f"{int(bad.sum())} score(s) are not finite (NaN or infinite), the first at position "
            f"{first}; drop or fix those test images before gating"
        )
    span = hi - lo
    tol = _BOUNDS_TOLERANCE * span
    outside = (arr < lo - tol) | (arr > hi + tol)
    if outside.any():
        first = int(np.flatnonzero(outside.ravel())[0])
        raise IntervalError(
            f"{int(outside.sum())} score(s) lie outside the bounds ({lo:g}, {hi:g}), e.g. "
            f"{float(arr.ravel()[first]):g}; pass the bounds the scores can really take "
            "(bounds=(-1, 1) for paired differences of accuracies, (-2, 2) for differences "
            "of cosine similarities, (0, 2) for cosine distances)"
        )
    return np.clip((arr - lo) / span, 0.0, 1.0)


def _is_binary(unit: np.ndarray) -> np.ndarray:
    """Per row, whether all scores sit at one of the two bounds."""
    out: np.ndarray = np.all((unit == 0.0) | (unit == 1.0), axis=-1)
    return out


# --------------------------------------------------------------------------- Clopper-Pearson


def _cp_lower(k: np.ndarray, n: int, alpha1: float) -> np.ndarray:
    """Exact lower end: the mean p at which P(Binomial(n, p) >= k) = alpha1."""
    k = np.asarray(k, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        low = betaincinv(np.maximum(k, 1e-300), n - k + 1.0, alpha1)
    return np.where(k > 0, low, 0.0)


def _cp_upper(k: np.ndarray, n: int, alpha1: float) -> np.ndarray:
    return 1.0 - _cp_lower(n - np.asarray(k, dtype=np.float64), n, alpha1)


# --------------------------------------------------------------------------- betting


@lru_cache(maxsize=64)
def _orders(n: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(_ORDER_SEED)
    return tuple(rng.permutation(n) for _ in range(_N_ORDERS))


def _plugin_bets(x: np.ndarray, alpha1: float) -> np.ndarray:
    """Predictable plug-in bets for a fixed n (WSR 2023, eq. 26 with t log t -> n).

    ``lambda_t = sqrt(2 log(1/alpha) / (n sigma2_{t-1}))`` where sigma2 is a
    running variance of the scores seen *before* t, regularized toward 1/4.
    """
    n = x.shape[1]
    w = _PRIOR_WEIGHT
    t = np.arange(1, n + 1, dtype=np.float64)
    mu = (0.5 * w + np.cumsum(x, axis=1)) / (t + w)
    sigma2 = (0.25 * w + np.cumsum((x - mu) ** 2, axis=1)) / (t + w)
    prev = np.empty_like(sigma2)
    prev[:, 0] = 0.25
    prev[:, 1:] = sigma2[:, :-1]
    bets: np.ndarray = np.sqrt(2.0 * math.log(1.0 / alpha1) / (n * prev))
    return bets


def _betting_lower(unit: np.ndarray, alpha1: float) -> np.ndarray:
    """Lower end per row of ``unit`` (rows x n, values in [0, 1]).

    The smallest candidate mean m at which the averaged capital stays below
    1/alpha1. The capital is nonincreasing in m (each factor
    ``1 + min(lambda, c/m) (x - m)`` is), so bisection finds it; the end
    returned is the last m *excluded*, i.e. rounded outward.
    """
    rows, n = unit.shape
    out = np.empty(rows)
    orders = _orders(n)
    log_threshold = math.log(1.0 / alpha1)
    log_weights = [math.log(w / len(orders)) for _, w in _TRUNCATIONS]
    block = max(1, _BLOCK // (n * len(orders)))
    for start in range(0, rows, block):
        x = np.sort(unit[start : start + block], axis=1)
        # Fancy indexing along axis 1 returns Fortran order; row sums want C order (8x).
        arranged = [np.ascontiguousarray(x[:, order]) for order in orders]
        bets = [_plugin_bets(a, alpha1) for a in arranged]
        low = np.zeros(x.shape[0])
        high = np.ones(x.shape[0])
        for _ in range(_BISECTION_STEPS):
            m = 0.5 * (low + high)
            mc = m[:, None]
            logs = [
                log_w + np.log1p(np.minimum(lam, c / mc) * (a - mc)).sum(axis=1)
                for a, lam in zip(arranged, bets, strict=True)
                for (c, _), log_w in zip(_TRUNCATIONS, log_weights, strict=True)
            ]
            stacked = np.stack(logs)
            top = stacked.max(axis=0)
            log_mean = top + np.log(np.exp(stacked - top).sum(axis=0))
            excluded = log_mean >= log_threshold
            low = np.where(excluded, m, low)
            high = np.where(excluded, high, m)
        out[start : start + block] = low
    return out


# --------------------------------------------------------------------------- public


def _lower_unit(unit: np.ndarray, alpha1: float) -> np.ndarray:
    rows, n = unit.shape
    binary = _is_binary(unit)
    low = np.empty(rows)
    if binary.any():
        low[binary] = _cp_lower(unit[binary].sum(axis=1), n, alpha1)
    if (~binary).any():
        low[~binary] = _betting_lower(unit[~binary], alpha1)
    return low


def gate_interval(
    scores: ArrayLike,
    *,
    bounds: tuple[float, float] = (0.0, 1.0),
    level: float = DEFAULT_LEVEL,
) -> Interval:
    """The confidence interval a gate compares, valid at every number of test images.

    ``scores`` holds one score per statistical unit (test image or query):
    its 0/1 hit, its mean over classes and seeds, or its paired difference.
    ``bounds`` are the values a score can possibly take (not the values seen):
    (0, 1) for accuracies and shares, (-1, 1) for differences of them, (-2, 2)
    for differences of cosine similarities, (0, 2) for cosine distances.
    ``level`` is two-sided: each end is wrong at most (1 - level) / 2 of the
    time, whatever n and whatever the distribution of the scores.

    Scores that all sit at one of the two bounds get the exact Clopper-Pearson
    interval (``method == "clopper-pearson"``), any others a betting interval
    (``"betting"``); see the module docstring and :func:`interval_provenance`.
    Deterministic (no random state), and the same for any order of ``scores``.

    Raises :class:`IntervalError` for no scores, non-finite scores, scores
    outside ``bounds`` or a level outside (0, 1).
    """
    lo, hi, alpha1 = _check_bounds_level(bounds, level)
    unit = _unit_scores(scores, lo, hi, ndim=1)
    n = int(unit.shape[0])
    span = hi - lo
    estimate = float(np.asarray(scores, dtype=np.float64).mean())
    if bool(_is_binary(unit)):
        k = np.array([unit.sum()])
        u_low, u_high = float(_cp_lower(k, n, alpha1)[0]), float(_cp_upper(k, n, alpha1)[0])
        method = METHOD_CLOPPER_PEARSON
    else:
        both = np.stack([unit, 1.0 - unit])
        ends = _betting_lower(both, alpha1)
        u_low, u_high = float(ends[0]), 1.0 - float(ends[1])
        method = METHOD_BETTING
    # The ends are rounded outward; clamping to the estimate only widens further.
    return Interval(
        estimate=estimate,
        low=min(lo + span * u_low, estimate),
        high=max(lo + span * u_high, estimate),
        level=float(level),
        n=n,
        method=method,
    )


def gate_lower_ends(
    samples: ArrayLike,
    *,
    bounds: tuple[float, float] = (0.0, 1.0),
    level: float = DEFAULT_LEVEL,
) -> np.ndarray:
    """``gate_interval(row).low`` for every row of ``samples`` (rows x n), vectorized.

    For simulations (``bench/bench_intervals.py``, the calibration test): the
    same method choice per row (Clopper-Pearson for rows whose scores all sit
    at the bounds, betting otherwise) and the same numbers, without the
    estimate clamp (which cannot move a lower end above the row's mean).
    """
    lo, hi, alpha1 = _check_bounds_level(bounds, level)
    unit = _unit_scores(samples, lo, hi, ndim=2)
    return lo + (hi - lo) * _lower_unit(unit, alpha1)


def min_decidable_n(
    threshold: float,
    *,
    bounds: tuple[float, float] = (0.0, 1.0),
    level: float = DEFAULT_LEVEL,
    binary: bool = True,
) -> int | None:
    """The fewest test images at which a gate at ``threshold`` can fail at all.

    That is the smallest n at which the most extreme sample, every score at
    the upper bound, puts the interval's lower end above ``threshold``; below
    it no data can fail the gate, and the gate should report "too few test
    images to decide" instead of passing. ``binary=True`` for 0/1-type scores
    (Clopper-Pearson), False for other bounded scores (betting, which needs
    more). None when no n up to 10**6 suffices (a threshold at or above the
    upper bound never can be exceeded).
    """
    lo, hi, alpha1 = _check_bounds_level(bounds, level)
    if not math.isfinite(threshold):
        raise IntervalError(f"threshold must be a finite number, got {threshold!r}")
    u = (float(threshold) - lo) / (hi - lo)
    if u >= 1.0:
        return None

    def decides(n: int) -> bool:
        ones = np.ones((1, n))
        unit_low = _cp_lower(np.array([n]), n, alpha1) if binary else _betting_lower(ones, alpha1)
        return bool(unit_low[0] > u)

    if binary:
        # (alpha1)**(1/n) > u  <=>  n > log(alpha1) / log(u); check around it for rounding.
        guess = 1 if u <= 0.0 else max(1, math.floor(math.log(alpha1) / math.log(u)) + 1)
        if guess > _MAX_DECIDABLE_N:
            return None
        while guess > 1 and decides(guess - 1):
            guess -= 1
        while not decides(guess):
            guess += 1
        return guess
    # All-upper capital grows with n; search by doubling, then bisect.
    high = 1
    while not decides(high):
        if high >= _MAX_DECIDABLE_N:
            return None
        high = min(2 * high, _MAX_DECIDABLE_N)
    low = high // 2  # fails (or 0)
    while high - low > 1:
        mid = (low + high) // 2
        if decides(mid):
            high = mid
        else:
            low = mid
    return high


@dataclass(frozen=True)
class Decidability:
    """Whether a gate at a threshold can decide on the scores it was given."""

    n: int  #: number of scores (test images) given
    need: int | None  #: the fewest at which the gate can fail (None: no n can)
    method: str  #: the interval method those scores get

    @property
    def decidable(self) -> bool:
        """True when the gate can fail at this n (``n >= need``)."""
        return self.need is not None and self.n >= self.need

    def message(self) -> str:
        """One line for the terminal and the report."""
        if self.decidable:
            return f"decidable: {self.n} test images (at least {self.need} needed)"
        if self.need is None:
            return (
                f"too few test images to decide: {self.n}; no number of test images can put the "
                "interval above this threshold (it is at or above the highest possible score)"
            )
        return f"too few test images to decide: {self.n}, need at least {self.need}"


def decidability(
    scores: ArrayLike,
    threshold: float,
    *,
    bounds: tuple[float, float] = (0.0, 1.0),
    level: float = DEFAULT_LEVEL,
) -> Decidability:
    """Whether a gate at ``threshold`` can fail on these ``scores`` at all, given their number.

    Uses the method :func:`gate_interval` would use for them (scores all at the
    bounds: Clopper-Pearson; otherwise betting) and :func:`min_decidable_n`.
    """
    lo, hi, _ = _check_bounds_level(bounds, level)
    unit = _unit_scores(scores, lo, hi, ndim=1)
    binary = bool(_is_binary(unit))
    need = min_decidable_n(threshold, bounds=bounds, level=level, binary=binary)
    method = METHOD_CLOPPER_PEARSON if binary else METHOD_BETTING
    return Decidability(n=int(unit.shape[0]), need=need, method=method)


_PROVENANCE = {
    METHOD_CLOPPER_PEARSON: (
        "Clopper-Pearson exact binomial interval (every per-image score was at one of its two "
        "bounds, e.g. a 0/1 hit): each end is wrong at most {tail} of the time at every number "
        "of test images, with no approximation; chosen because it is exact for counts and "
        "narrower than any bound that must also hold for non-binary scores."
    ),
    METHOD_BETTING: (
        "Betting confidence interval for a bounded mean (Waudby-Smith & Ramdas, JRSS-B 2023: "
        "hedged capital, predictable plug-in bets): each end is wrong at most {tail} of the "
        "time at every number of test images and for any distribution of scores within their "
        "bounds (Markov's inequality on a nonnegative martingale; measured in bench/README.md). "
        "Chosen because these scores are not all 0/1 and no bootstrap keeps that promise for "
        "small test sets or means near a bound."
    ),
}


def interval_provenance(method: str, *, level: float = DEFAULT_LEVEL) -> str:
    """One or two sentences for the report's provenance: what ``method`` guarantees and why.

    ``method`` is an :attr:`Interval.method`: ``"clopper-pearson"`` or
    ``"betting"`` from :func:`gate_interval`, or a percentile-bootstrap
    description from :func:`~pytest_metatrace.analysis.stats.bootstrap_mean`.
    """
    tail = f"{(1.0 - level) / 2.0:.1%}"
    text = _PROVENANCE.get(method)
    if text is not None:
        return text.format(tail=tail)
    if "percentile bootstrap" in method:
        return (
            f"{method[0].upper()}{method[1:]}: a descriptive interval only; its error rate is "
            f"not guaranteed and exceeds {tail} for small test sets and means near 0 or 1 "
            "(bench/README.md, 'Gate intervals')."
        )
    known = ", ".join(repr(m) for m in _PROVENANCE)
    raise IntervalError(
        f"unknown interval method {method!r}; gate_interval() produces {known}, "
        "bootstrap_mean() a 'percentile bootstrap ...' description"
    )
