"""Typed ``details`` of the semantic-influence (kNN) records (``to_dict`` / ``from_dict``).

Field names are the JSON keys; ``from_dict`` accepts older and hand-written
documents (a missing field takes its empty value). Neither torch nor numpy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from pytest_metatrace.analysis.schema import as_float, as_floats, as_int, as_map, as_seq

__all__ = [
    "SIMILARITY_GROUP_NAMES",
    "GalleryFigure",
    "GalleryNeighbor",
    "GalleryQuery",
    "SemanticDetails",
    "SetupSummary",
    "SimilarityFigure",
]


@dataclass(frozen=True)
class SetupSummary:
    """One kNN database setup (docs/protocol.md §5): accuracy, interval, per ordered pair."""

    accuracy: float | None  #: mean over ordered pairs (and seeds, for uniform)
    low: float | None  #: lower end of the bootstrap interval
    high: float | None  #: upper end
    per_pair: list[list[float | None]] = field(default_factory=list)  #: [i][j]: query i, db j

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"accuracy", "interval": {"low", "high"}, "per_pair"}``."""
        return {
            "accuracy": self.accuracy,
            "interval": {"low": self.low, "high": self.high},
            "per_pair": [list(row) for row in self.per_pair],
        }

    @classmethod
    def from_dict(cls, data: Any) -> SetupSummary:
        """Inverse of :meth:`to_dict`."""
        d = as_map(data)
        interval = as_map(d.get("interval"))
        return cls(
            accuracy=as_float(d.get("accuracy")),
            low=as_float(interval.get("low")),
            high=as_float(interval.get("high")),
            per_pair=[as_floats(row) for row in as_seq(d.get("per_pair"))],
        )


#: The four similarity groups of Fig. 2, by semantic label and metadata (processing) label.
SIMILARITY_GROUP_NAMES = (
    "same_sem_same_meta",
    "same_sem_diff_meta",
    "diff_sem_same_meta",
    "diff_sem_diff_meta",
)


@dataclass(frozen=True)
class SimilarityFigure:
    """Fig. 2: histograms of query-to-database cosine similarity in four groups."""

    query_class: str | None  #: the processing class of the queries
    bin_edges: list[float]  #: histogram bin edges
    groups: dict[str, list[float]]  #: counts per bin, by :data:`SIMILARITY_GROUP_NAMES`
    means: dict[str, float | None]  #: mean similarity per group

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> SimilarityFigure:
        """Inverse of :meth:`to_dict`; unknown groups are dropped."""
        d = as_map(data)
        groups = as_map(d.get("groups"))
        means = as_map(d.get("means"))
        return cls(
            query_class=str(d["query_class"]) if d.get("query_class") is not None else None,
            bin_edges=[e for e in as_floats(d.get("bin_edges")) if e is not None],
            groups={
                k: [c if c is not None else 0.0 for c in as_floats(groups[k])]
                for k in SIMILARITY_GROUP_NAMES
                if k in groups
            },
            means={k: as_float(means.get(k)) for k in SIMILARITY_GROUP_NAMES if k in means},
        )


@dataclass(frozen=True)
class GalleryNeighbor:
    """One retrieved training image of the Fig. 9 gallery."""

    thumb: str  #: key into :attr:`GalleryFigure.thumbs`
    label: str  #: its semantic class
    processing: str  #: its processing class
    match: bool  #: same semantic class as the query
    similarity: float | None  #: cosine similarity to the query


@dataclass(frozen=True)
class GalleryQuery:
    """One query of the Fig. 9 gallery with its neighbours per database setup."""

    thumb: str  #: key into :attr:`GalleryFigure.thumbs`
    label: str  #: semantic class
    processing: str  #: processing class
    setups: dict[str, list[GalleryNeighbor]]  #: setup name -> nearest neighbours, nearest first


@dataclass(frozen=True)
class GalleryFigure:
    """Fig. 9: a few queries and their nearest neighbours, with thumbnails."""

    pair: list[str]  #: the ordered pair (query processing, other processing)
    thumbs: dict[str, str]  #: ``image_id|processing`` -> base64 data URI, deduplicated
    queries: list[GalleryQuery]  #: the queries shown

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> GalleryFigure:
        """Inverse of :meth:`to_dict`."""
        d = as_map(data)

        def neighbor(n: Mapping[str, Any]) -> GalleryNeighbor:
            return GalleryNeighbor(
                thumb=str(n.get("thumb", "")),
                label=str(n.get("label", "")),
                processing=str(n.get("processing", "")),
                match=n.get("match") is True,
                similarity=as_float(n.get("similarity")),
            )

        queries = [
            GalleryQuery(
                thumb=str(q.get("thumb", "")),
                label=str(q.get("label", "")),
                processing=str(q.get("processing", "")),
                setups={
                    str(name): [neighbor(as_map(n)) for n in as_seq(ns)]
                    for name, ns in as_map(q.get("setups")).items()
                },
            )
            for q in map(as_map, as_seq(d.get("queries")))
        ]
        return cls(
            pair=[str(p) for p in as_seq(d.get("pair"))],
            thumbs={str(k): v for k, v in as_map(d.get("thumbs")).items() if isinstance(v, str)},
            queries=queries,
        )


@dataclass(frozen=True)
class SemanticDetails:
    """``details`` of a ``semantic_influence`` / ``knn_accuracy`` record (docs/protocol.md §5)."""

    k: int | None = None  #: neighbours voting
    classes: list[str] = field(default_factory=list)  #: the group's processing classes
    setups: dict[str, SetupSummary] = field(default_factory=dict)  #: by setup name
    similarity_distributions: SimilarityFigure | None = None  #: Fig. 2
    gallery: GalleryFigure | None = None  #: Fig. 9
    n_train: int | None = None  #: training (database) images
    n_test: int | None = None  #: test (query) images
    seeds: list[int] = field(default_factory=list)  #: seeds of the uniform draw

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "k": self.k,
            "classes": list(self.classes),
            "setups": {name: s.to_dict() for name, s in self.setups.items()},
            "similarity_distributions": self.similarity_distributions.to_dict()
            if self.similarity_distributions is not None
            else None,
            "gallery": self.gallery.to_dict() if self.gallery is not None else None,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "seeds": list(self.seeds),
        }

    @classmethod
    def from_dict(cls, data: Any) -> SemanticDetails:
        """Inverse of :meth:`to_dict`."""
        d = as_map(data)
        dist, gallery = d.get("similarity_distributions"), d.get("gallery")
        return cls(
            k=as_int(d.get("k")),
            classes=[str(c) for c in as_seq(d.get("classes"))],
            setups={str(k): SetupSummary.from_dict(v) for k, v in as_map(d.get("setups")).items()},
            similarity_distributions=SimilarityFigure.from_dict(dist)
            if isinstance(dist, Mapping)
            else None,
            gallery=GalleryFigure.from_dict(gallery) if isinstance(gallery, Mapping) else None,
            n_train=as_int(d.get("n_train")),
            n_test=as_int(d.get("n_test")),
            seeds=[s for s in (as_int(v) for v in as_seq(d.get("seeds"))) if s is not None],
        )
