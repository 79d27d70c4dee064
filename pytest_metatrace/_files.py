"""The one place for atomic file writes and file hashing (stdlib only, light to import)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "atomic_write_text", "sha256_file"]


def sha256_file(
    path: str | os.PathLike[str],
    chunk: int = 1 << 20,
    *,
    opener: Callable[[Path], contextlib.AbstractContextManager[BinaryIO]] | None = None,
) -> str:
    """SHA-256 (hex) of a file's bytes, read in chunks.

    ``opener`` opens the file for reading (default: plain ``open(path, "rb")``);
    image files pass the loader's guarded opener, which refuses FIFOs, devices
    and over-sized files instead of blocking on them.
    """
    h = hashlib.sha256()
    with (opener or _open_binary)(Path(path)) as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _open_binary(path: Path) -> BinaryIO:
    return open(path, "rb")


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> Path:
    """Write ``path`` through ``write(file)`` into a temporary sibling, then rename it.

    Readers (and parallel writers: xdist workers, two CI jobs sharing a cache)
    see the old file or the whole new one, never a torn one. The file is
    readable by others (0o644), like any file a user shares; the parent
    folder is created. The temporary file is removed on any error.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """:func:`atomic_write` of ``text`` encoded as UTF-8."""
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))
