"""Step grids and the two searches for the smallest detectable step (stdlib + Hypothesis).

A :class:`StepGrid` lists one parameter's steps away from the reference
``jpeg95_444`` in increasing size: JPEG quality 94 down to 50 (4:4:4),
sharpening factor 1.05 up to 3, resize factor 0.95 down to 0.5. A property
``detected(i)`` says whether the encoder can tell grid step ``i`` from the
reference; both searches return the smallest index at which it holds.

* :func:`bisect_search` assumes the property is monotone (a larger change is
  no harder to detect): it evaluates the largest step, then halves the
  interval between the largest step known undetected and the smallest known
  detected, ``1 + ceil(log2 n)`` evaluations at most.
* :func:`hypothesis_search` hands the grid index to :func:`hypothesis.find`,
  whose shrinking finds the minimal index that satisfies the property; with
  an example database it replays that index first on the next run. It needs
  no monotonicity for finding *a* detectable step, but its answer is the
  smallest only where the shrinker's moves reach it (always, for a monotone
  property on one integer).

Hypothesis cannot be both seeded and keep a database: ``derandomize=True``
and a ``random`` passed to ``find`` each switch the database off. So
:func:`hypothesis_search` is deterministic (seeded) without a database, and
with one explores at random on its first run and replays afterwards; a
monotone property gives the same answer either way.

Both searches memoize the property, so no step is evaluated twice in one search.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from random import Random

from pytest_metatrace.processing.parametric import parametric_name

__all__ = [
    "GRIDS",
    "REFERENCE",
    "SEARCH_METHODS",
    "SearchOutcome",
    "StepGrid",
    "bisect_search",
    "get_grid",
    "hypothesis_search",
]

#: The view every step is compared with (every non-JPEG operation ends with it).
REFERENCE = "jpeg95_444"

#: The search methods, by option value.
SEARCH_METHODS = ("bisect", "hypothesis")


@dataclass(frozen=True)
class StepGrid:
    """One parameter's steps away from the reference, smallest change first."""

    parameter: str  #: gate key suffix, e.g. ``jpeg`` in ``sensitivity.jpeg``
    title: str  #: human-readable name of the parameter
    kind: str  #: parametric kind: ``jpeg``, ``sharpen`` or ``resize``
    values: tuple[float, ...]  #: the operation's parameter at each step
    reference_value: float  #: the parameter's value in the reference (95, 1, 1)
    unit: str  #: what a value is, for reports (``quality``, ``factor``)

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError(f"step grid {self.parameter!r} is empty")
        sizes = [self.size(i) for i in range(len(self.values))]
        if any(b <= a for a, b in itertools.pairwise(sizes)) or sizes[0] <= 0:
            raise ValueError(
                f"step grid {self.parameter!r} must grow away from the reference "
                f"({self.reference_value:g}): {self.values}"
            )

    def __len__(self) -> int:
        return len(self.values)

    def name(self, index: int) -> str:
        """The processing name of step ``index``, e.g. ``jpeg92_444``."""
        return parametric_name(self.kind, self.values[index])

    def size(self, index: int) -> float:
        """How far step ``index`` is from the reference (positive, growing with the index)."""
        return round(abs(self.values[index] - self.reference_value), 10)

    def names(self) -> list[str]:
        """Every step's processing name, smallest change first."""
        return [self.name(i) for i in range(len(self.values))]


def _linspace(start: float, stop: float, step: float) -> tuple[float, ...]:
    count = round((stop - start) / step)
    return tuple(round(start + k * step, 6) for k in range(count + 1))


#: The built-in grids, by parameter.
GRIDS: dict[str, StepGrid] = {
    g.parameter: g
    for g in (
        StepGrid(
            "jpeg",
            "JPEG quality (4:4:4)",
            "jpeg",
            tuple(float(q) for q in range(94, 49, -1)),
            95.0,
            "quality",
        ),
        StepGrid("sharpen", "Sharpening", "sharpen", _linspace(1.05, 3.0, 0.05), 1.0, "factor"),
        StepGrid("resize", "Downscaling", "resize", _linspace(0.95, 0.5, -0.05), 1.0, "factor"),
    )
}


