"""Processing drift: cosine distance of each image's embedding to its reference view.

For one processing class ``p`` and every image, ``1 - cos(e_ref, e_p)`` where
``e_ref`` is the image's embedding under ``jpeg95_444`` (every non-JPEG
operation ends with that re-encode, docs/protocol.md §2). The mean carries a
bootstrap interval over images (docs/protocol.md §11).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pytest_metatrace.analysis.schema import as_float, as_int, as_map
from pytest_metatrace.analysis.stats import Interval, bootstrap_mean
from pytest_metatrace.audits.processing_drift.spec import REFERENCE
from pytest_metatrace.results import Record, jsonable

if TYPE_CHECKING:
    from pytest_metatrace.data import Dataset
    from pytest_metatrace.embeddings import Embeddings

__all__ = ["REFERENCE", "DriftResult", "cosine_distance", "processing_drift"]


def cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise ``1 - cos(a_i, b_i)`` of two ``(N, D)`` arrays."""

    def unit(x: np.ndarray) -> np.ndarray:
        out: np.ndarray = x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)
        return out

    distance: np.ndarray = 1.0 - np.sum(unit(a) * unit(b), axis=1)
    return distance


@dataclass(frozen=True)
class DriftResult:
    """How far one processing class moves embeddings from the reference view."""

    processing: str  #: the processing class compared with the reference
    reference: str  #: the reference class (``jpeg95_444``)
    mean: float  #: mean cosine distance over images
    interval: Interval | None  #: bootstrap interval of ``mean`` (None when read from details)
    quantiles: dict[str, float]  #: ``p05``, ``p50``, ``p95`` of the distances
    n_images: int | None  #: images compared (None when unknown)
    distances: tuple[float, ...] = ()  #: per-image distances (the bootstrap's items)
    image_ids: tuple[str, ...] = ()  #: ids of those images, aligned with ``distances``

    def to_dict(self) -> dict[str, Any]:
        """The record's ``details``: reference, quantiles and image count."""
        out: dict[str, Any] = jsonable(
            {"reference": self.reference, "quantiles": self.quantiles, "n_images": self.n_images}
        )
        return out

    @classmethod
    def from_dict(cls, details: Any, *, processing: str = "", mean: float = 0.0) -> DriftResult:
        """Rebuild from a record's ``details`` (its ``parameter`` and ``value`` given apart).

        Tolerant: a missing or malformed field takes its empty value
        (no quantile, ``reference`` ``""``, ``n_images`` None).
        """
        d = as_map(details)
        quantiles = {str(k): as_float(v) for k, v in as_map(d.get("quantiles")).items()}
        return cls(
            processing=processing,
            reference=str(d["reference"]) if d.get("reference") is not None else "",
            mean=mean,
            interval=None,
            quantiles={k: v for k, v in quantiles.items() if v is not None},
            n_images=as_int(d.get("n_images")),
        )

    def to_records(self, *, encoder: str, dataset: str) -> list[Record]:
        """One ``processing_drift`` / ``mean_cosine_distance`` record."""
        return [
            Record(
                audit="processing_drift",
                metric="mean_cosine_distance",
                value=self.mean,
                encoder=encoder,
                dataset=dataset,
                parameter=self.processing,
                unit="cosine distance",
                interval=self.interval.to_dict() if self.interval is not None else None,
                details=self.to_dict(),
                provenance={"processing": [self.reference, self.processing]},
                scores=list(self.distances) or None,
                score_ids=list(self.image_ids) or None,
            )
        ]


def processing_drift(
    embeddings: Embeddings, dataset: Dataset, processing: str, *, reference: str = REFERENCE
) -> DriftResult:
    """Cosine distance of every image under ``processing`` to itself under ``reference``."""
    views = embeddings.many(dataset, "all", [reference, processing])
    distance = cosine_distance(views[reference], views[processing])
    p05, p50, p95 = np.quantile(distance, [0.05, 0.5, 0.95])
    ids = [dataset.items[int(i)].id for i in embeddings.split(dataset).indices("all")]
    return DriftResult(
        processing=processing,
        reference=reference,
        mean=float(distance.mean()),
        interval=bootstrap_mean(distance),
        quantiles={"p05": float(p05), "p50": float(p50), "p95": float(p95)},
        n_images=int(distance.shape[0]),
        distances=tuple(float(d) for d in distance),
        image_ids=tuple(ids),
    )
