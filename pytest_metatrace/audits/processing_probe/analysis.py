"""Processing probes (docs/protocol.md §4, paper Sec. 3.1): reading a processing class back.

For a parameter group with K classes (e.g. the 6 JPEG classes), every image
was embedded under every class. For each seed ``s`` of the training draw:

- every TRAINING image gets one class drawn uniformly,
  ``np.random.default_rng(s).integers(0, K, N_train)``, and contributes that
  class's embedding with that class as label;
- a linear probe (:class:`~pytest_metatrace.analysis.probe.LinearProbe`,
  protocol mode by default) is trained on it, its own init and shuffles
  seeded by ``s`` too (through a separate stream);
- EVERY TEST image is scored under EVERY class: K x N_test samples, the label
  being the class index.

Hyper-parameters are searched on the first seed's draw only (its stratified
validation split is seeded by that seed) and reused for every seed. The
per-seed final fits train together (one batched computation over seeds), as
rows of one shared feature bank so no seed's features are copied.

Reported: top-1 and mean per-class accuracy per seed, their mean and std over
seeds (population std, ``ddof=0``, numpy's ``np.std`` default; the paper's
mean ± std does not say which, and ``std_ddof=1`` gives the sample std), per-class accuracy
averaged over seeds, the confusion matrix summed over seeds, and per test
image the share of its K x S scores that were correct (``per_image_correct``),
whose mean is the mean top-1 and which carries the bootstrap interval (the
test image is the statistical unit, see :mod:`~pytest_metatrace.analysis.stats`).
The test set is balanced by construction (every image under every class), so
mean per-class accuracy equals top-1 here; both are reported.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from pytest_metatrace.data import Dataset
    from pytest_metatrace.embeddings import Embeddings
    from pytest_metatrace.settings import Settings

from pytest_metatrace.analysis.probe import (
    LinearProbe,
    ProbeInputError,
    SearchResult,
    check_features,
    resolve_device,
)
from pytest_metatrace.analysis.stats import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_LEVEL,
    Interval,
    bootstrap_mean,
)
from pytest_metatrace.analysis.validation_split import SplitTooSmall
from pytest_metatrace.audits.processing_probe.results import ProbeDetails, SearchPoint
from pytest_metatrace.results import Record, jsonable

__all__ = [
    "DEFAULT_SEEDS",
    "ProcessingProbe",
    "ProcessingProbeResult",
    "draw_classes",
    "processing_probe",
    "run_processing_probe",
]

#: Number of training draws averaged over (paper Sec. 3.1).
DEFAULT_SEEDS = 10


def draw_classes(seed: int, n_classes: int, n_images: int) -> np.ndarray:
    """The class each training image is processed with under ``seed``: uniform, int64.

    ``np.random.default_rng(seed).integers(0, n_classes, n_images)``.
    """
    return np.random.default_rng(seed).integers(0, n_classes, n_images).astype(np.int64)


@dataclass
class ProcessingProbeResult:
    """Accuracy of reading a processing class back from embeddings, over several draws."""

    classes: list[str]  #: the parameter group's classes; label k is classes[k]
    chance: float  #: 1 / K
    seeds: list[int]  #: seeds of the training draws; the search used seeds[0]
    mode: str  #: probe mode, ``sgd`` (protocol) or ``lbfgs``
    top1_per_seed: list[float]  #: top-1 over the K x N_test samples, per seed
    top1_mean: float  #: mean of top1_per_seed
    top1_std: float  #: std of top1_per_seed (``std_ddof``)
    mean_per_class_per_seed: list[float]  #: mean per-class accuracy, per seed
    mean_per_class_mean: float  #: mean of mean_per_class_per_seed
    mean_per_class_std: float  #: std of mean_per_class_per_seed (``std_ddof``)
    std_ddof: int  #: 0: population std (numpy's default), 1: sample std
    per_class_accuracy: list[float]  #: (K,) accuracy per true class, mean over seeds
    confusion: np.ndarray  #: (K, K) counts summed over seeds, rows true, columns predicted
    per_image_correct: np.ndarray  #: (N_test,) share correct over classes and seeds
    interval: Interval  #: bootstrap interval of the mean of per_image_correct
    hyperparameters: dict[str, float]  #: used for every seed's final fit
    search: SearchResult | None  #: the search on seeds[0]'s draw (None if given)
    train_class_counts: np.ndarray  #: (S, K) training images drawn per class, per seed
    n_train: int  #: training images (each contributes one sample per seed)
    n_test_images: int  #: test images
    n_test_samples: int  #: K x n_test_images, scored per seed
    device: str  #: torch device the probes trained on
    settings: dict[str, Any]  #: the probe's parameters and the seeding
    wall_time_s: float  #: seconds for fit and evaluate together
    image_ids: list[str] = field(default_factory=list)  #: test image ids, if known

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (arrays as lists, NaN as null)."""
        result: dict[str, Any] = jsonable(asdict(self))
        return result

    def details(self) -> ProbeDetails:
        """The typed ``details`` of this result's record, as the report reads them."""
        trials = self.search.trials if self.search is not None else []
        return ProbeDetails(
            classes=list(self.classes),
            top1_mean=self.top1_mean,
            top1_std=self.top1_std,
            top1_per_seed=list(self.top1_per_seed),
            mean_per_class_mean=self.mean_per_class_mean,
            mean_per_class_std=self.mean_per_class_std,
            per_class_accuracy=dict(zip(self.classes, self.per_class_accuracy, strict=True)),
            confusion=self.confusion.tolist(),
            hyperparameters=dict(self.hyperparameters),
            search=[
                SearchPoint(
                    val_top1=t.val_top1,
                    lr=t.params.get("lr"),
                    weight_decay=t.params.get("weight_decay"),
                    C=t.params.get("C"),
                )
                for t in trials
            ],
            search_method=self.search.method if self.search is not None else None,
            n_train=self.n_train,
            n_test_images=self.n_test_images,
            n_test_samples=self.n_test_samples,
            seeds=list(self.seeds),
            mode=self.mode,
            std_ddof=self.std_ddof,
            device=self.device,
            wall_time_s=self.wall_time_s,
        )

    def to_records(self, *, encoder: str, dataset: str, parameter: str) -> list[Record]:
        """One ``processing_probe`` / ``top1`` record for parameter group ``parameter``."""
        ids = list(self.image_ids) if len(self.image_ids) == len(self.per_image_correct) else None
        return [
            Record(
                audit="processing_probe",
                metric="top1",
                value=self.top1_mean,
                encoder=encoder,
                dataset=dataset,
                parameter=parameter,
                interval=self.interval.to_dict(),
                chance=self.chance,
                details=jsonable(self.details().to_dict()),
                provenance={"processing": list(self.classes), "probe": self.settings},
                scores=[float(v) for v in self.per_image_correct],
                score_ids=ids,
            )
        ]


