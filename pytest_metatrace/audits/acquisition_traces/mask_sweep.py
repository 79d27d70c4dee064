"""The mask sweep (paper Fig. 5) and the 2-D embedding map (paper Fig. 7).

Mask sweep: as the centre-mask ratio goes from 0 to 1, a semantic curve (the
content) should fall to chance by the chosen ratio, while the acquisition
probe (the trace) may survive. A user sees where semantics vanish for this
encoder. The semantic curve comes from one of two sources
(``--metatrace-sweep-data``, :func:`choose_sweep_source`):

- **pairs** (``auto`` on paired data such as City100): the recall@1 of each
  photo's twin - the other device's photo of the same postcard (group) -
  among the other device's photos, at each ratio. Natural photos, the
  audit's own, whose embeddings the audit already extracts at every sweep
  ratio: no extra forwards. Chance: 1 / number of candidates.
- **labelled** (``auto`` on unpaired data: the ``demo`` set; or a set the
  user names): kNN top-1 from the set's training to its test side (a
  group-disjoint split when the set carries groups). Cosine similarity,
  unweighted majority of the top k; equal similarities rank the lower
  training index first, and a tied vote goes to the best-ranked neighbour's
  label - the semantic-influence audit's engine
  (:mod:`pytest_metatrace.analysis.knn_engine`, docs/protocol.md §5).

Map: scikit-learn's t-SNE of the L2-normalized embeddings (PCA init, seeded),
coloured by a metadata label in the report.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from pytest_metatrace.results import Record, jsonable

__all__ = [
    "MIN_PAIRS",
    "PAIR_TIE_RULE",
    "SWEEP_RATIOS",
    "TIE_RULE",
    "EmbeddingMap",
    "MaskSweep",
    "SemanticCurve",
    "SweepChoice",
    "SweepPairs",
    "choose_sweep_source",
    "embedding_map",
    "knn_accuracy",
    "knn_curve",
    "pair_curve",
    "run_mask_sweep",
    "sweep_pairs",
    "twin_recall_at_1",
]

#: Mask ratios of the sweep: few, for speed; 0.9 (paper text) and 0.95 (research code) included.
SWEEP_RATIOS = (0.0, 0.5, 0.75, 0.9, 0.95, 1.0)
#: Fewest pairs for the pairs curve: chance (1 / pairs) is then at most 10%, so it can fall.
MIN_PAIRS = 10

SweepSource = Literal["pairs", "labelled", "off"]


def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    out: np.ndarray = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return out


def knn_accuracy(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, k: int
) -> float:
    """Top-1 accuracy of a cosine kNN majority vote, by the semantic audit's rule.

    Neighbours and votes come from :func:`~pytest_metatrace.analysis.knn_engine.topk_neighbors`
    and :func:`~pytest_metatrace.analysis.knn_engine.majority_vote`: equal
    similarities rank the lower training index first; among labels tied for
    the most votes, the best-ranked neighbour's label wins. ``k`` is capped
    at the training set's size.
    """
    import torch

    from pytest_metatrace.analysis.knn_engine import majority_vote, topk_neighbors

    k = min(k, train_x.shape[0])
    sim = torch.from_numpy(_normalize(test_x) @ _normalize(train_x).T)
    _, order = topk_neighbors(sim, k)
    pred = majority_vote(torch.as_tensor(np.asarray(train_y, dtype=np.int64))[order])
    hits: np.ndarray = pred.numpy() == np.asarray(test_y)
    return float(hits.mean())


def twin_recall_at_1(first: np.ndarray, second: np.ndarray) -> float:
    """Recall@1 of each photo's twin among the other side's photos, over both sides.

    ``first[i]`` and ``second[i]`` are pair i's two photos (one per device).
    A query from one side searches every photo of the other side (cosine); it
    is a hit when its twin ranks first. Equal similarities rank the lower
    index first (:func:`~pytest_metatrace.analysis.knn_engine.topk_neighbors`),
    so identical embeddings (an all-black mask) score exactly chance, 1 / n.
    """
    import torch

    from pytest_metatrace.analysis.knn_engine import topk_neighbors

    a, b = _normalize(first), _normalize(second)
    if a.shape != b.shape or a.shape[0] < 2:
        raise ValueError(f"need two equal (pairs >= 2, dim) arrays, got {a.shape} and {b.shape}")
    sim = torch.from_numpy(a @ b.T)
    truth = torch.arange(a.shape[0])
    _, ab = topk_neighbors(sim, 1)
    _, ba = topk_neighbors(sim.T.contiguous(), 1)
    hits = int((ab[:, 0] == truth).sum()) + int((ba[:, 0] == truth).sum())
    return hits / (2 * int(a.shape[0]))


@dataclass(frozen=True)
class SweepPairs:
    """The pairs of the sweep's retrieval curve: groups of one photo per side (device)."""

    target: str  #: the target whose two classes are the sides, e.g. ``smartphone``
    sides: tuple[str, str]  #: the two classes, sorted
    first: np.ndarray  #: item index of each pair's ``sides[0]`` photo
    second: np.ndarray  #: item index of its twin (``sides[1]``)
    groups: tuple[str, ...]  #: each pair's group
    labelled: int  #: items with a label for ``target`` (the pairs' share of them counts)

    @property
    def n(self) -> int:
        """Number of pairs."""
        return len(self.groups)

    @property
    def coverage(self) -> float:
        """Share of the labelled items that lie in a pair."""
        return 2 * self.n / self.labelled if self.labelled else 0.0


