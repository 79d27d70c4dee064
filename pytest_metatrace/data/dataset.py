"""Datasets: labelled images with metadata columns, a group key and seeded splits.

A :class:`Dataset` is a list of :class:`ImageItem` in a canonical order
(sorted by id), each with its content digest, semantic label, optional group
(e.g. the photographer, for group-disjoint splits) and metadata columns
(e.g. camera make). Images that cannot be used are not in ``items``; they are
listed in ``skipped`` with the reason, and pixel conversions are counted in
``conversions``: both reach the report.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from pytest_metatrace.data.loading import DEFAULT_MAX_PIXELS, DecodeInfo, load_rgb

__all__ = [
    "Credit",
    "Dataset",
    "DatasetError",
    "FileSource",
    "ImageItem",
    "ImageSource",
    "SkippedImage",
    "Split",
]

SPLITS = ("train", "test", "all")


class DatasetError(ValueError):
    """A dataset that cannot be used as given; the message says how to fix it."""


class ImageSource(Protocol):
    """Where an item's pixels come from. Must be picklable (sent to loader workers)."""

    def load(self, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Image.Image, DecodeInfo]:
        """Decode into a fully loaded RGB image."""
        ...

    def describe(self) -> str:
        """A path or name a person can find the image by."""
        ...


@dataclass(frozen=True)
class FileSource:
    """An image file on disk."""

    path: str  #: absolute path

    def load(self, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Image.Image, DecodeInfo]:
        """Decode the file with :func:`~pytest_metatrace.data.loading.load_rgb`."""
        return load_rgb(self.path, max_pixels=max_pixels)

    def describe(self) -> str:
        """The file's path."""
        return self.path


@dataclass(frozen=True)
class ImageItem:
    """One usable image of a dataset."""

    id: str  #: unique within the dataset and stable across runs (e.g. relative path)
    label: str  #: semantic label
    digest: str  #: content digest (SHA-256); keys every cached embedding of this image
    source: ImageSource  #: how to decode it
    group: str | None = None  #: group key for group-disjoint splits (e.g. photographer)
    meta: Mapping[str, str] = field(default_factory=dict)  #: metadata columns


@dataclass(frozen=True)
class SkippedImage:
    """An image left out, with the reason."""

    path: str  #: file path or item id
    reason: str  #: why it was left out
    label: str | None = None  #: the class it would have belonged to, when known


@dataclass(frozen=True)
class Credit:
    """Attribution for images a dataset ships (shown in the report)."""

    title: str
    author: str
    license: str
    url: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class Split:
    """Indices into ``Dataset.items`` for each split, each sorted."""

    train: np.ndarray
    test: np.ndarray
    seed: int
    test_fraction: float
    group_disjoint: bool

    def indices(self, split: str) -> np.ndarray:
        """Indices of ``train``, ``test`` or ``all``."""
        if split == "train":
            return self.train
        if split == "test":
            return self.test
        if split == "all":
            return np.sort(np.concatenate([self.train, self.test]))
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")


