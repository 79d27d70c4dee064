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
import io
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_metatrace._files import TextFileError, read_text_file
from pytest_metatrace.data.dataset import (
    Dataset,
    DatasetError,
    FileSource,
    ImageSource,
    SkippedImage,
    check_sources,
)
from pytest_metatrace.data.loading import DEFAULT_MAX_PIXELS
from pytest_metatrace.data.walk import (
    IMAGE_EXTENSIONS,
    Walk,
    list_subfolders,
    resolve_path,
    walk_images,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "DatasetRegistry",
    "check_manifest",
    "dataset_id",
    "default_dataset_registry",
    "load_dataset",
    "register_dataset",
]

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


@dataclass
class _Candidates:
    """What a folder or manifest lists, before any file is read."""

    rows: list[tuple[Any, ...]] = field(
        default_factory=list
    )  #: (id, label, path, source, group, meta)
    skipped: list[SkippedImage] = field(default_factory=list)  #: entries unusable as listed
    ignored: Counter[str] = field(default_factory=Counter)  #: extension -> files ignored
    ignored_examples: list[str] = field(default_factory=list)  #: a few ignored files' paths
    meta_cols: list[str] = field(default_factory=list)
    group_col: str | None = None


def _folder_candidates(root: Path) -> _Candidates:
    classes, skipped = list_subfolders(root, kind="class")
    if not classes:
        raise DatasetError(
            f"image folder {root} has no class sub-folders; lay it out as "
            f"{root}/<class>/<image files>, or pass a CSV manifest"
        )
    walk = Walk(skipped=skipped)
    rows: list[tuple[Any, ...]] = []
    for class_dir in classes:
        label = class_dir.name
        before = len(walk.files)
        walk_images(class_dir, root=root, label=label, into=walk)
        for found in walk.files[before:]:
            rel = found.path.relative_to(root).as_posix()
            source: ImageSource = FileSource(found.resolved)
            rows.append((rel, label, str(found.path), source, None, {}))
    return _Candidates(
        rows=rows,
        skipped=walk.skipped,
        ignored=walk.ignored,
        ignored_examples=walk.ignored_examples,
    )


def _csv_candidates(manifest: Path) -> _Candidates:
    try:
        text = read_text_file(manifest, what="manifest")
    except TextFileError as exc:
        raise DatasetError(str(exc)) from None
    try:
        return _parse_manifest(manifest, csv.DictReader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise DatasetError(f"manifest {manifest} is not valid CSV: {exc}") from None


def check_manifest(manifest: Path) -> None:
    """Parse a CSV manifest without reading any image; raise :class:`DatasetError` if malformed.

    Run at collection, so that a malformed manifest is one usage error rather
    than an error at the setup of every test.
    """
    _csv_candidates(manifest)


def _parse_manifest(manifest: Path, reader: csv.DictReader[str]) -> _Candidates:
    fields = [f.strip() for f in (reader.fieldnames or [])]
    missing = [c for c in ("path", "label") if c not in fields]
    if missing:
        raise DatasetError(
            f"manifest {manifest} lacks column(s) {missing}; found {fields or 'no header'}. "
            "The first row must name the columns: path,label[,group,<metadata>...]"
        )
    meta_cols = [c for c in fields if c not in ("path", "label", "group")]
    has_group = "group" in fields
    out = _Candidates(meta_cols=meta_cols, group_col="group" if has_group else None)
    # Keyed by the resolved file, so that "a.jpg" and "./a.jpg" count as one.
    seen: dict[str, int] = {}
    listed = 0
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
        listed += 1
        where = f"{manifest}:{line_no}: {rel!r}"
        if "\x00" in rel:
            out.skipped.append(SkippedImage(where, "path contains a NUL byte", label))
            continue
        path = Path(rel) if Path(rel).is_absolute() else manifest.parent / rel
        resolved, why = resolve_path(path)
        if resolved is None:
            out.skipped.append(SkippedImage(where, why, label))
            continue
        if resolved in seen:
            raise DatasetError(
                f"{manifest}:{line_no}: path {rel!r} already listed on line {seen[resolved]}"
            )
        seen[resolved] = line_no
        group = (row.get("group") or None) if has_group else None
        meta = {c: row.get(c, "") for c in meta_cols}
        source: ImageSource = FileSource(resolved)
        out.rows.append((rel, label, str(path), source, group, meta))
    if not listed:
        raise DatasetError(f"manifest {manifest} lists no images")
    return out


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

    if path.is_dir():
        found = _folder_candidates(path)
        kind = "folder"
    elif path.suffix.lower() == ".csv":
        found = _csv_candidates(path)
        kind = "csv"
    else:
        raise DatasetError(
            f"dataset {spec!r} is a file but not a .csv manifest; pass a folder or a manifest"
        )
    index = ImageIndex(cache_dir)
    try:
        items, skipped, conversions = check_sources(
            found.rows, index=index, max_pixels=max_pixels, progress=progress
        )
    finally:
        index.close()
    return Dataset(
        id=dataset_id(spec),
        name=str(path),
        kind=kind,
        items=items,
        root=str(path.resolve()),
        skipped=found.skipped + skipped,
        conversions=conversions,
        metadata_columns=found.meta_cols,
        group_column=found.group_col,
        max_pixels=max_pixels,
        ignored_files=sum(found.ignored.values()),
        ignored_extensions=dict(sorted(found.ignored.items())),
        ignored_examples=found.ignored_examples,
    )