def sweep_pairs(
    labels: Sequence[str | None], groups: Sequence[str | None], *, target: str
) -> SweepPairs:
    """The groups holding exactly two labelled photos of two different classes.

    Of the class pairs found, the most frequent one (ties: sorted first) gives
    the two sides; groups of other classes are left out. No groups, no pairs.
    """
    if len(labels) != len(groups):
        raise ValueError(f"{len(labels)} labels but {len(groups)} groups")
    members: dict[str, list[int]] = {}
    for i, (lab, g) in enumerate(zip(labels, groups, strict=True)):
        if lab is not None and g is not None:
            members.setdefault(g, []).append(i)
    found: dict[tuple[str, str], list[tuple[str, int, int]]] = {}
    for g in sorted(members):
        idx = members[g]
        if len(idx) != 2 or labels[idx[0]] == labels[idx[1]]:
            continue
        i, j = sorted(idx, key=lambda m: str(labels[m]))
        found.setdefault((str(labels[i]), str(labels[j])), []).append((g, i, j))
    labelled = sum(lab is not None for lab in labels)
    if not found:
        empty = np.zeros(0, np.int64)
        return SweepPairs(target, ("", ""), empty, empty, (), labelled)
    sides = min(found, key=lambda s: (-len(found[s]), s))
    rows = found[sides]
    return SweepPairs(
        target=target,
        sides=sides,
        first=np.array([i for _, i, _ in rows], np.int64),
        second=np.array([j for _, _, j in rows], np.int64),
        groups=tuple(g for g, _, _ in rows),
        labelled=labelled,
    )


@dataclass(frozen=True)
class SweepChoice:
    """Where the sweep's semantic curve comes from, and why."""

    source: SweepSource  #: ``pairs``, ``labelled`` or ``off``
    reason: str  #: one sentence for the report
    spec: str | None = None  #: the labelled set's data spec (``labelled`` only)
    pairs: SweepPairs | None = None  #: the pairs (``pairs`` only)


def choose_sweep_source(
    option: str, items: Sequence[Any], plan: Any, *, dataset: str
) -> SweepChoice:
    """Resolve ``--metatrace-sweep-data`` against the acquisition data and its target plan.

    ``auto`` (default): the pairs when the data holds at least
    :data:`MIN_PAIRS` of them covering at least half of the probe target's
    labelled photos (City100: 100 pairs, every photo), else the ``demo`` set.
    ``pairs``: the pairs, or a ``ValueError`` naming why there are none.
    ``none``: off. Anything else: that labelled set. The pairs' sides are
    the classes of the sweep's probe target (the plan's first runnable one).
    """
    from pytest_metatrace.audits.acquisition_traces.targets import target_labels

    if option == "none":
        return SweepChoice("off", "switched off (--metatrace-sweep-data=none)")
    if not plan.splits:
        return SweepChoice("off", "no acquisition target runs, so there is no probe to sweep")
    if option not in ("auto", "pairs"):
        return SweepChoice("labelled", f"kNN on --metatrace-sweep-data={option}", spec=option)
    target = next(iter(plan.splits))
    pairs = sweep_pairs(target_labels(items, target), [it.group for it in items], target=target)
    have = (
        f"{dataset} holds {pairs.n} group(s) of exactly one {pairs.sides[0]!r} and one "
        f"{pairs.sides[1]!r} photo ({pairs.coverage:.0%} of the photos labelled for {target})"
        if pairs.n
        else f"{dataset} holds no group of exactly two photos of two {target} classes"
    )
    if pairs.n >= MIN_PAIRS and (option == "pairs" or pairs.coverage >= 0.5):
        return SweepChoice(
            "pairs",
            f"{have}: recall@1 of each photo's twin from the other side among that side's "
            "photos, on the audit's own (natural) photos, whose masked embeddings the audit "
            "already has",
            pairs=pairs,
        )
    if option == "pairs":
        raise ValueError(
            f"--metatrace-sweep-data=pairs: {have}; the pairs curve needs at least {MIN_PAIRS}. "
            "Use auto, none, or a labelled set (e.g. demo)"
        )
    return SweepChoice(
        "labelled",
        f"auto: {have}, too few for the pairs curve (at least {MIN_PAIRS}, covering half the "
        "photos), so kNN on the demo set",
        spec="demo",
    )


