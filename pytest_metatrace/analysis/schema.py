"""Typed ``details`` of the built-in audits' records: one vocabulary from engine to report.

An analysis result turns into records whose ``details`` is one of these
classes' :meth:`to_dict`; the report rebuilds the same class with
:meth:`from_dict` and reads attributes, never raw keys. Field names are the
JSON keys. This module imports neither torch nor numpy, so the report (and
``python -m pytest_metatrace.report``) stays light.

``from_dict`` accepts documents written by older versions and by hand: a
missing field takes its empty value, so the report shows a dash, not a
traceback.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "GalleryFigure",
    "GalleryNeighbor",
    "GalleryQuery",
    "ProbeDetails",
    "SearchPoint",
    "SemanticDetails",
    "SetupSummary",
    "SimilarityFigure",
]


def _float(value: Any) -> float | None:
    """``value`` as a finite float, else ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        out = float(value)
    except ValueError:
        return None
    return out if math.isfinite(out) else None


def _int(value: Any) -> int | None:
    number = _float(value)
    return None if number is None else int(number)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _seq(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


def _floats(value: Any) -> list[float | None]:
    return [_float(v) for v in _seq(value)]


# --------------------------------------------------------------------------- processing probe


@dataclass(frozen=True)
class SearchPoint:
    """One trial of the probe's hyper-parameter search."""

    val_top1: float | None  #: validation top-1 accuracy
    lr: float | None = None  #: learning rate (sgd)
    weight_decay: float | None = None  #: weight decay (sgd)
    C: float | None = None  #: inverse regularization (lbfgs)


@dataclass(frozen=True)
class ProbeDetails:
    """``details`` of a ``processing_probe`` / ``top1`` record (docs/protocol.md §4)."""

    classes: list[str] = field(default_factory=list)  #: the group's classes, label k = classes[k]
    top1_mean: float | None = None  #: mean top-1 over seeds
    top1_std: float | None = None  #: std of top-1 over seeds (``std_ddof``)
    top1_per_seed: list[float | None] = field(default_factory=list)  #: top-1 per seed
    mean_per_class_mean: float | None = None  #: mean per-class accuracy, mean over seeds
    mean_per_class_std: float | None = None  #: its std over seeds
    per_class_accuracy: dict[str, float | None] = field(default_factory=dict)  #: by class
    confusion: list[list[float | None]] = field(default_factory=list)  #: (K, K) rows true
    hyperparameters: dict[str, float] = field(default_factory=dict)  #: of the final fits
    search: list[SearchPoint] = field(default_factory=list)  #: every search trial
    search_method: str | None = None  #: how the trials were placed
    n_train: int | None = None  #: training images
    n_test_images: int | None = None  #: test images
    n_test_samples: int | None = None  #: K x test images, scored per seed
    seeds: list[int] = field(default_factory=list)  #: seeds of the training draws
    mode: str | None = None  #: ``sgd`` (protocol) or ``lbfgs``
    std_ddof: int | None = None  #: 0 population std, 1 sample std
    device: str | None = None  #: torch device of the probes
    wall_time_s: float | None = None  #: seconds for fit and evaluate

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; search points keep only the parameters they have."""
        out = asdict(self)
        out["search"] = [
            {k: v for k, v in asdict(p).items() if v is not None or k == "val_top1"}
            for p in self.search
        ]
        return out

    @classmethod
    def from_dict(cls, data: Any) -> ProbeDetails:
        """Rebuild from a record's ``details``; tolerant of missing or malformed fields."""
        d = _map(data)
        hyper = {str(k): v for k, v in _map(d.get("hyperparameters")).items()}
        return cls(
            classes=[str(c) for c in _seq(d.get("classes"))],
            top1_mean=_float(d.get("top1_mean")),
            top1_std=_float(d.get("top1_std")),
            top1_per_seed=_floats(d.get("top1_per_seed")),
            mean_per_class_mean=_float(d.get("mean_per_class_mean")),
            mean_per_class_std=_float(d.get("mean_per_class_std")),
            per_class_accuracy={
                str(k): _float(v) for k, v in _map(d.get("per_class_accuracy")).items()
            },
            confusion=[_floats(row) for row in _seq(d.get("confusion"))],
            hyperparameters={k: v for k, v in hyper.items() if _float(v) is not None},
            search=[
                SearchPoint(
                    val_top1=_float(t.get("val_top1")),
                    lr=_float(t.get("lr")),
                    weight_decay=_float(t.get("weight_decay")),
                    C=_float(t.get("C")),
                )
                for t in map(_map, _seq(d.get("search")))
            ],
            search_method=d.get("search_method")
            if isinstance(d.get("search_method"), str)
            else None,
            n_train=_int(d.get("n_train")),
            n_test_images=_int(d.get("n_test_images")),
            n_test_samples=_int(d.get("n_test_samples")),
            seeds=[s for s in (_int(v) for v in _seq(d.get("seeds"))) if s is not None],
            mode=_str(d.get("mode")),
            std_ddof=_int(d.get("std_ddof")),
            device=_str(d.get("device")),
            wall_time_s=_float(d.get("wall_time_s")),
        )


# --------------------------------------------------------------------------- semantic influence


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
        d = _map(data)
        interval = _map(d.get("interval"))
        return cls(
            accuracy=_float(d.get("accuracy")),
            low=_float(interval.get("low")),
            high=_float(interval.get("high")),
            per_pair=[_floats(row) for row in _seq(d.get("per_pair"))],
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
        d = _map(data)
        groups = _map(d.get("groups"))
        means = _map(d.get("means"))
        return cls(
            query_class=str(d["query_class"]) if d.get("query_class") is not None else None,
            bin_edges=[e for e in _floats(d.get("bin_edges")) if e is not None],
            groups={
                k: [c if c is not None else 0.0 for c in _floats(groups[k])]
                for k in SIMILARITY_GROUP_NAMES
                if k in groups
            },
            means={k: _float(means.get(k)) for k in SIMILARITY_GROUP_NAMES if k in means},
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
        d = _map(data)

        def neighbor(n: Mapping[str, Any]) -> GalleryNeighbor:
            return GalleryNeighbor(
                thumb=str(n.get("thumb", "")),
                label=str(n.get("label", "")),
                processing=str(n.get("processing", "")),
                match=n.get("match") is True,
                similarity=_float(n.get("similarity")),
            )

        queries = [
            GalleryQuery(
                thumb=str(q.get("thumb", "")),
                label=str(q.get("label", "")),
                processing=str(q.get("processing", "")),
                setups={
                    str(name): [neighbor(_map(n)) for n in _seq(ns)]
                    for name, ns in _map(q.get("setups")).items()
                },
            )
            for q in map(_map, _seq(d.get("queries")))
        ]
        return cls(
            pair=[str(p) for p in _seq(d.get("pair"))],
            thumbs={str(k): v for k, v in _map(d.get("thumbs")).items() if isinstance(v, str)},
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
        d = _map(data)
        dist, gallery = d.get("similarity_distributions"), d.get("gallery")
        return cls(
            k=_int(d.get("k")),
            classes=[str(c) for c in _seq(d.get("classes"))],
            setups={str(k): SetupSummary.from_dict(v) for k, v in _map(d.get("setups")).items()},
            similarity_distributions=SimilarityFigure.from_dict(dist)
            if isinstance(dist, Mapping)
            else None,
            gallery=GalleryFigure.from_dict(gallery) if isinstance(gallery, Mapping) else None,
            n_train=_int(d.get("n_train")),
            n_test=_int(d.get("n_test")),
            seeds=[s for s in (_int(v) for v in _seq(d.get("seeds"))) if s is not None],
        )