@dataclass
class Dataset:
    """A labelled image collection ready for embedding."""

    id: str  #: short id used in test ids and records (e.g. ``demo``)
    name: str  #: human-readable name
    kind: str  #: ``demo``, ``folder``, ``csv`` or a registered kind
    items: list[ImageItem]  #: usable images in canonical order
    root: str | None = None  #: folder or manifest the images came from
    skipped: list[SkippedImage] = field(default_factory=list)  #: unusable images
    conversions: Counter[str] = field(default_factory=Counter)  #: conversion -> count
    credits: list[Credit] = field(default_factory=list)  #: attribution of shipped images
    metadata_columns: list[str] = field(default_factory=list)  #: names of ``ImageItem.meta`` keys
    group_column: str | None = None  #: name of the group key column, if any
    max_pixels: int = DEFAULT_MAX_PIXELS  #: decode limit used when checking the images
    ignored_files: int = 0  #: files without an image extension in a folder dataset
    ignored_extensions: dict[str, int] = field(default_factory=dict)  #: extension -> ignored
    ignored_examples: list[str] = field(default_factory=list)  #: a few ignored files, by path
    notes: dict[str, Any] = field(default_factory=dict)  #: kind-specific facts (EXIF counts)
    #: entries :meth:`describe` adds at the top level (e.g. ``pairs`` of a paired view)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.items = sorted(self.items, key=lambda it: it.id)
        ids = [it.id for it in self.items]
        if len(set(ids)) != len(ids):
            dup = next(i for i, c in Counter(ids).items() if c > 1)
            raise DatasetError(f"dataset {self.id!r}: item id {dup!r} appears more than once")
        self._splits: dict[tuple[int, float], Split] = {}

    def __len__(self) -> int:
        return len(self.items)

    @property
    def labels(self) -> np.ndarray:
        """Semantic label of every item, as a string array."""
        return np.array([it.label for it in self.items], dtype=object)

    @property
    def classes(self) -> list[str]:
        """Sorted distinct semantic labels."""
        return sorted({it.label for it in self.items})

    def label_indices(self) -> np.ndarray:
        """Semantic label of every item as an index into :attr:`classes`."""
        lookup = {c: i for i, c in enumerate(self.classes)}
        return np.array([lookup[it.label] for it in self.items], dtype=np.int64)

    @functools.cached_property
    def fingerprint(self) -> str:
        """SHA-256 over every item's id, label, group, metadata and content digest."""
        h = hashlib.sha256()
        for it in self.items:
            h.update(
                json.dumps(
                    [it.id, it.label, it.group, sorted(it.meta.items()), it.digest],
                    ensure_ascii=False,
                ).encode()
            )
            h.update(b"\n")
        return h.hexdigest()

    def split(self, *, seed: int = 0, test_fraction: float = 0.5) -> Split:
        """Seeded, stratified train/test split; group-disjoint when items carry groups.

        Without groups: scikit-learn's ``train_test_split(stratify=labels)``.
        With groups: ``StratifiedGroupKFold`` with ``round(1 / test_fraction)``
        folds, the first fold held out, so no group is on both sides. Raises
        :class:`DatasetError` when a class cannot have images on both sides.
        """
        key = (seed, test_fraction)
        if key in self._splits:
            return self._splits[key]
        n = len(self.items)
        if n == 0:
            raise DatasetError(f"dataset {self.id!r} has no usable images")
        labels = self.label_indices()
        counts = np.bincount(labels)
        if counts.min() < 2:
            small = [c for c, k in zip(self.classes, counts, strict=False) if k < 2]
            raise DatasetError(
                f"dataset {self.id!r}: classes {small} have fewer than 2 images; a stratified "
                "split needs at least one training and one test image per class"
                + self._skipped_note(small)
            )
        groups = [it.group for it in self.items]
        has_groups = any(g is not None for g in groups)
        idx = np.arange(n)
        if has_groups:
            from sklearn.model_selection import StratifiedGroupKFold

            n_splits = max(2, round(1.0 / test_fraction))
            group_ids = np.array(
                [g if g is not None else f"__item_{i}" for i, g in enumerate(groups)]
            )
            try:
                splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
                train_idx, test_idx = next(splitter.split(idx, labels, group_ids))
            except ValueError as exc:
                raise DatasetError(
                    f"dataset {self.id!r}: cannot make a group-disjoint split ({exc}); "
                    "add groups or lower --metatrace-test-fraction"
                ) from None
            # StratifiedGroupKFold only balances classes as well as the groups
            # allow; a class held by one group lands on one side only.
            one_sided = [
                c
                for k, c in enumerate(self.classes)
                if not (np.any(labels[train_idx] == k) and np.any(labels[test_idx] == k))
            ]
            if one_sided:
                raise DatasetError(
                    f"dataset {self.id!r}: classes {one_sided} end up on one side of the "
                    f"group-disjoint split (seed {seed}); each class needs images from "
                    "several groups"
                )
        else:
            from sklearn.model_selection import train_test_split

            try:
                train_idx, test_idx = train_test_split(
                    idx, test_size=test_fraction, stratify=labels, random_state=seed
                )
            except ValueError as exc:
                raise DatasetError(
                    f"dataset {self.id!r}: cannot split {n} images over {len(counts)} classes "
                    f"with test fraction {test_fraction} ({exc})"
                ) from None
        train_arr = np.sort(np.asarray(train_idx, dtype=np.int64))
        test_arr = np.sort(np.asarray(test_idx, dtype=np.int64))
        # Splits are cached and shared by every audit: make them immutable.
        train_arr.setflags(write=False)
        test_arr.setflags(write=False)
        split = Split(
            train=train_arr,
            test=test_arr,
            seed=seed,
            test_fraction=test_fraction,
            group_disjoint=has_groups,
        )
        self._splits[key] = split
        return split

    def _skipped_note(self, classes: Sequence[str]) -> str:
        """Which skipped files would have belonged to ``classes`` (why a class is small)."""
        parts = []
        for c in classes:
            lost = [s for s in self.skipped if s.label == c]
            if lost:
                shown = "; ".join(f"{s.path} ({s.reason})" for s in lost[:5])
                more = f" and {len(lost) - 5} more" if len(lost) > 5 else ""
                parts.append(f"class {c!r} lost {len(lost)} file(s): {shown}{more}")
        return (" - " + "; ".join(parts)) if parts else ""

    def subset(self, split: Split, which: str) -> list[ImageItem]:
        """The items of one split."""
        return [self.items[i] for i in split.indices(which)]

    def describe(self, split: Split | None = None) -> dict[str, Any]:
        """JSON-ready summary for the report and ``--metatrace-json``."""
        counts = Counter(it.label for it in self.items)
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "root": self.root,
            "fingerprint": self.fingerprint,
            "n_images": len(self.items),
            "n_classes": len(counts),
            "class_counts": dict(sorted(counts.items())),
            "skipped": [
                {"path": s.path, "reason": s.reason, "label": s.label} for s in self.skipped
            ],
            "conversions": dict(sorted(self.conversions.items())),
            "metadata_columns": list(self.metadata_columns),
            "group_column": self.group_column,
            "max_pixels": self.max_pixels,
            "ignored_files": self.ignored_files,
            "ignored_extensions": dict(self.ignored_extensions),
            "ignored_examples": list(self.ignored_examples),
            "notes": dict(self.notes),
            "credits": [
                {
                    "title": c.title,
                    "author": c.author,
                    "license": c.license,
                    "url": c.url,
                    "note": c.note,
                }
                for c in self.credits
            ],
        }
        out.update(self.extra)
        if split is not None:
            out["split"] = {
                "seed": split.seed,
                "test_fraction": split.test_fraction,
                "n_train": len(split.train),
                "n_test": len(split.test),
                "group_disjoint": split.group_disjoint,
            }
        return out


