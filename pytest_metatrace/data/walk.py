r"""The one guarded walk over a folder of images: class folders, EXIF folders, pairs folders.

Every folder surface finds its image files here, under the same rules:

- only names ending in an image extension (:data:`IMAGE_EXTENSIONS`,
  case-insensitive) are taken; other files are *ignored* and counted by
  extension, a few named; hidden names (``.*``) are passed over;
- names that are not valid UTF-8 (file or folder) are skipped and named,
  with the bytes shown as ``\xe9`` escapes: they cannot be stored, hashed
  into a fingerprint or shown;
- a symbolic link loop, a link to nowhere, a FIFO, a device or a file over
  the size cap is skipped with the reason, never opened (a FIFO would block
  the run, ``/dev/zero`` would stream forever);
- a folder that cannot be listed is skipped and named ("its images are left
  out"), never silently lost;
- symbolic links to folders are not followed (no cycles, no escapes).

Nothing is read here: the files found are decoded later, through the
guarded opener (:func:`pytest_metatrace.data.loading.open_image_file`).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pytest_metatrace._files import file_refusal, shown
from pytest_metatrace.data.dataset import DatasetError, SkippedImage
from pytest_metatrace.data.loading import MAX_FILE_BYTES

__all__ = [
    "IGNORED_SHOWN",
    "IMAGE_EXTENSIONS",
    "FoundFile",
    "Walk",
    "is_utf8",
    "list_subfolders",
    "resolve_path",
    "shown",
    "walk_images",
]

#: File endings treated as images in folder datasets (case-insensitive).
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif"}
)

#: How many ignored files are named in a dataset's summary (all are counted).
IGNORED_SHOWN = 5


def is_utf8(name: str) -> bool:
    """Whether a name the file system gave is valid UTF-8.

    ``os.walk`` and ``os.listdir`` decode undecodable bytes as lone
    surrogates (PEP 383); such a name cannot be stored or shown.
    """
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def resolve_path(path: Path) -> tuple[str | None, str]:
    """``(resolved path, "")``, or ``(None, reason)`` for a link loop or an unusable name."""
    try:
        return str(path.resolve()), ""
    except RuntimeError:  # Python < 3.13 reports a symlink loop this way
        return None, "symbolic link loop; fix or remove the link"
    except OSError as exc:
        return None, f"cannot resolve path: {exc.strerror or exc}"
    except ValueError as exc:  # an embedded NUL byte
        return None, f"unusable path: {exc}"


@dataclass(frozen=True)
class FoundFile:
    """An image file the walk found."""

    path: Path  #: the path below the walked folder (ids and messages use it)
    resolved: str  #: the file it names, links resolved (sources read it)


@dataclass
class Walk:
    """What a walk found: image files, entries skipped with a reason, files ignored."""

    files: list[FoundFile] = field(default_factory=list)  #: in walk order (sorted)
    skipped: list[SkippedImage] = field(default_factory=list)  #: unusable entries, with reasons
    ignored: Counter[str] = field(default_factory=Counter)  #: extension -> files ignored
    ignored_examples: list[str] = field(default_factory=list)  #: a few ignored files' paths


def list_subfolders(root: Path, *, kind: str) -> tuple[list[Path], list[SkippedImage]]:
    """The sub-folders of ``root`` (sorted, hidden ones passed over) and those skipped.

    ``kind`` names a sub-folder's role in messages (``class``, ``subject``).
    Raises :class:`DatasetError` when ``root`` itself cannot be listed.
    """
    try:
        entries = sorted(root.iterdir())
    except OSError as exc:
        raise DatasetError(
            f"cannot read folder {shown(root)}: {exc.strerror or exc}; make it readable"
        ) from None
    folders: list[Path] = []
    skipped: list[SkippedImage] = []
    for p in entries:
        if p.name.startswith(".") or not p.is_dir():
            continue
        if not is_utf8(p.name):
            skipped.append(
                SkippedImage(shown(p), f"{kind} folder name is not valid UTF-8; rename it")
            )
            continue
        folders.append(p)
    return folders, skipped


def walk_images(
    top: Path,
    *,
    root: Path | None = None,
    label: str | None = None,
    recursive: bool = True,
    extensions: frozenset[str] = IMAGE_EXTENSIONS,
    max_bytes: int = MAX_FILE_BYTES,
    into: Walk | None = None,
) -> Walk:
    """Walk ``top`` (any depth, or only its own files when not ``recursive``), sorted.

    ``root`` is the folder ignored files are named relative to (default
    ``top``); ``label`` is given to every skipped entry (the class a skipped
    file would have had). Results are added to ``into`` when given.
    """
    out = into if into is not None else Walk()
    base = root if root is not None else top

    def unreadable(exc: OSError) -> None:
        # os.walk skips a folder it cannot list; say so instead of losing its images.
        where = exc.filename if exc.filename is not None else top
        out.skipped.append(
            SkippedImage(
                shown(where),
                f"cannot read folder: {exc.strerror or exc}; its images are left out",
                label=label,
            )
        )

    for dirpath, dirnames, filenames in os.walk(top, onerror=unreadable):
        kept = []
        for d in sorted(dirnames):
            if d.startswith(".") or not recursive:
                continue
            if not is_utf8(d):
                out.skipped.append(
                    SkippedImage(
                        shown(Path(dirpath) / d),
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
            if suffix not in extensions:
                out.ignored[shown(suffix) or "(no extension)"] += 1
                if len(out.ignored_examples) < IGNORED_SHOWN:
                    out.ignored_examples.append(shown(path.relative_to(base)))
                continue
            if not is_utf8(name):
                out.skipped.append(
                    SkippedImage(shown(path), "file name is not valid UTF-8; rename it", label)
                )
                continue
            resolved, why = resolve_path(path)
            if resolved is None:
                out.skipped.append(SkippedImage(str(path), why, label))
                continue
            try:
                refusal = file_refusal(os.stat(resolved), max_bytes=max_bytes, what="an image")
            except OSError as exc:
                refusal = f"cannot read file: {exc.strerror or exc}"
            if refusal is not None:
                out.skipped.append(SkippedImage(str(path), refusal, label))
                continue
            out.files.append(FoundFile(path, resolved))
    return out
