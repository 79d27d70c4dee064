"""The acquisition audit's data: the photos and the mask sweep's labelled set.

The sweep uses the labelled set only when the photos hold no pairs (or the
user names one); on City100 its semantic curve comes from the photos' pairs.

The spec hands both out as plugin fixtures (``metatrace_acquisition_data``,
``metatrace_sweep_data``) through the loaders below. The acquisition audit
does not use ``--metatrace-data``: its data are
``--metatrace-exif-data=DIR`` when given (labels from EXIF), else
``--metatrace-acquisition-data`` (default ``city100``, the built-in
camera/phone pairs; a CSV manifest with label columns works too).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from pytest_metatrace.audits.acquisition_traces.spec import AcquisitionSettings
from pytest_metatrace.data.dataset import Dataset
from pytest_metatrace.settings import Settings
from pytest_metatrace.spec import DataContext

__all__ = [
    "load_acquisition_data",
    "load_acquisition_dataset",
    "load_sweep_data",
    "with_smartphone_column",
]


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


def _named(settings: Settings, attr: str, spec: str, registry: Any) -> str:
    """``spec`` as written when that is a registered name (it wins over a same-named folder)."""
    named = settings.given(attr, spec)
    return named if registry is not None and registry.get(named) is not None else spec


def load_acquisition_dataset(
    settings: Settings, *, cache_dir: Path, registry: Any = None, progress: Any = None
) -> Dataset:
    """The acquisition audit's dataset; raises ``DatasetError`` / ``ValueError`` with a fix."""
    from pytest_metatrace.data.exif import SmartphoneTable
    from pytest_metatrace.data.sources import load_dataset

    own = settings.of(AcquisitionSettings)
    table_path = own.smartphone_table
    table = SmartphoneTable.from_csv(table_path) if table_path else SmartphoneTable()
    exif_dir = own.exif_data
    max_pixels = settings.max_pixels
    if exif_dir:
        from pytest_metatrace.data.exif_folder import exif_dataset

        return exif_dataset(
            exif_dir, cache_dir=cache_dir, max_pixels=max_pixels, table=table, progress=progress
        )
    dataset = load_dataset(
        _named(settings, "acquisition_data", own.acquisition_data, registry),
        cache_dir=cache_dir,
        max_pixels=max_pixels,
        registry=registry,
        progress=progress,
    )
    return with_smartphone_column(dataset, table)


def load_acquisition_data(context: DataContext) -> Dataset:
    """The ``metatrace_acquisition_data`` fixture's loader: :func:`load_acquisition_dataset`."""
    return load_acquisition_dataset(
        context.settings,
        cache_dir=context.cache_dir,
        registry=context.dataset_registry,
        progress=context.progress,
    )


def load_sweep_data(context: DataContext) -> Dataset | None:
    """The mask sweep's labelled set (``--metatrace-sweep-data``); None for ``pairs``/``none``.

    ``auto`` gives the ``demo`` set: the audit asks for it only when the
    acquisition data has no pairs of its own
    (:func:`~pytest_metatrace.audits.acquisition_traces.mask_sweep.choose_sweep_source`).
    """
    from pytest_metatrace.data.sources import load_dataset

    spec = context.settings.of(AcquisitionSettings).sweep_data
    if spec in ("none", "pairs"):
        return None
    spec = _named(context.settings, "sweep_data", spec, context.dataset_registry)
    return load_dataset(
        "demo" if spec == "auto" else spec,
        cache_dir=context.cache_dir,
        max_pixels=context.settings.max_pixels,
        registry=context.dataset_registry,
        progress=context.progress,
    )
