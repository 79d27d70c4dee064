"""Figure data of the kNN audit: similarity distributions (Fig. 2) and a neighbour gallery (Fig. 9).

They reuse the engine of :mod:`pytest_metatrace.audits.semantic_influence.influence` (same
normalization, same neighbour order) on a few queries; the audit's numbers
come from :class:`~pytest_metatrace.audits.semantic_influence.influence.KnnInfluence`, these only
illustrate them in the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from pytest_metatrace.analysis.knn_engine import (
    DEFAULT_MEMORY_BUDGET_MB,
    Embeddings,
    Labels,
    _chunk_rows,
    _pick_spread,
    _predict,
    _prepare,
    majority_vote,
    resolve_device,
    topk_neighbors,
)
from pytest_metatrace.results import jsonable

__all__ = [
    "GALLERY_SETUPS",
    "SIMILARITY_GROUPS",
    "GalleryEntry",
    "GalleryQuery",
    "Neighbor",
    "NeighborGallery",
    "SimilarityDistributions",
    "neighbor_gallery",
    "similarity_distributions",
]

#: The four groups of Fig. 2: semantic label x processing class, query vs database entry.
SIMILARITY_GROUPS: tuple[str, ...] = (
    "same_sem_same_meta",
    "same_sem_diff_meta",
    "diff_sem_same_meta",
    "diff_sem_diff_meta",
)


# --------------------------------------------------------------------------- Fig. 2


@dataclass
class SimilarityDistributions:
    """Histograms of query-database cosine similarity in the four groups of Fig. 2."""

    query_class: str  #: processing class of the queries (test images)
    classes: tuple[str, ...]  #: the database holds every training image under each of these
    #: (bins + 1,) fixed bin edges over ``value_range``; bin b is [edges[b], edges[b+1]),
    #: the last bin closed; similarities outside the range are counted in the end bins
    bin_edges: npt.NDArray[np.float64]
    groups: dict[str, npt.NDArray[np.int64]]  #: group (SIMILARITY_GROUPS) -> (bins,) counts
    n: dict[str, int]  #: group -> number of (query, database entry) pairs
    means: dict[str, float]  #: group -> mean similarity (NaN when the group is empty)
    query_indices: npt.NDArray[np.int64]  #: test images used as queries

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (empty-group means as ``None``)."""
        out: dict[str, Any] = jsonable(
            {
                "query_class": self.query_class,
                "classes": list(self.classes),
                "bin_edges": self.bin_edges,
                "groups": self.groups,
                "n": self.n,
                "means": self.means,
                "n_queries": len(self.query_indices),
                "query_indices": self.query_indices,
            }
        )
        return out


def similarity_distributions(
    train: Embeddings,
    train_labels: Labels,
    test: Embeddings,
    test_labels: Labels,
    classes: Sequence[str],
    query_class: str,
    *,
    bins: int = 100,
    value_range: tuple[float, float] = (-1.0, 1.0),
    max_queries: int | None = None,
    device: str | torch.device = "auto",
    chunk_size: int | None = None,
    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
) -> SimilarityDistributions:
    """Fig. 2 data: similarities of ``query_class`` queries to the training set under every class.

    Each (query, training image, database class) triple falls into one of
    :data:`SIMILARITY_GROUPS`: same or different semantic label x same or
    different processing class as the query. Bins are fixed (``bins`` equal
    bins over ``value_range``, [-1, 1] by default, so that histograms of
    different encoders share an axis); bin of s = floor((s - lo) * bins /
    (hi - lo)), clipped to the end bins. ``max_queries`` keeps that many test
    images, evenly spaced over the test set. Memory per chunk of c queries is
    about ``c * N_train * 18`` bytes besides the normalized database.
    """
    if bins < 1:
        raise ValueError(f"bins must be positive, got {bins}")
    lo_v, hi_v = (float(v) for v in value_range)
    if not hi_v > lo_v:
        raise ValueError(f"value_range must be increasing, got {value_range}")
    dev = resolve_device(device)
    data = _prepare(train, train_labels, test, test_labels, classes, dev, None)
    if query_class not in data.classes:
        raise ValueError(f"unknown query class {query_class!r}; classes: {list(data.classes)}")
    qi = data.classes.index(query_class)
    if max_queries is None or max_queries >= data.n_test:
        chosen = np.arange(data.n_test, dtype=np.int64)
    elif max_queries < 1:
        raise ValueError(f"max_queries must be positive, got {max_queries}")
    else:
        chosen = np.unique(np.linspace(0, data.n_test - 1, max_queries).round().astype(np.int64))
    n_train, n_cls = data.n_train, len(data.classes)
    chunk = _chunk_rows(chunk_size, n_train * 18, memory_budget_mb, len(chosen))

    counts = torch.zeros(4 * bins, dtype=torch.int64, device=dev)
    sums = torch.zeros(4, dtype=torch.float64, device=dev)
    scale = bins / (hi_v - lo_v)
    for start in range(0, len(chosen), chunk):
        rows = torch.as_tensor(chosen[start : start + chunk], device=dev)
        q = data.queries(qi, rows)
        same = data.train_codes.unsqueeze(0) == data.test_codes[rows].unsqueeze(1)
        different = ~same
        for j in range(n_cls):
            other = 0 if j == qi else 1
            sim = q @ data.train[j].T
            # One bincount over keys group * bins + bin fills all four histograms;
            # groups are ordered as SIMILARITY_GROUPS (label major, processing minor).
            key = ((sim - lo_v) * scale).floor_().clamp_(0, bins - 1).to(torch.int64)
            key.add_(different, alpha=2 * bins).add_(other * bins)
            counts += torch.bincount(key.flatten(), minlength=4 * bins)
            total = sim.sum(dtype=torch.float64)
            same_sum = torch.where(same, sim, 0.0).sum(dtype=torch.float64)
            sums[other] += same_sum
            sums[2 + other] += total - same_sum
    counts_np = counts.cpu().numpy().reshape(4, bins)
    sums_np = sums.cpu().numpy()
    totals = counts_np.sum(axis=1)
    return SimilarityDistributions(
        query_class=query_class,
        classes=data.classes,
        bin_edges=np.linspace(lo_v, hi_v, bins + 1),
        groups={g: counts_np[a] for a, g in enumerate(SIMILARITY_GROUPS)},
        n={g: int(totals[a]) for a, g in enumerate(SIMILARITY_GROUPS)},
        means={
            g: float(sums_np[a] / totals[a]) if totals[a] else float("nan")
            for a, g in enumerate(SIMILARITY_GROUPS)
        },
        query_indices=chosen,
    )


