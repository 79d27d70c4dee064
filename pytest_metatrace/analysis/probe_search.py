"""The linear probe's hyper-parameter search (docs/protocol.md §4) and its metrics.

Trials are scrambled Sobol points over log learning rate x log weight decay,
all trained together by the batched engine of
:mod:`pytest_metatrace.analysis.sgd`; the best validation top-1 wins, ties
broken by validation loss, then by trial order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike

from pytest_metatrace.analysis.sgd import _STREAM_SEARCH, LR_RANGE, WD_RANGE, _scores_torch
from pytest_metatrace.results import jsonable

__all__ = ["SearchResult", "SearchTrial", "classification_metrics", "search_points"]

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
