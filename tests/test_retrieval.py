"""Tests of the cross-camera retrieval engine (docs/protocol.md §6) on constructed embeddings."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_metatrace.audits.cross_camera_retrieval.analysis import (
    CrossCameraRetrieval,
    RetrievalInputError,
    RetrievalResult,
    _chunk_rows,
)

CAMS = ("camera", "smartphone")


def _unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def _angles(a: list[float], b: list[float]) -> RetrievalResult:
    return CrossCameraRetrieval(n_boot=200).evaluate(
        [_unit(x) for x in a], [_unit(x) for x in b], cameras=CAMS, subjects=["s0", "s1", "s2"]
    )


def _cos(deg: float) -> float:
    return math.cos(math.radians(deg))


def test_known_answer_on_unit_circle():
    # camera photos at 0, 5, 90 degrees; smartphone photos at 10, 60, 100 degrees.
    result = _angles([0, 5, 90], [10, 60, 100])
    cam = result.query("camera")
    # s0: positive at 10 deg; same-camera s1 at 5 deg beats it, other phones do not.
    # s1: positive at 55 deg; camera s0 (5 deg) and phone s0 (5 deg) beat it.
    # s2: positive at 10 deg; nothing closer in either database.
    assert cam.same.rank == [2, 2, 1]
    assert cam.different.rank == [1, 2, 1]
    assert cam.same.recall_at_1 == [0, 0, 1]
    assert cam.different.recall_at_1 == [1, 0, 1]
    assert cam.same.hardest == [1, 0, 1]
    assert cam.different.hardest == [1, 0, 1]
    assert cam.same.margin == pytest.approx(
        [_cos(10) - _cos(5), _cos(55) - _cos(5), _cos(10) - _cos(85)], abs=1e-6
    )
    assert cam.different.margin == pytest.approx(
        [_cos(10) - _cos(60), _cos(55) - _cos(5), _cos(10) - _cos(30)], abs=1e-6
    )
    assert cam.recall_gap == pytest.approx(1 / 3)
    assert cam.mrr_gap == pytest.approx(((1 + 0.5 + 1) - (0.5 + 0.5 + 1)) / 3)
    # Phone queries. s0 (10 deg): camera s1 (5 deg off) beats the positive (10 deg off) in
    # "different". s1 (60 deg): phones s0 (50 off) and s2 (40 off) beat the positive (55 off)
    # in "same", camera s2 (30 off) in "different". s2 (100 deg): found first in both.
    phone = result.query("smartphone")
    assert phone.same.rank == [1, 3, 1]
    assert phone.different.rank == [2, 2, 1]
    assert phone.recall_gap == pytest.approx(-1 / 3)


def test_ties_rank_the_positive_behind_and_pick_the_lowest_index():
    # Subject 0's camera photo equals subject 1's and 2's: a tie with the positive.
    a = [[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]
    b = [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]
    result = CrossCameraRetrieval(n_boot=50).evaluate(a, b, cameras=CAMS, subjects=["x", "y", "z"])
    cam = result.query("camera")
    # s0: positive at similarity 1, two same-camera negatives also at 1 -> both rank ahead.
    assert cam.same.rank == [3, 3, 3]
    assert cam.same.recall_at_1 == [0, 0, 0]
    assert cam.same.margin == [0.0, -1.0, -1.0]
    assert cam.same.hardest == [1, 0, 0]  # lowest index among the tied hardest negatives
    # different: s0's negatives are orthogonal (rank 1); s1's positive (0) ties with phone s2 (0)
    # and loses to phone s0 (1) -> rank 3.
    assert cam.different.rank == [1, 3, 3]
    assert cam.different.recall_at_1 == [1, 0, 0]
    assert cam.different.margin == [1.0, -1.0, -1.0]


def test_collapsed_encoder_scores_zero_recall_and_last_rank():
    same = np.ones((4, 3))
    result = CrossCameraRetrieval(n_boot=50).evaluate(
        same, same, cameras=CAMS, subjects=list("abcd")
    )
    for r in result.by_query:
        for setting in (r.same, r.different):
            assert setting.recall_at_1 == [0, 0, 0, 0]
            assert setting.rank == [4, 4, 4, 4]
            assert setting.margin == [0.0] * 4
            assert setting.hardest == [1, 0, 0, 0]


def _brute_force(q: np.ndarray, o: np.ndarray) -> dict[str, list[tuple[int, float, int, float]]]:
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    on = o / np.linalg.norm(o, axis=1, keepdims=True)
    out: dict[str, list[tuple[int, float, int, float]]] = {"same": [], "different": []}
    for i in range(len(q)):
        pos = float(qn[i] @ on[i])
        for setting, pool in (("same", qn), ("different", on)):
            negs = [(float(qn[i] @ pool[j]), j) for j in range(len(q)) if j != i]
            best = max(s for s, _ in negs)
            hardest = min(j for s, j in negs if s == best)
            rank = 1 + sum(1 for s, _ in negs if s >= pos)
            closest = min(abs(s - pos) for s, _ in negs)
            runner_up = max([s for s, j in negs if j != hardest], default=-np.inf)
            if best - runner_up <= 1e-5:
                hardest = -1  # near-tied hardest negatives: float32 may pick either
            out[setting].append((rank, pos - best, hardest, closest))
    return out


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 12), st.integers(1, 5), st.integers(0, 2**31), st.integers(1, 13))
def test_vectorized_equals_brute_force_for_any_chunk(n, dim, seed, chunk):
    rng = np.random.default_rng(seed)
    # Small integers make exact ties likely.
    a = rng.integers(-2, 3, size=(n, dim)).astype(np.float32)
    b = rng.integers(-2, 3, size=(n, dim)).astype(np.float32)
    a[np.all(a == 0, axis=1), 0] = 1.0
    b[np.all(b == 0, axis=1), 0] = 1.0
    result = CrossCameraRetrieval(n_boot=20, chunk_size=chunk).evaluate(
        a, b, cameras=CAMS, subjects=[str(i) for i in range(n)]
    )
    for r, (q, o) in zip(result.by_query, ((a, b), (b, a)), strict=True):
        expected = _brute_force(q.astype(np.float64), o.astype(np.float64))
        for setting in ("same", "different"):
            scores = getattr(r, setting)
            ranks = [e[0] for e in expected[setting]]
            # Exact ties in float64 may differ in the last float32 bit: rank and
            # hardest index are compared where no negative is within 1e-5 of the positive
            # (exact float32 ties are tested above).
            for k, (rank, margin, hardest, closest) in enumerate(expected[setting]):
                if closest > 1e-5:
                    assert scores.rank[k] == rank
                    assert scores.recall_at_1[k] == int(rank == 1)
                if hardest >= 0:
                    assert scores.hardest[k] == hardest
                assert scores.margin[k] == pytest.approx(margin, abs=1e-5)
            assert len(ranks) == n


def test_chunking_does_not_change_numbers():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(50, 8)), rng.normal(size=(50, 8))
    subjects = [f"s{i}" for i in range(50)]
    whole = CrossCameraRetrieval(n_boot=100).evaluate(a, b, cameras=CAMS, subjects=subjects)
    small = CrossCameraRetrieval(n_boot=100, chunk_size=7).evaluate(
        a, b, cameras=CAMS, subjects=subjects
    )
    assert whole.chunk_size == 50 and small.chunk_size == 7
    for x, y in zip(whole.by_query, small.by_query, strict=True):
        assert x.same.rank == y.same.rank and x.different.rank == y.different.rank
        assert x.same.margin == pytest.approx(y.same.margin, abs=1e-6)


def test_chunk_size_bounds_memory_for_100k_pairs():
    rows = _chunk_rows(100_000, 256.0, None)
    assert 1 <= rows < 100_000
    assert rows * 100_000 * 13 <= 256 * 2**20
    assert _chunk_rows(10, 256.0, None) == 10
    with pytest.raises(RetrievalInputError, match="positive"):
        _chunk_rows(10, 256.0, 0)


def test_a_camera_trace_gives_positive_gaps_with_intervals():
    # Photo = subject content + a camera direction: the trace pulls same-camera photos together.
    rng = np.random.default_rng(0)
    content = rng.normal(size=(40, 16))
    trace = np.zeros(16)
    trace[0] = 3.0
    a = content + rng.normal(scale=0.6, size=content.shape) + trace
    b = content + rng.normal(scale=0.6, size=content.shape) - trace
    result = CrossCameraRetrieval(n_boot=300).evaluate(
        a, b, cameras=CAMS, subjects=[str(i) for i in range(40)]
    )
    for r in result.by_query:
        assert r.recall("same") < r.recall("different")
        assert r.margin_gap > 0
        low = r.intervals["margin_gap"].low
        assert 0 < low <= r.margin_gap <= r.intervals["margin_gap"].high
        assert r.intervals["recall_gap"].estimate == pytest.approx(r.recall_gap)
    # Without the trace the gap vanishes (within the interval).
    clean = CrossCameraRetrieval(n_boot=300).evaluate(
        content + rng.normal(scale=0.6, size=content.shape),
        content + rng.normal(scale=0.6, size=content.shape),
        cameras=CAMS,
        subjects=[str(i) for i in range(40)],
    )
    for r in clean.by_query:
        assert r.intervals["margin_gap"].low < 0.02


def test_round_trip_and_records():
    result = _angles([0, 5, 90], [10, 60, 100])
    data = json.loads(json.dumps(result.to_dict()))
    back = RetrievalResult.from_dict(data)
    assert back.to_dict() == result.to_dict()
    records = result.to_records(encoder="enc", dataset="ds", protocol="whole")
    assert [r.metric for r in records[:5]] == [
        "recall_at_1_same",
        "recall_at_1_different",
        "recall_gap",
        "margin_gap",
        "mrr_gap",
    ]
    assert len(records) == 10
    gap = records[2]
    assert gap.parameter == "whole/camera" and gap.value == pytest.approx(1 / 3)
    assert RetrievalResult.from_dict(gap.details["result"]).query("camera").same.rank == [2, 2, 1]
    assert records[7].parameter == "whole/smartphone"
    for r in records:
        assert r.interval is not None and r.interval["low"] <= r.value + 1e-12
        # the per-query values a baseline comparison pairs, one per subject, mean = value
        assert r.score_ids == result.subjects and r.scores is not None
        assert len(r.scores) == 3 and np.mean(r.scores) == pytest.approx(r.value)
    assert gap.scores == [1.0, 0.0, 0.0]  # query 0 found its pair only among other-camera photos


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        (np.ones((3, 2)), np.ones((2, 2)), "aligned"),
        (np.ones((3,)), np.ones((3,)), "shape"),
        (np.full((3, 2), np.nan), np.ones((3, 2)), "NaN"),
        (np.ones((1, 2)), np.ones((1, 2)), "1 embeddings per side"),
    ],
)
def test_bad_inputs_say_what_is_wrong(a, b, message):
    subjects = [str(i) for i in range(3)]
    with pytest.raises(RetrievalInputError, match=message):
        CrossCameraRetrieval().evaluate(a, b, cameras=CAMS, subjects=subjects)


def test_report_section_draws_fig10_margins_and_failed_queries():
    from pytest_metatrace.audits.cross_camera_retrieval.section import recall_scatter
    from pytest_metatrace.report import render_html

    result = _angles([0, 5, 90], [10, 60, 100])
    records = [r.to_dict() for r in result.to_records(encoder="enc", dataset="ds", protocol="crop")]
    uri = "data:image/png;base64,iVBORw0KGgo="
    gallery = {
        "thumbs": {"s0/camera": uri, "s0/smartphone": uri, "s1/camera": uri},
        "queries": [
            {
                "setting": "same",
                "subject": "s0",
                "query": "s0/camera",
                "positive": "s0/smartphone",
                "retrieved": "s1/camera",
                "retrieved_subject": "s1",
                "retrieved_camera": "camera",
                "rank": 2,
                "positive_similarity": 0.98,
                "retrieved_similarity": 0.99,
            }
        ],
    }
    records[2]["details"]["failures"] = gallery
    html = render_html({"schema_version": 1, "records": records})
    section = html.split('id="sec-cross-camera-retrieval"', 1)[1]
    assert "crop frames · ds" in section
    assert section.count("<circle") >= 4  # two points and their legend marks
    assert "enc · camera queries" in section and "enc · smartphone queries" in section
    assert "33.3% [" in section  # camera queries: recall@1 same 1/3
    assert "s1 (camera)" in section and section.count(uri) == 3
    assert "a negative as similar as the positive ranks ahead of it" in section
    # Axes zoom to [lowest recall - 0.05, 1] = [0.45, 1] over 320 px from (79.2, 14): the
    # left margin holds the y title (28 px) and the widest tick, "100.0%" (43.2 px), + 8.
    # recall same 0.5 -> x = 79.2 + 320 * 0.05 / 0.55, recall different 1.0 -> the top.
    svg = str(recall_scatter([("p", 0.5, 1.0)], label="t"))
    assert '<circle cx="108.29" cy="14"' in svg
