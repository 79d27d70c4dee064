"""The one place for guarded file reads, atomic file writes and file hashing (stdlib only).

Every input the plugin reads goes through :func:`open_regular_file` (images,
through :func:`pytest_metatrace.data.loading.open_image_file`) or
:func:`read_text_file` (manifests, baselines, results documents): only
regular files are read, never more than a size cap, and a text file is
decoded as UTF-8 with a message naming the file, what it is and the fix.
Light to import: the plugin loads it at start.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "MAX_TEXT_BYTES",
    "TextFileError",
    "UnreadableFile",
    "atomic_write",
    "atomic_write_text",
    "file_refusal",
    "open_regular_file",
    "read_regular_file",
    "read_text_file",
    "sha256_file",
    "shown",
]

#: Largest text input read (manifest, baseline, results document), in bytes: a
#: baseline with per-image scores of a large set is tens of megabytes.
MAX_TEXT_BYTES = 1 << 30

_FILE_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)

_UTF8_BOM = b"\xef\xbb\xbf"


class UnreadableFile(Exception):
    """A file refused by :func:`open_regular_file`; ``reason`` says why, for a person."""

    def __init__(self, reason: str, os_error: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason  #: e.g. "not a regular file (a FIFO (named pipe)); ..."
        self.os_error = os_error  #: the system's words when opening or reading failed


class TextFileError(ValueError):
    """A text input that cannot be read; the message names the file, what it is and the fix."""


def shown(path: str | os.PathLike[str]) -> str:
    """A path as text a person can read, whatever bytes the file system holds."""
    return os.fsencode(os.fspath(path)).decode("utf-8", "backslashreplace")


def file_refusal(st: os.stat_result, *, max_bytes: int, what: str = "a file") -> str | None:
    """Why a file with status ``st`` is not read (not a regular file, over the cap), or None."""
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _FILE_KINDS if test(st.st_mode)), "not a file")
        return f"not a regular file ({kind}); only regular files are read"
    if st.st_size > max_bytes:
        return f"file of {st.st_size:,} bytes is over the {max_bytes:,}-byte limit for {what}"
    return None


def _os_reason(exc: OSError) -> str:
    return str(exc.strerror or exc)


def open_regular_file(
    path: str | os.PathLike[str], *, max_bytes: int, what: str = "a file"
) -> BinaryIO:
    """Open a file for reading, refusing anything but a regular file of at most ``max_bytes``.

    The file is opened non-blocking and checked on its descriptor (no race
    between a check and the open): a FIFO or a link to ``/dev/zero`` would
    otherwise block or stream forever. Raises :class:`UnreadableFile`.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise UnreadableFile(f"cannot read file: {_os_reason(exc)}", _os_reason(exc)) from None
    except ValueError as exc:  # an embedded NUL byte
        raise UnreadableFile(f"cannot read file: {exc}", str(exc)) from None
    try:
        refusal = file_refusal(os.fstat(fd), max_bytes=max_bytes, what=what)
        if refusal is not None:
            raise UnreadableFile(refusal)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular_file(
    path: str | os.PathLike[str], *, max_bytes: int, what: str = "a file"
) -> bytes:
    """The bytes of a regular file (see :func:`open_regular_file`), at most ``max_bytes``."""
    with open_regular_file(path, max_bytes=max_bytes, what=what) as fh:
        try:
            # One byte more than the cap: a file that grew after the check is caught too.
            data = fh.read(max_bytes + 1)
        except OSError as exc:
            raise UnreadableFile(f"cannot read file: {_os_reason(exc)}", _os_reason(exc)) from None
    if len(data) > max_bytes:
        raise UnreadableFile(f"file is over the {max_bytes:,}-byte limit for {what}")
    return data


def read_text_file(
    path: str | os.PathLike[str],
    *,
    what: str,
    max_bytes: int = MAX_TEXT_BYTES,
    fix: str = "save it as UTF-8",
) -> str:
    """The text of a UTF-8 file (a byte-order mark is accepted), line endings untouched.

    ``what`` names the file's role in messages (``manifest``, ``baseline``);
    ``fix`` is what to do about text that is not UTF-8. Raises
    :class:`TextFileError`, e.g. "manifest m.csv is not UTF-8 text (invalid
    start byte at byte 17); save it as UTF-8".
    """
    where = shown(path)
    try:
        data = read_regular_file(path, max_bytes=max_bytes, what=f"a {what}")
    except UnreadableFile as exc:
        if exc.os_error is not None:
            raise TextFileError(f"cannot read {what} {where}: {exc.os_error}") from None
        raise TextFileError(f"{what} {where}: {exc.reason}") from None
    start = len(_UTF8_BOM) if data.startswith(_UTF8_BOM) else 0
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TextFileError(
            f"{what} {where} is not UTF-8 text ({exc.reason} at byte {start + exc.start}); {fix}"
        ) from None


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
    folder is created (a regular file in its way is named in the error). The
    temporary file is removed on any error.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        # "File exists" for a/b/c when a is a file: name the file in the way instead.
        blocker = next((p for p in target.parents if p.exists() and not p.is_dir()), None)
        if blocker is None:
            raise
        raise NotADirectoryError(
            errno.ENOTDIR, f"{shown(blocker)} is a file, not a folder", str(blocker)
        ) from None
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
