"""The linear probe as an estimator (docs/protocol.md §4): ``fit``, ``predict``, ``evaluate``.

:class:`LinearProbe` stores its parameters; ``fit`` searches hyper-parameters
(:mod:`~pytest_metatrace.analysis.probe_search`) and trains with the batched
SGD engine (:mod:`~pytest_metatrace.analysis.sgd`), or, in the non-protocol
``lbfgs`` mode, with scikit-learn's L-BFGS logistic regression. The engine's
and the search's public names are re-exported here.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import ArrayLike

from pytest_metatrace.analysis.probe_inputs import _check_classes
from pytest_metatrace.analysis.probe_search import (
    SearchResult,
    SearchTrial,
    _best_trial,
    _score_trials,
    classification_metrics,
    search_points,
)
from pytest_metatrace.analysis.sgd import (
    _ABSENT_CLASS_BIAS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_LBFGS_C_GRID,
    DEFAULT_MIN_STEPS_PER_EPOCH,
    DEFAULT_MOMENTUM,
    DEFAULT_TRIALS,
    LR_RANGE,
    VAL_FRACTION,
    WD_RANGE,
    ProbeInputError,
    ProbeMode,
    _train_sgd_torch,
    check_features,
    check_labels,
    effective_batch_size,
    l2_normalize,
    linear_scores,
    resolve_device,
    stratified_split,
    train_sgd_batched,
)
from pytest_metatrace.results import jsonable

if TYPE_CHECKING:
    from pytest_metatrace.settings import Settings

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_EPOCHS",
    "DEFAULT_LBFGS_C_GRID",
    "DEFAULT_MIN_STEPS_PER_EPOCH",
    "DEFAULT_MOMENTUM",
    "DEFAULT_TRIALS",
    "LR_RANGE",
    "PROBE_MODES",
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
    "effective_batch_size",
    "l2_normalize",
    "linear_scores",
    "probe_from_settings",
    "resolve_device",
    "search_points",
    "stratified_split",
    "train_sgd_batched",
]


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
# The estimator


@dataclass
class LinearProbe:
    """The paper's linear probe (docs/protocol.md §4) as an estimator.

    The constructor only stores parameters; :meth:`fit` runs the search and
    the final fit; :meth:`evaluate` scores a test set once and returns a
    :class:`ProbeResult`. Pass ``lr`` and ``weight_decay`` (or ``lbfgs_c``)
    to skip the search. See the module docstring for the exact protocol.
    """

    mode: ProbeMode = "sgd"  #: ``sgd`` (protocol) or ``lbfgs`` (cheaper, not the protocol)
    epochs: int = DEFAULT_EPOCHS  #: SGD epochs
    batch_size: int = DEFAULT_BATCH_SIZE  #: SGD minibatch size (the protocol's, on large sets)
    #: on small sets the batch shrinks to ``ceil(N / min_steps_per_epoch)`` (1: never)
    min_steps_per_epoch: int = DEFAULT_MIN_STEPS_PER_EPOCH
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
            "min_steps_per_epoch": self.min_steps_per_epoch,
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

    def batch_size_for(self, n_samples: int) -> int:
        """The SGD minibatch size on ``n_samples`` training samples (``min_steps_per_epoch``)."""
        return effective_batch_size(n_samples, self.batch_size, self.min_steps_per_epoch)

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
                    self.batch_size_for(int(fit_idx.size)),
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
            self.batch_size_for(int(rows.shape[1])),
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


#: ``--metatrace-probe-mode`` -> :class:`LinearProbe` mode.
PROBE_MODES: dict[str, ProbeMode] = {"protocol": "sgd", "lbfgs": "lbfgs"}


def probe_from_settings(settings: Settings, *, trial_share: int = 1) -> LinearProbe:
    """The session's :class:`LinearProbe` (mode, epochs, trials, seed, device).

    ``trial_share`` divides the search's trials (at least one is kept), for
    probes that show a trend rather than a gated number.
    """
    return LinearProbe(
        mode=PROBE_MODES[settings.probe_mode],
        epochs=settings.probe_epochs,
        n_trials=max(1, settings.probe_trials // trial_share),
        seed=settings.seed,
        device=settings.device,
    )