def _seed_offsets(seeds: int | Sequence[int]) -> list[int]:
    if isinstance(seeds, (int, np.integer)):
        if seeds < 1:
            raise ProbeInputError(f"seeds must be >= 1, got {seeds}")
        return list(range(int(seeds)))
    out = [int(s) for s in seeds]
    if not out:
        raise ProbeInputError("seeds must not be empty")
    if len(set(out)) != len(out):
        raise ProbeInputError(f"seeds must be distinct, got {out}")
    return out


def _class_list(classes: Sequence[str]) -> list[str]:
    if isinstance(classes, str):
        raise ProbeInputError("classes must be a sequence of class names, not one string")
    names = [str(c) for c in classes]
    if len(names) < 2:
        raise ProbeInputError(f"a processing probe needs at least two classes, got {names}")
    if len(set(names)) != len(names):
        raise ProbeInputError(f"classes must be distinct, got {names}")
    return names


def _views(
    data: Mapping[str, ArrayLike | torch.Tensor],
    classes: list[str],
    which: str,
    dim: int | None = None,
) -> np.ndarray:
    """Normalized embeddings of every class, stacked ``(K, N, D)`` float32, checked."""
    missing = [c for c in classes if c not in data]
    if missing:
        raise ProbeInputError(
            f"{which} has no embeddings for class(es) {missing}; it has {sorted(data)} - "
            "embed the images under every class of the parameter group"
        )
    first = check_features(data[classes[0]], f"{which}[{classes[0]!r}]", dim=dim)
    out = np.empty((len(classes), *first.shape), dtype=np.float32)
    out[0] = first
    for k, name in enumerate(classes[1:], start=1):
        raw = data[name]
        arr = raw if isinstance(raw, torch.Tensor) else np.asarray(raw)
        shape = tuple(arr.shape)
        if len(shape) == 2 and shape[0] != first.shape[0]:
            raise ProbeInputError(
                f"{which}[{name!r}] has {shape[0]} images but {which}[{classes[0]!r}] has "
                f"{first.shape[0]}: every class must hold the same images in the same order"
            )
        check_features(arr, f"{which}[{name!r}]", dim=first.shape[1], out=out[k])
    return out


