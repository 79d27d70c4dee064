"""Acquisition probes (paper Sec. 3.2, Fig. 6): read camera metadata back from masked embeddings.

Targets (docs/protocol.md §4): ``make``, ``model``, ``model_smartphone``
(the model, among smartphone photos only), ``smartphone`` (phone or camera),
``exposure``, ``aperture``, ``iso`` and ``focal_length``; classes are exact
values. For each target that the data supports:

1. :func:`acquisition_split` keeps the classes with at least
   ``min_per_class`` images, holds out ``test_per_class`` images per class
   (whole groups at a time, so no group - photographer, owner, scene - is on
   both sides), and undersamples the rest to the minority class;
2. the existing :class:`~pytest_metatrace.analysis.probe.LinearProbe` is
   fitted on the training side (its search tunes on the protocol's stratified
   20% validation share of that side) and scored once on the test side;
3. the accuracy's interval is a bootstrap over test images.

Group-disjoint is not yet group-balanced: when one group supplies more than
half of a class's training images, or the whole test side comes from one
group, the split carries a :class:`Confound` that the terminal and the
report name (group and share), since the probe may then read the group
(photographer, subjects) rather than the camera, or describe one group only.

A target the data cannot support is not an error: :class:`TargetUnavailable`
says why, and the audit lists it.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pytest_metatrace.analysis.stats import Interval, bootstrap_mean
from pytest_metatrace.audits.acquisition_traces.spec import TARGETS
from pytest_metatrace.results import Record, jsonable

__all__ = [
    "CONFOUND_SHARE",
    "TARGETS",
    "AcquisitionProbeResult",
    "AcquisitionSplit",
    "Confound",
    "TargetPlan",
    "TargetUnavailable",
    "acquisition_split",
    "find_confounds",
    "plan_targets",
    "run_acquisition_probe",
    "target_labels",
]


class TargetUnavailable(ValueError):
    """A target the data cannot support; the message is the reason shown to the user."""


def target_labels(items: Sequence[Any], target: str) -> list[str | None]:
    """Each item's class for ``target`` (None where it has none), from ``ImageItem.meta``."""
    if target not in TARGETS:
        raise ValueError(f"unknown acquisition target {target!r}; use one of {', '.join(TARGETS)}")
    out: list[str | None] = []
    for it in items:
        meta: Mapping[str, str] = it.meta
        if target == "model_smartphone":
            value = meta.get("model") if meta.get("smartphone") == "smartphone" else None
        else:
            value = meta.get(target)
        out.append(value or None)
    return out


#: A group supplying more than this share of a class's training images is a confound.
CONFOUND_SHARE = 0.5


@dataclass(frozen=True)
class Confound:
    """A split whose sides lean on one group: the probe may read the group, not the camera."""

    kind: str  #: ``train_class`` (one group holds most of a class) or ``test_group``
    group: str  #: the group
    count: int  #: its images (of the class on the training side / on the test side)
    total: int  #: images of that class on the training side / on the test side
    label: str | None = None  #: the class (``train_class`` only)

    @property
    def share(self) -> float:
        """``count / total``."""
        return self.count / self.total

    def describe(self, group_column: str | None = None) -> str:
        """One clause naming the group and the share, e.g. for the terminal."""
        col = group_column or "group"
        if self.kind == "train_class":
            return (
                f"{self.count} of {self.total} training images of {self.label!r} "
                f"({self.share:.0%}) come from {col} {self.group!r}"
            )
        return f"all {self.total} test images come from one {col}, {self.group!r}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the share."""
        return {**dataclasses.asdict(self), "share": self.share}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Confound:
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: v for k, v in data.items() if k != "share"})


def find_confounds(
    split_train: np.ndarray,
    y_train: np.ndarray,
    split_test: np.ndarray,
    groups: Sequence[str | None],
    classes: Sequence[str],
) -> tuple[Confound, ...]:
    """The confounds of a split (item indices and training classes); none without groups."""
    out: list[Confound] = []
    for k, label in enumerate(classes):
        members = [groups[int(i)] for i in split_train[y_train == k]]
        named = Counter(g for g in members if g is not None)
        if named:
            group, count = min(named.items(), key=lambda gc: (-gc[1], gc[0]))
            if count > CONFOUND_SHARE * len(members):
                out.append(Confound("train_class", group, count, len(members), label))
    test_groups = {groups[int(i)] for i in split_test}
    if len(test_groups) == 1 and split_test.size > 1:
        (only,) = test_groups
        if only is not None:
            out.append(Confound("test_group", only, int(split_test.size), int(split_test.size)))
    return tuple(out)