def get_grid(parameter: str) -> StepGrid:
    """The built-in grid of ``parameter``, naming the known ones on error."""
    try:
        return GRIDS[parameter]
    except KeyError:
        raise KeyError(
            f"unknown sensitivity parameter {parameter!r}; known: {', '.join(GRIDS)}"
        ) from None


@dataclass
class SearchOutcome:
    """What a search found: the smallest detected index (or None) and what it evaluated."""

    method: str  #: ``bisect`` or ``hypothesis``
    smallest: int | None  #: smallest grid index where the property held; None: none held
    evaluated: list[int] = field(default_factory=list)  #: distinct indices, in evaluation order
    calls: int = 0  #: property calls including repeats (Hypothesis replays and shrinks)

    @property
    def evaluations(self) -> int:
        """Distinct steps evaluated (the cost: one probe fit, one view embedded)."""
        return len(self.evaluated)


class _Memo:
    """A property memoized by index, counting distinct evaluations and calls."""

    def __init__(self, prop: Callable[[int], bool]) -> None:
        self.prop = prop
        self.results: dict[int, bool] = {}
        self.order: list[int] = []
        self.calls = 0

    def __call__(self, index: int) -> bool:
        self.calls += 1
        if index not in self.results:
            self.results[index] = bool(self.prop(index))
            self.order.append(index)
        return self.results[index]


def bisect_search(prop: Callable[[int], bool], n: int) -> SearchOutcome:
    """Smallest ``i`` in ``0..n-1`` with ``prop(i)``, assuming ``prop`` is monotone.

    Evaluates ``n - 1`` first; if the largest step is not detected, none is
    (``smallest`` None). Otherwise keeps ``lo`` (largest index known
    undetected, -1 at first) and ``hi`` (smallest known detected) and tests
    their midpoint until they are adjacent: at most ``1 + ceil(log2 n)``
    evaluations.
    """
    if n < 1:
        raise ValueError(f"a search needs at least one step, got n={n}")
    memo = _Memo(prop)
    if not memo(n - 1):
        return SearchOutcome("bisect", None, memo.order, memo.calls)
    lo, hi = -1, n - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if memo(mid):
            hi = mid
        else:
            lo = mid
    return SearchOutcome("bisect", hi, memo.order, memo.calls)


def bisect_bound(n: int) -> int:
    """The most evaluations :func:`bisect_search` makes on ``n`` steps."""
    return 1 + math.ceil(math.log2(n)) if n > 1 else 1


def hypothesis_search(
    prop: Callable[[int], bool],
    n: int,
    *,
    max_examples: int = 50,
    seed: int = 0,
    database: Path | None = None,
    database_key: bytes | None = None,
) -> SearchOutcome:
    """Smallest ``i`` in ``0..n-1`` with ``prop(i)``, found by :func:`hypothesis.find`.

    ``find`` draws indices until the property holds, then shrinks to the
    smallest index that still satisfies it. ``max_examples`` bounds the
    draws; there is no deadline (a step costs a probe fit). With ``database``
    (a folder) the minimal index is stored under ``database_key`` and
    replayed first next time, and the draws are Hypothesis's own (a seed
    would switch the database off); without one the search is seeded by
    ``seed`` and deterministic. ``smallest`` is None when no draw held.
    """
    from hypothesis import HealthCheck, find, settings
    from hypothesis import strategies as st
    from hypothesis.database import DirectoryBasedExampleDatabase
    from hypothesis.errors import NoSuchExample

    if n < 1:
        raise ValueError(f"a search needs at least one step, got n={n}")
    if database is not None and database_key is None:
        raise ValueError("a Hypothesis database needs a database_key naming the search")
    memo = _Memo(prop)
    config = settings(
        max_examples=max_examples,
        deadline=None,
        database=DirectoryBasedExampleDatabase(str(database)) if database is not None else None,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    try:
        found = find(
            st.integers(min_value=0, max_value=n - 1),
            memo,
            settings=config,
            random=None if database is not None else Random(seed),
            database_key=database_key,
        )
    except NoSuchExample:
        return SearchOutcome("hypothesis", None, memo.order, memo.calls)
    return SearchOutcome("hypothesis", int(found), memo.order, memo.calls)