@dataclass
class ProcessingProbe:
    """The processing-probe protocol as an estimator: ``fit(train, classes)``, ``evaluate(test)``.

    ``seeds`` is a count (offsets ``0..seeds-1``) or explicit offsets; the
    draw seeds are ``base_seed + offset``. The probe's own ``seed`` is not
    used: each draw's seed also seeds its split, search, init and shuffles.
    """

    probe: LinearProbe = field(default_factory=LinearProbe)  #: probe settings (protocol default)
    seeds: int | Sequence[int] = DEFAULT_SEEDS  #: number of draws, or explicit seed offsets
    base_seed: int = 0  #: added to every seed offset
    std_ddof: int = 0  #: std convention across seeds: 0 population (np.std), 1 sample
    interval_level: float = DEFAULT_LEVEL  #: confidence level of the bootstrap interval
    n_boot: int = DEFAULT_BOOTSTRAP  #: bootstrap resamples

    def seed_list(self) -> list[int]:
        """The draw seeds, ``base_seed + offset``; the first one is searched on."""
        seeds = [self.base_seed + s for s in _seed_offsets(self.seeds)]
        if min(seeds) < 0:
            raise ProbeInputError(f"seeds must be >= 0 after adding base_seed, got {seeds}")
        return seeds

    def get_params(self) -> dict[str, Any]:
        """Every parameter, the probe's included, JSON-ready."""
        params: dict[str, Any] = jsonable(
            {
                "probe": self.probe.get_params(),
                "seeds": self.seed_list(),
                "base_seed": self.base_seed,
                "std_ddof": self.std_ddof,
                "interval_level": self.interval_level,
                "n_boot": self.n_boot,
                "draw": "np.random.default_rng(seed).integers(0, K, n_train)",
            }
        )
        return params

    def fit(
        self, train: Mapping[str, ArrayLike | torch.Tensor], classes: Sequence[str]
    ) -> ProcessingProbe:
        """Draw the training sets, search on the first seed's draw, fit every seed; return self.

        ``train[c]``: ``(N_train, D)`` embeddings of the training images
        processed with class ``c``, the same images in the same order for
        every class.
        """
        start = time.perf_counter()
        self.probe.check_params()
        if self.std_ddof not in (0, 1):
            raise ProbeInputError(f"std_ddof must be 0 or 1, got {self.std_ddof!r}")
        names = _class_list(classes)
        seeds = self.seed_list()
        views = _views(train, names, "train")
        k, n, dim = views.shape
        draws = np.stack([draw_classes(s, k, n) for s in seeds])  # (S, N)
        # One bank of every class's embeddings: a training sample is row
        # class * N + image, so a seed's training set is an index, not a copy.
        dev = resolve_device(self.probe.device)
        bank = torch.from_numpy(views.reshape(k * n, dim)).to(dev)
        del views
        rows = draws * n + np.arange(n, dtype=np.int64)[None, :]
        search: SearchResult | None = None
        if self.probe.searches:
            try:
                search = self.probe.search_on(bank, rows[0], draws[0], k, seeds[0])
            except ProbeInputError as exc:
                raise ProbeInputError(
                    f"hyper-parameter search on seed {seeds[0]}'s draw of {n} training images "
                    f"over {k} classes failed: "
                    f"{exc.named(names) if isinstance(exc, SplitTooSmall) else exc}"
                ) from exc
            params = search.best_params
        else:
            params = self.probe.fixed_params()
        weight, bias = self.probe.train_on(bank, rows, draws, k, seeds, params)
        self.classes_: list[str] = names
        self.seeds_: list[int] = seeds
        self.weight_: torch.Tensor = weight  # (S, D, K), on the device
        self.bias_: torch.Tensor = bias  # (S, K)
        self.n_features_in_: int = dim
        self.n_train_: int = n
        self.train_class_counts_: np.ndarray = np.stack(
            [np.bincount(d, minlength=k) for d in draws]
        )
        self.search_: SearchResult | None = search
        self.hyperparameters_: dict[str, float] = dict(params)
        self.device_: str = str(dev)
        self.fit_time_s_: float = time.perf_counter() - start
        return self

    def predict(self, test: Mapping[str, ArrayLike | torch.Tensor]) -> np.ndarray:
        """Predicted class index, ``(S, K, N_test)``: seed, processing class, test image."""
        if not hasattr(self, "weight_"):
            raise RuntimeError("this ProcessingProbe is not fitted yet: call fit(train, classes)")
        views = _views(test, self.classes_, "test", dim=self.n_features_in_)
        k, n_test, _ = views.shape
        preds = np.empty((len(self.seeds_), k, n_test), dtype=np.int64)
        dev = self.weight_.device
        with torch.no_grad():
            for c in range(k):
                x = torch.from_numpy(views[c]).to(dev)
                for start in range(0, n_test, 16384):
                    xc = x[start : start + 16384]
                    scores = torch.einsum("nd,sdc->snc", xc, self.weight_) + self.bias_[:, None]
                    preds[:, c, start : start + 16384] = scores.argmax(dim=-1).cpu().numpy()
        return preds

    def evaluate(self, test: Mapping[str, ArrayLike | torch.Tensor]) -> ProcessingProbeResult:
        """Score every test image under every class with every seed's probe."""
        start = time.perf_counter()
        preds = self.predict(test)
        n_seeds, k, n_test = preds.shape
        truth = np.broadcast_to(np.arange(k)[None, :, None], preds.shape)
        correct = preds == truth  # (S, K, N_test)
        top1 = correct.mean(axis=(1, 2))
        # Per-class accuracy of seed s for class c: its N_test samples all have label c.
        per_class = correct.mean(axis=2)  # (S, K)
        mean_per_class = per_class.mean(axis=1)
        confusion = np.zeros((k, k), dtype=np.int64)
        for c in range(k):
            confusion[c] = np.bincount(preds[:, c, :].ravel(), minlength=k)
        per_image = correct.mean(axis=(0, 1))
        interval = bootstrap_mean(
            per_image, level=self.interval_level, n_boot=self.n_boot, seed=self.base_seed
        )
        return ProcessingProbeResult(
            classes=list(self.classes_),
            chance=1.0 / k,
            seeds=list(self.seeds_),
            mode=self.probe.mode,
            top1_per_seed=[float(v) for v in top1],
            top1_mean=float(top1.mean()),
            top1_std=float(top1.std(ddof=self.std_ddof)) if n_seeds > self.std_ddof else 0.0,
            mean_per_class_per_seed=[float(v) for v in mean_per_class],
            mean_per_class_mean=float(mean_per_class.mean()),
            mean_per_class_std=(
                float(mean_per_class.std(ddof=self.std_ddof)) if n_seeds > self.std_ddof else 0.0
            ),
            std_ddof=self.std_ddof,
            per_class_accuracy=[float(v) for v in per_class.mean(axis=0)],
            confusion=confusion,
            per_image_correct=per_image,
            interval=interval,
            hyperparameters=dict(self.hyperparameters_),
            search=self.search_,
            train_class_counts=self.train_class_counts_,
            n_train=self.n_train_,
            n_test_images=n_test,
            n_test_samples=k * n_test,
            device=self.device_,
            settings=self.get_params(),
            wall_time_s=self.fit_time_s_ + time.perf_counter() - start,
        )


