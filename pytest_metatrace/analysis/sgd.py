"""The linear probe's engine (docs/protocol.md §4): batched SGD.

Input checks live in :mod:`pytest_metatrace.analysis.probe_inputs` and are
re-exported here.

The estimator is :class:`pytest_metatrace.analysis.probe.LinearProbe`; the
hyper-parameter search lives in :mod:`pytest_metatrace.analysis.probe_search`.
What the engine computes:

Protocol mode (``mode="sgd"``, the default), exactly:

- features: L2-normalized embeddings, float32 whatever dtype came in
  (``x / max(||x||, 1e-12)``, the norm taken in float64);
- one linear layer with bias, cross-entropy averaged over the minibatch;
- SGD with PyTorch semantics: ``g = grad + wd * p`` for weight AND bias,
  ``buf = 0.9 * buf + g``, ``p -= lr_e * buf`` (what
  ``torch.optim.SGD(model.parameters(), lr, momentum=0.9, weight_decay=wd)``
  does); batch 1024, reshuffled every epoch, last partial batch kept (its
  mean is over its own size), 100 epochs; on a training set of N < 4096
  samples the batch is ``ceil(N / 4)`` (:func:`effective_batch_size`, a
  choice the paper leaves open): batch 1024 would take one step per epoch
  there and under-train;
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
(the test oracle ``train_sgd_reference`` in ``tests/sgd_oracle.py``) up to
float round-off.

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
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from numpy.typing import ArrayLike

from pytest_metatrace.analysis.probe_inputs import (
    VAL_FRACTION,
    ProbeInputError,
    check_features,
    check_labels,
    l2_normalize,
    resolve_device,
    stratified_split,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_EPOCHS",
    "DEFAULT_LBFGS_C_GRID",
    "DEFAULT_MIN_STEPS_PER_EPOCH",
    "DEFAULT_MOMENTUM",
    "DEFAULT_TRIALS",
    "LR_RANGE",
    "VAL_FRACTION",
    "WD_RANGE",
    "ProbeInputError",
    "ProbeMode",
    "check_features",
    "check_labels",
    "effective_batch_size",
    "l2_normalize",
    "linear_scores",
    "resolve_device",
    "stratified_split",
    "train_sgd_batched",
]

ProbeMode = Literal["sgd", "lbfgs"]

#: Epochs of SGD (docs/protocol.md §4).
DEFAULT_EPOCHS = 100
#: Minibatch size (docs/protocol.md §4).
DEFAULT_BATCH_SIZE = 1024
#: Fewest SGD steps per epoch on small training sets (docs/protocol.md §4, small data).
#: With batch 1024, a set of fewer than 1024 images takes ONE step per epoch,
#: 100 steps in all, and the probe under-trains (issue 8, item 16); the batch
#: then shrinks to ``ceil(N / 4)`` so every epoch takes 4 steps. Sets of 4096
#: or more images keep the protocol's batch of 1024 exactly. 4 steps brought
#: the probe within 1 point of a converged L-BFGS logistic regression on the
#: demo set, as 8 and 16 did, at the lowest cost (bench/README.md).
DEFAULT_MIN_STEPS_PER_EPOCH = 4
#: SGD momentum (docs/protocol.md §4).
DEFAULT_MOMENTUM = 0.9
#: Trials of the hyper-parameter search (the paper's TPE budget).
DEFAULT_TRIALS = 30
#: Learning-rate search range, sampled log-uniformly.
LR_RANGE = (1e-1, 1e2)
#: Weight-decay search range, sampled log-uniformly.
WD_RANGE = (1e-12, 1e-4)
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


def effective_batch_size(n_samples: int, batch_size: int, min_steps_per_epoch: int) -> int:
    """The minibatch size SGD uses on ``n_samples`` training samples.

    ``min(batch_size, ceil(n_samples / min_steps_per_epoch))``, at least 1:
    the protocol's ``batch_size`` wherever ``n_samples >= batch_size *
    min_steps_per_epoch``, smaller on small sets so that every epoch takes
    at least ``min_steps_per_epoch`` steps. ``min_steps_per_epoch=1`` is the
    protocol's batch everywhere.
    """
    if n_samples < 1 or batch_size < 1 or min_steps_per_epoch < 1:
        raise ProbeInputError(
            f"need n_samples, batch_size and min_steps_per_epoch >= 1, got "
            f"{n_samples}, {batch_size}, {min_steps_per_epoch}"
        )
    return max(1, min(batch_size, -(-n_samples // min_steps_per_epoch)))


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
            # In place (addcmul_): on small minibatches these passes over the
            # weights, not the products, set the time per step.
            grad_w.addcmul_(weight, wd_w)
            grad_b.addcmul_(bias, wd_b)
            buf_w.mul_(momentum).add_(grad_w)
            buf_b.mul_(momentum).add_(grad_b)
            weight.addcmul_(buf_w, lr_w, value=-1.0)
            bias.addcmul_(buf_b, lr_b, value=-1.0)
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
