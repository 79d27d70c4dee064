"""Neighbour agreement (paper Table 2, docs/protocol.md §7).

For every query image, the share of its top-k neighbours (cosine similarity
of L2-normalized embeddings, the query itself excluded) that carry the
query's metadata label, averaged over queries, for k = 10, 25, 50. Chance is
the share expected from the label frequencies alone: a query of class c
sees ``(n_c - 1) / (N - 1)`` same-class images among the others, averaged
over queries. Similarity ties are broken towards the lower item index, so
the numbers do not depend on the sort algorithm. The interval is a bootstrap
over queries of each query's share.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pytest_metatrace.analysis.stats import Interval, bootstrap_mean
from pytest_metatrace.results import Record, jsonable

__all__ = ["AGREEMENT_K", "NeighbourAgreement", "neighbour_agreement", "neighbour_shares"]

#: The k of the paper's Table 2.
AGREEMENT_K = (10, 25, 50)


def neighbour_shares(
    features: np.ndarray, labels: np.ndarray, ks: Sequence[int], *, chunk: int = 1024
) -> np.ndarray:
    """``(len(ks), N)``: per query, the share of its top-k neighbours with its label.

    ``features`` ``(N, D)`` (normalized here), ``labels`` ``(N,)`` integers;
    every k must be below N. Chunked over queries, so memory stays at
    ``chunk x N`` similarities.
    """
    x = np.asarray(features, dtype=np.float32)
    y = np.asarray(labels)
    n = x.shape[0]
    if y.shape != (n,):
        raise ValueError(f"{y.shape[0] if y.ndim else 0} labels for {n} embeddings")
    if not ks or max(ks) >= n or min(ks) < 1:
        raise ValueError(f"every k must lie in [1, {n - 1}] for {n} images, got {list(ks)}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.maximum(norms, 1e-12)
    kmax = max(ks)
    out = np.empty((len(ks), n), dtype=np.float64)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        sim = x[start:stop] @ x.T
        rows = np.arange(stop - start)
        sim[rows, rows + start] = -np.inf  # the query is not its own neighbour
        # Stable sort of -sim: equal similarities keep index order.
        order = np.argsort(-sim, axis=1, kind="stable")[:, :kmax]
        same = y[order] == y[start:stop, None]
        cum = np.cumsum(same, axis=1)
        for j, k in enumerate(ks):
            out[j, start:stop] = cum[:, k - 1] / k
    return out


@dataclass(frozen=True)
class NeighbourAgreement:
    """Table 2 for one target: agreement per k next to chance, with intervals."""

    target: str  #: the metadata target, e.g. ``smartphone``
    classes: list[str]  #: class names
    class_counts: list[int]  #: images per class
    ks: list[int]  #: the k values
    agreement: list[float]  #: mean share of same-label neighbours, per k
    intervals: list[Interval]  #: bootstrap interval per k
    chance: float  #: share expected from label frequencies (query excluded)
    mask_ratio: float | None  #: None: unmasked embeddings (Table 2)
    query_ids: list[str] = field(default_factory=list)  #: the queries (not in record details)
    query_shares: list[float] = field(default_factory=list)  #: each query's share at ``ks[0]``

    @property
    def gain(self) -> float:
        """Agreement at the first k minus chance."""
        return self.agreement[0] - self.chance

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out: dict[str, Any] = jsonable(dataclasses.asdict(self))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NeighbourAgreement:
        """Inverse of :meth:`to_dict`."""
        kwargs = dict(data)
        kwargs["intervals"] = [Interval(**iv) for iv in kwargs["intervals"]]
        return cls(**kwargs)

    def to_records(self, *, encoder: str, dataset: str) -> list[Record]:
        """One ``neighbour_agreement`` record: the value and interval are those at ``ks[0]``."""
        details = self.to_dict()
        scores = details.pop("query_shares")
        ids = details.pop("query_ids")
        record = Record(
            audit="neighbour_agreement",
            metric=f"agreement@{self.ks[0]}",
            value=self.agreement[0],
            encoder=encoder,
            dataset=dataset,
            parameter=self.target,
            interval=self.intervals[0].to_dict(),
            chance=self.chance,
            details=details,
            provenance={"ks": list(self.ks), "mask_ratio": self.mask_ratio},
            scores=scores,
            score_ids=ids,
        )
        return [record]


def neighbour_agreement(
    features: np.ndarray,
    labels: Sequence[str],
    *,
    target: str,
    ids: Sequence[str],
    ks: Sequence[int] = AGREEMENT_K,
    mask_ratio: float | None = None,
    seed: int = 0,
) -> NeighbourAgreement:
    """Table 2 for one target; k values at or above the number of images are left out."""
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise ValueError(f"neighbour agreement needs 2 classes, {target} has {classes}")
    lookup = {c: i for i, c in enumerate(classes)}
    y = np.array([lookup[lab] for lab in labels], dtype=np.int64)
    n = y.size
    usable = [k for k in ks if k < n]
    if not usable:
        raise ValueError(f"{n} images are too few for neighbour agreement at k = {list(ks)}")
    shares = neighbour_shares(features, y, usable)
    counts = np.bincount(y, minlength=len(classes))
    chance = float(np.mean((counts[y] - 1) / (n - 1)))
    return NeighbourAgreement(
        target=target,
        classes=classes,
        class_counts=counts.tolist(),
        ks=list(usable),
        agreement=[float(s.mean()) for s in shares],
        intervals=[bootstrap_mean(s, seed=seed) for s in shares],
        chance=chance,
        mask_ratio=mask_ratio,
        query_ids=list(ids),
        query_shares=shares[0].tolist(),
    )
