"""Semantic influence of one parameter group (docs/protocol.md §5, paper Sec. 4.1), end to end.

:func:`semantic_influence` runs the kNN engine
(:class:`~pytest_metatrace.audits.semantic_influence.influence.KnnInfluence`) on a dataset's
embeddings, adds the report's figure data (Fig. 2 similarity distributions,
Fig. 9 neighbour gallery with thumbnails) and returns a
:class:`SemanticInfluenceResult` that becomes three records: the all-same
accuracy (with every setup in its typed
:class:`~pytest_metatrace.analysis.schema.SemanticDetails`) and the two gaps
an audit gates on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pytest_metatrace.audits.semantic_influence.results import (
    GalleryFigure,
    GalleryNeighbor,
    GalleryQuery,
    SemanticDetails,
    SetupSummary,
    SimilarityFigure,
)
from pytest_metatrace.results import Record, jsonable

if TYPE_CHECKING:
    from pytest_metatrace.analysis.stats import Interval
    from pytest_metatrace.audits.semantic_influence.figures import NeighborGallery
    from pytest_metatrace.audits.semantic_influence.influence import KnnInfluenceResult
    from pytest_metatrace.data import Dataset, Split
    from pytest_metatrace.embeddings import Embeddings
    from pytest_metatrace.settings import Settings

__all__ = ["GALLERY_QUERIES", "UNIFORM_SEEDS", "SemanticInfluenceResult", "semantic_influence"]

#: Queries shown in the Fig. 9 gallery per parameter group.
GALLERY_QUERIES = 3
#: Seeds of the uniform database draw, counted from the session seed (paper: 10).
UNIFORM_SEEDS = 10

#: The gated gaps, with what they measure.
GAPS = {
    "pos_same_gap": "pull towards same-processing positives (pos-same − all-same)",
    "neg_same_gap": "pull towards same-processing negatives (all-same − neg-same)",
}


@dataclass
class SemanticInfluenceResult:
    """kNN accuracies of the five databases, their intervals and the report's figure data."""

    group: str  #: parameter group, e.g. ``jpeg``
    influence: KnnInfluenceResult  #: the engine's result (per-image correctness included)
    intervals: dict[str, Interval]  #: setup names and the two gaps -> bootstrap interval
    details: SemanticDetails  #: typed ``details`` of the ``knn_accuracy`` record
    image_ids: list[str] = field(default_factory=list)  #: test image ids

    @property
    def pos_same_gap(self) -> float:
        """pos-same minus all-same accuracy."""
        return self.influence.pos_same_gap

    @property
    def neg_same_gap(self) -> float:
        """all-same minus neg-same accuracy."""
        return self.influence.neg_same_gap

    def scores(self, metric: str) -> list[float]:
        """Per-test-image values behind ``metric``'s interval (a setup name or a gap)."""
        per = {name: s.per_image for name, s in self.influence.setups.items()}
        if metric == "pos_same_gap":
            values = per["pos_same"] - per["all_same"]
        elif metric == "neg_same_gap":
            values = per["all_same"] - per["neg_same"]
        else:
            values = per[metric]
        return [float(v) for v in np.asarray(values, dtype=np.float64)]

    def to_records(self, *, encoder: str, dataset: str) -> list[Record]:
        """``knn_accuracy`` (all-same, with details), then ``pos_same_gap`` and ``neg_same_gap``."""
        classes = list(self.influence.classes)
        provenance = {"processing": classes, "uniform_draw": self.influence.uniform_draw}
        ids = list(self.image_ids) or None
        records = [
            Record(
                audit="semantic_influence",
                metric="knn_accuracy",
                value=self.influence.accuracy("all_same"),
                encoder=encoder,
                dataset=dataset,
                parameter=self.group,
                interval=self.intervals["all_same"].to_dict(),
                details=jsonable(self.details.to_dict()),
                provenance=dict(provenance),
                scores=self.scores("all_same"),
                score_ids=ids,
            )
        ]
        for metric in GAPS:
            records.append(
                Record(
                    audit="semantic_influence",
                    metric=metric,
                    value=float(getattr(self, metric)),
                    encoder=encoder,
                    dataset=dataset,
                    parameter=self.group,
                    interval=self.intervals[metric].to_dict(),
                    provenance=dict(provenance),
                    scores=self.scores(metric),
                    score_ids=ids,
                )
            )
        return records


