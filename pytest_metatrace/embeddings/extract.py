"""Extraction: decode each photo once, produce every view, embed in batches, cache.

The work for one (encoder, dataset) is: for every image with a missing view,
decode it once, apply each missing processing class (docs/protocol.md §1) to
the full-resolution image, run the encoder's own resize / crop (and center
mask) to uint8 pixels, then embed in batches. Decoding and processing run in
DataLoader worker processes; the forward pass runs in the main process
(``torch.inference_mode``; autocast and pinned memory on CUDA, handled by the
encoder). Batches are committed to the store as they finish, so an interrupted
run resumes where it stopped.

Determinism: items are processed in the dataset's canonical order and views
in the order given, so batch composition - which can change float round-off
in some kernels - depends only on what is missing, not on worker count. One
extraction per (encoder, dataset) runs at a time across processes (a file
lock), so pytest-xdist workers wait for each other instead of computing the
same embeddings twice.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock

from pytest_metatrace._sqlite import CacheError, read_only_message
from pytest_metatrace.data.dataset import Dataset, FileSource, ImageItem
from pytest_metatrace.data.loading import (
    DEFAULT_MAX_PIXELS,
    UnusableImage,
    load_rgb,
    read_image_file,
)
from pytest_metatrace.embeddings._malloc import tune_malloc_for_inference
from pytest_metatrace.embeddings.interface import Store
from pytest_metatrace.embeddings.store import View
from pytest_metatrace.encoders.errors import EncoderForwardError
from pytest_metatrace.processing import get_processing
from pytest_metatrace.progress import NullProgress, Progress

__all__ = ["ExtractStats", "ExtractionError", "Extractor", "default_workers", "embed_checked"]


class ExtractionError(RuntimeError):
    """An image could not be embedded; the message names the image and the fix."""

    #: The plugin shows this error's message (and a chained cause) instead of a traceback.
    metatrace_clear = True


@dataclass
class ExtractStats:
    """What one :meth:`Extractor.ensure` call did."""

    computed: int = 0  #: embeddings computed and stored
    reused: int = 0  #: embeddings already in the store
    images_decoded: int = 0  #: photos decoded (once each)
    wall_s: float = 0.0  #: wall time of the extraction
    process_s: float = 0.0  #: decode + processing + resize/crop time, summed over workers
    forward_s: float = 0.0  #: time in the encoder's forward pass (main process)
    waited_s: float = 0.0  #: time spent waiting for another process's extraction
    batches: list[int] = field(default_factory=list)  #: batch sizes, in order
    #: "<store file>/<dataset fingerprint>/<view key>" -> distinct embeddings it covers; lets a
    #: summary over several processes count each embedding once (see ``needed_key``)
    needed: dict[str, int] = field(default_factory=dict)

    def add(self, other: ExtractStats) -> None:
        """Accumulate another call's numbers."""
        self.computed += other.computed
        self.reused += other.reused
        self.images_decoded += other.images_decoded
        self.wall_s += other.wall_s
        self.process_s += other.process_s
        self.forward_s += other.forward_s
        self.waited_s += other.waited_s
        self.batches.extend(other.batches)
        self.needed.update(other.needed)


