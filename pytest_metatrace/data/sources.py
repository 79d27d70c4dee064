"""Turn a ``--metatrace-data`` spec into a :class:`~pytest_metatrace.data.dataset.Dataset`.

Specs:

- ``demo``: the built-in photos (:mod:`pytest_metatrace.data.demo`);
- ``city100`` / ``city100-samesize``: the built-in camera/phone pairs
  (:mod:`pytest_metatrace.data.city100`), at native sizes or resize-controlled;
- a folder: one sub-folder per class, images inside (any depth below it);
- a ``.csv`` manifest with a header row: ``path`` (relative to the manifest's
  folder, or absolute) and ``label`` columns, an optional ``group`` column
  (e.g. photographer, for group-disjoint splits), and any other columns as
  metadata (e.g. ``make``, ``model``, ``iso``);
- a name registered with :func:`register_dataset` or the
  ``pytest_metatrace_register_datasets`` hook.
"""

from __future__ import annotations

import csv
import difflib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_metatrace.data.dataset import (
    Dataset,
    DatasetError,
    FileSource,
    ImageSource,
    check_sources,
)
from pytest_metatrace.data.loading import DEFAULT_MAX_PIXELS

__all__ = [
    "IMAGE_EXTENSIONS",
    "DatasetRegistry",
    "dataset_id",
    "default_dataset_registry",
    "load_dataset",
    "register_dataset",
]

#: File endings treated as images in folder datasets (case-insensitive).
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif"}
)

#: Built-in dataset specs (no files to pass).
_BUILTIN = ("demo", "city100", "city100-samesize")

DatasetFactory = Callable[..., Dataset]


class DatasetRegistry:
    """Named dataset factories: ``factory(**context) -> Dataset``."""

    def __init__(self) -> None:
        self._factories: dict[str, tuple[DatasetFactory, str]] = {}

    def register(self, name: str, factory: DatasetFactory, *, description: str = "") -> None:
        """Register ``factory`` under ``name`` (a later registration replaces an earlier one)."""
        self._factories[name] = (factory, description)

    def get(self, name: str) -> DatasetFactory | None:
        """The factory registered under ``name``, if any."""
        entry = self._factories.get(name)
        return entry[0] if entry else None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._factories)


default_dataset_registry = DatasetRegistry()


def register_dataset(
    name: str, *, description: str = ""
) -> Callable[[DatasetFactory], DatasetFactory]:
    """Decorator registering a dataset factory in the default registry."""

    def deco(factory: DatasetFactory) -> DatasetFactory:
        default_dataset_registry.register(name, factory, description=description)
        return factory

    return deco


def dataset_id(spec: str) -> str:
    """Short id of a data spec for test ids: ``demo``, a folder's or manifest's name."""
    if spec in ("demo", "city100", "city100-samesize"):
        return spec
    path = Path(spec)
    if path.suffix.lower() == ".csv":
        return path.stem
    return path.name or spec


def _folder_candidates(root: Path) -> tuple[list[tuple[Any, ...]], int]:
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DatasetError(
            f"image folder {root} has no class sub-folders; lay it out as "
            f"{root}/<class>/<image files>, or pass a CSV manifest"
        )
    candidates: list[tuple[Any, ...]] = []
    ignored = 0
    for class_dir in classes:
        for dirpath, dirnames, filenames in os.walk(class_dir):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                path = Path(dirpath) / name
                if path.suffix.lower() not in IMAGE_EXTENSIONS:
                    ignored += 1
                    continue
                rel = path.relative_to(root).as_posix()
                source: ImageSource = FileSource(str(path.resolve()))
                candidates.append((rel, class_dir.name, str(path), source, None, {}))
    return candidates, ignored


def _csv_candidates(manifest: Path) -> tuple[list[tuple[Any, ...]], list[str], str | None]:
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as fh:
            return _parse_manifest(manifest, csv.DictReader(fh))
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"manifest {manifest} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
            "save it as UTF-8"
        ) from None
    except csv.Error as exc:
        raise DatasetError(f"manifest {manifest} is not valid CSV: {exc}") from None