def check_sources(
    candidates: Sequence[tuple[str, str, str, ImageSource, str | None, Mapping[str, str]]],
    *,
    index: Any,
    max_pixels: int,
    progress: Any = None,
) -> tuple[list[ImageItem], list[SkippedImage], Counter[str]]:
    """Digest and decode-check file-backed candidates ``(id, label, path, source, group, meta)``.

    Each image is decoded at most once per content digest (remembered in the
    :class:`~pytest_metatrace.data.index.ImageIndex`); decoding runs in a
    thread pool because Pillow releases the GIL while decoding.
    """
    from concurrent.futures import ThreadPoolExecutor

    from pytest_metatrace.data.index import ImageCheck
    from pytest_metatrace.data.loading import UnusableImage

    items: list[ImageItem] = []
    skipped: list[SkippedImage] = []
    conversions: Counter[str] = Counter()
    digests: list[str | None] = []
    for _id, label, path, _src, _group, _meta in candidates:
        try:
            digests.append(index.file_digest(Path(path)))
        except OSError as exc:
            digests.append(None)
            skipped.append(SkippedImage(path, f"cannot read file: {exc.strerror or exc}", label))
        except UnusableImage as exc:  # a FIFO, a device, an over-sized file
            digests.append(None)
            skipped.append(SkippedImage(path, exc.reason, label))

    unknown_set = {d for d in digests if d is not None and index.get_check(d, max_pixels) is None}
    unknown = sorted(unknown_set)
    first_source: dict[str, ImageSource] = {}
    for cand, d in zip(candidates, digests, strict=False):
        # A set, not the sorted list: membership is tested once per candidate.
        if d in unknown_set and d not in first_source:
            first_source[d] = cand[3]

    def _check(digest: str) -> tuple[str, ImageCheck]:
        try:
            img, info = first_source[digest].load(max_pixels)
        except UnusableImage as exc:
            return digest, ImageCheck(ok=False, reason=exc.reason)
        return digest, ImageCheck(
            ok=True, size=img.size, mode=info.source_mode, conversions=info.conversions
        )

    new: dict[str, ImageCheck] = {}
    if unknown:
        if progress is not None:
            progress.start(f"checking {len(unknown)} new images", len(unknown))
        with ThreadPoolExecutor(max_workers=4) as pool:
            for digest, check in pool.map(_check, unknown):
                new[digest] = check
                if progress is not None:
                    progress.advance(1)
        index.put_checks(new, max_pixels)
        if progress is not None:
            progress.finish()

    for (item_id, label, path, source, group, meta), d in zip(candidates, digests, strict=False):
        if d is None:
            continue
        check = new.get(d) or index.get_check(d, max_pixels)
        if check is None or not check.ok:
            skipped.append(SkippedImage(path, check.reason if check else "not checked", label))
            continue
        for conv in check.conversions:
            conversions[_conversion_kind(conv)] += 1
        items.append(ImageItem(item_id, label, d, source, group, dict(meta)))
    return items, skipped, conversions


def _conversion_kind(conv: str) -> str:
    # "exif-orientation 6 applied" -> "exif-orientation applied": count kinds, not values.
    parts = conv.split()
    if parts and parts[0] == "exif-orientation":
        return "exif-orientation applied"
    return conv
