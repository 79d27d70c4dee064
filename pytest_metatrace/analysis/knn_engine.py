"""The kNN engine of the semantic-influence audit (docs/protocol.md §5): primitives and inputs.

Top-k neighbours, the majority vote, the uniform draw and the checked,
normalized inputs shared by the semantic-influence audit's
:class:`~pytest_metatrace.audits.semantic_influence.influence.KnnInfluence`, its
figure data (:mod:`~pytest_metatrace.audits.semantic_influence.figures`) and the
other kNN measures. The conventions (ties, devices) are listed in
:mod:`pytest_metatrace.audits.semantic_influence.influence`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from pytest_metatrace._device import resolve_device as _resolve_device

__all__ = [
    "DEFAULT_K",
    "DEFAULT_MEMORY_BUDGET_MB",
    "DEFAULT_SEEDS",
    "PAIR_SETUPS",
    "SETUPS",
    "UNIFORM_DRAW",
    "KnnInputError",
    "check_k",
    "check_semantic_classes",
    "majority_vote",
    "resolve_device",
    "topk_neighbors",
    "uniform_draw",
]


class KnnInputError(ValueError):
    """Data on which the kNN semantic-influence audit cannot measure anything (e.g. one class)."""


def check_semantic_classes(train_labels: Labels) -> None:
    """Refuse a training set with fewer than two semantic classes (issue 8, item 4).

    With one class every database votes it: accuracy 1.0 and every gap 0
    whatever the embeddings hold, a gate that passes without measuring.
    """
    values = sorted({str(v) for v in np.asarray(train_labels).reshape(-1).tolist()})
    if len(values) < 2:
        found = f"one semantic class ({values[0]!r})" if values else "no semantic labels"
        raise KnnInputError(
            f"the training set holds {found}: every kNN database would vote it, so accuracy "
            "would be 1.0 and every gap 0 whatever the encoder does. The kNN semantic-"
            "influence audit needs at least two semantic classes: use a dataset with two or "
            "more class folders (or label values in the manifest)"
        )


def check_k(k: int, n_train: int) -> None:
    """Refuse more voting neighbours than training images (issue 17, item 6).

    Raises :class:`KnnInputError` (a ``ValueError``) naming the option and the fix;
    the plugin shows it once per session instead of a traceback per test.
    """
    if not 1 <= k <= n_train:
        raise KnnInputError(
            f"k={k} is out of range: the database holds {n_train} training images, and a "
            f"vote of the k nearest neighbours needs 1 <= k <= {n_train}. Lower "
            "--metatrace-knn-k (the protocol uses 10 for ImageNet-like sets, 1 for "
            f"iNaturalist-like sets) or use a dataset with at least {k} training images"
        )


#: The five training databases of docs/protocol.md §5, in the paper's order.
SETUPS: tuple[str, ...] = ("all_same", "all_diff", "pos_same", "neg_same", "uniform")
#: The setups defined by an ordered pair (p_i, p_j); ``uniform`` depends on p_i only.
PAIR_SETUPS: tuple[str, ...] = SETUPS[:4]
#: Neighbours voting; docs/protocol.md §5: 10 for ImageNet-like sets, 1 for iNaturalist-like sets.
DEFAULT_K = 10
#: Seeds of the ``uniform`` draw (docs/protocol.md §5: 0..9).
DEFAULT_SEEDS: tuple[int, ...] = tuple(range(10))
#: Default bound on the per-chunk working memory, used to pick the chunk size.
DEFAULT_MEMORY_BUDGET_MB = 1024
#: How the ``uniform`` database is drawn, verbatim, for the report.
UNIFORM_DRAW = (
    "class index of training image n = np.random.default_rng(seed).integers(0, K, N_train)[n], "
    "K = number of processing classes in the order given; one draw per seed, shared by "
    "positives, negatives and every query class"
)

Labels = npt.ArrayLike
Embeddings = Mapping[str, npt.ArrayLike]


# --------------------------------------------------------------------------- primitives


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device to compute on: ``"auto"`` picks CUDA when available, else CPU."""
    return _resolve_device(device, error=ValueError)


def uniform_draw(seed: int, n_classes: int, n_train: int) -> npt.NDArray[np.int64]:
    """Processing-class index of every training image in the ``uniform`` database of ``seed``.

    Exactly ``np.random.default_rng(seed).integers(0, n_classes, n_train)``
    (see :data:`UNIFORM_DRAW`), so the draw is reproducible outside the engine.
    """
    return np.random.default_rng(seed).integers(0, n_classes, n_train).astype(np.int64)