@dataclass(frozen=True)
class SemanticCurve:
    """The sweep's semantic measure per mask ratio, with its chance and where it came from."""

    source: SweepSource  #: ``pairs`` (twin recall@1) or ``labelled`` (kNN top-1)
    measure: str  #: ``recall@1`` or ``kNN top-1``
    dataset: str  #: the data it ran on (the acquisition set for pairs)
    ratios: list[float]  #: mask ratios
    scores: list[float]  #: the measure per ratio
    chance: float  #: 1 / candidates (pairs) or 1 / classes (labelled)
    candidates: int  #: photos each query searches (pairs) / training images (labelled)
    knn_k: int | None = None  #: neighbours voting (labelled only)
    note: str = ""  #: why this source (:attr:`SweepChoice.reason`)
    tie_rule: str = ""  #: how ties are resolved

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out: dict[str, Any] = jsonable(dataclasses.asdict(self))
        return out


#: Ties of the sweep's kNN, for the report.
TIE_RULE = (
    "equal similarities rank the lower index first; a tied vote goes to the label of the "
    "best-ranked neighbour among the tied labels (the semantic-influence audit's rule)"
)
#: Ties of the sweep's twin retrieval, for the report.
PAIR_TIE_RULE = (
    "equal similarities rank the lower index first (the semantic-influence audit's engine), so "
    "identical embeddings score chance"
)


def pair_curve(
    features: Mapping[float | None, np.ndarray],
    pairs: SweepPairs,
    *,
    ratios: Sequence[float] = SWEEP_RATIOS,
    dataset: str,
    note: str = "",
) -> SemanticCurve:
    """Twin recall@1 (:func:`twin_recall_at_1`) at every ratio; ``features[r]``: every item."""
    if pairs.n < 2:
        raise ValueError(f"the pairs curve needs at least 2 pairs, got {pairs.n}")
    return SemanticCurve(
        source="pairs",
        measure="recall@1",
        dataset=dataset,
        ratios=[float(r) for r in ratios],
        scores=[
            twin_recall_at_1(features[r][pairs.first], features[r][pairs.second]) for r in ratios
        ],
        chance=1.0 / pairs.n,
        candidates=pairs.n,
        note=note,
        tie_rule=PAIR_TIE_RULE,
    )


def knn_curve(
    features: Mapping[float | None, np.ndarray],
    labels: np.ndarray,
    split: tuple[np.ndarray, np.ndarray],
    *,
    k: int,
    ratios: Sequence[float] = SWEEP_RATIOS,
    dataset: str,
    note: str = "",
) -> SemanticCurve:
    """kNN top-1 (:func:`knn_accuracy`) from ``split[0]`` to ``split[1]`` at every ratio."""
    train, test = split
    y = np.asarray(labels)
    return SemanticCurve(
        source="labelled",
        measure="kNN top-1",
        dataset=dataset,
        ratios=[float(r) for r in ratios],
        scores=[
            knn_accuracy(features[r][train], y[train], features[r][test], y[test], k)
            for r in ratios
        ],
        chance=1.0 / len(np.unique(y)),
        candidates=int(np.asarray(train).size),
        knn_k=k,
        note=note,
        tie_rule=TIE_RULE,
    )


