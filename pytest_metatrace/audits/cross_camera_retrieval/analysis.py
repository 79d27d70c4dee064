"""Near-duplicate retrieval across camera types (docs/protocol.md §6, paper Sec. 4.2).

Each subject has one photo per camera type, A and B. A query (a photo of
type A) has one positive, its subject's B photo, and is scored in two
databases, the query itself always excluded:

- ``same``: the positive plus every other A photo (negatives share the
  query's camera type);
- ``different``: every B photo (negatives share the positive's type).

Per query: ``recall_at_1`` (the positive is the most similar entry), the
``rank`` of the positive (1 = first), the ``margin`` (cosine similarity of
the positive minus that of the hardest negative) and the reciprocal rank.
A camera trace pulls a query towards photos of its own type, so ``same`` is
harder than ``different``: every gap is ``different - same``, positive when
the trace is there. Recall@1 saturates at 1.0 on easy pairs; rank and margin
do not.

Ties: a negative exactly as similar as the positive ranks ahead of it
(``rank = 1 + #{negatives with similarity >= positive}``), so a collapsed
encoder (every embedding equal) scores recall 0, not 1; among tied hardest
negatives the lowest subject index is reported as the retrieved one.

Computation: one similarity block per chunk of queries against each side,
masked; the chunk size keeps the working memory under a budget, so 100k
pairs run in bounded memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from pytest_metatrace.analysis.stats import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_LEVEL,
    Interval,
    bootstrap_mean,
    bootstrap_mean_diff,
)
from pytest_metatrace.results import Record

__all__ = [
    "SETTINGS",
    "TIE_RULE",
    "CrossCameraRetrieval",
    "QueryCameraResult",
    "RetrievalInputError",
    "RetrievalResult",
    "SettingScores",
]

#: The two databases of docs/protocol.md §6.
SETTINGS = ("same", "different")
#: How ties between the positive and a negative are resolved (shown in the report).
TIE_RULE = (
    "a negative as similar as the positive ranks ahead of it; among tied hardest "
    "negatives the lowest subject index is the one retrieved"
)


class RetrievalInputError(ValueError):
    """Embeddings that cannot be scored; the message says what is wrong."""


@dataclass(frozen=True)
class SettingScores:
    """Per-query scores in one setting (``same`` or ``different``), aligned with the subjects."""

    recall_at_1: list[int]  #: 1 when the positive is ranked first
    rank: list[int]  #: rank of the positive, 1 = first
    margin: list[float]  #: similarity of the positive minus that of the hardest negative
    positive: list[float]  #: cosine similarity of the query to its positive
    hardest: list[int]  #: subject index of the hardest negative (the retrieved photo on a miss)

    @property
    def reciprocal_rank(self) -> npt.NDArray[np.float64]:
        """1 / rank per query."""
        return 1.0 / np.asarray(self.rank, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "recall_at_1": list(self.recall_at_1),
            "rank": list(self.rank),
            "margin": list(self.margin),
            "positive": list(self.positive),
            "hardest": list(self.hardest),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SettingScores:
        """Inverse of :meth:`to_dict`."""
        return cls(
            recall_at_1=[int(v) for v in data["recall_at_1"]],
            rank=[int(v) for v in data["rank"]],
            margin=[float(v) for v in data["margin"]],
            positive=[float(v) for v in data["positive"]],
            hardest=[int(v) for v in data["hardest"]],
        )


@dataclass(frozen=True)
class QueryCameraResult:
    """Both settings for the queries of one camera type, with intervals over the queries."""

    query_camera: str  #: camera type of the queries
    other_camera: str  #: camera type of the positives
    same: SettingScores  #: negatives of the query's type
    different: SettingScores  #: negatives of the positive's type
    intervals: dict[
        str, Interval
    ]  #: recall_same, recall_different, recall_gap, margin_gap, mrr_gap

    def recall(self, setting: str) -> float:
        """Recall@1 in ``setting``."""
        return float(np.mean(getattr(self, setting).recall_at_1))

    def mean_margin(self, setting: str) -> float:
        """Mean similarity margin in ``setting``."""
        return float(np.mean(getattr(self, setting).margin))

    def mrr(self, setting: str) -> float:
        """Mean reciprocal rank of the positive in ``setting``."""
        return float(getattr(self, setting).reciprocal_rank.mean())

    @property
    def recall_gap(self) -> float:
        """Recall@1 ``different - same``."""
        return self.recall("different") - self.recall("same")

    @property
    def margin_gap(self) -> float:
        """Mean margin ``different - same``."""
        return self.mean_margin("different") - self.mean_margin("same")

    @property
    def mrr_gap(self) -> float:
        """Mean reciprocal rank ``different - same``."""
        return self.mrr("different") - self.mrr("same")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the summary numbers the report shows."""
        return {
            "query_camera": self.query_camera,
            "other_camera": self.other_camera,
            "same": self.same.to_dict(),
            "different": self.different.to_dict(),
            "intervals": {k: v.to_dict() for k, v in self.intervals.items()},
            "summary": {
                s: {
                    "recall_at_1": self.recall(s),
                    "mean_margin": self.mean_margin(s),
                    "mrr": self.mrr(s),
                    "median_rank": float(np.median(getattr(self, s).rank)),
                }
                for s in SETTINGS
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QueryCameraResult:
        """Inverse of :meth:`to_dict` (the summary is recomputed)."""
        return cls(
            query_camera=data["query_camera"],
            other_camera=data["other_camera"],
            same=SettingScores.from_dict(data["same"]),
            different=SettingScores.from_dict(data["different"]),
            intervals={k: Interval(**v) for k, v in data["intervals"].items()},
        )


@dataclass(frozen=True)
class RetrievalResult:
    """Cross-camera retrieval of every query camera type on one set of pairs."""

    cameras: tuple[str, str]  #: the two camera types
    subjects: list[str]  #: subject names, aligned with every per-query list
    by_query: list[QueryCameraResult]  #: one per query camera type, in ``cameras`` order
    chunk_size: int  #: queries per similarity block
    tie_rule: str = TIE_RULE  #: how ties are resolved
    settings: dict[str, Any] = field(default_factory=dict)  #: bootstrap level, resamples, seed

    def query(self, camera: str) -> QueryCameraResult:
        """The result of the queries of ``camera``."""
        for r in self.by_query:
            if r.query_camera == camera:
                return r
        raise KeyError(f"no queries of camera type {camera!r}; have {list(self.cameras)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "cameras": list(self.cameras),
            "subjects": list(self.subjects),
            "by_query": [r.to_dict() for r in self.by_query],
            "chunk_size": self.chunk_size,
            "tie_rule": self.tie_rule,
            "settings": dict(self.settings),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RetrievalResult:
        """Inverse of :meth:`to_dict`."""
        cams = data["cameras"]
        return cls(
            cameras=(cams[0], cams[1]),
            subjects=list(data["subjects"]),
            by_query=[QueryCameraResult.from_dict(r) for r in data["by_query"]],
            chunk_size=int(data["chunk_size"]),
            tie_rule=data.get("tie_rule", TIE_RULE),
            settings=dict(data.get("settings", {})),
        )

    def to_records(self, *, encoder: str, dataset: str, protocol: str) -> list[Record]:
        """Per query camera: recall@1 in each setting, then the recall, margin and MRR gaps.

        ``parameter`` is ``<protocol>/<query camera>``. The ``recall_gap``
        record's details hold the whole result (the report rebuilds it with
        :meth:`from_dict`); the others name their protocol and query camera.
        """
        out: list[Record] = []
        for r in self.by_query:
            ctx = {"protocol": protocol, "query_camera": r.query_camera}
            same, diff = r.same, r.different
            # Per-query values whose mean is the record's value (one query per subject):
            # what the interval resampled, and what a baseline comparison pairs.
            per_query = {
                "recall_same": np.asarray(same.recall_at_1, dtype=np.float64),
                "recall_different": np.asarray(diff.recall_at_1, dtype=np.float64),
                "recall_gap": np.subtract(diff.recall_at_1, same.recall_at_1, dtype=np.float64),
                "margin_gap": np.subtract(diff.margin, same.margin, dtype=np.float64),
                "mrr_gap": np.subtract(
                    diff.reciprocal_rank, same.reciprocal_rank, dtype=np.float64
                ),
            }
            rows: list[tuple[str, float, str, str]] = [
                ("recall_at_1_same", r.recall("same"), "recall_same", "fraction"),
                ("recall_at_1_different", r.recall("different"), "recall_different", "fraction"),
                ("recall_gap", r.recall_gap, "recall_gap", "fraction"),
                ("margin_gap", r.margin_gap, "margin_gap", "cosine similarity"),
                ("mrr_gap", r.mrr_gap, "mrr_gap", "reciprocal rank"),
            ]
            for metric, value, key, unit in rows:
                details: dict[str, Any] = dict(ctx)
                if metric == "recall_gap":
                    details["result"] = self.to_dict()
                out.append(
                    Record(
                        audit="cross_camera_retrieval",
                        metric=metric,
                        value=value,
                        unit=unit,
                        interval=r.intervals[key].to_dict(),
                        details=details,
                        provenance={"retrieval": {"protocol": protocol, **self.settings}},
                        encoder=encoder,
                        dataset=dataset,
                        parameter=f"{protocol}/{r.query_camera}",
                        scores=per_query[key].tolist(),
                        score_ids=list(self.subjects),
                    )
                )
        return out


def _chunk_rows(n: int, budget_mb: float, chunk_size: int | None) -> int:
    if chunk_size is not None:
        if chunk_size < 1:
            raise RetrievalInputError(
                f"chunk_size must be a positive number of queries, got {chunk_size}"
            )
        return min(chunk_size, n)
    # Two (c, n) float32 blocks, a bool mask and a float32 temporary per query row.
    per_row = n * (4 + 4 + 1 + 4)
    return max(1, min(n, int(budget_mb * 2**20) // per_row))


class CrossCameraRetrieval:
    """Scores queries of both camera types against ``same`` and ``different`` databases."""

    def __init__(
        self,
        *,
        level: float = DEFAULT_LEVEL,
        n_boot: int = DEFAULT_BOOTSTRAP,
        seed: int = 0,
        chunk_size: int | None = None,
        memory_budget_mb: float = 256.0,
        device: str = "cpu",
    ) -> None:
        self.level = level  #: confidence level of the intervals
        self.n_boot = n_boot  #: bootstrap resamples
        self.seed = seed  #: bootstrap seed
        self.chunk_size = chunk_size  #: queries per block; ``None`` derives it from the budget
        self.memory_budget_mb = memory_budget_mb  #: bound of one block's working memory
        self.device = device  #: torch device of the similarity blocks

    def evaluate(
        self,
        side_a: npt.ArrayLike,
        side_b: npt.ArrayLike,
        *,
        cameras: tuple[str, str],
        subjects: Sequence[str],
    ) -> RetrievalResult:
        """Score ``side_a[i]`` / ``side_b[i]`` (subject i's photo of each camera type)."""
        a = _as_2d(side_a, cameras[0])
        b = _as_2d(side_b, cameras[1])
        if a.shape != b.shape:
            raise RetrievalInputError(
                f"the two camera types need one embedding per subject each, aligned; got "
                f"{a.shape} ({cameras[0]}) and {b.shape} ({cameras[1]})"
            )
        if a.shape[0] != len(subjects):
            raise RetrievalInputError(
                f"{a.shape[0]} embeddings per side but {len(subjects)} subjects"
            )
        if a.shape[0] < 2:
            raise RetrievalInputError("retrieval needs at least two subjects (one negative)")
        chunk = _chunk_rows(a.shape[0], self.memory_budget_mb, self.chunk_size)
        by_query = []
        for query, other, (q, o) in (
            (cameras[0], cameras[1], (a, b)),
            (cameras[1], cameras[0], (b, a)),
        ):
            same, different = _score_side(q, o, chunk, self.device)
            by_query.append(
                QueryCameraResult(query, other, same, different, self._intervals(same, different))
            )
        return RetrievalResult(
            cameras=cameras,
            subjects=list(subjects),
            by_query=by_query,
            chunk_size=chunk,
            settings={
                "level": self.level,
                "n_boot": self.n_boot,
                "seed": self.seed,
                "unit": "query (one per subject)",
            },
        )

    def _intervals(self, same: SettingScores, different: SettingScores) -> dict[str, Interval]:
        level, n_boot, seed = self.level, self.n_boot, self.seed
        r_same = np.asarray(same.recall_at_1, dtype=np.float64)
        r_diff = np.asarray(different.recall_at_1, dtype=np.float64)

        def mean(x: npt.ArrayLike) -> Interval:
            return bootstrap_mean(x, level=level, n_boot=n_boot, seed=seed)

        def diff(a: npt.ArrayLike, b: npt.ArrayLike) -> Interval:
            return bootstrap_mean_diff(a, b, level=level, n_boot=n_boot, seed=seed)

        return {
            "recall_same": mean(r_same),
            "recall_different": mean(r_diff),
            "recall_gap": diff(r_diff, r_same),
            "margin_gap": diff(different.margin, same.margin),
            "mrr_gap": diff(different.reciprocal_rank, same.reciprocal_rank),
        }


def _as_2d(values: npt.ArrayLike, what: str) -> npt.NDArray[np.float32]:
    arr = np.asarray(values, dtype=np.float32)
    if arr.ndim != 2:
        raise RetrievalInputError(
            f"embeddings of {what} must be (subjects, dim), got shape {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise RetrievalInputError(f"embeddings of {what} contain NaN or infinite values")
    return arr


def _score_side(
    query: npt.NDArray[np.float32], other: npt.NDArray[np.float32], chunk: int, device: str
) -> tuple[SettingScores, SettingScores]:
    """Scores of queries ``query[i]`` (positive ``other[i]``) in both settings."""
    import torch

    dev = torch.device(device)
    q = torch.nn.functional.normalize(torch.from_numpy(query).to(dev), dim=1)
    o = torch.nn.functional.normalize(torch.from_numpy(other).to(dev), dim=1)
    n = q.shape[0]
    out: dict[str, dict[str, list[Any]]] = {
        s: {"recall_at_1": [], "rank": [], "margin": [], "positive": [], "hardest": []}
        for s in SETTINGS
    }
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        rows = torch.arange(hi - lo, device=dev)
        cols = rows + lo
        to_own = q[lo:hi] @ q.T  # negatives of the query's camera type (same setting)
        to_other = q[lo:hi] @ o.T  # positives on the diagonal, negatives of the other type
        positive = to_other[rows, cols].clone()
        # Exclude the query itself from "same" and the positive from the negatives of "different".
        to_own[rows, cols] = -torch.inf
        to_other[rows, cols] = -torch.inf
        for setting, negatives in (("same", to_own), ("different", to_other)):
            hardest_sim, hardest = negatives.max(dim=1)  # first maximum: lowest subject index
            ahead = (negatives >= positive[:, None]).sum(dim=1)
            rank = 1 + ahead
            rec = out[setting]
            rec["recall_at_1"] += (rank == 1).to(torch.int64).tolist()
            rec["rank"] += rank.tolist()
            rec["margin"] += (positive - hardest_sim).tolist()
            rec["positive"] += positive.tolist()
            rec["hardest"] += hardest.tolist()
    same, different = (SettingScores(**out[s]) for s in SETTINGS)
    return same, different