def topk_neighbors(sim: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` most similar columns of each row of ``sim``, most similar first.

    Returns ``(values, indices)``, both ``(rows, k)``. Equal similarities are
    ranked by lower column (training) index, also across the top-k boundary,
    so the result does not depend on the sort algorithm of the device.
    """
    if sim.ndim != 2:
        raise ValueError(f"expected a 2-D similarity matrix, got shape {tuple(sim.shape)}")
    rows, n = sim.shape
    if not 1 <= k <= n:
        raise ValueError(f"k must lie in [1, {n}] (the number of database entries), got {k}")
    if k == n:
        values, indices = torch.sort(sim, dim=1, descending=True, stable=True)
        return values, indices
    # One extra neighbour tells whether a tie straddles the top-k boundary: if
    # the k-th and (k+1)-th values differ, the top-k *set* is unique and only
    # its internal order needs the index rule; otherwise (rare for real
    # embeddings, common for duplicates) the row is resolved by a stable sort.
    values, indices = torch.topk(sim, k + 1, dim=1, largest=True, sorted=True)
    straddles = values[:, k - 1] == values[:, k]
    values, indices = values[:, :k], indices[:, :k]
    indices, perm = torch.sort(indices, dim=1)
    values = values.gather(1, perm)
    values, perm = torch.sort(values, dim=1, descending=True, stable=True)
    indices = indices.gather(1, perm)
    tied_rows = straddles.nonzero().flatten()
    if tied_rows.numel():
        # A quarter of the rows at a time keeps the sort's value + int64 index
        # temporaries within one similarity block (see KnnInfluence).
        for batch in torch.split(tied_rows, max(1, rows // 4)):
            v, i = torch.sort(sim[batch], dim=1, descending=True, stable=True)
            values[batch] = v[:, :k]
            indices[batch] = i[:, :k]
    return values, indices


def majority_vote(neighbor_labels: torch.Tensor) -> torch.Tensor:
    """Unweighted majority vote over each row of ``(rows, k)`` neighbour labels (best first).

    Among labels tied for the most votes, the label of the highest-ranked
    neighbour among them wins. Returns ``(rows,)`` labels.
    """
    if neighbor_labels.ndim != 2 or neighbor_labels.shape[1] == 0:
        raise ValueError(
            f"expected (rows, k >= 1) neighbour labels, got shape {tuple(neighbor_labels.shape)}"
        )
    # votes[r, a] = how many of row r's neighbours share neighbour a's label;
    # O(k^2) per row, independent of the number of labels.
    votes = (neighbor_labels.unsqueeze(2) == neighbor_labels.unsqueeze(1)).sum(dim=2)
    best = votes.max(dim=1, keepdim=True).values
    k = neighbor_labels.shape[1]
    rank = torch.arange(k, device=neighbor_labels.device).expand_as(votes)
    first = torch.where(votes == best, rank, k).min(dim=1, keepdim=True).values
    return neighbor_labels.gather(1, first).squeeze(1)


def _predict(sim: torch.Tensor, train_codes: torch.Tensor, k: int) -> torch.Tensor:
    """Predicted label codes for each row of a query x database similarity matrix."""
    _, indices = topk_neighbors(sim, k)
    return majority_vote(train_codes[indices])


def _score(
    sim: torch.Tensor, train_codes: torch.Tensor, truth: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted label codes and their correctness (0/1 int64) against ``truth``."""
    pred = _predict(sim, train_codes, k)
    return pred, (pred == truth).to(torch.int64)


# --------------------------------------------------------------------------- inputs


@dataclass
class _Inputs:
    """Validated, encoded inputs: the normalized database lives on the device."""

    classes: tuple[str, ...]
    device: torch.device
    train: torch.Tensor  # (K, N_train, D) float32, L2-normalized
    train_codes: torch.Tensor  # (N_train,) int64 label codes
    test: list[npt.NDArray[Any]]  # per class (N_test, D) as given; normalized per chunk
    test_codes: torch.Tensor  # (N_test,) int64 label codes; unseen labels get codes too
    label_values: npt.NDArray[Any]  # code -> original label

    @property
    def n_train(self) -> int:
        return int(self.train.shape[1])

    @property
    def n_test(self) -> int:
        return int(self.test_codes.shape[0])

    @property
    def dim(self) -> int:
        return int(self.train.shape[2])

    def queries(self, cls: int, rows: slice | torch.Tensor) -> torch.Tensor:
        """Normalized test embeddings of processing class ``cls`` for ``rows``."""
        ids = rows.cpu().numpy() if isinstance(rows, torch.Tensor) else np.arange(self.n_test)[rows]
        block = self.test[cls][ids]
        x = torch.as_tensor(np.asarray(block, dtype=np.float32), device=self.device)
        return _normalize(x, f"test embeddings of {self.classes[cls]!r}", ids)


def _normalize(
    x: torch.Tensor, what: str, row_ids: npt.NDArray[np.int64] | None = None
) -> torch.Tensor:
    norms = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    zero = (norms == 0).flatten().nonzero()
    if zero.numel():
        row = int(zero[0]) if row_ids is None else int(row_ids[int(zero[0])])
        raise ValueError(
            f"{what}: row {row} has zero norm, so its cosine similarity is undefined; the "
            "encoder gave an all-zero embedding for that image"
        )
    if not bool(torch.isfinite(norms).all()):
        raise ValueError(f"{what}: values too large for float32 (the norm overflows)")
    normalized: torch.Tensor = x / norms
    return normalized


def _as_2d(values: npt.ArrayLike, what: str) -> npt.NDArray[Any]:
    arr = np.asarray(values)
    if arr.ndim != 2:
        raise ValueError(f"{what}: expected a 2-D (images, dim) array, got shape {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{what}: expected numeric embeddings, got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what}: contains NaN or infinite values")
    return arr


def _check_classes(classes: Sequence[str], train: Embeddings, test: Embeddings) -> tuple[str, ...]:
    if isinstance(classes, str):
        raise TypeError(f"classes must be a sequence of class names, got the string {classes!r}")
    names = tuple(classes)
    if len(names) < 2:
        raise ValueError(
            f"kNN influence needs at least 2 processing classes (pairs p_i != p_j), got {names}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"processing classes must be distinct, got {names}")
    for where, mapping in (("train", train), ("test", test)):
        missing = [c for c in names if c not in mapping]
        if missing:
            raise ValueError(
                f"unknown processing class(es) {missing} for the {where} embeddings; "
                f"they hold: {sorted(mapping)}"
            )
    return names


def _encode_labels(
    train_labels: Labels, test_labels: Labels, n_train: int, n_test: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[Any]]:
    tr = np.asarray(train_labels)
    te = np.asarray(test_labels)
    for what, arr, n in (("train_labels", tr, n_train), ("test_labels", te, n_test)):
        if arr.shape != (n,):
            raise ValueError(
                f"{what}: expected shape ({n},) to match the embeddings, got {arr.shape}"
            )
    if (tr.dtype.kind in "USO") != (te.dtype.kind in "USO"):
        raise TypeError(
            f"train and test labels must be of the same kind, got {tr.dtype} and {te.dtype}"
        )
    values, codes = np.unique(np.concatenate([tr, te]), return_inverse=True)
    codes = codes.reshape(-1).astype(np.int64)
    return codes[:n_train], codes[n_train:], values


def _prepare(
    train: Embeddings,
    train_labels: Labels,
    test: Embeddings,
    test_labels: Labels,
    classes: Sequence[str],
    device: torch.device,
    k: int | None,
) -> _Inputs:
    names = _check_classes(classes, train, test)
    train_arrays = [_as_2d(train[c], f"train embeddings of {c!r}") for c in names]
    test_arrays = [_as_2d(test[c], f"test embeddings of {c!r}") for c in names]
    n_train, dim = train_arrays[0].shape
    n_test = test_arrays[0].shape[0]
    for c, arr in zip(names, train_arrays, strict=True):
        if arr.shape != (n_train, dim):
            raise ValueError(
                f"train embeddings of {c!r} have shape {arr.shape}, but {names[0]!r} has "
                f"{(n_train, dim)}; every class must hold the same images in the same order"
            )
    for c, arr in zip(names, test_arrays, strict=True):
        if arr.shape != (n_test, dim):
            raise ValueError(
                f"test embeddings of {c!r} have shape {arr.shape}, expected {(n_test, dim)} "
                "(same test images under every class, same dimension as the training set)"
            )
    if n_train == 0 or n_test == 0:
        raise ValueError(f"need at least one training and one test image, got {n_train}, {n_test}")
    if k is not None:
        check_k(k, n_train)
    tr_codes, te_codes, values = _encode_labels(train_labels, test_labels, n_train, n_test)
    database = torch.empty((len(names), n_train, dim), dtype=torch.float32, device=device)
    for j, (c, arr) in enumerate(zip(names, train_arrays, strict=True)):
        x = torch.as_tensor(np.asarray(arr, dtype=np.float32), device=device)
        database[j] = _normalize(x, f"train embeddings of {c!r}")
    return _Inputs(
        classes=names,
        device=device,
        train=database,
        train_codes=torch.as_tensor(tr_codes, device=device),
        test=test_arrays,
        test_codes=torch.as_tensor(te_codes, device=device),
        label_values=values,
    )


def _chunk_rows(chunk_size: int | None, bytes_per_row: int, budget_mb: float, n: int) -> int:
    if chunk_size is not None:
        if chunk_size < 1:
            raise ValueError(
                f"chunk_size must be a positive number of test images, got {chunk_size}"
            )
        return min(chunk_size, n)
    return max(1, min(n, int(budget_mb * 2**20) // max(1, bytes_per_row)))


def _pick_spread(indices: Sequence[int], n: int) -> list[int]:
    """``n`` evenly spaced elements of ``indices`` (all of them if there are fewer)."""
    if n <= 0 or not indices:
        return []
    if len(indices) <= n:
        return list(indices)
    positions = np.linspace(0, len(indices) - 1, n).round().astype(int)
    return [int(indices[p]) for p in positions]
