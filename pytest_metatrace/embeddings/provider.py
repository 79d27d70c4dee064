"""The object behind the ``metatrace_embeddings`` fixture.

``embeddings(dataset, split, processing)`` returns the stored embeddings of a
split under a processing class, extracting whatever is missing first. When
any unmasked processing class is asked for, all 14 are extracted together:
each photo is decoded once for all of them, and the batches (hence the
numbers) do not depend on which audit asked first or on the worker count.
Reading a split reads only that split's rows from the store.

The store is the local SQLite file by default, a shared Parquet-shard store
with ``store_url`` (``--metatrace-store``); extraction runs in process by
default, as a Ray Data job with ``ray_address`` (``--metatrace-ray``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pytest_metatrace._backend import DEFAULT_RAY_TIMEOUT_S
from pytest_metatrace._sqlite import CacheWarning
from pytest_metatrace.data.dataset import Dataset, Split
from pytest_metatrace.embeddings.degenerate import DegenerateEmbeddings, degeneracy, sample_rows
from pytest_metatrace.embeddings.extract import ExtractionError, Extractor, ExtractStats
from pytest_metatrace.embeddings.interface import open_store
from pytest_metatrace.embeddings.store import CorruptEmbeddings, View
from pytest_metatrace.processing import list_processing
from pytest_metatrace.progress import Progress

__all__ = ["Embeddings"]


class Embeddings:
    """Cached embeddings of one encoder, by dataset, split and processing class."""

    def __init__(
        self,
        encoder: Any,
        *,
        cache_dir: Path,
        seed: int = 0,
        test_fraction: float = 0.5,
        mask_ratio: float = 0.9,
        batch_size: int = 64,
        num_workers: int | None = None,
        max_pixels: int = 100_000_000,
        progress: Progress | None = None,
        store_url: str | None = None,
        ray_address: str | None = None,
        encoder_factory: Callable[[], Any] | None = None,
        on_dataset: Callable[[Dataset], None] | None = None,
        ray_timeout: float = DEFAULT_RAY_TIMEOUT_S,
    ) -> None:
        self.encoder = encoder
        #: called once per dataset this object embeds (the plugin describes it for the report)
        self.on_dataset = on_dataset
        self._described: set[str] = set()
        self.seed = seed
        self.test_fraction = test_fraction
        self.mask_ratio = mask_ratio
        self.cache_dir = Path(cache_dir)  #: the cache folder (audits keep derived results there)
        self.store = open_store(
            store_url,
            Path(cache_dir),
            encoder_fingerprint=encoder.fingerprint,
            compute_key=f"{encoder.device.type}-{encoder.precision}",
            encoder_info={"spec": encoder.spec, "fingerprint": encoder.fingerprint},
        )
        # (dataset fingerprint, view key) pairs known complete in this process:
        # later calls read the store without asking the extractor again.
        self._complete: set[tuple[str, str]] = set()
        # Dataset fingerprint -> view key -> view, of the views completed, in extraction order.
        self._views: dict[str, dict[str, View]] = {}
        # Dataset fingerprint -> the extraction error it ended with, in this process.
        self._failed: dict[str, str] = {}
        # Dataset fingerprint -> None (healthy) or why its embeddings are degenerate.
        self._degenerate: dict[str, str | None] = {}
        self.extractor: Extractor
        if ray_address is None:
            self.extractor = Extractor(
                encoder,
                self.store,
                lock_dir=Path(cache_dir) / "locks",
                batch_size=batch_size,
                num_workers=num_workers,
                max_pixels=max_pixels,
                progress=progress,
            )
        else:
            from pytest_metatrace.embeddings.ray_backend import RayExtractor

            self.extractor = RayExtractor(
                encoder,
                self.store,
                lock_dir=Path(cache_dir) / "locks",
                batch_size=batch_size,
                max_pixels=max_pixels,
                progress=progress,
                address=ray_address,
                encoder_factory=encoder_factory,
                timeout=ray_timeout,
            )

    @property
    def stats(self) -> ExtractStats:
        """Totals of every extraction this object ran."""
        return self.extractor.stats

    def split(self, dataset: Dataset) -> Split:
        """The seeded train/test split every audit of this session uses."""
        return dataset.split(seed=self.seed, test_fraction=self.test_fraction)

    def labels(self, dataset: Dataset, split: str = "all") -> np.ndarray:
        """Semantic label indices (into ``dataset.classes``) of a split."""
        labels: np.ndarray = dataset.label_indices()[self.split(dataset).indices(split)]
        return labels

    def view(self, processing: str | None, masked: bool | float = False) -> View:
        """The :class:`View` for a processing class and masking choice."""
        ratio: float | None
        if masked is True:
            ratio = self.mask_ratio
        elif masked is False:
            ratio = None
        else:
            # Ratio 0 masks nothing (mask_box is empty): the same pixels, so the
            # same view and cache rows as the unmasked one, not a second extraction.
            ratio = float(masked) or None
        return View(processing=processing, mask_ratio=ratio, seed=self.seed)

    def many(
        self,
        dataset: Dataset,
        split: str,
        processings: Sequence[str | None],
        *,
        masked: bool | float = False,
    ) -> dict[str | None, np.ndarray]:
        """Embeddings of a split under several processing classes, extracting as needed."""
        wanted = [self.view(p, masked) for p in processings]
        out = self.views(dataset, wanted, split)
        return {v.processing: out[v] for v in wanted}

    def views(
        self, dataset: Dataset, views: Sequence[View], split: str = "all"
    ) -> dict[View, np.ndarray]:
        """Embeddings ``(n, dim)`` of a split under each of ``views``, in split order.

        Whatever is missing is extracted in one pass (each photo decoded once
        for every view); when any unmasked processing class is asked for, the
        whole standard set of 14 is extracted with it (see the module
        docstring). Rows that fail their checksum are recomputed with a
        warning naming them; an extraction that failed once in this session
        is not retried. Embeddings no audit can measure on (all zero,
        constant, NaN, rank-collapsed: :mod:`~pytest_metatrace.embeddings.degenerate`)
        raise :class:`~pytest_metatrace.embeddings.degenerate.DegenerateEmbeddings`,
        judged once per dataset on its unmasked embeddings. Build views with :meth:`view`
        (processing class and mask ratio).
        """
        wanted = list(dict.fromkeys(views))
        batch = list(wanted)
        if any(v.processing is not None and v.mask_ratio is None for v in wanted):
            standard = [self.view(p) for p in list_processing()]
            batch = standard + [v for v in wanted if v not in standard]
        self._describe(dataset)
        fingerprint = dataset.fingerprint
        todo = [v for v in batch if (fingerprint, v.key) not in self._complete]
        if todo:
            failed = self._failed.get(fingerprint)
            if failed is not None:
                # Every later test would repeat the same failing work and traceback.
                raise ExtractionError(f"{failed} (failed earlier in this session; not retried)")
            try:
                self.extractor.ensure(dataset, todo)
            except ExtractionError as exc:
                self._failed[fingerprint] = str(exc)
                raise
            self._complete.update((fingerprint, v.key) for v in todo)
            for v in todo:
                self._views.setdefault(fingerprint, {}).setdefault(v.key, v)
        self._check_degenerate(dataset, wanted)
        digests = [dataset.items[i].digest for i in self.split(dataset).indices(split)]
        return {v: self._read(dataset, v, digests) for v in wanted}

    def _check_degenerate(self, dataset: Dataset, views: Sequence[View]) -> None:
        """Refuse degenerate embeddings, judged once per dataset on a sample of an unmasked view.

        The sample (:func:`~pytest_metatrace.embeddings.degenerate.sample_rows` over the
        whole dataset, of the first unmasked view asked for) does not depend on the split
        asked for, so the verdict is the same whichever audit asks first. Masked views
        are not judged: how much of an image a mask leaves is the mask's choice, not the
        encoder's (every audit that masks also asks for an unmasked view).
        """
        fingerprint = dataset.fingerprint
        if fingerprint not in self._degenerate:
            view = next((v for v in views if v.mask_ratio is None), None)
            if view is None:
                return
            items = [dataset.items[i] for i in sample_rows(len(dataset.items))]
            sample = self._read(dataset, view, [it.digest for it in items])
            reason = degeneracy(sample, [it.id for it in items])
            self._degenerate[fingerprint] = (
                None if reason is None else self._refusal(dataset, view, reason)
            )
        message = self._degenerate[fingerprint]
        if message is not None:
            raise DegenerateEmbeddings(message)

    def _refusal(self, dataset: Dataset, view: View, reason: str) -> str:
        """The one message that stops the audits on degenerate embeddings."""
        enc = self.encoder
        name = repr(enc.id) + (f" ({enc.spec})" if enc.spec != enc.id else "")
        return (
            f"the embeddings of encoder {name} on dataset {dataset.id!r} are degenerate: "
            f"{reason}; view {view.processing or 'unprocessed'}. No audit can measure a trace "
            "on them (cosine similarities undefined or equal, probes at chance, gaps of 0 that "
            "would pass their gates), so the audits stop here. Check the encoder's output: a "
            "model built without its weights, the wrong output layer or a forward that ignores "
            "its input gives this."
        )

    def _describe(self, dataset: Dataset) -> None:
        if self.on_dataset is not None and dataset.fingerprint not in self._described:
            self._described.add(dataset.fingerprint)
            self.on_dataset(dataset)

    def _read(self, dataset: Dataset, view: View, digests: list[str]) -> np.ndarray:
        """Stored embeddings; rows that fail their checksum are recomputed, with a warning."""
        try:
            return self.store.get(view, digests)
        except CorruptEmbeddings as exc:
            warnings.warn(
                f"{exc}; recomputing them (the cache holds derived data only)",
                CacheWarning,
                stacklevel=4,
            )
        # A damaged shard is set aside whole, taking rows of other views with it: ensure
        # every view completed for the dataset, in extraction order, which cuts the lost
        # rows into the batches they were computed in (the same numbers, where an encoder's
        # round-off depends on its batch).
        views = list(self._views.get(dataset.fingerprint, {}).values())
        self.extractor.ensure(dataset, views if view in views else [*views, view])
        return self.store.get(view, digests)

    def __call__(
        self,
        dataset: Dataset,
        split: str = "all",
        processing: str | None = "jpeg95_444",
        *,
        masked: bool | float = False,
    ) -> np.ndarray:
        """Embeddings (n_images, dim) of ``split`` under ``processing``, in split order."""
        return self.many(dataset, split, [processing], masked=masked)[processing]

    def close(self) -> None:
        """Release the store."""
        self.store.close()