# --------------------------------------------------------------------------- Fig. 9

#: The setups shown in the neighbour gallery, as in the paper's Fig. 9.
GALLERY_SETUPS: tuple[str, ...] = ("all_same", "pos_same", "neg_same")


@dataclass
class Neighbor:
    """One database entry among a query's top-k neighbours."""

    rank: int  #: 0 = most similar
    train_index: int  #: row of the training set (the lead renders the thumbnail from it)
    processing: str  #: processing class of this database entry
    label: Any  #: its semantic label
    match: bool  #: same semantic label as the query (green border) or not (red)
    similarity: float  #: cosine similarity to the query


@dataclass
class GalleryEntry:
    """A query's neighbours and prediction under one setup."""

    setup: str  #: one of :data:`GALLERY_SETUPS`
    prediction: Any  #: majority-vote label
    correct: bool  #: prediction equals the query's label
    neighbors: list[Neighbor]  #: best first


@dataclass
class GalleryQuery:
    """One query image of the gallery with its neighbours under each setup."""

    test_index: int  #: row of the test set
    label: Any  #: semantic label
    processing: str  #: the query's processing class p_i
    setups: dict[str, GalleryEntry]  #: by setup name


@dataclass
class NeighborGallery:
    """Fig. 9 data: top-k neighbours of a few queries under all-same / pos-same / neg-same."""

    pair: tuple[str, str]  #: (p_i, p_j): queries under p_i, p_j the other class
    k: int  #: neighbours shown (and voting)
    selection: str  #: how the queries were chosen
    queries: list[GalleryQuery]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out: dict[str, Any] = jsonable(
            {
                "pair": list(self.pair),
                "k": self.k,
                "selection": self.selection,
                "queries": [
                    {
                        "test_index": q.test_index,
                        "label": q.label,
                        "processing": q.processing,
                        "setups": {
                            name: {
                                "setup": e.setup,
                                "prediction": e.prediction,
                                "correct": e.correct,
                                "neighbors": [vars(n) for n in e.neighbors],
                            }
                            for name, e in q.setups.items()
                        },
                    }
                    for q in self.queries
                ],
            }
        )
        return out


def _gallery_sims(
    sim_i: torch.Tensor, sim_j: torch.Tensor, positive: torch.Tensor
) -> dict[str, torch.Tensor]:
    return {
        "all_same": sim_i,
        "pos_same": torch.where(positive, sim_i, sim_j),
        "neg_same": torch.where(positive, sim_j, sim_i),
    }