def run_processing_probe(
    train: Mapping[str, ArrayLike | torch.Tensor],
    test: Mapping[str, ArrayLike | torch.Tensor],
    classes: Sequence[str],
    *,
    probe: LinearProbe | None = None,
    seeds: int | Sequence[int] = DEFAULT_SEEDS,
    base_seed: int = 0,
    std_ddof: int = 0,
    interval_level: float = DEFAULT_LEVEL,
    n_boot: int = DEFAULT_BOOTSTRAP,
) -> ProcessingProbeResult:
    """Fit and evaluate a :class:`ProcessingProbe` in one call.

    ``train[c]`` / ``test[c]``: ``(N, D)`` embeddings of the training / test
    images processed with class ``c``; ``classes``: the parameter group's
    classes (e.g. ``PARAMETER_GROUPS["jpeg"].classes``). Cached by its inputs
    (:mod:`pytest_metatrace.analysis.memo`).
    """
    from pytest_metatrace.analysis.memo import cached
    from pytest_metatrace.analysis.sgd import resolve_device

    chosen = probe if probe is not None else LinearProbe()
    names = [str(c) for c in classes] if not isinstance(classes, str) else [classes]
    return cached(
        "processing_probe",
        {
            "probe": chosen,
            "device": resolve_device(chosen.device).type,
            "classes": names,
            "seeds": seeds if isinstance(seeds, (int, np.integer)) else list(seeds),
            "base_seed": base_seed,
            "std_ddof": std_ddof,
            "interval_level": interval_level,
            "n_boot": n_boot,
        },
        lambda: [train[c] for c in names] + [test[c] for c in names],
        lambda: _run_processing_probe(
            train, test, classes, chosen, seeds, base_seed, std_ddof, interval_level, n_boot
        ),
    )


