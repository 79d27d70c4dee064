"""``--metatrace-exif-data=DIR``: a folder of photos labelled by their own EXIF.

Every image file below ``DIR`` (any depth, sorted) is read with
:func:`~pytest_metatrace.data.exif.read_exif`. The group key is the first
sub-folder below ``DIR`` (lay photos out as ``DIR/<photographer or device
owner>/...`` so that splits keep one person's photos on one side); photos
directly in ``DIR`` have no group, and the report says so. A photo without
EXIF, or whose EXIF cannot be read, is skipped and named with the reason;
photos whose ``Software`` tag names an editor are kept, flagged in the
``edited`` column and counted.
"""

from __future__ import annotations

import os
from collections import Counter
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
from pytest_metatrace.data.exif import EXIF_LABELS, SmartphoneTable, read_exif
from pytest_metatrace.data.loading import DEFAULT_MAX_PIXELS
from pytest_metatrace.data.sources import IMAGE_EXTENSIONS

__all__ = ["exif_dataset"]


def _image_files(root: Path) -> tuple[list[Path], int]:
    files: list[Path] = []
    ignored = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                files.append(path)
            else:
                ignored += 1
    return files, ignored


def exif_dataset(
    root: str | Path,
    *,
    cache_dir: Path,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    table: SmartphoneTable | None = None,
    progress: Any = None,
) -> Dataset:
    """Build a dataset whose metadata columns are the normalized EXIF labels of each photo."""
    from pytest_metatrace.data.index import ImageIndex

    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise DatasetError(
            f"--metatrace-exif-data {str(root)!r} is not a folder; pass a folder of photos "
            "straight from cameras and phones (sub-folders = photographer or owner, optional)"
        )
    table = table or SmartphoneTable()
    files, ignored = _image_files(folder)
    if not files:
        raise DatasetError(f"--metatrace-exif-data folder {folder} holds no image files")
    candidates: list[tuple[str, str, str, ImageSource, str | None, dict[str, str]]] = []
    skipped: list[SkippedImage] = []
    status: Counter[str] = Counter()
    edited = 0
    for path in files:
        rel = path.relative_to(folder)
        record = read_exif(path, table)
        if record.status != "ok":
            status["unreadable exif" if record.status.startswith("unreadable") else "no exif"] += 1
            skipped.append(SkippedImage(str(path), record.status))
            continue
        meta = record.labels()
        meta["edited"] = "yes" if record.edited else "no"
        edited += record.edited
        group = rel.parts[0] if len(rel.parts) > 1 else None
        source: ImageSource = FileSource(str(path.resolve()))
        candidates.append((rel.as_posix(), "photo", str(path), source, group, meta))
    index = ImageIndex(cache_dir)
    try:
        items, bad, conversions = check_sources(
            candidates, index=index, max_pixels=max_pixels, progress=progress
        )
    finally:
        index.close()
    has_groups = any(it.group is not None for it in items)
    return Dataset(
        id=folder.name or "exif",
        name=f"{folder} (labels from EXIF)",
        kind="exif",
        items=items,
        root=str(folder.resolve()),
        skipped=skipped + bad,
        conversions=conversions,
        metadata_columns=[*EXIF_LABELS, "edited"],
        group_column="sub-folder" if has_groups else None,
        max_pixels=max_pixels,
        ignored_files=ignored,
        notes={
            "exif_ok": len(candidates),
            "no_exif": status["no exif"],
            "unreadable_exif": status["unreadable exif"],
            "edited": edited,
            "smartphone_rules_from_user": len(table.user_rules),
        },
    )
