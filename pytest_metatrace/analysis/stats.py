"""Confidence intervals shared by every audit.

The statistical unit is the *test image*: a processing probe scores each test
image under every class and over several seeds, and a kNN audit scores it
under every ordered pair of classes; those scores are not independent, so
intervals resample images (a cluster bootstrap), each image carrying the mean
of all its scores. The mean of those per-image scores equals the accuracy
averaged over seeds / pairs, so the point estimate is unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "DEFAULT_BOOTSTRAP",
    "DEFAULT_LEVEL",
    "Interval",
    "bootstrap_mean",
    "bootstrap_mean_diff",
]

#: Two-sided confidence level; a gate compares the lower end, i.e. a one-sided test at 97.5%.
DEFAULT_LEVEL = 0.95
#: Number of bootstrap resamples; enough for stable 2.5% / 97.5% percentiles.
DEFAULT_BOOTSTRAP = 2000


@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval around an estimate."""

    estimate: float  #: the point estimate (mean over all items)
    low: float  #: lower end of the interval
    high: float  #: upper end of the interval
    level: float  #: confidence level, e.g. 0.95
    n: int  #: number of units (test images) it was computed over
    #: how it was computed, for the report: ``"clopper-pearson"`` or ``"betting"``
    #: (:func:`~pytest_metatrace.analysis.intervals.gate_interval`) or a percentile
    #: bootstrap description (:func:`bootstrap_mean`); empty when not recorded
    method: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Interval:
        """Inverse of :meth:`to_dict`; reads documents written before or after this version.

        A missing ``method`` reads as ``""``; keys this version does not know are
        ignored, so that a report written by a newer plugin still loads.
        """
        known = {f.name for f in fields(cls)}
        missing = sorted(
            name for name in ("estimate", "low", "high", "level", "n") if name not in data
        )
        if missing:
            raise ValueError(f"an interval needs {', '.join(missing)}; got keys {sorted(data)}")
        return cls(**{k: v for k, v in data.items() if k in known})


def _percentile_bootstrap(
    values: np.ndarray, *, level: float, n_boot: int, seed: int, method: str
) -> Interval:
    if values.ndim != 1:
        raise ValueError(f"expected one value per item, got shape {values.shape}")
    n = int(values.shape[0])
    if n == 0:
        raise ValueError("cannot compute an interval over zero items")
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must lie in (0, 1), got {level!r}")
    estimate = float(values.mean())
    rng = np.random.default_rng(seed)
    # Resample in blocks so memory stays at a few MB whatever n is.
    means = np.empty(n_boot, dtype=np.float64)
    block = max(1, 4_000_000 // n)
    for start in range(0, n_boot, block):
        stop = min(n_boot, start + block)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    # Clamp: the percentile interval always brackets the estimate in exact
    # arithmetic; guard against float noise for degenerate (constant) data.
    return Interval(
        estimate=estimate,
        low=float(min(low, estimate)),
        high=float(max(high, estimate)),
        level=level,
        n=n,
        method=method,
    )


def bootstrap_mean(
    values: ArrayLike,
    *,
    level: float = DEFAULT_LEVEL,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> Interval:
    """Percentile-bootstrap interval of the mean of per-item ``values``.

    ``values[i]`` is item i's score averaged over everything it was scored
    under (classes, seeds, pairs). Deterministic for a given ``seed``.
    """
    arr = np.asarray(values, dtype=np.float64)
    return _percentile_bootstrap(
        arr,
        level=level,
        n_boot=n_boot,
        seed=seed,
        method=f"percentile bootstrap over {arr.shape[0] if arr.ndim else 0} test images, "
        f"{n_boot} resamples",
    )


def bootstrap_mean_diff(
    a: ArrayLike,
    b: ArrayLike,
    *,
    level: float = DEFAULT_LEVEL,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> Interval:
    """Paired percentile-bootstrap interval of ``mean(a) - mean(b)``.

    ``a[i]`` and ``b[i]`` are the same item's scores under two settings (e.g.
    kNN accuracy under pos-same and all-same); resampling pairs keeps the
    correlation between them, which makes the interval much tighter than two
    independent ones.
    """
    xa = np.asarray(a, dtype=np.float64)
    xb = np.asarray(b, dtype=np.float64)
    if xa.shape != xb.shape:
        raise ValueError(f"paired values must have the same shape, got {xa.shape} and {xb.shape}")
    return _percentile_bootstrap(
        xa - xb,
        level=level,
        n_boot=n_boot,
        seed=seed,
        method=f"paired percentile bootstrap over {xa.shape[0] if xa.ndim else 0} test images, "
        f"{n_boot} resamples",
    )