def neighbor_gallery(
    train: Embeddings,
    train_labels: Labels,
    test: Embeddings,
    test_labels: Labels,
    classes: Sequence[str],
    pair: tuple[str, str],
    *,
    k: int = 10,
    query_indices: Sequence[int] | None = None,
    n_queries: int = 4,
    device: str | torch.device = "auto",
    chunk_size: int | None = None,
    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
) -> NeighborGallery:
    """Fig. 9 data: each query's top-``k`` neighbours under all-same, pos-same and neg-same.

    Queries are test images under ``pair[0]``; ``pair[1]`` is the other class
    of pos-same / neg-same. With ``query_indices=None``, ``n_queries`` are
    chosen deterministically to show the effect: first test images that
    all-same classifies correctly and neg-same does not, then any other whose
    correctness differs between the three setups, then the rest; within each
    tier evenly spaced over the test-set order.
    """
    p_i, p_j = pair
    if p_i == p_j:
        raise ValueError(f"the pair needs two different processing classes, got {pair}")
    dev = resolve_device(device)
    data = _prepare(train, train_labels, test, test_labels, classes, dev, k)
    for name in pair:
        if name not in data.classes:
            raise ValueError(f"unknown class {name!r} in pair; classes: {list(data.classes)}")
    i, j = data.classes.index(p_i), data.classes.index(p_j)
    n_train, n_test = data.n_train, data.n_test

    if query_indices is not None:
        chosen = [int(t) for t in query_indices]
        bad = [t for t in chosen if not 0 <= t < n_test]
        if bad:
            raise ValueError(f"query indices {bad} out of range for {n_test} test images")
        selection = "given indices"
    else:
        if n_queries < 1:
            raise ValueError(f"n_queries must be positive, got {n_queries}")
        chunk = _chunk_rows(chunk_size, n_train * 20, memory_budget_mb, n_test)
        correct: dict[str, list[torch.Tensor]] = {s: [] for s in GALLERY_SETUPS}
        for lo in range(0, n_test, chunk):
            hi = min(n_test, lo + chunk)
            truth = data.test_codes[lo:hi]
            positive = data.train_codes.unsqueeze(0) == truth.unsqueeze(1)
            q = data.queries(i, slice(lo, hi))
            sims = _gallery_sims(q @ data.train[i].T, q @ data.train[j].T, positive)
            for name, sim in sims.items():
                correct[name].append(_predict(sim, data.train_codes, k) == truth)
        ok = {name: torch.cat(parts).cpu().numpy() for name, parts in correct.items()}
        hurt = ok["all_same"] & ~ok["neg_same"]
        differ = ~hurt & ~((ok["all_same"] == ok["pos_same"]) & (ok["pos_same"] == ok["neg_same"]))
        chosen = []
        for tier in (hurt, differ, ~(hurt | differ)):
            chosen += _pick_spread(np.flatnonzero(tier).tolist(), n_queries - len(chosen))
        selection = (
            "automatic: all-same right and neg-same wrong first, then any change of "
            "correctness between setups, then the rest; evenly spaced within each tier"
        )

    rows = torch.as_tensor(chosen, dtype=torch.int64, device=dev)
    queries: list[GalleryQuery] = []
    if chosen:
        q = data.queries(i, rows)
        truth = data.test_codes[rows]
        positive = data.train_codes.unsqueeze(0) == truth.unsqueeze(1)
        sims = _gallery_sims(q @ data.train[i].T, q @ data.train[j].T, positive)
        top = {name: topk_neighbors(sim, k) for name, sim in sims.items()}
        labels = data.label_values
        train_codes = data.train_codes.cpu().numpy()
        for r, t in enumerate(chosen):
            query_code = int(truth[r])
            entries: dict[str, GalleryEntry] = {}
            for name in GALLERY_SETUPS:
                values, idx = (x[r].cpu().numpy() for x in top[name])
                codes = train_codes[idx]
                match = codes == query_code
                if name == "all_same":
                    proc = [p_i] * k
                elif name == "pos_same":
                    proc = [p_i if m else p_j for m in match]
                else:
                    proc = [p_j if m else p_i for m in match]
                pred = int(majority_vote(torch.as_tensor(codes).unsqueeze(0))[0])
                entries[name] = GalleryEntry(
                    setup=name,
                    prediction=labels[pred],
                    correct=pred == query_code,
                    neighbors=[
                        Neighbor(
                            rank=rank,
                            train_index=int(idx[rank]),
                            processing=proc[rank],
                            label=labels[codes[rank]],
                            match=bool(match[rank]),
                            similarity=float(values[rank]),
                        )
                        for rank in range(k)
                    ],
                )
            queries.append(
                GalleryQuery(test_index=t, label=labels[query_code], processing=p_i, setups=entries)
            )
    return NeighborGallery(pair=(p_i, p_j), k=k, selection=selection, queries=queries)