def default_workers(device: torch.device) -> int:
    """DataLoader workers when the user did not choose.

    On CUDA the forward pass is fast and decoding/processing is the
    bottleneck: one worker per core, at most 8. On CPU the forward pass
    already uses every core and costs ~4x the processing (lite0, 2 cores:
    processing 1.5 s, forward 6.2 s per 560 images); a worker process only
    competes with it for the cores (measured: 0 workers 7.8 s, 1 or 2 workers
    10.7-11 s), so processing runs in the main process between batches.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if device.type == "cuda":
        return min(8, cores or 1)
    return 0


class _Work(torch.utils.data.Dataset[tuple[int, list[tuple[int, torch.Tensor]], float]]):
    """One item per image: decode once, return every missing view's pixels."""

    def __init__(
        self,
        jobs: Sequence[tuple[ImageItem, list[int]]],
        views: Sequence[View],
        preprocessor: Any,
        max_pixels: int,
    ) -> None:
        self.jobs = jobs
        self.views = views
        self.preprocessor = preprocessor
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, index: int) -> tuple[int, list[tuple[int, torch.Tensor]], float]:
        item, view_ids = self.jobs[index]
        t0 = time.perf_counter()
        try:
            if isinstance(item.source, FileSource):
                data = read_image_file(item.source.path)
                # The cache is keyed by this digest: a file edited since the
                # dataset was checked would store wrong numbers under it.
                if hashlib.sha256(data).hexdigest() != item.digest:
                    raise UnusableImage("file changed since the dataset was loaded; rerun")
                img, _ = load_rgb(data, max_pixels=self.max_pixels)
            else:
                img, _ = item.source.load(self.max_pixels)
        except (UnusableImage, OSError) as exc:
            reason = exc.reason if isinstance(exc, UnusableImage) else str(exc)
            raise ExtractionError(f"{item.source.describe()}: {reason}") from None
        out: list[tuple[int, torch.Tensor]] = []
        for vi in view_ids:
            view = self.views[vi]
            pixels = img
            if view.processing is not None:
                op = get_processing(view.processing)
                pixels = op.apply(img, seed=view.seed, image_key=item.digest)
            out.append((vi, self.preprocessor(pixels, view.mask_ratio)))
        return index, out, time.perf_counter() - t0


def embed_checked(encoder: Any, batch: torch.Tensor, *, where: str = "a batch") -> np.ndarray:
    """``encoder.embed(batch)`` as float32 NumPy, refusing a wrong row count or non-finite rows.

    ``where`` names the batch (number, dataset, view, first image) in the
    errors; the encoder's own exception is chained, since its traceback is
    the useful one.
    """
    try:
        emb = encoder.embed(batch)
    except Exception as exc:
        cause = exc.__cause__ if isinstance(exc, EncoderForwardError) and exc.__cause__ else exc
        raise ExtractionError(
            f"encoder {encoder.id} failed on {where}: {type(cause).__name__}: {cause}"
        ) from cause
    vectors: np.ndarray = emb.detach().to("cpu", torch.float32).numpy()
    if vectors.shape[0] != batch.shape[0]:
        raise ExtractionError(
            f"encoder {encoder.id} returned {vectors.shape[0]} embeddings for {where} "
            f"of {batch.shape[0]} images; its forward must return one row per image"
        )
    if not np.isfinite(vectors).all():
        hint = (
            "the model or its weights produce them even in full precision; check them"
            if encoder.precision == "fp32"
            else "try --metatrace-precision=fp32"
        )
        raise ExtractionError(
            f"encoder {encoder.id} produced NaN or infinite embeddings on {where} "
            f"(precision {encoder.precision}); {hint}"
        )
    return vectors


def _identity(sample: Any) -> Any:
    return sample