@dataclass(frozen=True)
class AcquisitionSplit:
    """A balanced, group-disjoint train/test split of one target's images."""

    target: str  #: the target
    classes: tuple[str, ...]  #: kept classes, sorted; class index = position
    train: np.ndarray  #: item indices of the training side, sorted
    test: np.ndarray  #: item indices of the test side, sorted
    y_train: np.ndarray  #: class index per training item
    y_test: np.ndarray  #: class index per test item
    group_disjoint: bool  #: True when the items carried groups (else each image is its own)
    dropped: dict[str, int]  #: classes below ``min_per_class`` -> their image count
    min_per_class: int  #: the option used
    test_per_class: int  #: test images per class
    train_per_class: int  #: training images per class after undersampling
    seed: int  #: seed of the group order and the draws
    confounds: tuple[Confound, ...] = ()  #: sides that lean on one group (see the module doc)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (counts, choices and confounds, not the index arrays)."""
        return {
            "target": self.target,
            "classes": list(self.classes),
            "n_train": int(self.train.size),
            "n_test": int(self.test.size),
            "group_disjoint": self.group_disjoint,
            "dropped": dict(self.dropped),
            "min_per_class": self.min_per_class,
            "test_per_class": self.test_per_class,
            "train_per_class": self.train_per_class,
            "seed": self.seed,
            "confounds": [c.to_dict() for c in self.confounds],
        }


