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
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_metatrace.data.dataset import (
    Dataset,
    DatasetError,
    FileSource,
    ImageSource,
    SkippedImage,
    check_sources,
)
from pytest_metatrace.data.loading import DEFAULT_MAX_PIXELS

__all__ = [
    "IMAGE_EXTENSIONS",
    "DatasetRegistry",
    "check_manifest",
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


def _shown(path: str | Path) -> str:
    """A path as text a person can read, whatever bytes the file system holds."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def _is_utf8(name: str) -> bool:
    # os.walk decodes undecodable bytes as lone surrogates (PEP 383); they
    # cannot be stored, hashed into a fingerprint or shown.
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _resolve(path: Path) -> tuple[str | None, str]:
    """``(resolved path, "")``, or ``(None, reason)`` for a link loop or an unusable name."""
    try:
        return str(path.resolve()), ""
    except RuntimeError:  # Python < 3.13 reports a symlink loop this way
        return None, "symbolic link loop; fix or remove the link"
    except OSError as exc:
        return None, f"cannot resolve path: {exc.strerror or exc}"
    except ValueError as exc:  # an embedded NUL byte
        return None, f"unusable path: {exc}"


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


#: How many ignored files are named in the dataset summary (all are counted).
_IGNORED_SHOWN = 5


def _folder_candidates(root: Path) -> _Candidates:
    out = _Candidates()
    classes: list[Path] = []
    for p in sorted(root.iterdir()):
        if p.name.startswith(".") or not p.is_dir():
            continue
        if not _is_utf8(p.name):
            out.skipped.append(
                SkippedImage(_shown(p), "class folder name is not valid UTF-8; rename it")
            )
            continue
        classes.append(p)
    if not classes:
        raise DatasetError(
            f"image folder {root} has no class sub-folders; lay it out as "
            f"{root}/<class>/<image files>, or pass a CSV manifest"
        )
    for class_dir in classes:
        label = class_dir.name

        def unreadable(exc: OSError, label: str = label, top: Path = class_dir) -> None:
            # os.walk skips a folder it cannot list; say so instead of losing its images.
            where = exc.filename if exc.filename is not None else top
            out.skipped.append(
                SkippedImage(
                    _shown(where),
                    f"cannot read folder: {exc.strerror or exc}; its images are left out",
                    label=label,
                )
            )

        for dirpath, dirnames, filenames in os.walk(class_dir, onerror=unreadable):
            kept = []
            for d in sorted(dirnames):
                if d.startswith("."):
                    continue
                if not _is_utf8(d):
                    out.skipped.append(
                        SkippedImage(
                            _shown(Path(dirpath) / d),
                            "folder name is not valid UTF-8; rename it",
                            label=label,
                        )
                    )
                    continue
                kept.append(d)
            dirnames[:] = kept
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                path = Path(dirpath) / name
                suffix = path.suffix.lower()
                if suffix not in IMAGE_EXTENSIONS:
                    out.ignored[_shown(suffix) or "(no extension)"] += 1
                    if len(out.ignored_examples) < _IGNORED_SHOWN:
                        out.ignored_examples.append(_shown(path.relative_to(root)))
                    continue
                if not _is_utf8(name):
                    out.skipped.append(
                        SkippedImage(_shown(path), "file name is not valid UTF-8; rename it", label)
                    )
                    continue
                resolved, why = _resolve(path)
                if resolved is None:
                    out.skipped.append(SkippedImage(str(path), why, label))
                    continue
                rel = path.relative_to(root).as_posix()
                source: ImageSource = FileSource(resolved)
                out.rows.append((rel, label, str(path), source, None, {}))
    return out


def _csv_candidates(manifest: Path) -> _Candidates:
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
    except OSError as exc:
        raise DatasetError(f"cannot read manifest {manifest}: {exc.strerror or exc}") from None


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
        resolved, why = _resolve(path)
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
