"""The mask sweep (paper Fig. 5) and the 2-D embedding map (paper Fig. 7).

Mask sweep: as the centre-mask ratio goes from 0 to 1, semantic kNN accuracy
on a labelled set (the content) should fall to chance by the chosen ratio,
while the acquisition probe (the trace) may survive. A user sees where
semantics vanish for this encoder. kNN: cosine similarity, unweighted
majority of the top k training neighbours; vote ties go to the lowest label
index (the research code's rule, docs/protocol.md §5).

Map: scikit-learn's t-SNE of the L2-normalized embeddings (PCA init, seeded),
coloured by a metadata label in the report.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pytest_metatrace.results import Record, jsonable

__all__ = [
    "SWEEP_RATIOS",
    "EmbeddingMap",
    "MaskSweep",
    "embedding_map",
    "knn_accuracy",
    "run_mask_sweep",
]

#: Mask ratios of the sweep: few, for speed; 0.9 (paper text) and 0.95 (research code) included.
SWEEP_RATIOS = (0.0, 0.5, 0.75, 0.9, 0.95, 1.0)


def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    out: np.ndarray = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return out


def knn_accuracy(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, k: int
) -> float:
    """Top-1 accuracy of a cosine kNN majority vote (ties: lowest label index)."""
    k = min(k, train_x.shape[0])
    sim = _normalize(test_x) @ _normalize(train_x).T
    order = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    votes = np.asarray(train_y)[order]
    n_classes = int(max(np.max(train_y), np.max(test_y))) + 1
    counts = np.zeros((votes.shape[0], n_classes), dtype=np.int64)
    np.add.at(counts, (np.arange(votes.shape[0])[:, None], votes), 1)
    pred = counts.argmax(axis=1)  # argmax returns the first (lowest) index on ties
    return float(np.mean(pred == np.asarray(test_y)))


@dataclass(frozen=True)
class MaskSweep:
    """Semantic kNN accuracy and acquisition-probe accuracy per mask ratio."""

    ratios: list[float]  #: the mask ratios
    semantic_accuracy: list[float]  #: kNN top-1 on the semantic set, per ratio
    semantic_chance: float  #: 1 / number of semantic classes
    semantic_dataset: str  #: the labelled set the kNN ran on
    knn_k: int  #: neighbours voting
    probe_accuracy: list[float]  #: acquisition probe top-1 per ratio
    probe_chance: float  #: 1 / number of target classes
    probe_target: str  #: the acquisition target probed
    chosen_ratio: float  #: the ratio the acquisition probes use

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out: dict[str, Any] = jsonable(dataclasses.asdict(self))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MaskSweep:
        """Inverse of :meth:`to_dict`."""
        return cls(**dict(data))

    def semantic_at(self, ratio: float) -> float:
        """Semantic kNN accuracy at ``ratio`` (one of :attr:`ratios`)."""
        return self.semantic_accuracy[self.ratios.index(ratio)]

    def to_records(self, *, encoder: str, dataset: str) -> list[Record]:
        """One ``mask_sweep`` record: the value is semantic accuracy at the chosen ratio."""
        chosen = self.chosen_ratio if self.chosen_ratio in self.ratios else self.ratios[-1]
        return [
            Record(
                audit="mask_sweep",
                metric="semantic_knn_top1_at_mask",
                value=self.semantic_at(chosen),
                encoder=encoder,
                dataset=dataset,
                parameter=self.probe_target,
                chance=self.semantic_chance,
                details=self.to_dict(),
                provenance={"ratios": list(self.ratios), "semantic_dataset": self.semantic_dataset},
            )
        ]


@dataclass(frozen=True)
class EmbeddingMap:
    """2-D t-SNE coordinates of a dataset's embeddings, with one label per point."""

    target: str  #: the label colouring the points
    x: list[float]  #: first coordinate per image
    y: list[float]  #: second coordinate per image
    labels: list[str]  #: label per image
    ids: list[str]  #: image ids
    perplexity: float  #: t-SNE perplexity used
    mask_ratio: float | None  #: None: unmasked embeddings

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out: dict[str, Any] = jsonable(dataclasses.asdict(self))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EmbeddingMap:
        """Inverse of :meth:`to_dict`."""
        return cls(**dict(data))

    def to_records(self, *, encoder: str, dataset: str) -> list[Record]:
        """One ``embedding_map`` record (value: number of points) carrying the map."""
        return [
            Record(
                audit="embedding_map",
                metric="points",
                value=float(len(self.x)),
                encoder=encoder,
                dataset=dataset,
                parameter=self.target,
                unit="images",
                details=self.to_dict(),
                provenance={"method": "sklearn TSNE, PCA init", "perplexity": self.perplexity},
            )
        ]


def embedding_map(
    features: np.ndarray,
    labels: Sequence[str],
    ids: Sequence[str],
    *,
    target: str,
    seed: int = 0,
    mask_ratio: float | None = None,
) -> EmbeddingMap:
    """t-SNE of ``features`` to 2-D, perplexity ``min(30, (N - 1) / 3)``, seeded."""
    from sklearn.manifold import TSNE

    x = _normalize(features)
    n = x.shape[0]
    if n < 4:
        raise ValueError(f"a t-SNE map needs at least 4 images, got {n}")
    perplexity = float(min(30.0, (n - 1) / 3.0))
    coords = TSNE(
        n_components=2, perplexity=perplexity, init="pca", random_state=seed, n_jobs=1
    ).fit_transform(x.astype(np.float64))
    return EmbeddingMap(
        target=target,
        x=[float(v) for v in coords[:, 0]],
        y=[float(v) for v in coords[:, 1]],
        labels=list(labels),
        ids=list(ids),
        perplexity=perplexity,
        mask_ratio=mask_ratio,
    )


def run_mask_sweep(
    semantic: Mapping[float | None, np.ndarray],
    semantic_labels: np.ndarray,
    semantic_split: tuple[np.ndarray, np.ndarray],
    acquisition: Mapping[float | None, np.ndarray],
    acquisition_split: Any,
    make_probe: Callable[[], Any],
    *,
    ratios: Sequence[float] = SWEEP_RATIOS,
    semantic_dataset: str,
    knn_k: int,
    chosen_ratio: float,
) -> MaskSweep:
    """Semantic kNN (train -> test of ``semantic_split``) and the probe, at every ratio.

    ``semantic`` / ``acquisition`` map a ratio to the embeddings of every
    item; ``acquisition_split`` is an
    :class:`~pytest_metatrace.audits.acquisition_traces.targets.AcquisitionSplit`;
    ``make_probe()`` returns a fresh :class:`LinearProbe` per ratio.
    """
    from pytest_metatrace.audits.acquisition_traces.targets import run_acquisition_probe

    train, test = semantic_split
    y = np.asarray(semantic_labels)
    n_ids = next(iter(acquisition.values())).shape[0]
    ids = [str(i) for i in range(n_ids)]
    return MaskSweep(
        ratios=[float(r) for r in ratios],
        semantic_accuracy=[
            knn_accuracy(semantic[r][train], y[train], semantic[r][test], y[test], knn_k)
            for r in ratios
        ],
        semantic_chance=1.0 / len(np.unique(y)),
        semantic_dataset=semantic_dataset,
        knn_k=knn_k,
        probe_accuracy=[
            run_acquisition_probe(
                acquisition[r], acquisition_split, make_probe(), ids=ids, mask_ratio=r
            ).top1
            for r in ratios
        ],
        probe_chance=1.0 / len(acquisition_split.classes),
        probe_target=acquisition_split.target,
        chosen_ratio=chosen_ratio,
    )