def acquisition_split(
    labels: Sequence[str | None],
    groups: Sequence[str | None],
    *,
    target: str = "target",
    min_per_class: int = 10,
    test_per_class: int = 0,
    seed: int = 0,
) -> AcquisitionSplit:
    """Split one target's labelled items as docs/protocol.md §4 asks; see the module docstring.

    ``labels[i]`` is item i's class or None (not used); ``groups[i]`` its
    group or None (then the image is its own group). ``test_per_class`` 0
    means a quarter of the smallest kept class. Groups are taken whole, in a
    seeded order, while a class they hold still needs test images; each
    class's surplus test images are then dropped (not moved to training,
    which would put a group on both sides). Raises :class:`TargetUnavailable`.
    """
    if len(labels) != len(groups):
        raise ValueError(f"{len(labels)} labels but {len(groups)} groups")
    counts = Counter(lab for lab in labels if lab is not None)
    kept = sorted(c for c, n in counts.items() if n >= min_per_class)
    dropped = {c: n for c, n in sorted(counts.items()) if n < min_per_class}
    if not counts:
        raise TargetUnavailable("no image has a value for it")
    if len(kept) < 2:
        have = ", ".join(f"{c} ({n})" for c, n in counts.most_common(5))
        raise TargetUnavailable(
            f"{len(kept)} class(es) with at least {min_per_class} images (needs 2; found "
            f"{have}); lower --metatrace-min-per-class or add photos"
        )
    lookup = {c: k for k, c in enumerate(kept)}
    y = np.array([lookup.get(lab, -1) if lab is not None else -1 for lab in labels], np.int64)
    used = np.flatnonzero(y >= 0)
    group_disjoint = any(groups[int(i)] is not None for i in used)
    gkey: list[str] = [g if g is not None else f"\0item{i}" for i, g in enumerate(groups)]
    by_group: dict[str, list[int]] = {}
    for i in used:
        by_group.setdefault(gkey[i], []).append(int(i))
    rng = np.random.default_rng([seed, 0xAC0])
    order = [sorted(by_group)[j] for j in rng.permutation(len(by_group))]
    quota = test_per_class or max(1, min(counts[c] for c in kept) // 4)
    filled = np.zeros(len(kept), np.int64)
    test_groups: set[str] = set()
    for g in order:
        members = y[by_group[g]]
        if np.any(filled[members] < quota):
            test_groups.add(g)
            np.add.at(filled, members, 1)
    test_pool = np.array(sorted(i for g in test_groups for i in by_group[g]), np.int64)
    train_pool = np.array(sorted(i for g in by_group if g not in test_groups for i in by_group[g]))
    n_test = int(min(quota, *(np.sum(y[test_pool] == k) for k in range(len(kept)))))
    n_train = (
        int(min(np.sum(y[train_pool] == k) for k in range(len(kept)))) if train_pool.size else 0
    )
    if n_test < 1 or n_train < 2:
        raise TargetUnavailable(
            f"the {len(by_group)} groups of classes {kept} cannot fill {quota} test images per "
            f"class and leave 2 training images per class on the other side (got {n_test} test, "
            f"{n_train} training); add photos from more groups or lower --metatrace-test-per-class"
        )
    test = _balanced(test_pool, y, n_test, rng)
    train = _balanced(train_pool, y, n_train, rng)
    return AcquisitionSplit(
        target=target,
        classes=tuple(kept),
        train=train,
        test=test,
        y_train=y[train],
        y_test=y[test],
        group_disjoint=group_disjoint,
        dropped=dropped,
        min_per_class=min_per_class,
        test_per_class=n_test,
        train_per_class=n_train,
        seed=seed,
        confounds=find_confounds(train, y[train], test, groups, kept),
    )


def _balanced(pool: np.ndarray, y: np.ndarray, per_class: int, rng: np.random.Generator) -> Any:
    chosen = [rng.choice(pool[y[pool] == k], per_class, replace=False) for k in np.unique(y[pool])]
    out = np.sort(np.concatenate(chosen).astype(np.int64))
    out.setflags(write=False)
    return out


@dataclass(frozen=True)
class AcquisitionProbeResult:
    """One target's probe: accuracy with its interval, chance, and what it was trained on."""

    target: str  #: the target
    classes: list[str]  #: class names (index = position)
    top1: float  #: test top-1 accuracy
    mean_per_class: float  #: mean per-class accuracy
    chance: float  #: 1 / number of classes (the split is balanced)
    interval: Interval  #: bootstrap interval of ``top1`` over test images
    per_class_accuracy: list[float]  #: per class
    confusion: list[list[int]]  #: rows true class, columns predicted
    split: dict[str, Any]  #: :meth:`AcquisitionSplit.to_dict`
    hyperparameters: dict[str, float]  #: the final fit's values
    mask_ratio: float | None  #: the centre-mask ratio of the embeddings
    mode: str  #: probe mode (``sgd`` = protocol, ``lbfgs``)
    test_ids: list[str] = field(default_factory=list)  #: test items' ids
    test_correct: list[float] = field(default_factory=list)  #: 1.0 / 0.0 per test item

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out: dict[str, Any] = jsonable(dataclasses.asdict(self))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AcquisitionProbeResult:
        """Inverse of :meth:`to_dict`."""
        kwargs = dict(data)
        kwargs["interval"] = Interval(**kwargs["interval"])
        return cls(**kwargs)

    def to_records(self, *, encoder: str, dataset: str) -> list[Record]:
        """One ``acquisition_probe`` record (metric ``top1``) with per-image scores."""
        details = self.to_dict()
        scores = details.pop("test_correct")
        ids = details.pop("test_ids")
        record = Record(
            audit="acquisition_probe",
            metric="top1",
            value=self.top1,
            encoder=encoder,
            dataset=dataset,
            parameter=self.target,
            interval=self.interval.to_dict(),
            chance=self.chance,
            details=details,
            provenance={"split": self.split, "mask_ratio": self.mask_ratio},
            scores=scores,
            score_ids=ids,
        )
        return [record]


def run_acquisition_probe(
    features: np.ndarray,
    split: AcquisitionSplit,
    probe: Any,
    *,
    ids: Sequence[str],
    mask_ratio: float | None,
    seed: int = 0,
) -> AcquisitionProbeResult:
    """Fit ``probe`` (a :class:`LinearProbe`) on the split's training side, score the test side.

    ``features`` holds one row per dataset item (the split indexes it);
    ``ids`` the items' ids, for the per-image scores. Cached by its inputs
    (:mod:`pytest_metatrace.analysis.memo`).
    """
    from pytest_metatrace.analysis.memo import cached
    from pytest_metatrace.analysis.sgd import resolve_device

    return cached(
        "acquisition_probe",
        {
            "probe": probe,
            "device": resolve_device(getattr(probe, "device", "auto")).type,
            "split": split.to_dict(),
            "ids": list(ids),
            "mask_ratio": mask_ratio,
            "seed": seed,
        },
        [features, split.train, split.test, split.y_train, split.y_test],
        lambda: _run_acquisition_probe(
            features, split, probe, ids=ids, mask_ratio=mask_ratio, seed=seed
        ),
    )


def _run_acquisition_probe(
    features: np.ndarray,
    split: AcquisitionSplit,
    probe: Any,
    *,
    ids: Sequence[str],
    mask_ratio: float | None,
    seed: int,
) -> AcquisitionProbeResult:
    probe.fit(features[split.train], split.y_train, n_classes=len(split.classes))
    res = probe.evaluate(features[split.test], split.y_test)
    correct = (res.predictions == res.labels).astype(np.float64)
    return AcquisitionProbeResult(
        target=split.target,
        classes=list(split.classes),
        top1=res.top1,
        mean_per_class=res.mean_per_class,
        chance=res.chance,
        interval=bootstrap_mean(correct, seed=seed),
        per_class_accuracy=[float(v) for v in res.per_class_accuracy],
        confusion=res.confusion.tolist(),
        split=split.to_dict(),
        hyperparameters=dict(res.hyperparameters),
        mask_ratio=mask_ratio,
        mode=res.mode,
        test_ids=[ids[i] for i in split.test],
        test_correct=correct.tolist(),
    )


@dataclass(frozen=True)
class TargetPlan:
    """Which acquisition targets the data supports, each with its split or the reason not."""

    splits: dict[str, AcquisitionSplit]  #: runnable target -> its split
    unavailable: dict[str, str]  #: target -> why it cannot run
    group_column: str | None  #: the dataset's group column, None when it has none
    n_images: int  #: images in the dataset

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "splits": {t: s.to_dict() for t, s in self.splits.items()},
            "unavailable": dict(self.unavailable),
            "group_column": self.group_column,
            "n_images": self.n_images,
        }

    @property
    def grouping_note(self) -> str:
        """One plain sentence on group-disjointness, for the report."""
        if self.group_column:
            return (
                f"Splits are disjoint by {self.group_column}: no {self.group_column} has images "
                "on both the training and the test side."
            )
        return (
            "This dataset has no group column (photographer, owner or scene), so the splits "
            "are NOT group-disjoint: a probe may partly recognize a person's or a scene's photos "
            "instead of the camera. Add a group column (or sub-folders) to rule that out."
        )

    @property
    def confound_warnings(self) -> dict[str, str]:
        """Runnable target -> one line naming the groups its split leans on (none: absent)."""
        out = {}
        for target, split in self.splits.items():
            if split.confounds:
                clauses = "; ".join(c.describe(self.group_column) for c in split.confounds)
                kinds = {c.kind for c in split.confounds}
                why = " and ".join(
                    text
                    for kind, text in (
                        ("train_class", "the probe may learn that group instead of the camera"),
                        ("test_group", "its accuracy describes that group's photos only"),
                    )
                    if kind in kinds
                )
                out[target] = (
                    f"{target}: confounded split: {clauses}; {why}. Add photos from other groups"
                )
        return out

    def to_records(self, *, encoder: str, dataset: str) -> list[Record]:
        """One ``acquisition_targets`` record; value: number of runnable targets."""
        details = {
            **self.to_dict(),
            "grouping_note": self.grouping_note,
            "confound_warnings": self.confound_warnings,
        }
        return [
            Record(
                audit="acquisition_targets",
                metric="runnable_targets",
                value=float(len(self.splits)),
                encoder=encoder,
                dataset=dataset,
                unit="targets",
                details=details,
            )
        ]