@dataclass(frozen=True)
class MaskSweep:
    """The semantic curve and the acquisition-probe accuracy per mask ratio."""

    ratios: list[float]  #: the mask ratios
    semantic: SemanticCurve  #: the content measure per ratio
    probe_accuracy: list[float]  #: acquisition probe top-1 per ratio
    probe_chance: float  #: 1 / number of target classes
    probe_target: str  #: the acquisition target probed
    chosen_ratio: float  #: the ratio the acquisition probes use

    @property
    def metric(self) -> str:
        """The record's metric: the semantic measure at the chosen ratio."""
        if self.semantic.source == "pairs":
            return "semantic_recall_at_1_at_mask"
        return "semantic_knn_top1_at_mask"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out: dict[str, Any] = jsonable(dataclasses.asdict(self))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MaskSweep:
        """Inverse of :meth:`to_dict`; also reads the flat form of records written before pairs."""
        kwargs = dict(data)
        if "semantic" not in kwargs:
            kwargs["semantic"] = SemanticCurve(
                source="labelled",
                measure="kNN top-1",
                dataset=kwargs.pop("semantic_dataset"),
                ratios=list(kwargs["ratios"]),
                scores=kwargs.pop("semantic_accuracy"),
                chance=kwargs.pop("semantic_chance"),
                candidates=0,
                knn_k=kwargs.pop("knn_k", None),
                tie_rule="lowest label index (before the shared rule)",
            )
        else:
            kwargs["semantic"] = SemanticCurve(**kwargs["semantic"])
        return cls(**kwargs)

    def semantic_at(self, ratio: float) -> float:
        """The semantic measure at ``ratio`` (one of :attr:`ratios`)."""
        return self.semantic.scores[self.ratios.index(ratio)]

    def to_records(self, *, encoder: str, dataset: str) -> list[Record]:
        """One ``mask_sweep`` record: the value is the semantic measure at the chosen ratio."""
        chosen = self.chosen_ratio if self.chosen_ratio in self.ratios else self.ratios[-1]
        return [
            Record(
                audit="mask_sweep",
                metric=self.metric,
                value=self.semantic_at(chosen),
                encoder=encoder,
                dataset=dataset,
                parameter=self.probe_target,
                chance=self.semantic.chance,
                details=self.to_dict(),
                provenance={
                    "ratios": list(self.ratios),
                    "semantic_source": self.semantic.source,
                    "semantic_dataset": self.semantic.dataset,
                },
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
    """t-SNE of ``features`` to 2-D, perplexity ``min(30, (N - 1) / 3)``, seeded.

    Cached by its inputs (:mod:`pytest_metatrace.analysis.memo`).
    """
    from pytest_metatrace.analysis.memo import cached

    return cached(
        "embedding_map",
        {"labels": list(labels), "ids": list(ids), "target": target, "seed": seed,
         "mask_ratio": mask_ratio},
        [features],
        lambda: _embedding_map(
            features, labels, ids, target=target, seed=seed, mask_ratio=mask_ratio
        ),
    )  # fmt: skip


def _embedding_map(
    features: np.ndarray,
    labels: Sequence[str],
    ids: Sequence[str],
    *,
    target: str,
    seed: int,
    mask_ratio: float | None,
) -> EmbeddingMap:
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
    semantic: SemanticCurve,
    acquisition: Mapping[float | None, np.ndarray],
    acquisition_split: Any,
    make_probe: Callable[[], Any],
    *,
    chosen_ratio: float,
) -> MaskSweep:
    """The acquisition probe at every ratio of ``semantic`` (:func:`pair_curve`, :func:`knn_curve`).

    ``acquisition`` maps a ratio to the embeddings of every item;
    ``acquisition_split`` is an
    :class:`~pytest_metatrace.audits.acquisition_traces.targets.AcquisitionSplit`;
    ``make_probe()`` returns a fresh :class:`LinearProbe` per ratio.
    """
    from pytest_metatrace.audits.acquisition_traces.targets import run_acquisition_probe

    n_ids = next(iter(acquisition.values())).shape[0]
    ids = [str(i) for i in range(n_ids)]
    return MaskSweep(
        ratios=list(semantic.ratios),
        semantic=semantic,
        probe_accuracy=[
            run_acquisition_probe(
                acquisition[r], acquisition_split, make_probe(), ids=ids, mask_ratio=r
            ).top1
            for r in semantic.ratios
        ],
        probe_chance=1.0 / len(acquisition_split.classes),
        probe_target=acquisition_split.target,
        chosen_ratio=chosen_ratio,
    )