def _gallery(dataset: Dataset, split: Split, gallery: NeighborGallery, seed: int) -> GalleryFigure:
    """Fig. 9 with labels by name and thumbnails deduplicated by (image, processing)."""
    from pytest_metatrace.data.thumbs import thumbnail_uri

    thumbs: dict[str, str] = {}

    def thumb(index: int, processing: str) -> str:
        item = dataset.items[index]
        key = f"{item.id}|{processing}"
        if key not in thumbs:
            thumbs[key] = thumbnail_uri(item, processing, seed=seed)
        return key

    queries = [
        GalleryQuery(
            thumb=thumb(int(split.test[q.test_index]), q.processing),
            label=dataset.classes[int(q.label)],
            processing=q.processing,
            setups={
                name: [
                    GalleryNeighbor(
                        thumb=thumb(int(split.train[n.train_index]), n.processing),
                        label=dataset.classes[int(n.label)],
                        processing=n.processing,
                        match=bool(n.match),
                        similarity=float(n.similarity),
                    )
                    for n in entry.neighbors
                ]
                for name, entry in q.setups.items()
            },
        )
        for q in gallery.queries
    ]
    return GalleryFigure(pair=list(gallery.pair), thumbs=thumbs, queries=queries)


def semantic_influence(
    embeddings: Embeddings,
    dataset: Dataset,
    group: str,
    settings: Settings,
    *,
    gallery_queries: int = GALLERY_QUERIES,
) -> SemanticInfluenceResult:
    """The kNN semantic-influence analysis of one parameter group, as the built-in audit runs it.

    ``settings.knn_k`` neighbours vote; the uniform database is drawn with
    seeds ``settings.seed .. settings.seed + 9``; the gallery shows the
    ``min(knn_k, training images)`` nearest neighbours of ``gallery_queries``
    queries for the pair (first class, last class) of the group. Raises
    :class:`~pytest_metatrace.audits.semantic_influence.influence.KnnInputError` on a training set
    with fewer than two semantic classes.
    """
    from pytest_metatrace.audits.semantic_influence.figures import (
        neighbor_gallery,
        similarity_distributions,
    )
    from pytest_metatrace.audits.semantic_influence.influence import (
        KnnInfluence,
        check_semantic_classes,
    )
    from pytest_metatrace.processing import PARAMETER_GROUPS

    classes = list(PARAMETER_GROUPS[group].classes)
    seed, device = settings.seed, settings.device
    train_views = embeddings.many(dataset, "train", classes)
    test_views = embeddings.many(dataset, "test", classes)
    train = {c: train_views[c] for c in classes}
    test = {c: test_views[c] for c in classes}
    y_train = embeddings.labels(dataset, "train")
    y_test = embeddings.labels(dataset, "test")
    split = embeddings.split(dataset)
    # Named by the dataset's class names (the engine only sees label codes).
    check_semantic_classes([dataset.classes[int(v)] for v in np.unique(y_train)])

    influence = KnnInfluence(
        k=settings.knn_k, seeds=range(seed, seed + UNIFORM_SEEDS), device=device
    ).evaluate(train, y_train, test, y_test, classes)
    intervals = influence.intervals(seed=seed)
    dist = similarity_distributions(
        train, y_train, test, y_test, classes, query_class=classes[0], device=device
    )
    gallery = neighbor_gallery(
        train,
        y_train,
        test,
        y_test,
        classes,
        pair=(classes[0], classes[-1]),
        k=min(settings.knn_k, influence.n_train),
        n_queries=gallery_queries,
        device=device,
    )
    summary = influence.to_dict()["setups"]
    details = SemanticDetails(
        k=influence.k,
        classes=classes,
        setups={
            name: SetupSummary(
                accuracy=summary[name]["accuracy"],
                low=intervals[name].low,
                high=intervals[name].high,
                per_pair=summary[name]["per_pair"],
            )
            for name in summary
        },
        similarity_distributions=SimilarityFigure(
            query_class=dist.query_class,
            bin_edges=[float(e) for e in dist.bin_edges],
            groups={name: _counts(c) for name, c in dist.groups.items()},
            means={name: _mean(m) for name, m in dist.means.items()},
        ),
        gallery=_gallery(dataset, split, gallery, seed),
        n_train=influence.n_train,
        n_test=influence.n_test,
        seeds=list(influence.seeds),
    )
    return SemanticInfluenceResult(
        group=group,
        influence=influence,
        intervals=intervals,
        details=details,
        image_ids=[dataset.items[int(i)].id for i in split.test],
    )


def _counts(values: Any) -> list[float]:
    return [int(v) for v in np.asarray(values).tolist()]


def _mean(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
