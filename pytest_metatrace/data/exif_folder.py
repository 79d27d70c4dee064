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
from pytest_metatrace.data.exif import EXIF_LABELS, ExifRecord, SmartphoneTable, read_exif
from pytest_metatrace.data.loading import (
    DEFAULT_MAX_PIXELS,
    UnusableImage,
    open_image_file,
    pillow_guard_off,
)
from pytest_metatrace.data.walk import walk_images

__all__ = ["exif_dataset"]


def _guarded_exif(path: Path, table: SmartphoneTable, max_pixels: int) -> ExifRecord | str:
    """The photo's EXIF record, or the reason it is skipped before its EXIF is read.

    The file is opened with the guarded opener (a FIFO swapped in after the
    walk is refused, not waited on) and its pixel count checked from the
    header against ``max_pixels``, so Pillow's decompression-bomb guard
    never fires: a bomb is skipped with the reason the loader gives.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with open_image_file(path) as fh, pillow_guard_off():
            try:
                with Image.open(fh) as img:
                    width, height = img.size
            except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
                width = height = 0  # read_exif names what is wrong with the file
    except UnusableImage as exc:
        return exc.reason
    if width * height > max_pixels:
        return (
            f"{width}x{height} is over the {max_pixels:,}-pixel limit "
            "(raise --metatrace-max-pixels to include it)"
        )
    with pillow_guard_off():
        return read_exif(path, table)


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
    walk = walk_images(folder)
    if not walk.files and not walk.skipped:
        raise DatasetError(f"--metatrace-exif-data folder {folder} holds no image files")
    candidates: list[tuple[str, str, str, ImageSource, str | None, dict[str, str]]] = []
    skipped: list[SkippedImage] = list(walk.skipped)
    status: Counter[str] = Counter()
    edited = 0
    for found in walk.files:
        path = found.path
        rel = path.relative_to(folder)
        record = _guarded_exif(path, table, max_pixels)
        if isinstance(record, str):
            status["unusable file"] += 1
            skipped.append(SkippedImage(str(path), record))
            continue
        if record.status != "ok":
            status["unreadable exif" if record.status.startswith("unreadable") else "no exif"] += 1
            skipped.append(SkippedImage(str(path), record.status))
            continue
        meta = record.labels()
        meta["edited"] = "yes" if record.edited else "no"
        edited += record.edited
        group = rel.parts[0] if len(rel.parts) > 1 else None
        source: ImageSource = FileSource(found.resolved)
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
        ignored_files=sum(walk.ignored.values()),
        ignored_extensions=dict(sorted(walk.ignored.items())),
        ignored_examples=walk.ignored_examples,
        notes={
            "exif_ok": len(candidates),
            "no_exif": status["no exif"],
            "unreadable_exif": status["unreadable exif"],
            "unusable_files": status["unusable file"] + len(walk.skipped),
            "edited": edited,
            "smartphone_rules_from_user": len(table.user_rules),
        },
    )