def plan_targets(
    items: Sequence[Any],
    *,
    group_column: str | None,
    min_per_class: int,
    test_per_class: int = 0,
    seed: int = 0,
) -> TargetPlan:
    """Split every target of :data:`TARGETS` that the items support; list the others."""
    groups = [it.group for it in items]
    splits: dict[str, AcquisitionSplit] = {}
    unavailable: dict[str, str] = {}
    partitions: dict[tuple[int, ...], str] = {}
    for target in TARGETS:
        labels = target_labels(items, target)
        partition = _partition(labels)
        if partition in partitions:
            # e.g. City100: make, model and smartphone split the photos identically.
            unavailable[target] = (
                f"its classes split these images exactly as {partitions[partition]!r} "
                "does, so its probe would repeat that result"
            )
            continue
        try:
            splits[target] = acquisition_split(
                labels,
                groups,
                target=target,
                min_per_class=min_per_class,
                test_per_class=test_per_class,
                seed=seed,
            )
        except TargetUnavailable as exc:
            unavailable[target] = str(exc)
            continue
        partitions[partition] = target
    return TargetPlan(splits, unavailable, group_column, len(items))


def _partition(labels: Sequence[str | None]) -> tuple[int, ...]:
    """Labels renamed by order of first appearance: equal tuples = the same partition."""
    names: dict[str | None, int] = {None: -1}
    return tuple(names.setdefault(lab, len(names) - 1) for lab in labels)
