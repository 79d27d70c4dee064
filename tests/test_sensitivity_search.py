"""Tests of the sensitivity search: grids, bisection vs Hypothesis, the property, known answers.

The known-answer case is built from embeddings whose detection threshold is
set by construction: a step's embedding carries a feature proportional to
``max(0, size - s0)`` on top of image content and per-view noise, so steps up
to ``s0`` are indistinguishable from the reference and the first step past
it is detected. The search must find that step (within one grid step).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from pytest_metatrace.analysis.intervals import min_decidable_n
from pytest_metatrace.analysis.probe import LinearProbe, ProbeInputError
from pytest_metatrace.audits.sensitivity.analysis import (
    detect_step,
    paired_hits,
    sensitivity_search,
)
from pytest_metatrace.audits.sensitivity.search import (
    GRIDS,
    REFERENCE,
    StepGrid,
    bisect_bound,
    bisect_search,
    get_grid,
    hypothesis_search,
)
from pytest_metatrace.processing import get_processing

FAST_PROBE = LinearProbe(mode="lbfgs", lbfgs_c=1.0, device="cpu")


# --------------------------------------------------------------------------- grids
def test_grids_are_monotone_parametric_views() -> None:
    assert set(GRIDS) == {"jpeg", "sharpen", "resize"}
    assert GRIDS["jpeg"].names()[:2] == ["jpeg94_444", "jpeg93_444"]
    assert GRIDS["jpeg"].names()[-1] == "jpeg50_444"
    assert GRIDS["sharpen"].names()[:2] == ["sharpen1.05", "sharpen1.1"]
    assert GRIDS["sharpen"].names()[-1] == "sharpen3"
    assert GRIDS["resize"].names() == [f"resize0.{k}" for k in (95, 9, 85, 8, 75, 7, 65, 6, 55, 5)]
    for grid in GRIDS.values():
        sizes = [grid.size(i) for i in range(len(grid))]
        assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes) and sizes[0] > 0
        for name in grid.names():
            get_processing(name)  # every step is a valid view
    with pytest.raises(KeyError, match=r"unknown sensitivity parameter 'blur'.*jpeg"):
        get_grid("blur")
    with pytest.raises(ValueError, match="must grow away"):
        StepGrid("x", "x", "sharpen", (1.2, 1.1), 1.0, "factor")


# --------------------------------------------------------------------------- searches
@pytest.mark.parametrize("n", [1, 2, 10, 40, 45])
def test_bisection_finds_every_threshold_within_its_bound(n: int) -> None:
    for t in [*range(n), None]:
        out = bisect_search(lambda i, t=t: t is not None and i >= t, n)
        assert out.smallest == t
        assert out.evaluations <= bisect_bound(n)
        assert len(set(out.evaluated)) == out.evaluations


def test_hypothesis_finds_the_threshold_and_is_seeded() -> None:
    for t in (0, 3, 17, 44, None):
        prop = lambda i, t=t: t is not None and i >= t  # noqa: E731
        a = hypothesis_search(prop, 45, seed=0, max_examples=60)
        b = hypothesis_search(prop, 45, seed=0, max_examples=60)
        assert a.smallest == t
        assert a.evaluated == b.evaluated, "a seeded search repeats itself"


def test_hypothesis_replays_its_database(tmp_path: Path) -> None:
    calls: list[int] = []

    def prop(i: int) -> bool:
        calls.append(i)
        return i >= 17

    first = hypothesis_search(prop, 45, database=tmp_path / "db", database_key=b"k")
    assert first.smallest == 17 and first.evaluations > 3
    calls.clear()
    again = hypothesis_search(prop, 45, database=tmp_path / "db", database_key=b"k")
    assert again.smallest == 17
    assert set(calls) == {17}, "the rerun replays the stored minimal step and tries no other"
    with pytest.raises(ValueError, match="database_key"):
        hypothesis_search(prop, 45, database=tmp_path / "db")


def test_bisection_costs_fewer_evaluations_than_hypothesis() -> None:
    # The measurement behind the audit's default (README "Sensitivity"): on the 45-step
    # JPEG grid bisection needs at most 7 evaluations, Hypothesis's find many more.
    rows = []
    for t in (0, 5, 17, 30, 44):
        prop = lambda i, t=t: i >= t  # noqa: E731
        b = bisect_search(prop, 45)
        h = hypothesis_search(prop, 45, seed=0)
        assert b.smallest == h.smallest == t
        rows.append((b.evaluations, h.evaluations))
    assert all(b <= 7 for b, _ in rows)
    assert sum(h for _, h in rows) > 2 * sum(b for b, _ in rows)


# --------------------------------------------------------------------------- the property
def test_paired_hits_count_ties_as_misses() -> None:
    assert paired_hits([0.0, 1.0, 2.0], [1.0, 1.0, 1.0]).tolist() == [1.0, 0.0, 0.0]
    with pytest.raises(ProbeInputError, match="equal length"):
        paired_hits([0.0], [0.0, 1.0])


def _known_answer_views(
    names: list[str], grid: StepGrid, s0: float, n: int, *, dim: int = 16, seed: int = 0
) -> dict[str, np.ndarray]:
    """Embeddings of ``n`` images under each view: content + noise + a feature past ``s0``."""
    content = np.random.default_rng(seed).normal(size=(n, dim))
    direction = np.zeros(dim)
    direction[0] = 1.0
    unit = grid.size(1) - grid.size(0)  # the feature grows by 2 per grid step past s0
    sizes = {REFERENCE: 0.0, **{grid.name(i): grid.size(i) for i in range(len(grid))}}
    out = {}
    for name in names:
        digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
        noise = np.random.default_rng(int.from_bytes(digest[:8], "big")).normal(size=(n, dim))
        feature = 2.0 * max(0.0, sizes[name] - s0) / unit
        out[name] = (content + 0.3 * noise + feature * direction).astype(np.float32)
    return out


def test_detect_step_separates_a_trace_from_no_trace() -> None:
    grid = GRIDS["jpeg"]
    views = _known_answer_views([REFERENCE, "jpeg90_444", "jpeg80_444"], grid, 10.0, 80)
    train = {k: v[:40] for k, v in views.items()}
    test = {k: v[40:] for k, v in views.items()}
    none = detect_step(train, test, "jpeg90_444", probe=FAST_PROBE)  # size 5 <= s0
    some = detect_step(train, test, "jpeg80_444", probe=FAST_PROBE)  # size 15 > s0
    assert none.verdict == "not detected" and none.interval.low <= 0.55
    assert some.verdict == "detected" and some.interval.low > 0.55
    assert some.interval.method == "clopper-pearson" and some.n_test_images == 40
    assert some.need == min_decidable_n(0.55)
    few = detect_step(
        {k: v[:40] for k, v in views.items()},
        {k: v[40:44] for k, v in views.items()},
        "jpeg80_444",
        probe=FAST_PROBE,
    )
    assert few.verdict == "undecided" and few.accuracy == 1.0, "4 images cannot decide"
    with pytest.raises(ProbeInputError, match="margin"):
        detect_step(train, test, "jpeg80_444", probe=FAST_PROBE, margin=0.5)


class _KnownAnswerEmbeddings:
    """Stands in for the Embeddings facade: ``many``, ``split``, ``encoder``, counted reads."""

    def __init__(self, grid: StepGrid, s0: float, n: int = 80) -> None:
        self.grid, self.s0, self.n = grid, s0, n
        self.encoder = SimpleNamespace(fingerprint="known-answer")
        self.seed, self.test_fraction = 0, 0.5
        self.computed: list[str] = []

    def split(self, dataset: Any) -> Any:
        half = self.n // 2
        return SimpleNamespace(train=np.arange(half), test=np.arange(half, self.n))

    def many(self, dataset: Any, split: str, names: list[str]) -> dict[str, np.ndarray]:
        views = _known_answer_views(names, self.grid, self.s0, self.n)
        self.computed += [n for n in names if n != REFERENCE]
        idx = self.split(dataset).train if split == "train" else self.split(dataset).test
        return {k: v[idx] for k, v in views.items()}


DATASET = SimpleNamespace(fingerprint="known-answer-data", id="known")


@pytest.mark.parametrize(("parameter", "s0"), [("jpeg", 12.5), ("sharpen", 0.42)])
@pytest.mark.parametrize("method", ["bisect", "hypothesis"])
def test_search_finds_the_known_threshold(parameter: str, s0: float, method: str) -> None:
    grid = GRIDS[parameter]
    emb = _KnownAnswerEmbeddings(grid, s0)
    result = sensitivity_search(
        emb,  # type: ignore[arg-type]
        DATASET,  # type: ignore[arg-type]
        grid,
        probe=FAST_PROBE,
        method=method,
    )
    first_past = next(i for i in range(len(grid)) if grid.size(i) > s0)
    assert result.verdict == "detected"
    assert result.smallest_size is not None
    assert abs(grid.names().index(result.smallest or "") - first_past) <= 1
    assert result.smallest == grid.name(first_past)  # exact on this construction
    if method == "bisect":
        assert result.evaluations <= bisect_bound(len(grid))
    sizes = [s.size for s in result.steps]
    assert sizes == sorted(sizes), "steps are reported in grid order"
    assert all((s.verdict == "detected") == (s.size > s0) for s in result.steps)


def test_search_reruns_from_the_memo_and_computes_nothing(tmp_path: Path) -> None:
    grid = GRIDS["jpeg"]
    first_emb = _KnownAnswerEmbeddings(grid, 20.0)
    first = sensitivity_search(
        first_emb,  # type: ignore[arg-type]
        DATASET,  # type: ignore[arg-type]
        grid,
        probe=FAST_PROBE,
        cache_dir=tmp_path,
    )
    assert first.computed == first.evaluations > 0 and first_emb.computed
    memo = list((tmp_path / "sensitivity").glob("steps-*.json"))
    assert len(memo) == 1 and len(json.loads(memo[0].read_text())["steps"]) == first.evaluations
    again_emb = _KnownAnswerEmbeddings(grid, 20.0)
    again = sensitivity_search(
        again_emb,  # type: ignore[arg-type]
        DATASET,  # type: ignore[arg-type]
        grid,
        probe=FAST_PROBE,
        cache_dir=tmp_path,
    )
    assert again.computed == 0 and again_emb.computed == []
    assert again.to_dict() | {"wall_time_s": 0, "computed": 0} == first.to_dict() | {
        "wall_time_s": 0,
        "computed": 0,
    }
    # Another margin is another question: a new memo.
    other = sensitivity_search(
        _KnownAnswerEmbeddings(grid, 20.0),  # type: ignore[arg-type]
        DATASET,  # type: ignore[arg-type]
        grid,
        probe=FAST_PROBE,
        cache_dir=tmp_path,
        margin=0.1,
    )
    assert other.computed > 0
    assert len(list((tmp_path / "sensitivity").glob("steps-*.json"))) == 2


def test_hypothesis_search_replays_from_its_database_on_rerun(tmp_path: Path) -> None:
    grid = GRIDS["resize"]
    kwargs: dict[str, Any] = {"probe": FAST_PROBE, "method": "hypothesis", "cache_dir": tmp_path}
    first = sensitivity_search(
        _KnownAnswerEmbeddings(grid, 0.22),  # type: ignore[arg-type]
        DATASET,  # type: ignore[arg-type]
        grid,
        **kwargs,
    )
    assert first.smallest == "resize0.75"
    assert (tmp_path / "sensitivity" / "hypothesis").is_dir()
    emb = _KnownAnswerEmbeddings(grid, 0.22)
    again = sensitivity_search(emb, DATASET, grid, **kwargs)  # type: ignore[arg-type]
    assert again.smallest == "resize0.75" and again.computed == 0 and emb.computed == []
    assert again.evaluations == 1, "the database replays the minimal step first and only"


def test_too_few_test_images_is_undecided_and_tries_nothing() -> None:
    grid = GRIDS["jpeg"]
    emb = _KnownAnswerEmbeddings(grid, 5.0, n=10)  # 5 test images < min_decidable_n(0.55)
    result = sensitivity_search(
        emb,  # type: ignore[arg-type]
        DATASET,  # type: ignore[arg-type]
        grid,
        probe=FAST_PROBE,
    )
    assert result.verdict == "undecided" and result.steps == [] and emb.computed == []
    assert result.need == min_decidable_n(0.55) and result.n_test_images == 5
    with pytest.raises(ProbeInputError, match="unknown sensitivity search 'grid'"):
        sensitivity_search(emb, DATASET, grid, method="grid")  # type: ignore[arg-type]