def _run_processing_probe(
    train: Mapping[str, ArrayLike | torch.Tensor],
    test: Mapping[str, ArrayLike | torch.Tensor],
    classes: Sequence[str],
    probe: LinearProbe,
    seeds: int | Sequence[int],
    base_seed: int,
    std_ddof: int,
    interval_level: float,
    n_boot: int,
) -> ProcessingProbeResult:
    estimator = ProcessingProbe(
        probe=probe,
        seeds=seeds,
        base_seed=base_seed,
        std_ddof=std_ddof,
        interval_level=interval_level,
        n_boot=n_boot,
    )
    return estimator.fit(train, classes).evaluate(test)


def processing_probe(
    embeddings: Embeddings, dataset: Dataset, group: str, settings: Settings
) -> ProcessingProbeResult:
    """The processing probe of one parameter group, as the built-in audit runs it.

    Reads the train and test embeddings of every class of ``group`` (a key of
    ``PARAMETER_GROUPS``) and runs :func:`run_processing_probe` with the
    session's probe settings; the result knows the test images' ids.
    Raises :class:`ProbeInputError` when the data cannot support the probe.
    """
    from pytest_metatrace.processing import PARAMETER_GROUPS

    classes = list(PARAMETER_GROUPS[group].classes)
    from pytest_metatrace.analysis.probe import probe_from_settings

    probe = probe_from_settings(settings)
    train = embeddings.many(dataset, "train", classes)
    test = embeddings.many(dataset, "test", classes)
    result = run_processing_probe(
        {c: train[c] for c in classes},
        {c: test[c] for c in classes},
        classes,
        probe=probe,
        seeds=settings.probe_seeds,
        base_seed=settings.seed,
    )
    result.image_ids = [dataset.items[int(i)].id for i in embeddings.split(dataset).test]
    return result