def _parse_manifest(
    manifest: Path, reader: csv.DictReader[str]
) -> tuple[list[tuple[Any, ...]], list[str], str | None]:
    fields = [f.strip() for f in (reader.fieldnames or [])]
    missing = [c for c in ("path", "label") if c not in fields]
    if missing:
        raise DatasetError(
            f"manifest {manifest} lacks column(s) {missing}; found {fields or 'no header'}. "
            "The first row must name the columns: path,label[,group,<metadata>...]"
        )
    meta_cols = [c for c in fields if c not in ("path", "label", "group")]
    has_group = "group" in fields
    candidates: list[tuple[Any, ...]] = []
    # Keyed by the resolved file, so that "a.jpg" and "./a.jpg" count as one.
    seen: dict[str, int] = {}
    for row_raw in reader:
        line_no = reader.line_num
        if None in row_raw:
            # DictReader files values beyond the header under the key None.
            raise DatasetError(
                f"{manifest}:{line_no}: more values than the {len(fields)} header columns "
                "(quote values that contain commas)"
            )
        row = {(k or "").strip(): (v or "").strip() for k, v in row_raw.items()}
        rel, label = row.get("path", ""), row.get("label", "")
        if not rel or not label:
            raise DatasetError(f"{manifest}:{line_no}: empty path or label")
        path = Path(rel) if Path(rel).is_absolute() else manifest.parent / rel
        resolved = str(path.resolve())
        if resolved in seen:
            raise DatasetError(
                f"{manifest}:{line_no}: path {rel!r} already listed on line {seen[resolved]}"
            )
        seen[resolved] = line_no
        group = (row.get("group") or None) if has_group else None
        meta = {c: row.get(c, "") for c in meta_cols}
        source: ImageSource = FileSource(resolved)
        candidates.append((rel, label, str(path), source, group, meta))
    if not candidates:
        raise DatasetError(f"manifest {manifest} lists no images")
    return candidates, meta_cols, "group" if has_group else None


def load_dataset(
    spec: str,
    *,
    cache_dir: Path,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    registry: DatasetRegistry | None = None,
    progress: Any = None,
    context: dict[str, Any] | None = None,
) -> Dataset:
    """Build the dataset a spec names; raise :class:`DatasetError` with a fix on bad input."""
    registry = registry or default_dataset_registry
    if spec == "demo":
        from pytest_metatrace.data.demo import demo_dataset

        return demo_dataset()
    if spec in ("city100", "city100-samesize"):
        from pytest_metatrace.data.city100 import city100_dataset

        return city100_dataset(spec)
    factory = registry.get(spec)
    if factory is not None:
        dataset = factory(**(context or {}))
        if not isinstance(dataset, Dataset):
            raise DatasetError(
                f"dataset factory {spec!r} returned {type(dataset).__name__}, not a Dataset"
            )
        return dataset
    path = Path(spec).expanduser()
    if not path.exists():
        close = difflib.get_close_matches(spec, [*_BUILTIN, *registry.names()], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise DatasetError(
            f"dataset {spec!r} is neither a folder, a CSV manifest, a built-in set nor a "
            f"registered name{hint} (built-in and registered: "
            f"{', '.join([*_BUILTIN, *registry.names()])})"
        )
    from pytest_metatrace.data.index import ImageIndex

    index = ImageIndex(cache_dir)
    ignored = 0
    try:
        if path.is_dir():
            candidates, ignored = _folder_candidates(path)
            meta_cols: list[str] = []
            group_col: str | None = None
            kind = "folder"
        elif path.suffix.lower() == ".csv":
            candidates, meta_cols, group_col = _csv_candidates(path)
            kind = "csv"
        else:
            raise DatasetError(
                f"dataset {spec!r} is a file but not a .csv manifest; pass a folder or a manifest"
            )
        items, skipped, conversions = check_sources(
            candidates, index=index, max_pixels=max_pixels, progress=progress
        )
    finally:
        index.close()
    return Dataset(
        id=dataset_id(spec),
        name=str(path),
        kind=kind,
        items=items,
        root=str(path.resolve()),
        skipped=skipped,
        conversions=conversions,
        metadata_columns=meta_cols,
        group_column=group_col,
        max_pixels=max_pixels,
        ignored_files=ignored,
    )
