"""kNN semantic influence: how far processing metadata moves semantic kNN predictions.

docs/protocol.md §5 (paper Sec. 4.1). A test image x is processed with p_i and
classified by an unweighted top-k majority vote over a training database whose
images are processed so that metadata agrees or disagrees with the semantic
label; ``p_j != p_i`` is a second processing class of the same parameter group:

============  ==========================  ===================
setup         positives (x's label)       negatives
============  ==========================  ===================
``all_same``  p_i                         p_i
``all_diff``  p_j                         p_j
``pos_same``  p_i                         p_j
``neg_same``  p_j                         p_i
``uniform``   drawn per image (seeded)    the same draw
============  ==========================  ===================

Every training image appears exactly once in every database, under one
processing class, so each database row is one block of the similarity between
the queries (under p_i) and the training set under one class. The engine
computes those K blocks once per chunk of queries and derives every setup from
them with ``where`` (and a ``gather`` for ``uniform``) instead of building a
database per query.

The primitives (top-k, vote, inputs) live in
:mod:`~pytest_metatrace.analysis.knn_engine` and are re-exported here; the
figure data (docs/protocol.md §8) in :mod:`~pytest_metatrace.audits.semantic_influence.figures`:
``similarity_distributions`` for Fig. 2, ``neighbor_gallery`` for Fig. 9.

Conventions shared by every function here:

* cosine similarity of embeddings L2-normalized in float32 on the engine's
  device, whatever dtype the caller passes;
* neighbours with equal similarity are ranked by lower training index;
* among labels tied for the most votes, the label of the highest-ranked
  neighbour among them wins;
* ``device="auto"`` runs on CUDA when available, on CPU otherwise. Float
  round-off of the matrix products may differ between devices (and could in
  principle flip an exact near-tie); everything else is identical.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from pytest_metatrace.analysis.knn_engine import (
    DEFAULT_K,
    DEFAULT_MEMORY_BUDGET_MB,
    DEFAULT_SEEDS,
    PAIR_SETUPS,
    SETUPS,
    UNIFORM_DRAW,
    Embeddings,
    KnnInputError,
    Labels,
    _chunk_rows,
    _prepare,
    _score,
    check_semantic_classes,
    majority_vote,
    resolve_device,
    topk_neighbors,
    uniform_draw,
)
from pytest_metatrace.analysis.stats import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_LEVEL,
    Interval,
    bootstrap_mean,
    bootstrap_mean_diff,
)
from pytest_metatrace.results import jsonable

__all__ = [
    "DEFAULT_K",
    "DEFAULT_MEMORY_BUDGET_MB",
    "DEFAULT_SEEDS",
    "PAIR_SETUPS",
    "SETUPS",
    "UNIFORM_DRAW",
    "KnnInfluence",
    "KnnInfluenceResult",
    "KnnInputError",
    "SetupAccuracy",
    "check_semantic_classes",
    "majority_vote",
    "resolve_device",
    "topk_neighbors",
    "uniform_draw",
]

# --------------------------------------------------------------------------- the five setups


@dataclass
class SetupAccuracy:
    """kNN accuracy of one setup, overall and broken down."""

    setup: str  #: one of :data:`SETUPS`
    accuracy: float  #: mean over ordered pairs (and seeds), as an exact ratio of counts
    #: (K, K) accuracy of queries under class i (row) with second class j (column);
    #: NaN (``None`` in JSON) on the diagonal. Rows of ``all_same`` and ``uniform``
    #: are constant because those setups do not depend on j.
    per_pair: npt.NDArray[np.float64]
    per_query_class: npt.NDArray[np.float64]  #: (K,) mean of each row of ``per_pair``
    #: (N_test,) mean correctness of each test image over all pairs (and seeds): the
    #: unit for paired bootstrap intervals; its mean equals ``accuracy``
    per_image: npt.NDArray[np.float64]
    per_seed: npt.NDArray[np.float64] | None = None  #: ``uniform`` only: (seeds,) accuracy

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (NaN as ``None``)."""
        return {
            "setup": self.setup,
            "accuracy": self.accuracy,
            "per_pair": jsonable(self.per_pair),
            "per_query_class": jsonable(self.per_query_class),
            "per_image": jsonable(self.per_image),
            "per_seed": None if self.per_seed is None else jsonable(self.per_seed),
        }


