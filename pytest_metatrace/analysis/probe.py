"""Linear probes on frozen embeddings (PROTOCOL section 4), batched over trials and seeds.

Protocol mode (``mode="sgd"``, the default), exactly:

- features: L2-normalized embeddings, float32 whatever dtype came in
  (``x / max(||x||, 1e-12)``, the norm taken in float64);
- one linear layer with bias, cross-entropy averaged over the minibatch;
- SGD with PyTorch semantics: ``g = grad + wd * p`` for weight AND bias,
  ``buf = 0.9 * buf + g``, ``p -= lr_e * buf`` (what
  ``torch.optim.SGD(model.parameters(), lr, momentum=0.9, weight_decay=wd)``
  does); batch 1024, reshuffled every epoch, last partial batch kept (its
  mean is over its own size), 100 epochs;
- cosine decay stepped once per epoch: epoch ``e`` (0-based) trains with
  ``lr_e = lr * (1 + cos(pi * e / epochs)) / 2``, i.e.
  ``CosineAnnealingLR(optimizer, T_max=epochs, eta_min=0)`` with
  ``scheduler.step()`` after each epoch (PyTorch evaluates the same values
  recursively; the two agree to float64 round-off);
- initialisation: one ``np.random.default_rng([1, seed])`` draws the weight
  (C x D, nn.Linear's layout) then the bias (C), both
  ``U(-1/sqrt(D), 1/sqrt(D))`` - nn.Linear's default distribution - and the
  same generator then draws every epoch's ``permutation(N)``. Every trial
  of a search starts from the same weights and sees the same shuffles;
- search: ``n_trials`` points of a scrambled Sobol sequence (seeded) over
  ``log10 lr`` in [-1, 2] and ``log10 wd`` in [-12, -4], scored by top-1 on a
  stratified 20% validation split of the training set
  (``sklearn.model_selection.train_test_split(..., stratify=y,
  random_state=seed)``). The best trial has the most correct validation
  predictions; ties go to the lower validation loss, then to the lower trial
  index. The probe is then retrained on the WHOLE training set with the best
  values and evaluated once on the test set.

The paper's code samples its 30 trials with TPE, one after another. Because
the features are frozen, every trial here sees the same minibatches, so all
trials train TOGETHER: weights ``(S, D, T*C)``, one batched matrix product
forward and one backward per minibatch, per-trial ``lr`` and ``wd`` vectors.
That needs every trial's position to be known in advance, hence
quasi-random Sobol points instead of TPE (``search_rounds > 1`` adds rounds
that re-centre a shrunken box on the best point so far, each round still one
batched computation). The batched result equals a sequential ``nn.Linear`` +
``torch.optim.SGD`` + ``CosineAnnealingLR`` loop per trial
(:func:`train_sgd_reference`) up to float round-off.

The ``S`` axis ("slots") stacks independent probes with the same
hyper-parameters but different data, e.g. the 10 training draws of a
processing probe: each slot has its own rows of a shared feature bank, its
own labels and its own seed (init and shuffles), so no slot's data is
copied. Slots and trials are chunked to fit ``memory_budget_mb`` (and, on a
CPU, slots go a few at a time so that each minibatch stays in cache: there
batching slots saves nothing, as every slot streams its own minibatch);
chunking changes nothing but float round-off.

``mode="lbfgs"`` is a cheaper alternative that is NOT the protocol:
scikit-learn's ``LogisticRegression`` (L-BFGS, multinomial) with its ``C``
picked from a small grid on the same validation split.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import ArrayLike

from pytest_metatrace._device import resolve_device as _resolve_device
from pytest_metatrace.results import jsonable

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_EPOCHS",
    "DEFAULT_LBFGS_C_GRID",
    "DEFAULT_MOMENTUM",
    "DEFAULT_TRIALS",
    "LR_RANGE",
    "VAL_FRACTION",
    "WD_RANGE",
    "LinearProbe",
    "ProbeInputError",
    "ProbeMode",
    "ProbeResult",
    "SearchResult",
    "SearchTrial",
    "check_features",
    "check_labels",
    "classification_metrics",
    "l2_normalize",
    "linear_scores",
    "resolve_device",
    "search_points",
    "stratified_split",
    "train_sgd_batched",
    "train_sgd_reference",
]

ProbeMode = Literal["sgd", "lbfgs"]

#: Epochs of SGD (PROTOCOL section 4).
DEFAULT_EPOCHS = 100
#: Minibatch size (PROTOCOL section 4).
DEFAULT_BATCH_SIZE = 1024
#: SGD momentum (PROTOCOL section 4).
DEFAULT_MOMENTUM = 0.9
#: Trials of the hyper-parameter search (the paper's TPE budget).
DEFAULT_TRIALS = 30
#: Learning-rate search range, sampled log-uniformly.
LR_RANGE = (1e-1, 1e2)
#: Weight-decay search range, sampled log-uniformly.
WD_RANGE = (1e-12, 1e-4)
#: Share of the training set held out (stratified) to score search trials.
VAL_FRACTION = 0.2
#: Inverse regularization strengths tried by the non-protocol ``lbfgs`` mode.
DEFAULT_LBFGS_C_GRID = (1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3, 1e4)

# Stream ids mixed into seeds so that the init/shuffle generator and the
# Sobol scrambling never share a random stream with each other or with a
# caller that seeds numpy with the bare seed (e.g. a processing probe's draw).
_STREAM_TRAIN = 1
_STREAM_SEARCH = 2
# Rows per evaluation chunk: bounds the (models, rows, classes) score tensor.
_SCORE_CHUNK = 16384
# Columns (trials x classes) from which the (D, T*C) weight layout beats nn.Linear's.
_WIDE_LAYOUT_MIN_COLUMNS = 64
# Gathered minibatch bytes per chunk of slots on a CPU: a share of a typical L3 cache.
_CPU_MINIBATCH_CACHE_BYTES = 8 * 2**20
# Bias given to a class absent from an L-BFGS fit so that it is never predicted.
_ABSENT_CLASS_BIAS = -1e9


class ProbeInputError(ValueError):
    """Bad input to a probe (shapes, labels, NaN features), with the fix in the message."""


# --------------------------------------------------------------------------------------
# Input checks


def _as_numpy(x: ArrayLike | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
        # numpy has no bfloat16; float32 holds every bf16/fp16 value exactly.
        if t.is_floating_point() and t.dtype not in (torch.float32, torch.float64):
            t = t.float()
        return np.asarray(t.numpy())
    return np.asarray(x)


def l2_normalize(x: ArrayLike | torch.Tensor, out: np.ndarray | None = None) -> np.ndarray:
    """Rows of ``x`` divided by their L2 norm, as float32 (norms taken in float64).

    Zero rows stay zero (the norm is clamped at 1e-12, as ``F.normalize`` does).
    ``out``, if given, is a float32 array of the same shape to write into.
    """
    arr = _as_numpy(x)
    if out is None:
        out = np.empty(arr.shape, dtype=np.float32)
    # Chunked so that the float64 copy stays small for large embedding sets.
    for start in range(0, arr.shape[0], 65536):
        chunk = arr[start : start + 65536].astype(np.float64)
        norms = np.sqrt(np.einsum("ij,ij->i", chunk, chunk))
        out[start : start + 65536] = chunk / np.maximum(norms, 1e-12)[:, None]
    return out


def check_features(
    x: ArrayLike | torch.Tensor,
    name: str = "features",
    *,
    dim: int | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Validate an ``(n_samples, dim)`` embedding matrix; return it L2-normalized, float32.

    Raises :class:`ProbeInputError` for a wrong number of dimensions, an empty
    matrix, a dimension other than ``dim``, non-numeric data or NaN / infinite
    values (naming the first bad row).
    """
    arr = _as_numpy(x)
    if arr.dtype.kind not in "fiub":
        raise ProbeInputError(f"{name} must hold numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ProbeInputError(f"{name} must be a 2-D array (n_samples, dim), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ProbeInputError(f"{name} is empty (shape {arr.shape})")
    if dim is not None and arr.shape[1] != dim:
        raise ProbeInputError(
            f"{name} has dimension {arr.shape[1]} but the probe expects {dim}: "
            "were both sets embedded by the same encoder?"
        )
    if arr.dtype.kind == "f":
        finite = np.isfinite(arr).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            raise ProbeInputError(
                f"{name} has {bad.size} row(s) with NaN or infinite values (first: row "
                f"{int(bad[0])}); the encoder produced invalid embeddings for those images - "
                "drop them or re-embed in float32"
            )
    return l2_normalize(arr, out=out)


def check_labels(y: ArrayLike | torch.Tensor, n_samples: int, name: str = "labels") -> np.ndarray:
    """Validate integer class labels ``0..C-1`` for ``n_samples`` samples; return int64."""
    arr = _as_numpy(y)
    if arr.ndim != 1:
        raise ProbeInputError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ProbeInputError(
            f"{name} has {arr.shape[0]} entries but the features have {n_samples} rows"
        )
    if arr.dtype.kind == "b" or arr.dtype.kind not in "iuf":
        raise ProbeInputError(f"{name} must be integer class indices, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and (not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr))):
        raise ProbeInputError(f"{name} must be integer class indices, got non-integer floats")
    out = arr.astype(np.int64)
    if out.size and out.min() < 0:
        raise ProbeInputError(f"{name} must be class indices >= 0, got {int(out.min())}")
    return out


def _check_classes(y: np.ndarray, n_classes: int | None, name: str) -> int:
    n = int(y.max()) + 1 if n_classes is None else int(n_classes)
    if n < 2:
        raise ProbeInputError(
            f"a probe needs at least two classes, got {n} in {name}: "
            "accuracy against a single class is meaningless"
        )
    if y.max() >= n:
        raise ProbeInputError(f"{name} holds class {int(y.max())} but n_classes is {n}")
    counts = np.bincount(y, minlength=n)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise ProbeInputError(
            f"class(es) {empty.tolist()} of 0..{n - 1} have no samples in {name}; every class "
            "needs training samples - relabel the classes to consecutive integers or drop them"
        )
    return n


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: the first CUDA GPU when there is one, else the CPU; otherwise as given."""
    return _resolve_device(device, error=ProbeInputError)


def stratified_split(
    labels: ArrayLike,
    val_fraction: float = VAL_FRACTION,
    seed: int = 0,
    *,
    n_classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (fit, validation) index split, each sorted ascending.

    ``sklearn.model_selection.train_test_split(arange(N), test_size=val_fraction,
    stratify=labels, random_state=seed)``; every class (``0..n_classes-1``
    when given) needs two samples.
    """
    from sklearn.model_selection import train_test_split

    y = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(y, minlength=n_classes or 0)
    # Without n_classes, absent labels are not classes; with it, they are.
    small = np.flatnonzero((counts < 2) & ((counts > 0) | (n_classes is not None))).tolist()
    if n_classes is None:
        n_classes = int(np.count_nonzero(counts))
    if small:
        raise ProbeInputError(
            f"class(es) {small} have fewer than two training samples ({counts[small].tolist()}); "
            "the stratified validation split of the hyper-parameter search needs at least two "
            "per class - add samples"
        )
    n_val = math.ceil(val_fraction * y.size)
    if n_val < n_classes or y.size - n_val < n_classes:
        raise ProbeInputError(
            f"{y.size} training samples are too few for a {val_fraction:.0%} stratified "
            f"validation split over {n_classes} classes (each side needs one sample per class) - "
            "add samples"
        )
    fit_idx, val_idx = train_test_split(
        np.arange(y.size), test_size=val_fraction, stratify=y, random_state=seed
    )
    return np.sort(np.asarray(fit_idx)), np.sort(np.asarray(val_idx))


# --------------------------------------------------------------------------------------
# Batched SGD engine


def _training_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([_STREAM_TRAIN, seed])


def _draw_init(rng: np.random.Generator, dim: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    # nn.Linear's default init: kaiming_uniform(a=sqrt(5)) on the weight and
    # U(-1/sqrt(fan_in), 1/sqrt(fan_in)) on the bias both reduce to this bound.
    bound = 1.0 / math.sqrt(dim)
    weight = rng.uniform(-bound, bound, size=(n_classes, dim)).astype(np.float32)
    bias = rng.uniform(-bound, bound, size=n_classes).astype(np.float32)
    return weight, bias


def _cosine_factor(epoch: int, epochs: int) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


def _chunk_plan(
    n_slots: int,
    n_trials: int,
    dim: int,
    n_classes: int,
    batch: int,
    budget_mb: float,
    on_cpu: bool,
) -> tuple[int, int]:
    # Working set per slot: the gathered minibatch, plus per trial the scores
    # and their gradient (minibatch x classes) and weight, momentum, gradient
    # and a temporary (dim x classes), all float32.
    budget = budget_mb * 2**20
    per_trial = 4 * (3 * batch * n_classes + 4 * dim * n_classes + 8 * n_classes)
    per_slot = 4 * batch * dim + n_trials * per_trial
    if per_slot > budget:
        return 1, max(1, min(n_trials, int((budget - 4 * batch * dim) // per_trial)))
    slots = max(1, min(n_slots, int(budget // per_slot)))
    if on_cpu:
        # On a CPU the slots gain nothing from batching (each step streams its
        # own minibatch from memory either way) but lose the cache: keep the
        # gathered minibatches of one chunk within a few MB so that the
        # forward and backward products re-read them from cache.
        slots = max(1, min(slots, int(_CPU_MINIBATCH_CACHE_BYTES // (4 * batch * dim))))
    return slots, n_trials


def _train_block(
    bank: torch.Tensor,
    rows: torch.Tensor,
    labels: torch.Tensor,
    lrs: np.ndarray,
    wds: np.ndarray,
    seeds: Sequence[int],
    n_classes: int,
    epochs: int,
    batch_size: int,
    momentum: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    dev = bank.device
    n_slots, n = rows.shape
    n_trials, dim, c = len(lrs), bank.shape[1], n_classes
    tc = n_trials * c
    # Two layouts for the weights of a slot's trials: (D, T*C) when there are
    # many columns (one wide product per minibatch), nn.Linear's (T*C, D) when
    # there are few (BLAS is several times faster on skinny products that way).
    wide = tc >= _WIDE_LAYOUT_MIN_COLUMNS
    rngs = [_training_rng(int(s)) for s in seeds]
    inits = [_draw_init(rng, dim, c) for rng in rngs]
    w0 = torch.from_numpy(np.stack([w for w, _ in inits]))  # (S, C, D)
    b0 = torch.from_numpy(np.stack([b for _, b in inits]))  # (S, C)
    weight = w0[:, None].expand(n_slots, n_trials, c, dim).reshape(n_slots, tc, dim)
    if wide:
        weight = weight.transpose(1, 2)
    weight = weight.to(dev).contiguous()
    bias = b0[:, None, :].expand(n_slots, n_trials, c).reshape(n_slots, tc).to(dev).contiguous()
    buf_w = torch.zeros_like(weight)
    buf_b = torch.zeros_like(bias)
    lr_base = np.repeat(np.asarray(lrs, dtype=np.float64), c)
    wd_b = torch.from_numpy(np.repeat(np.asarray(wds, dtype=np.float32), c)).to(dev)
    # Per-column hyper-parameters broadcast along the weights' trial*class axis.
    col_shape = (tc,) if wide else (tc, 1)
    wd_w = wd_b.view(col_shape)
    for epoch in range(epochs):
        lr_b = torch.from_numpy((lr_base * _cosine_factor(epoch, epochs)).astype(np.float32))
        lr_b = lr_b.to(dev)
        lr_w = lr_b.view(col_shape)
        # Shuffles are drawn on the CPU so that every device sees the same ones.
        perms = torch.from_numpy(np.stack([rng.permutation(n) for rng in rngs])).to(dev)
        for start in range(0, n, batch_size):
            pos = perms[:, start : start + batch_size]
            nb = pos.shape[1]
            # index_select on flat rows: much faster on CPU than 2-D fancy indexing.
            xb = bank.index_select(0, rows.gather(1, pos).reshape(-1)).view(n_slots, nb, dim)
            yb = labels.gather(1, pos)  # (S, nb)
            scores = torch.baddbmm(
                bias[:, None, :], xb, weight if wide else weight.transpose(1, 2)
            ).view(n_slots, nb, n_trials, c)
            # d(mean CE)/d(scores) = (softmax - onehot) / nb, computed in place;
            # a hand-written softmax because torch.softmax is slow over a last
            # axis of a few classes on CPU.
            grad = scores
            grad -= grad.amax(dim=-1, keepdim=True)
            grad.exp_()
            grad /= grad.sum(dim=-1, keepdim=True)
            grad -= torch.nn.functional.one_hot(yb, c).to(grad.dtype)[:, :, None, :]
            grad /= nb
            grad2 = grad.view(n_slots, nb, tc)
            if wide:
                grad_w = torch.bmm(xb.transpose(1, 2), grad2)
            else:
                grad_w = torch.bmm(grad2.transpose(1, 2), xb)
            grad_b = grad2.sum(dim=1)
            # torch.optim.SGD: weight decay joins the gradient of every
            # parameter (bias too), then momentum (dampening 0, first step
            # buf = g, the same as 0.9 * 0 + g), then p -= lr * buf.
            grad_w += weight * wd_w
            grad_b += bias * wd_b
            buf_w.mul_(momentum).add_(grad_w)
            buf_b.mul_(momentum).add_(grad_b)
            weight -= buf_w * lr_w
            bias -= buf_b * lr_b
    # Back to (S, T, D, C): per trial, the transpose of nn.Linear.weight.
    if not wide:
        weight = weight.transpose(1, 2)
    return (
        weight.reshape(n_slots, dim, n_trials, c).permute(0, 2, 1, 3),
        bias.view(n_slots, n_trials, c),
    )


def _train_sgd_torch(
    bank: torch.Tensor,
    rows: np.ndarray,
    labels: np.ndarray,
    lrs: np.ndarray,
    wds: np.ndarray,
    seeds: Sequence[int],
    n_classes: int,
    epochs: int,
    batch_size: int,
    momentum: float,
    memory_budget_mb: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    dev = bank.device
    n_slots, n_trials, dim = rows.shape[0], len(lrs), bank.shape[1]
    slot_chunk, trial_chunk = _chunk_plan(
        n_slots,
        n_trials,
        dim,
        n_classes,
        min(batch_size, rows.shape[1]),
        memory_budget_mb,
        dev.type == "cpu",
    )
    weight = torch.empty((n_slots, n_trials, dim, n_classes), dtype=torch.float32, device=dev)
    bias = torch.empty((n_slots, n_trials, n_classes), dtype=torch.float32, device=dev)
    rows_t = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.int64)).to(dev)
    labels_t = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)).to(dev)
    with torch.no_grad():
        for s0 in range(0, n_slots, slot_chunk):
            s1 = min(n_slots, s0 + slot_chunk)
            for t0 in range(0, n_trials, trial_chunk):
                t1 = min(n_trials, t0 + trial_chunk)
                w, b = _train_block(
                    bank,
                    rows_t[s0:s1],
                    labels_t[s0:s1],
                    lrs[t0:t1],
                    wds[t0:t1],
                    seeds[s0:s1],
                    n_classes,
                    epochs,
                    batch_size,
                    momentum,
                )
                weight[s0:s1, t0:t1] = w
                bias[s0:s1, t0:t1] = b
    return weight, bias


def train_sgd_batched(
    bank: ArrayLike | torch.Tensor,
    rows: ArrayLike,
    labels: ArrayLike,
    lrs: Sequence[float] | np.ndarray,
    weight_decays: Sequence[float] | np.ndarray,
    *,
    seeds: Sequence[int],
    n_classes: int,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    momentum: float = DEFAULT_MOMENTUM,
    device: str | torch.device = "auto",
    memory_budget_mb: float = 1024.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Train ``S x T`` linear probes at once with the protocol's SGD; return their parameters.

    ``bank`` is an ``(R, D)`` float32 matrix of already-normalized features;
    slot ``s`` trains on rows ``bank[rows[s]]`` (``rows``: ``(S, N)``) with
    labels ``labels[s]`` (``(S, N)``), starting from and shuffled by
    ``seeds[s]``; trial ``t`` uses ``lrs[t]`` and ``weight_decays[t]``.
    Returns ``weight`` ``(S, T, D, C)`` and ``bias`` ``(S, T, C)`` as float32
    numpy arrays; scores are ``x @ weight[s, t] + bias[s, t]``.
    """
    dev = resolve_device(device)
    rows_np = np.atleast_2d(np.asarray(rows, dtype=np.int64))
    labels_np = np.atleast_2d(np.asarray(labels, dtype=np.int64))
    if rows_np.shape != labels_np.shape:
        raise ProbeInputError(f"rows {rows_np.shape} and labels {labels_np.shape} differ in shape")
    if len(seeds) != rows_np.shape[0]:
        raise ProbeInputError(f"{len(seeds)} seeds for {rows_np.shape[0]} slots")
    lr_np = np.asarray(lrs, dtype=np.float64).reshape(-1)
    wd_np = np.asarray(weight_decays, dtype=np.float64).reshape(-1)
    if lr_np.shape != wd_np.shape:
        raise ProbeInputError(f"{lr_np.size} learning rates for {wd_np.size} weight decays")
    bank_t = torch.as_tensor(bank, dtype=torch.float32).to(dev)
    weight, bias = _train_sgd_torch(
        bank_t,
        rows_np,
        labels_np,
        lr_np,
        wd_np,
        [int(s) for s in seeds],
        n_classes,
        epochs,
        batch_size,
        momentum,
        memory_budget_mb,
    )
    return weight.cpu().numpy(), bias.cpu().numpy()


def train_sgd_reference(
    features: ArrayLike,
    labels: ArrayLike,
    lr: float,
    weight_decay: float,
    *,
    seed: int,
    n_classes: int,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    momentum: float = DEFAULT_MOMENTUM,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """One probe trained the plain way: ``nn.Linear`` + ``torch.optim.SGD`` + ``CosineAnnealingLR``.

    The sequential reference for :func:`train_sgd_batched` (same init, same
    shuffles); used by the tests and the benchmark. ``features`` are
    already normalized, ``(N, D)``. Returns ``weight`` ``(D, C)`` and ``bias`` ``(C,)``.
    """
    dev = resolve_device(device)
    x = torch.as_tensor(np.asarray(features, dtype=np.float32)).to(dev)
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64)).to(dev)
    n, dim = x.shape
    rng = _training_rng(seed)
    w0, b0 = _draw_init(rng, dim, n_classes)
    model = torch.nn.Linear(dim, n_classes).to(dev)
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(w0))
        model.bias.copy_(torch.from_numpy(b0))
    optimizer = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=0.0)
    for _ in range(epochs):
        perm = torch.from_numpy(rng.permutation(n)).to(dev)
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            torch.autograd.backward(loss)
            optimizer.step()
        scheduler.step()
    return (
        model.weight.detach().T.contiguous().cpu().numpy(),
        model.bias.detach().cpu().numpy().copy(),
    )


def _scores_torch(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    # x (N, D); weight (M, D, C); bias (M, C) -> scores (M, N, C)
    out = torch.empty(
        (weight.shape[0], x.shape[0], weight.shape[2]), dtype=torch.float32, device=x.device
    )
    for start in range(0, x.shape[0], _SCORE_CHUNK):
        xc = x[start : start + _SCORE_CHUNK]
        out[:, start : start + _SCORE_CHUNK] = (
            torch.einsum("nd,mdc->mnc", xc, weight) + bias[:, None, :]
        )
    return out


def linear_scores(x: ArrayLike, weight: ArrayLike, bias: ArrayLike) -> np.ndarray:
    """Class scores ``x @ weight + bias`` for normalized ``x`` ``(N, D)``, ``weight`` ``(D, C)``."""
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
    wt = torch.as_tensor(np.asarray(weight, dtype=np.float32))[None]
    bt = torch.as_tensor(np.asarray(bias, dtype=np.float32))[None]
    return _scores_torch(xt, wt, bt)[0].numpy()


# --------------------------------------------------------------------------------------
# Metrics and results


def classification_metrics(
    y_true: ArrayLike, y_pred: ArrayLike, n_classes: int
) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Top-1, mean per-class accuracy, per-class accuracy and confusion matrix.

    The confusion matrix has true classes as rows and predictions as
    columns. A class without test samples has per-class accuracy NaN and is
    left out of the mean.
    """
    yt = np.asarray(y_true, dtype=np.int64)
    yp = np.asarray(y_pred, dtype=np.int64)
    confusion = np.bincount(yt * n_classes + yp, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    )
    support = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(support > 0, np.diag(confusion) / np.maximum(support, 1), np.nan)
    top1 = float(np.trace(confusion) / max(1, yt.size))
    mean_per_class = float(np.nanmean(per_class)) if np.any(support > 0) else float("nan")
    return top1, mean_per_class, per_class, confusion


@dataclass
class SearchTrial:
    """One hyper-parameter trial of a probe search, scored on the validation split."""

    index: int  #: position in the search, 0-based
    round: int  #: search round (0 unless ``search_rounds > 1``)
    params: dict[str, float]  #: ``{"lr", "weight_decay"}`` (sgd) or ``{"C"}`` (lbfgs)
    val_top1: float  #: validation top-1 accuracy
    val_mean_per_class: float  #: validation mean per-class accuracy
    val_loss: float  #: validation cross-entropy (the first tie-breaker)
    val_correct: int  #: correct validation predictions (what the search maximizes)


@dataclass
class SearchResult:
    """A probe's hyper-parameter search: every trial, and the chosen one."""

    method: str  #: how the trials were placed, for the report
    trials: list[SearchTrial]  #: every trial, in order
    best_index: int  #: index of the chosen trial
    best_params: dict[str, float]  #: the chosen hyper-parameters
    n_fit: int  #: samples the trials were trained on
    n_val: int  #: stratified validation samples they were scored on
    seed: int  #: seed of the split, the Sobol scrambling, init and shuffles
    wall_time_s: float  #: seconds the search took

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        result: dict[str, Any] = jsonable(asdict(self))
        return result


@dataclass
class ProbeResult:
    """A fitted probe evaluated once on a test set."""

    mode: str  #: ``sgd`` (the protocol) or ``lbfgs``
    n_classes: int  #: number of classes C
    chance: float  #: 1 / C
    top1: float  #: top-1 accuracy on the test set
    mean_per_class: float  #: mean over classes of per-class accuracy
    per_class_accuracy: np.ndarray  #: (C,) accuracy per true class, NaN without test samples
    confusion: np.ndarray  #: (C, C) counts, rows true class, columns predicted
    predictions: np.ndarray  #: (N_test,) predicted class per test sample
    labels: np.ndarray  #: (N_test,) true class per test sample
    hyperparameters: dict[str, float]  #: values used for the final fit
    search: SearchResult | None  #: the search, or None when hyper-parameters were given
    n_train: int  #: training samples of the final fit
    n_test: int  #: test samples
    seed: int  #: probe seed
    device: str  #: torch device the probe trained on
    settings: dict[str, Any]  #: every constructor parameter of the probe
    fit_time_s: float  #: seconds spent in ``fit`` (search included)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (arrays as lists, NaN as null)."""
        result: dict[str, Any] = jsonable(asdict(self))
        return result


# --------------------------------------------------------------------------------------
# Search


def search_points(
    n: int,
    lr_range: tuple[float, float] = LR_RANGE,
    wd_range: tuple[float, float] = WD_RANGE,
    *,
    seed: int = 0,
    round_index: int = 0,
    center: tuple[float, float] | None = None,
    shrink: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` (lr, weight decay) points of a scrambled Sobol sequence, log-uniform in the ranges.

    With ``center`` (log10 lr, log10 wd) and ``shrink < 1`` the box is shrunk
    to ``shrink`` of each log-range, centred there and shifted back inside
    the ranges. Deterministic for ``(seed, round_index)``.
    """
    from scipy.stats import qmc

    sampler = qmc.Sobol(
        d=2, scramble=True, rng=np.random.default_rng([_STREAM_SEARCH, seed, round_index])
    )
    # Draw a power of two (Sobol's balance property) and keep the first n.
    unit = sampler.random_base2(max(0, math.ceil(math.log2(max(n, 1)))))[:n]
    lo = np.log10([lr_range[0], wd_range[0]])
    hi = np.log10([lr_range[1], wd_range[1]])
    if center is not None and shrink < 1.0:
        width = (hi - lo) * shrink
        new_lo = np.clip(np.asarray(center) - width / 2, lo, hi - width)
        lo, hi = new_lo, new_lo + width
    logs = lo + unit * (hi - lo)
    return 10.0 ** logs[:, 0], 10.0 ** logs[:, 1]


def _best_trial(trials: Sequence[SearchTrial]) -> SearchTrial:
    # Most correct validation predictions; ties to the lower validation loss
    # (NaN counts as worst), then to the earlier trial.
    def key(t: SearchTrial) -> tuple[int, float, int]:
        loss = t.val_loss if math.isfinite(t.val_loss) else math.inf
        return (-t.val_correct, loss, t.index)

    return min(trials, key=key)


def _score_trials(
    x_val: torch.Tensor, y_val: np.ndarray, weight: torch.Tensor, bias: torch.Tensor, c: int
) -> list[tuple[float, float, float, int]]:
    scores = _scores_torch(x_val, weight, bias)  # (T, Nval, C)
    y_t = torch.from_numpy(y_val).to(scores.device)
    losses = torch.nn.functional.cross_entropy(
        scores.reshape(-1, c), y_t.repeat(scores.shape[0]), reduction="none"
    )
    loss = losses.view(scores.shape[0], -1).double().mean(dim=1).cpu().numpy()
    preds = scores.argmax(dim=-1).cpu().numpy()
    out = []
    for t in range(scores.shape[0]):
        top1, mpc, _, conf = classification_metrics(y_val, preds[t], c)
        out.append((top1, mpc, float(loss[t]), int(np.trace(conf))))
    return out


# --------------------------------------------------------------------------------------
# The estimator


@dataclass
class LinearProbe:
    """The paper's linear probe (PROTOCOL section 4) as an estimator.

    The constructor only stores parameters; :meth:`fit` runs the search and
    the final fit; :meth:`evaluate` scores a test set once and returns a
    :class:`ProbeResult`. Pass ``lr`` and ``weight_decay`` (or ``lbfgs_c``)
    to skip the search. See the module docstring for the exact protocol.
    """

    mode: ProbeMode = "sgd"  #: ``sgd`` (protocol) or ``lbfgs`` (cheaper, not the protocol)
    epochs: int = DEFAULT_EPOCHS  #: SGD epochs
    batch_size: int = DEFAULT_BATCH_SIZE  #: SGD minibatch size
    momentum: float = DEFAULT_MOMENTUM  #: SGD momentum
    n_trials: int = DEFAULT_TRIALS  #: search trials (sgd)
    search_rounds: int = 1  #: batched search rounds; later ones narrow around the best
    lr_range: tuple[float, float] = LR_RANGE  #: learning-rate range, log-uniform
    wd_range: tuple[float, float] = WD_RANGE  #: weight-decay range, log-uniform
    val_fraction: float = VAL_FRACTION  #: stratified validation share for the search
    lr: float | None = None  #: fixed learning rate (skips the search, with ``weight_decay``)
    weight_decay: float | None = None  #: fixed weight decay (skips the search, with ``lr``)
    lbfgs_c_grid: tuple[float, ...] = DEFAULT_LBFGS_C_GRID  #: C values tried (lbfgs)
    lbfgs_c: float | None = None  #: fixed C (lbfgs; skips its search)
    seed: int = 0  #: seeds the split, the Sobol points, the init and the shuffles
    device: str = "auto"  #: ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1`` ...
    memory_budget_mb: float = 1024.0  #: working-set cap that decides chunking

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters, JSON-ready."""
        params: dict[str, Any] = jsonable({f.name: getattr(self, f.name) for f in fields(self)})
        return params

    # ---- parameter checks -------------------------------------------------------------

    def check_params(self) -> None:
        """Raise :class:`ProbeInputError` naming the first invalid parameter."""
        if self.mode not in ("sgd", "lbfgs"):
            raise ProbeInputError(f"unknown probe mode {self.mode!r}: use 'sgd' or 'lbfgs'")
        positive_ints = {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "n_trials": self.n_trials,
            "search_rounds": self.search_rounds,
        }
        for name, value in positive_ints.items():
            if int(value) != value or value < 1:
                raise ProbeInputError(f"{name} must be a positive integer, got {value!r}")
        if self.search_rounds > self.n_trials:
            raise ProbeInputError(
                f"search_rounds ({self.search_rounds}) exceeds n_trials ({self.n_trials})"
            )
        if not 0.0 <= self.momentum < 1.0:
            raise ProbeInputError(f"momentum must lie in [0, 1), got {self.momentum!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ProbeInputError(f"val_fraction must lie in (0, 1), got {self.val_fraction!r}")
        for name, rng in (("lr_range", self.lr_range), ("wd_range", self.wd_range)):
            if len(rng) != 2 or not 0.0 < rng[0] <= rng[1]:
                raise ProbeInputError(f"{name} must be (low, high) with 0 < low <= high, got {rng}")
        if (self.lr is None) != (self.weight_decay is None):
            raise ProbeInputError(
                "give both lr and weight_decay to skip the search, or neither to search both"
            )
        if self.lr is not None and not self.lr > 0:
            raise ProbeInputError(f"lr must be > 0, got {self.lr!r}")
        if self.weight_decay is not None and not self.weight_decay >= 0:
            raise ProbeInputError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.lbfgs_c is not None and not self.lbfgs_c > 0:
            raise ProbeInputError(f"lbfgs_c must be > 0, got {self.lbfgs_c!r}")
        if not self.lbfgs_c_grid or min(self.lbfgs_c_grid) <= 0:
            raise ProbeInputError(f"lbfgs_c_grid must hold values > 0, got {self.lbfgs_c_grid}")
        if int(self.seed) != self.seed or self.seed < 0:
            raise ProbeInputError(f"seed must be an integer >= 0, got {self.seed!r}")

    @property
    def searches(self) -> bool:
        """Whether :meth:`fit` runs a hyper-parameter search (no fixed values were given)."""
        return self.lr is None if self.mode == "sgd" else self.lbfgs_c is None

    # ---- building blocks shared with the processing probe ------------------------------

    def search_on(
        self,
        bank: torch.Tensor,
        rows: np.ndarray,
        labels: np.ndarray,
        n_classes: int,
        seed: int,
    ) -> SearchResult:
        """Run this probe's search on ``bank[rows]`` / ``labels`` (1-D); ``bank`` on the device.

        A building block for :meth:`fit` and the processing probe; ``bank``
        holds normalized float32 features.
        """
        start = time.perf_counter()
        from pytest_metatrace.analysis.validation_split import validation_split  # small data

        fit_idx, val_idx = validation_split(labels, self.val_fraction, seed, n_classes=n_classes)
        x_val = bank[torch.from_numpy(rows[val_idx]).to(bank.device)]
        y_val = labels[val_idx]
        trials: list[SearchTrial] = []
        if self.mode == "lbfgs":
            x_fit = bank[torch.from_numpy(rows[fit_idx]).to(bank.device)].cpu().numpy()
            for i, c_value in enumerate(self.lbfgs_c_grid):
                w, b = _fit_lbfgs(x_fit, labels[fit_idx], n_classes, float(c_value))
                wt = torch.from_numpy(w)[None].to(bank.device)
                bt = torch.from_numpy(b)[None].to(bank.device)
                top1, mpc, loss, correct = _score_trials(x_val, y_val, wt, bt, n_classes)[0]
                trials.append(SearchTrial(i, 0, {"C": float(c_value)}, top1, mpc, loss, correct))
            method = f"L-BFGS logistic regression, C grid of {len(self.lbfgs_c_grid)}"
        else:
            sizes = [
                self.n_trials // self.search_rounds + (r < self.n_trials % self.search_rounds)
                for r in range(self.search_rounds)
            ]
            center: tuple[float, float] | None = None
            for r, size in enumerate(sizes):
                lrs, wds = search_points(
                    size,
                    self.lr_range,
                    self.wd_range,
                    seed=seed,
                    round_index=r,
                    center=center,
                    shrink=0.5**r,
                )
                weight, bias = _train_sgd_torch(
                    bank,
                    rows[fit_idx][None],
                    labels[fit_idx][None],
                    lrs,
                    wds,
                    [seed],
                    n_classes,
                    self.epochs,
                    self.batch_size,
                    self.momentum,
                    self.memory_budget_mb,
                )
                scored = _score_trials(x_val, y_val, weight[0], bias[0], n_classes)
                for t, (top1, mpc, loss, correct) in enumerate(scored):
                    params = {"lr": float(lrs[t]), "weight_decay": float(wds[t])}
                    trials.append(SearchTrial(len(trials), r, params, top1, mpc, loss, correct))
                best = _best_trial(trials)
                center = (
                    math.log10(best.params["lr"]),
                    math.log10(best.params["weight_decay"]),
                )
            method = (
                f"scrambled Sobol, {self.n_trials} trials in {self.search_rounds} batched "
                f"round(s), lr log-uniform in {list(self.lr_range)}, weight decay log-uniform "
                f"in {list(self.wd_range)}"
            )
        best = _best_trial(trials)
        return SearchResult(
            method=method,
            trials=trials,
            best_index=best.index,
            best_params=dict(best.params),
            n_fit=int(fit_idx.size),
            n_val=int(val_idx.size),
            seed=seed,
            wall_time_s=time.perf_counter() - start,
        )

    def fixed_params(self) -> dict[str, float]:
        """The hyper-parameters given to the constructor (empty when it searches)."""
        if self.mode == "lbfgs":
            return {} if self.lbfgs_c is None else {"C": float(self.lbfgs_c)}
        if self.lr is None or self.weight_decay is None:
            return {}
        return {"lr": float(self.lr), "weight_decay": float(self.weight_decay)}

    def train_on(
        self,
        bank: torch.Tensor,
        rows: np.ndarray,
        labels: np.ndarray,
        n_classes: int,
        seeds: Sequence[int],
        params: dict[str, float],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Final fits of ``S`` slots (``rows``, ``labels``: ``(S, N)``) with ``params``.

        Batched over slots in ``sgd`` mode; one after another in ``lbfgs`` mode.
        Returns ``weight`` ``(S, D, C)`` and ``bias`` ``(S, C)`` on ``bank``'s device.
        """
        if self.mode == "lbfgs":
            ws, bs = [], []
            for s in range(rows.shape[0]):
                x = bank[torch.from_numpy(rows[s]).to(bank.device)].cpu().numpy()
                w, b = _fit_lbfgs(x, labels[s], n_classes, params["C"])
                ws.append(torch.from_numpy(w))
                bs.append(torch.from_numpy(b))
            return torch.stack(ws).to(bank.device), torch.stack(bs).to(bank.device)
        weight, bias = _train_sgd_torch(
            bank,
            rows,
            labels,
            np.array([params["lr"]]),
            np.array([params["weight_decay"]]),
            list(seeds),
            n_classes,
            self.epochs,
            self.batch_size,
            self.momentum,
            self.memory_budget_mb,
        )
        return weight[:, 0], bias[:, 0]

    # ---- estimator API -----------------------------------------------------------------

    def fit(
        self,
        x: ArrayLike | torch.Tensor,
        y: ArrayLike | torch.Tensor,
        *,
        n_classes: int | None = None,
    ) -> LinearProbe:
        """Search hyper-parameters (unless given), then fit on all of ``x``; return ``self``.

        ``x``: ``(N, D)`` embeddings (any float dtype; normalized here);
        ``y``: ``(N,)`` class indices ``0..C-1``, every class present.
        ``n_classes`` defaults to ``max(y) + 1``.
        """
        start = time.perf_counter()
        self.check_params()
        feats = check_features(x, "training features")
        labels = check_labels(y, feats.shape[0], "training labels")
        c = _check_classes(labels, n_classes, "training labels")
        dev = resolve_device(self.device)
        bank = torch.from_numpy(feats).to(dev)
        rows = np.arange(feats.shape[0], dtype=np.int64)
        search = self.search_on(bank, rows, labels, c, self.seed) if self.searches else None
        params = search.best_params if search is not None else self.fixed_params()
        weight, bias = self.train_on(bank, rows[None], labels[None], c, [self.seed], params)
        self.weight_: np.ndarray = weight[0].cpu().numpy()
        self.bias_: np.ndarray = bias[0].cpu().numpy()
        self.n_classes_: int = c
        self.n_features_in_: int = feats.shape[1]
        self.n_train_: int = feats.shape[0]
        self.search_: SearchResult | None = search
        self.hyperparameters_: dict[str, float] = dict(params)
        self.device_: str = str(dev)
        self.fit_time_s_: float = time.perf_counter() - start
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "weight_"):
            raise RuntimeError("this LinearProbe is not fitted yet: call fit(x, y) first")

    def decision_function(self, x: ArrayLike | torch.Tensor) -> np.ndarray:
        """Class scores ``(N, C)`` of the fitted probe for embeddings ``x`` (normalized here)."""
        self._check_fitted()
        feats = check_features(x, "features", dim=self.n_features_in_)
        return linear_scores(feats, self.weight_, self.bias_)

    def predict(self, x: ArrayLike | torch.Tensor) -> np.ndarray:
        """Predicted class per row of ``x`` (ties go to the lower class index)."""
        return np.asarray(self.decision_function(x).argmax(axis=1), dtype=np.int64)

    def evaluate(self, x: ArrayLike | torch.Tensor, y: ArrayLike | torch.Tensor) -> ProbeResult:
        """Score the fitted probe once on a test set; return a :class:`ProbeResult`."""
        self._check_fitted()
        feats = check_features(x, "test features", dim=self.n_features_in_)
        labels = check_labels(y, feats.shape[0], "test labels")
        if labels.max() >= self.n_classes_:
            raise ProbeInputError(
                f"test labels hold class {int(labels.max())} but the probe was fitted on "
                f"{self.n_classes_} classes"
            )
        preds = linear_scores(feats, self.weight_, self.bias_).argmax(axis=1).astype(np.int64)
        top1, mpc, per_class, confusion = classification_metrics(labels, preds, self.n_classes_)
        return ProbeResult(
            mode=self.mode,
            n_classes=self.n_classes_,
            chance=1.0 / self.n_classes_,
            top1=top1,
            mean_per_class=mpc,
            per_class_accuracy=per_class,
            confusion=confusion,
            predictions=preds,
            labels=labels,
            hyperparameters=dict(self.hyperparameters_),
            search=self.search_,
            n_train=self.n_train_,
            n_test=int(labels.size),
            seed=self.seed,
            device=self.device_,
            settings=self.get_params(),
            fit_time_s=self.fit_time_s_,
        )


def _fit_lbfgs(
    x: np.ndarray, y: np.ndarray, n_classes: int, c_value: float
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial L-BFGS logistic regression; ``weight`` ``(D, C)``, ``bias`` ``(C,)``."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    weight = np.zeros((x.shape[1], n_classes), dtype=np.float32)
    bias = np.full(n_classes, _ABSENT_CLASS_BIAS, dtype=np.float32)
    present = np.unique(y)
    if present.size == 1:
        # A draw with one class only: the fitted model predicts that class.
        bias[present[0]] = 0.0
        return weight, bias
    clf = LogisticRegression(C=c_value, max_iter=1000)
    with warnings.catch_warnings():
        # Large C on separable data stops at max_iter; the validation score judges it.
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y)
    classes = np.asarray(clf.classes_, dtype=np.int64)
    coef = np.asarray(clf.coef_, dtype=np.float32)
    intercept = np.asarray(clf.intercept_, dtype=np.float32)
    if classes.size == 2:
        # Binary problems come back as one score for the second class against 0.
        weight[:, classes[1]] = coef[0]
        bias[classes[0]] = 0.0
        bias[classes[1]] = intercept[0]
    else:
        weight[:, classes] = coef.T
        bias[classes] = intercept
    return weight, bias