class Extractor:
    """Fill a :class:`~pytest_metatrace.embeddings.interface.Store` with the views of a dataset."""

    def __init__(
        self,
        encoder: Any,
        store: Store,
        *,
        lock_dir: Path,
        batch_size: int = 64,
        num_workers: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        progress: Progress | None = None,
    ) -> None:
        self.encoder = encoder
        self.store = store
        self.lock_dir = Path(lock_dir)
        self.batch_size = batch_size
        self.num_workers = default_workers(encoder.device) if num_workers is None else num_workers
        self.max_pixels = max_pixels
        self.progress = progress or NullProgress()
        self.stats = ExtractStats()
        self._names: dict[str, str] = {}  #: digest -> file, of the extraction running now
        self._what = ""  #: what the extraction running now embeds, for error messages
        if encoder.device.type == "cpu":
            tune_malloc_for_inference()

    def _lock(self, dataset: Dataset) -> FileLock:
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        name = f"{self.store.path.stem}-{dataset.fingerprint[:16]}.lock"
        return FileLock(str(self.lock_dir / name))

    def ensure(self, dataset: Dataset, views: Sequence[View]) -> ExtractStats:
        """Compute and store every missing embedding of ``dataset`` under ``views``."""
        stats = ExtractStats()
        if self.store.read_only:
            # Nothing can be written, so there is nothing to wait for or to lock.
            self._ensure_locked(dataset, list(views), stats)
            self.stats.add(stats)
            return stats
        t_wait = time.perf_counter()
        lock = self._lock(dataset)
        with lock:
            stats.waited_s = time.perf_counter() - t_wait
            t0 = time.perf_counter()
            self._ensure_locked(dataset, list(views), stats)
            stats.wall_s = time.perf_counter() - t0
        self.stats.add(stats)
        return stats

    def _ensure_locked(self, dataset: Dataset, views: list[View], stats: ExtractStats) -> None:
        digests = [it.digest for it in dataset.items]
        missing: list[set[str]] = []
        for view in views:
            self.store.register_view(view)
            missing.append(set(self.store.missing(view, digests)))
        jobs: list[tuple[ImageItem, list[int]]] = []
        claimed: list[set[str]] = [set() for _ in views]
        for item in dataset.items:
            todo = [
                vi
                for vi in range(len(views))
                if item.digest in missing[vi] and item.digest not in claimed[vi]
            ]
            for vi in todo:
                claimed[vi].add(item.digest)  # identical images are embedded once
            if todo:
                jobs.append((item, todo))
        total = sum(len(t) for _, t in jobs)
        unique = len(set(digests))
        stats.reused = unique * len(views) - total
        for view in views:
            stats.needed[f"{self.store.path.name}/{dataset.fingerprint[:16]}/{view.key}"] = unique
        if not jobs:
            return
        if self.store.read_only:
            raise CacheError(
                read_only_message(self.store.path, f"{total} embedding(s) this run needs")
            )
        self.progress.start(
            f"embedding {dataset.id} with {self.encoder.id} ({len(views)} views)", total
        )
        self._names = {it.digest: it.source.describe() for it, _ in jobs}
        self._what = f"dataset {dataset.id}"
        try:
            self._run(jobs, views, stats)
        finally:
            self.progress.finish()

    def _run(
        self, jobs: list[tuple[ImageItem, list[int]]], views: list[View], stats: ExtractStats
    ) -> None:
        """Embed ``jobs`` (image, missing view indices) in batches and store them."""
        work = _Work(jobs, views, self.encoder.preprocessor, self.max_pixels)
        loader = torch.utils.data.DataLoader(
            work,
            batch_size=None,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=_identity,
            prefetch_factor=4 if self.num_workers > 0 else None,
        )
        pending: list[tuple[View, str, torch.Tensor]] = []
        try:
            for index, outputs, seconds in loader:
                item = jobs[index][0]
                stats.images_decoded += 1
                stats.process_s += seconds
                pending.extend((views[vi], item.digest, px) for vi, px in outputs)
                while len(pending) >= self.batch_size:
                    self._flush(pending[: self.batch_size], stats)
                    del pending[: self.batch_size]
            if pending:
                self._flush(pending, stats)
        except ExtractionError:
            raise
        except RuntimeError as exc:
            # DataLoader re-raises worker errors as RuntimeError wrapping the text.
            if "ExtractionError" in str(exc):
                raise ExtractionError(str(exc).strip().splitlines()[-1]) from None
            raise

    def _flush(self, rows: Sequence[tuple[View, str, torch.Tensor]], stats: ExtractStats) -> None:
        batch = torch.stack([px for _, _, px in rows])
        if self.encoder.device.type == "cuda":
            batch = batch.pin_memory()
        t0 = time.perf_counter()
        first = self._names.get(rows[0][1], rows[0][1][:12])
        vectors = embed_checked(
            self.encoder,
            batch,
            where=f"batch {len(stats.batches) + 1} of {self._what} ({len(rows)} images, view "
            f"{rows[0][0].label}, first image {first})",
        )
        stats.forward_s += time.perf_counter() - t0
        stats.computed += self.store.put_many(
            [(view, digest, vec) for (view, digest, _), vec in zip(rows, vectors, strict=False)]
        )
        stats.batches.append(len(rows))
        self.progress.advance(len(rows))