@dataclass
class KnnInfluenceResult:
    """The five setups of one parameter group, with the two gaps an audit gates on."""

    setups: dict[str, SetupAccuracy]  #: by name, in :data:`SETUPS` order
    classes: tuple[str, ...]  #: processing classes, the order of every K axis
    k: int  #: neighbours voting
    seeds: tuple[int, ...]  #: seeds of the ``uniform`` draw
    n_train: int  #: training images (each under every class)
    n_test: int  #: test images (each under every class)
    dim: int  #: embedding dimension
    n_labels: int  #: distinct semantic labels over train and test
    device: str  #: where it ran
    chunk_size: int  #: test images per chunk
    seconds: float  #: wall time of :meth:`KnnInfluence.evaluate`
    uniform_draw: str = UNIFORM_DRAW  #: how ``uniform`` was drawn
    #: label code -> original label, for decoding ``predictions``
    label_values: npt.NDArray[Any] | None = field(default=None, repr=False)
    #: only with ``keep_predictions``: per setup, predicted label codes, shaped
    #: (K, K, N_test) for pair setups (-1 on the diagonal) and (K, seeds, N_test) for uniform
    predictions: dict[str, npt.NDArray[np.int64]] | None = field(default=None, repr=False)

    @property
    def pos_same_gap(self) -> float:
        """pos-same minus all-same accuracy: how much agreeing metadata helps."""
        return self.setups["pos_same"].accuracy - self.setups["all_same"].accuracy

    @property
    def neg_same_gap(self) -> float:
        """all-same minus neg-same accuracy: how much misleading metadata hurts."""
        return self.setups["all_same"].accuracy - self.setups["neg_same"].accuracy

    @property
    def n_pairs(self) -> int:
        """Ordered pairs (p_i, p_j), i != j, averaged over."""
        return len(self.classes) * (len(self.classes) - 1)

    def accuracy(self, setup: str) -> float:
        """Accuracy of one setup, naming the known setups on error."""
        try:
            return self.setups[setup].accuracy
        except KeyError:
            raise KeyError(f"unknown setup {setup!r}; known: {', '.join(SETUPS)}") from None

    def intervals(
        self, *, level: float = DEFAULT_LEVEL, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0
    ) -> dict[str, Interval]:
        """Bootstrap intervals over test images: each setup's accuracy and the two gaps.

        Keys: the setup names, ``pos_same_gap`` and ``neg_same_gap`` (paired
        intervals, so that the shared per-image difficulty cancels).
        """
        out = {
            name: bootstrap_mean(s.per_image, level=level, n_boot=n_boot, seed=seed)
            for name, s in self.setups.items()
        }
        per = {name: s.per_image for name, s in self.setups.items()}
        out["pos_same_gap"] = bootstrap_mean_diff(
            per["pos_same"], per["all_same"], level=level, n_boot=n_boot, seed=seed
        )
        out["neg_same_gap"] = bootstrap_mean_diff(
            per["all_same"], per["neg_same"], level=level, n_boot=n_boot, seed=seed
        )
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (``predictions`` and ``label_values`` are left out)."""
        out: dict[str, Any] = jsonable(
            {
                "setups": {name: s.to_dict() for name, s in self.setups.items()},
                "accuracy": {name: s.accuracy for name, s in self.setups.items()},
                "pos_same_gap": self.pos_same_gap,
                "neg_same_gap": self.neg_same_gap,
                "classes": list(self.classes),
                "k": self.k,
                "seeds": list(self.seeds),
                "n_train": self.n_train,
                "n_test": self.n_test,
                "n_pairs": self.n_pairs,
                "dim": self.dim,
                "n_labels": self.n_labels,
                "device": self.device,
                "chunk_size": self.chunk_size,
                "seconds": self.seconds,
                "uniform_draw": self.uniform_draw,
            }
        )
        return out


class KnnInfluence:
    """kNN semantic influence of one processing parameter group (docs/protocol.md §5).

    ``KnnInfluence(k=10).evaluate(train, train_labels, test, test_labels, classes)``
    classifies every test image under every class p_i against the five
    training databases, for every ordered pair (p_i, p_j), i != j, and every
    ``uniform`` seed, and averages.

    Cost and memory. Per chunk of ``c`` test images and query class p_i the
    engine computes the K similarity blocks ``q_i @ train_j.T`` once (K^2
    products of (c, D) x (D, N_train) per chunk over all i) and runs
    ``1 + 3 (K-1) + len(seeds)`` top-k selections of (c, N_train) rows, each
    database formed in one preallocated buffer by ``where(label match, block_a,
    block_b)`` or a ``gather`` over the blocks for ``uniform``. Peak memory on
    the device, besides the caller's arrays, is about::

        4 * K * N_train * D                  # the normalized database (float32)
      + c * N_train * (4 * K + 9)  bytes     # K blocks (4 B each), the composite
                                             # buffer (4 B), the label mask (1 B)
                                             # and tie-resolution temporaries (<= 4 B)

    independent of N_test: the chunk size bounds it whatever the database
    size. With ``chunk_size=None`` it is chosen so that the second term stays
    under ``memory_budget_mb`` (at least one image per chunk). For 20k
    training images, K = 6, D = 512 and the default 1 GiB budget (c = 1626)
    that is 1.32 GB; measured 1.27 GB (CUDA allocator peak, and CPU peak RSS
    above baseline; ``bench/bench_knn.py``). ``keep_predictions`` adds
    ``8 * N_test * K * (4 K + len(seeds))`` bytes.
    """

    def __init__(
        self,
        k: int = DEFAULT_K,
        *,
        seeds: Sequence[int] = DEFAULT_SEEDS,
        device: str | torch.device = "auto",
        chunk_size: int | None = None,
        memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
        keep_predictions: bool = False,
    ) -> None:
        self.k = k  #: neighbours voting (10 for ImageNet-like sets, 1 for fine-grained ones)
        self.seeds = tuple(seeds)  #: seeds of the ``uniform`` draw
        self.device = device  #: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a torch.device
        self.chunk_size = chunk_size  #: test images per chunk; ``None`` derives it from the budget
        self.memory_budget_mb = memory_budget_mb  #: per-chunk memory bound for chunk_size=None
        self.keep_predictions = keep_predictions  #: keep every predicted label (debugging, tests)

    def __repr__(self) -> str:
        return (
            f"KnnInfluence(k={self.k}, seeds={self.seeds}, device={self.device!r}, "
            f"chunk_size={self.chunk_size}, memory_budget_mb={self.memory_budget_mb})"
        )

    def _check_params(self) -> None:
        if not isinstance(self.k, (int, np.integer)) or isinstance(self.k, bool) or self.k < 1:
            raise ValueError(f"k must be a positive integer, got {self.k!r}")
        if not self.seeds:
            raise ValueError("uniform needs at least one seed (docs/protocol.md §5: seeds 0..9)")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds}")

    def evaluate(
        self,
        train: Embeddings,
        train_labels: Labels,
        test: Embeddings,
        test_labels: Labels,
        classes: Sequence[str],
    ) -> KnnInfluenceResult:
        """Accuracy of the five setups.

        ``train[c]``: (N_train, D) embeddings of the training images processed
        with class ``c``, the same images in the same order under every class;
        ``train_labels``: their (N_train,) semantic labels (ints or strings);
        ``test[c]`` / ``test_labels`` likewise for the test images; ``classes``:
        the K >= 2 processing classes of the group, the order of every K axis
        and of the ``uniform`` draw. Test labels absent from the training set
        are allowed and always misclassified. Raises :class:`KnnInputError`
        when the training set holds fewer than two semantic classes.
        """
        start = time.perf_counter()
        self._check_params()
        check_semantic_classes(train_labels)
        device = resolve_device(self.device)
        k = int(self.k)
        data = _prepare(train, train_labels, test, test_labels, classes, device, k)
        n_cls, n_train, n_test = len(data.classes), data.n_train, data.n_test
        n_seeds = len(self.seeds)
        chunk = _chunk_rows(
            self.chunk_size, n_train * (4 * n_cls + 9), self.memory_budget_mb, n_test
        )
        draws = torch.as_tensor(
            np.stack([uniform_draw(s, n_cls, n_train) for s in self.seeds]), device=device
        )

        # Integer counters (on the device), so that accuracies are exact ratios.
        pair_shape = (len(PAIR_SETUPS), n_cls, n_cls)
        pair_counts = torch.zeros(pair_shape, dtype=torch.int64, device=device)
        seed_counts = torch.zeros((n_cls, n_seeds), dtype=torch.int64, device=device)
        image_counts = torch.zeros((len(SETUPS), n_test), dtype=torch.int64, device=device)
        keep = self.keep_predictions
        pair_preds = (
            torch.full((*pair_shape, n_test), -1, dtype=torch.int64, device=device)
            if keep
            else None
        )
        uniform_preds = (
            torch.full((n_cls, n_seeds, n_test), -1, dtype=torch.int64, device=device)
            if keep
            else None
        )

        blocks = torch.empty((n_cls, chunk, n_train), dtype=torch.float32, device=device)
        buffer = torch.empty((chunk, n_train), dtype=torch.float32, device=device)
        for lo in range(0, n_test, chunk):
            hi = min(n_test, lo + chunk)
            rows = hi - lo
            truth = data.test_codes[lo:hi]
            positive = data.train_codes.unsqueeze(0) == truth.unsqueeze(1)
            sims = blocks[:, :rows]
            composite = buffer[:rows]
            for i in range(n_cls):
                q = data.queries(i, slice(lo, hi))
                for j in range(n_cls):
                    torch.mm(q, data.train[j].T, out=sims[j])

                # all_same does not depend on j: one selection serves all K-1 pairs.
                pred, correct = _score(sims[i], data.train_codes, truth, k)
                others = [j for j in range(n_cls) if j != i]
                pair_counts[0, i, others] += correct.sum()
                image_counts[0, lo:hi] += correct * (n_cls - 1)
                if pair_preds is not None:
                    pair_preds[0, i, others, lo:hi] = pred
                for j in others:
                    # (positives, negatives) block per setup; docs/protocol.md §5:
                    # positives share the query's semantic label.
                    for setup, (pos, neg) in ((1, (j, j)), (2, (i, j)), (3, (j, i))):
                        # all_diff reads its block directly; the mixed databases
                        # are formed in the one composite buffer, used at once.
                        sim = (
                            sims[pos]
                            if pos == neg
                            else torch.where(positive, sims[pos], sims[neg], out=composite)
                        )
                        pred, correct = _score(sim, data.train_codes, truth, k)
                        pair_counts[setup, i, j] += correct.sum()
                        image_counts[setup, lo:hi] += correct
                        if pair_preds is not None:
                            pair_preds[setup, i, j, lo:hi] = pred
                for s in range(n_seeds):
                    index = draws[s].view(1, 1, n_train).expand(1, rows, n_train)
                    torch.gather(sims, 0, index, out=composite.unsqueeze(0))
                    pred, correct = _score(composite, data.train_codes, truth, k)
                    seed_counts[i, s] += correct.sum()
                    image_counts[4, lo:hi] += correct
                    if uniform_preds is not None:
                        uniform_preds[i, s, lo:hi] = pred
        del blocks, buffer

        setups = self._summarize(
            pair_counts.cpu().numpy(),
            seed_counts.cpu().numpy(),
            image_counts.cpu().numpy(),
            n_cls,
            n_test,
            n_seeds,
        )
        predictions = None
        if pair_preds is not None and uniform_preds is not None:
            pair_np = pair_preds.cpu().numpy()
            predictions = {name: pair_np[a] for a, name in enumerate(PAIR_SETUPS)}
            predictions["uniform"] = uniform_preds.cpu().numpy()
        return KnnInfluenceResult(
            setups=setups,
            classes=data.classes,
            k=k,
            seeds=self.seeds,
            n_train=n_train,
            n_test=n_test,
            dim=data.dim,
            n_labels=len(data.label_values),
            device=str(device),
            chunk_size=chunk,
            seconds=time.perf_counter() - start,
            label_values=data.label_values,
            predictions=predictions,
        )

    @staticmethod
    def _summarize(
        pair_counts: npt.NDArray[np.int64],
        seed_counts: npt.NDArray[np.int64],
        image_counts: npt.NDArray[np.int64],
        n_cls: int,
        n_test: int,
        n_seeds: int,
    ) -> dict[str, SetupAccuracy]:
        off_diagonal = ~np.eye(n_cls, dtype=bool)
        n_pairs = n_cls * (n_cls - 1)
        out: dict[str, SetupAccuracy] = {}
        for a, name in enumerate(PAIR_SETUPS):
            counts = pair_counts[a]
            per_pair = np.where(off_diagonal, counts / n_test, np.nan)
            out[name] = SetupAccuracy(
                setup=name,
                accuracy=int(counts.sum()) / (n_test * n_pairs),
                per_pair=per_pair,
                per_query_class=counts.sum(axis=1) / (n_test * (n_cls - 1)),
                per_image=image_counts[a] / n_pairs,
            )
        per_class = seed_counts.sum(axis=1) / (n_test * n_seeds)
        out["uniform"] = SetupAccuracy(
            setup="uniform",
            accuracy=int(seed_counts.sum()) / (n_test * n_cls * n_seeds),
            per_pair=np.where(off_diagonal, per_class[:, None], np.nan),
            per_query_class=per_class,
            per_image=image_counts[len(PAIR_SETUPS)] / (n_cls * n_seeds),
            per_seed=seed_counts.sum(axis=0) / (n_test * n_cls),
        )
        return {name: out[name] for name in SETUPS}
