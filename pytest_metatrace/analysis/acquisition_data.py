"""Data plumbing of the acquisition audit: which dataset, which embeddings.

Kept out of the audit module so that the audit reads like a test. The
acquisition audit does not use ``--metatrace-data``: its data are
``--metatrace-exif-data=DIR`` when given (labels from EXIF), else
``--metatrace-acquisition-data`` (default ``city100``, the built-in
camera/phone pairs; a CSV manifest with label columns works too).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from pytest_metatrace.data.dataset import Dataset
from pytest_metatrace.settings import Settings

__all__ = ["load_acquisition_dataset", "masked_features", "with_smartphone_column"]


def with_smartphone_column(dataset: Dataset, table: Any) -> Dataset:
    """Add ``smartphone`` from make/model (the smartphone table) where a manifest lacks it."""
    if "smartphone" in dataset.metadata_columns or "make" not in dataset.metadata_columns:
        return dataset
    items = []
    for it in dataset.items:
        answer = table.lookup(it.meta.get("make") or None, it.meta.get("model") or None)
        meta = dict(it.meta)
        if answer is not None:
            meta["smartphone"] = "smartphone" if answer else "camera"
        items.append(replace(it, meta=meta))
    dataset.items = items
    dataset.metadata_columns = [*dataset.metadata_columns, "smartphone"]
    # The fingerprint covers the metadata: drop the cached one.
    dataset.__dict__.pop("fingerprint", None)
    return dataset


def load_acquisition_dataset(
    settings: Settings, *, cache_dir: Path, registry: Any = None, progress: Any = None
) -> Dataset:
    """The acquisition audit's dataset; raises ``DatasetError`` / ``ValueError`` with a fix."""
    from pytest_metatrace.data.exif import SmartphoneTable
    from pytest_metatrace.data.sources import load_dataset

    table_path = settings.smartphone_table
    table = SmartphoneTable.from_csv(table_path) if table_path else SmartphoneTable()
    exif_dir = settings.exif_data
    max_pixels = settings.max_pixels
    if exif_dir:
        from pytest_metatrace.data.exif_folder import exif_dataset

        return exif_dataset(
            exif_dir, cache_dir=cache_dir, max_pixels=max_pixels, table=table, progress=progress
        )
    dataset = load_dataset(
        settings.acquisition_data,
        cache_dir=cache_dir,
        max_pixels=max_pixels,
        registry=registry,
        progress=progress,
    )
    return with_smartphone_column(dataset, table)


def masked_features(
    embeddings: Any, dataset: Dataset, ratios: Iterable[float | None]
) -> dict[float | None, np.ndarray]:
    """Embeddings of every item (dataset order) per mask ratio (None: unmasked), cached.

    All ratios are extracted in one pass, so each photo is decoded once.
    """
    views = {r: embeddings.view(None, False if r is None else float(r)) for r in ratios}
    embeddings.extractor.ensure(dataset, list(dict.fromkeys(views.values())))
    digests = [it.digest for it in dataset.items]
    return {r: embeddings.store.get(v, digests) for r, v in views.items()}
