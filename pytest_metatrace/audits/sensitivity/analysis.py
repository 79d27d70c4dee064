"""The sensitivity property and search: the smallest processing step an encoder detects.

The property for one step ``s`` (a parametric view such as ``jpeg92_444``):
a two-class processing probe, reference ``jpeg95_444`` against ``s``, built
exactly as the processing probes are
(:class:`~pytest_metatrace.audits.processing_probe.analysis.ProcessingProbe`:
every training image under one of the two classes drawn at random per seed,
the session's linear probe, its search on the first seed's draw), scored on
every test image under both. Each test image gives one 0/1 score, a paired
two-alternative choice: 1 when the probe's margin for "changed" (class
``s`` minus reference, averaged over the seeds' probes) is larger on the
image's changed version than on its reference version, 0 otherwise (ties
too). With no trace the two versions are exchangeable, so the score is 1
with probability at most 1/2: chance is 0.5. The scores go to
:func:`~pytest_metatrace.analysis.intervals.gate_interval` (0/1 scores:
Clopper-Pearson), and the step is

* ``detected`` when the interval's lower end is above ``0.5 + margin``
  (``margin`` defaults to 0.05);
* ``undecided`` when there are fewer test images than
  :func:`~pytest_metatrace.analysis.intervals.min_decidable_n` needs for
  that threshold (no result could then be "detected");
* ``not detected`` otherwise.

The paired score rather than the probe's top-1 over both versions: it is one
0/1 score per test image (the statistical unit the gate intervals assume),
so Clopper-Pearson applies exactly, and it compares the two versions of the
same photo, so content does not dilute it. The probe's top-1 is reported too.

The search (:mod:`~pytest_metatrace.audits.sensitivity.search`) finds the
smallest grid step that is detected; every embedding comes from the
plugin's :class:`~pytest_metatrace.embeddings.Embeddings` facade (cached like
every view), and every evaluated step is stored as JSON under the cache
folder, keyed by everything it depends on, so that a rerun computes no
embedding, fits no probe and tries no new step.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from numpy.typing import ArrayLike

from pytest_metatrace.analysis.intervals import gate_interval, min_decidable_n
from pytest_metatrace.analysis.probe import LinearProbe, ProbeInputError, check_features
from pytest_metatrace.analysis.stats import DEFAULT_LEVEL, Interval
from pytest_metatrace.audits.processing_probe.analysis import ProcessingProbe
from pytest_metatrace.audits.sensitivity.search import (
    REFERENCE,
    SEARCH_METHODS,
    SearchOutcome,
    StepGrid,
    bisect_search,
    hypothesis_search,
)
from pytest_metatrace.results import Record, jsonable

if TYPE_CHECKING:
    from pytest_metatrace.data import Dataset
    from pytest_metatrace.embeddings import Embeddings
    from pytest_metatrace.settings import Settings

__all__ = [
    "CHANCE",
    "DEFAULT_MARGIN",
    "DEFAULT_SEEDS",
    "SensitivityResult",
    "StepResult",
    "Verdict",
    "detect_step",
    "paired_hits",
    "sensitivity",
    "sensitivity_search",
]

#: Chance of the paired score: with no trace the two versions are exchangeable.
CHANCE = 0.5
#: A step is detected when the interval's lower end exceeds chance by this much.
DEFAULT_MARGIN = 0.05
#: Training draws (probe seeds) per step: fewer than the processing probes' 10,
#: since the search fits one probe per step it tries.
DEFAULT_SEEDS = 3

Verdict = Literal["detected", "not detected", "undecided"]

#: Bump when the property's computation changes; part of the step memo's key.
_MEMO_VERSION = 1


@dataclass
class StepResult:
    """The property at one step: the paired accuracy, its interval and the verdict."""

    name: str  #: the step's processing view, e.g. ``jpeg92_444``
    size: float  #: distance from the reference's parameter (grid order)
    accuracy: float  #: share of test images whose changed version scored higher (chance 0.5)
    interval: Interval  #: gate interval of ``accuracy`` (Clopper-Pearson)
    verdict: Verdict  #: detected / not detected / undecided
    threshold: float  #: 0.5 + margin, what the lower end must exceed
    need: int | None  #: fewest test images at which the threshold can be exceeded
    top1: float  #: the two-class probe's top-1 over both versions, mean over seeds
    n_test_images: int  #: test images scored
    wall_time_s: float  #: seconds for the probe fits and scoring (0 when read back)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = asdict(self)
        out["interval"] = self.interval.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepResult:
        """Inverse of :meth:`to_dict`."""
        values = dict(data)
        values["interval"] = Interval.from_dict(values["interval"])
        return cls(**values)


def paired_hits(margin_reference: ArrayLike, margin_step: ArrayLike) -> np.ndarray:
    """Per test image 1.0 when the changed version's margin is larger, else 0.0 (ties: 0).

    ``margin_*``: ``(n_test,)`` the probe's score for the step class minus its
    score for the reference class, on each image's reference / changed
    version.
    """
    ref = np.asarray(margin_reference, dtype=np.float64)
    step = np.asarray(margin_step, dtype=np.float64)
    if ref.shape != step.shape or ref.ndim != 1:
        raise ProbeInputError(
            f"paired margins must be two (n,) arrays of equal length, got {ref.shape} and "
            f"{step.shape}"
        )
    return (step > ref).astype(np.float64)


def _verdict(interval: Interval, threshold: float, need: int | None) -> Verdict:
    if need is None or interval.n < need:
        return "undecided"
    return "detected" if interval.low > threshold else "not detected"


def detect_step(
    train: Mapping[str, ArrayLike | torch.Tensor],
    test: Mapping[str, ArrayLike | torch.Tensor],
    step: str,
    *,
    reference: str = REFERENCE,
    probe: LinearProbe | None = None,
    seeds: int = DEFAULT_SEEDS,
    base_seed: int = 0,
    margin: float = DEFAULT_MARGIN,
    level: float = DEFAULT_LEVEL,
    size: float = float("nan"),
) -> StepResult:
    """The property at one step from embeddings: can a probe tell ``step`` from ``reference``?

    ``train[c]`` / ``test[c]``: ``(N, D)`` embeddings of the training / test
    images under class ``c`` (``reference`` and ``step``), the same images in
    the same order. See the module docstring for the score and the verdict.
    """
    if not 0.0 <= margin < CHANCE:
        raise ProbeInputError(f"margin must be in [0, 0.5), got {margin!r}")
    classes = [reference, step]
    estimator = ProcessingProbe(
        probe=probe if probe is not None else LinearProbe(), seeds=seeds, base_seed=base_seed
    )
    start = time.perf_counter()
    estimator.fit(train, classes)
    top1 = estimator.evaluate(test).top1_mean
    weight, bias = estimator.weight_, estimator.bias_  # (S, D, 2), (S, 2)
    margins = []
    with torch.no_grad():
        for name in classes:
            x = torch.from_numpy(
                check_features(test[name], f"test[{name!r}]", dim=estimator.n_features_in_)
            ).to(weight.device)
            scores = torch.einsum("nd,sdc->snc", x, weight) + bias[:, None]  # (S, N, 2)
            margins.append((scores[..., 1] - scores[..., 0]).mean(dim=0).cpu().numpy())
    hits = paired_hits(margins[0], margins[1])
    threshold = CHANCE + margin
    interval = gate_interval(hits, level=level)
    need = min_decidable_n(threshold, level=level, binary=True)
    return StepResult(
        name=step,
        size=float(size),
        accuracy=float(hits.mean()),
        interval=interval,
        verdict=_verdict(interval, threshold, need),
        threshold=threshold,
        need=need,
        top1=float(top1),
        n_test_images=int(hits.shape[0]),
        wall_time_s=time.perf_counter() - start,
    )


@dataclass
class SensitivityResult:
    """The search over one parameter's grid: the smallest detected step and every step tried."""

    parameter: str  #: e.g. ``jpeg``; the gate key is ``sensitivity.<parameter>``
    title: str  #: human-readable parameter name
    parameter_unit: str  #: what a grid value is (``quality``, ``factor``)
    reference: str  #: the reference view, ``jpeg95_444``
    method: str  #: ``bisect`` or ``hypothesis``
    verdict: str  #: ``detected`` (some step), ``none detected`` or ``undecided``
    smallest: str | None  #: the smallest detected step's view name
    smallest_size: float | None  #: its distance from the reference
    smallest_value: float | None  #: its parameter value (quality, factor)
    grid: list[str]  #: every step of the grid, smallest change first
    steps: list[StepResult]  #: the steps evaluated, in grid order
    evaluations: int  #: distinct steps evaluated by the search
    computed: int  #: of those, how many were computed now (not read from the memo)
    margin: float  #: detected when the lower end exceeds 0.5 + margin
    chance: float  #: 0.5
    need: int | None  #: fewest test images at which a step can be detected
    n_test_images: int  #: test images per step
    settings: dict[str, Any] = field(default_factory=dict)  #: probe and search parameters
    wall_time_s: float = 0.0  #: seconds for the whole search

    @property
    def smallest_step(self) -> StepResult | None:
        """The result of the smallest detected step, if any."""
        return next((s for s in self.steps if s.name == self.smallest), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = asdict(self)
        out["steps"] = [s.to_dict() for s in self.steps]
        return out

    @property
    def unit(self) -> str:
        """The record's unit: how a step size is measured."""
        return "quality points" if self.parameter_unit == "quality" else "factor change"

    def to_records(self, *, encoder: str, dataset: str) -> list[Record]:
        """One ``sensitivity`` / ``smallest_step`` record: the smallest detected step's size.

        The value is null when no step of the grid was detected or the test
        set was too small to decide (``details["verdict"]`` says which); the
        per-step accuracies with their intervals are in ``details["steps"]``.
        """
        value = self.smallest_size if self.smallest_size is not None else float("nan")
        return [
            Record(
                audit="sensitivity",
                metric="smallest_step",
                value=value,
                encoder=encoder,
                dataset=dataset,
                parameter=self.parameter,
                unit=self.unit,
                details=jsonable(self.to_dict()),
                provenance={"sensitivity": jsonable(self.settings)},
            )
        ]


class _StepMemo:
    """Evaluated steps of one search setting, stored as one JSON file (atomic rewrite)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.steps: dict[str, StepResult] = {}
        if path is not None and path.is_file():
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
                self.steps = {k: StepResult.from_dict(v) for k, v in raw["steps"].items()}
            except (OSError, ValueError, KeyError, TypeError):
                self.steps = {}  # a damaged memo is derived data: recompute

    def save(self) -> None:
        if self.path is None:
            return
        from pytest_metatrace._files import atomic_write_text

        text = json.dumps({"steps": {k: v.to_dict() for k, v in self.steps.items()}})
        # a read-only cache folder: the search still works, it is not remembered
        with contextlib.suppress(OSError):
            atomic_write_text(self.path, text)


def _memo_key(parts: Mapping[str, Any]) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def sensitivity_search(
    embeddings: Embeddings,
    dataset: Dataset,
    grid: StepGrid,
    *,
    probe: LinearProbe | None = None,
    seeds: int = DEFAULT_SEEDS,
    base_seed: int = 0,
    margin: float = DEFAULT_MARGIN,
    level: float = DEFAULT_LEVEL,
    method: str = "bisect",
    max_examples: int = 50,
    cache_dir: Path | None = None,
) -> SensitivityResult:
    """Search ``grid`` for the smallest step the encoder behind ``embeddings`` detects.

    ``method``: ``bisect`` (default; assumes detection grows with the step)
    or ``hypothesis`` (:func:`hypothesis.find` with shrinking; needs the
    ``hypothesis`` package; its example database lives under
    ``cache_dir/sensitivity/hypothesis``). With ``cache_dir`` every evaluated
    step is remembered in ``cache_dir/sensitivity/steps-<key>.json`` (one file per grid
    and setting, so workers searching other parameters never write the same file).
    Raises :class:`ProbeInputError` when the data cannot support the probe.
    """
    if method not in SEARCH_METHODS:
        raise ProbeInputError(
            f"unknown sensitivity search {method!r}; known: {', '.join(SEARCH_METHODS)}"
        )
    start = time.perf_counter()
    probe = probe if probe is not None else LinearProbe()
    split = embeddings.split(dataset)
    n_test = len(split.test)
    threshold = CHANCE + margin
    need = min_decidable_n(threshold, level=level, binary=True)
    names = grid.names()
    params: dict[str, Any] = {
        "probe": probe.get_params(),
        "seeds": seeds,
        "base_seed": base_seed,
        "margin": margin,
        "level": level,
        "method": method,
        "max_examples": max_examples,
        "score": "paired: changed version's margin > reference version's",
    }
    # The store's file name names the encoder fingerprint, device type and precision:
    # embeddings computed on another device are other numbers, hence another memo.
    store = getattr(embeddings, "store", None)
    key = _memo_key(
        {
            "version": _MEMO_VERSION,
            "encoder": embeddings.encoder.fingerprint,
            "store": store.path.name if store is not None else None,
            "dataset": dataset.fingerprint,
            "split": [embeddings.seed, embeddings.test_fraction],
            "reference": REFERENCE,
            "grid": [grid.parameter, *names],
            **{k: v for k, v in params.items() if k not in ("method", "max_examples")},
        }
    )
    folder = cache_dir / "sensitivity" if cache_dir is not None else None
    memo = _StepMemo(folder / f"steps-{key}.json" if folder is not None else None)
    computed = 0

    def evaluate(index: int) -> StepResult:
        nonlocal computed
        name = names[index]
        if name not in memo.steps:
            train = embeddings.many(dataset, "train", [REFERENCE, name])
            test = embeddings.many(dataset, "test", [REFERENCE, name])
            memo.steps[name] = detect_step(
                {c: train[c] for c in (REFERENCE, name)},
                {c: test[c] for c in (REFERENCE, name)},
                name,
                probe=probe,
                seeds=seeds,
                base_seed=base_seed,
                margin=margin,
                level=level,
                size=grid.size(index),
            )
            memo.save()
            computed += 1
        return memo.steps[name]

    def detected(index: int) -> bool:
        return evaluate(index).verdict == "detected"

    outcome: SearchOutcome
    if need is None or n_test < need:
        outcome = SearchOutcome(method, None)
        verdict = "undecided"
    else:
        if method == "bisect":
            outcome = bisect_search(detected, len(grid))
        else:
            try:
                import hypothesis  # noqa: F401
            except ImportError:
                raise ProbeInputError(
                    "--metatrace-sensitivity-search=hypothesis needs the hypothesis package "
                    "(pip install hypothesis); the default search, bisect, does not"
                ) from None
            outcome = hypothesis_search(
                detected,
                len(grid),
                max_examples=max_examples,
                seed=base_seed,
                database=folder / "hypothesis" if folder is not None else None,
                database_key=f"{key}:{grid.parameter}:{','.join(names)}".encode()
                if folder is not None
                else None,
            )
        verdict = "detected" if outcome.smallest is not None else "none detected"
    smallest = names[outcome.smallest] if outcome.smallest is not None else None
    tried = sorted({names[i] for i in outcome.evaluated}, key=names.index)
    return SensitivityResult(
        parameter=grid.parameter,
        title=grid.title,
        parameter_unit=grid.unit,
        reference=REFERENCE,
        method=method,
        verdict=verdict,
        smallest=smallest,
        smallest_size=grid.size(outcome.smallest) if outcome.smallest is not None else None,
        smallest_value=grid.values[outcome.smallest] if outcome.smallest is not None else None,
        grid=names,
        steps=[memo.steps[n] for n in tried],
        evaluations=outcome.evaluations,
        computed=computed,
        margin=margin,
        chance=CHANCE,
        need=need,
        n_test_images=n_test,
        settings=params,
        wall_time_s=time.perf_counter() - start,
    )


def sensitivity(
    embeddings: Embeddings, dataset: Dataset, parameter: str, settings: Settings
) -> SensitivityResult:
    """The sensitivity search of one parameter, as the built-in audit runs it.

    ``parameter`` is a key of :data:`~pytest_metatrace.audits.sensitivity.search.GRIDS`
    (``jpeg``, ``sharpen``, ``resize``); the probe is the session's with a
    third of its search trials, the seeds, margin and search method come from
    the audit's options, and the step memo and Hypothesis database live under
    the embeddings' cache folder. Raises :class:`ProbeInputError` when the
    data cannot support the probe.
    """
    from pytest_metatrace.analysis.probe import probe_from_settings
    from pytest_metatrace.audits.sensitivity.search import get_grid
    from pytest_metatrace.audits.sensitivity.spec import SensitivitySettings

    own = settings.of(SensitivitySettings)
    try:
        grid = get_grid(parameter)
    except KeyError as exc:
        raise ProbeInputError(str(exc.args[0])) from None
    return sensitivity_search(
        embeddings,
        dataset,
        grid,
        probe=probe_from_settings(settings, trial_share=3),
        seeds=own.sensitivity_seeds,
        base_seed=settings.seed,
        margin=own.sensitivity_margin,
        method=own.sensitivity_search,
        cache_dir=getattr(embeddings, "cache_dir", None),
    )
