"""SQLite connections tuned for a cache shared by concurrent pytest-xdist workers.

SQLite gives what the cache needs without a server: a committed write is
atomic (an interrupted run leaves every finished batch behind and nothing
half-written), primary keys make duplicate entries impossible, and WAL mode
lets workers read while one writes. The cache directory must be on a local
file system (SQLite's locking is unreliable over NFS); that is documented.

The cache holds derived data only, so a damaged file is never a dead end: a
database that is not SQLite, is truncated, or fails to open is reported as
"the cache at PATH is corrupt", moved aside (``PATH.corrupt-<time>``) and
rebuilt. A cache folder that cannot be written is opened read-only: what it
holds is used, and a write it cannot take raises :class:`CacheError` naming
the folder and ``--metatrace-cache-dir``.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
import warnings
from collections.abc import Callable
from pathlib import Path, PurePath
from typing import Any, TypeVar

__all__ = ["CacheConnection", "CacheError", "CacheWarning", "connect", "retry_locked"]

#: The 16 bytes every SQLite 3 database file starts with.
_MAGIC = b"SQLite format 3\x00"

#: How long a writer waits for another process's write lock, in milliseconds.
BUSY_TIMEOUT_MS = 300_000

_T = TypeVar("_T")


def retry_locked(action: Callable[[], _T], *, timeout_s: float = BUSY_TIMEOUT_MS / 1000) -> _T:
    """Run ``action``, retrying while another process holds the database lock.

    SQLite's busy handler covers ordinary writes, but not every path: switching
    the journal mode, or two processes creating the same new database at once,
    can fail with "database is locked" straight away. Those are retried with
    a jittered backoff until ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.01
    while True:
        try:
            return action()
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if ("locked" not in text and "busy" not in text) or time.monotonic() > deadline:
                raise
        time.sleep(delay * (1.0 + random.random()))
        delay = min(delay * 2.0, 0.5)


class CacheError(RuntimeError):
    """The cache cannot do what was asked (e.g. store new rows in a read-only folder)."""

    #: The plugin shows this error's message instead of a traceback.
    metatrace_clear = True


class CacheWarning(UserWarning):
    """Something was wrong with the cache and was repaired (e.g. a corrupt file rebuilt)."""


class CacheConnection(sqlite3.Connection):
    """A connection that knows whether it may write."""

    read_only: bool = False  #: opened read-only: the cache folder cannot be written


def read_only_message(path: PurePath, what: str) -> str:
    """The error text for a write a read-only cache cannot take."""
    return (
        f"the cache folder {path.parent} is read-only and lacks {what}; make it writable, "
        "or point --metatrace-cache-dir (or METATRACE_CACHE_DIR) at a writable folder"
    )


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK | os.X_OK)


def _damage(path: Path) -> str | None:
    """Why the file at ``path`` is not a usable SQLite database (cheap header checks), or None."""
    try:
        size = path.stat().st_size
        if size == 0:
            return None  # a file another process is creating right now
        with open(path, "rb") as fh:
            header = fh.read(100)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot read it: {exc.strerror or exc}"
    if len(header) < 100 or not header.startswith(_MAGIC):
        return "it is not an SQLite database"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    wal = path.with_name(path.name + "-wal")
    wal_size = wal.stat().st_size if wal.exists() else 0
    # The header's page count is exact for a checkpointed file; pages still in
    # the WAL may lie beyond the end of the main file, so only check without one.
    # Offset 92 ("version-valid-for") equal to the change counter (24) says the count is current.
    current = header[92:96] == header[24:28]
    if wal_size == 0 and current and pages and size < pages * page_size:
        return f"it is truncated ({size:,} of {pages * page_size:,} bytes)"
    return None


def _move_aside(path: Path, reason: str) -> None:
    """Move a corrupt database (and its WAL files) aside, under a lock, re-checking first."""
    from filelock import FileLock

    with FileLock(str(path) + ".repair.lock"):
        # Another process may have repaired it while this one waited for the lock.
        try:
            still = _damage(path) or _open_fails(path)
        except FileNotFoundError:
            still = None
        if still is None:
            return
        aside = path.with_name(
            f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        )
        os.replace(path, aside)
        for suffix in ("-wal", "-shm"):
            extra = path.with_name(path.name + suffix)
            if extra.exists():
                os.replace(extra, aside.with_name(aside.name + suffix))
        warnings.warn(
            f"the cache at {path} is corrupt ({reason}); moved it aside to {aside.name} and "
            "rebuilding it: the cache holds derived data only, what it held is recomputed",
            CacheWarning,
            stacklevel=4,
        )


def _open_fails(path: Path) -> str | None:
    """Whether SQLite itself refuses the file (reading its schema), with the reason."""
    if not path.exists():
        return None
    try:
        probe = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            probe.execute("SELECT name FROM sqlite_master").fetchall()
        finally:
            probe.close()
    except sqlite3.OperationalError as exc:
        text = str(exc).lower()
        if "locked" in text or "busy" in text or "unable to open" in text:
            return None
        return str(exc)
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return None


def _is_corruption(exc: sqlite3.Error) -> bool:
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    text = str(exc).lower()
    return any(t in text for t in ("malformed", "not a database", "corrupt", "disk image"))


def connect(path: Path, schema: str) -> CacheConnection:
    """Open (creating if needed) the database at ``path`` and apply ``schema``.

    ``schema`` must be idempotent (``CREATE TABLE IF NOT EXISTS``). A corrupt
    file is moved aside and rebuilt (with a :class:`CacheWarning`); in a folder
    that cannot be written the connection is read-only (``conn.read_only``),
    on the file when it exists, else on an empty in-memory database.
    """
    path = Path(path)
    if not _writable(path.parent):
        return _connect_read_only(path, schema)
    reason = _damage(path)
    if reason is not None:
        _move_aside(path, reason)
    try:
        return _connect(path, schema)
    except sqlite3.DatabaseError as exc:
        if not _is_corruption(exc):
            raise
        _move_aside(path, str(exc))
        return _connect(path, schema)


def _connect_read_only(path: Path, schema: str) -> CacheConnection:
    target = f"file:{path}?immutable=1" if path.exists() else "file::memory:"
    conn = sqlite3.connect(target, uri=True, isolation_level=None, factory=CacheConnection)
    conn.read_only = True
    try:
        conn.execute("SELECT name FROM sqlite_master").fetchall()
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise CacheError(
            f"the cache at {path} is corrupt ({exc}) and its folder is read-only, so it cannot "
            "be rebuilt; point --metatrace-cache-dir (or METATRACE_CACHE_DIR) at a writable folder"
        ) from None
    if not path.exists():
        conn.executescript(schema)
    return conn


def _connect(path: Path, schema: str) -> CacheConnection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn: Any = sqlite3.connect(
        str(path),
        timeout=BUSY_TIMEOUT_MS / 1000,
        isolation_level=None,
        factory=CacheConnection,
    )
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

    def setup() -> None:
        # WAL is persistent in the file: only its creator needs to switch.
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(schema)

    try:
        retry_locked(setup)
    except BaseException:
        conn.close()
        raise
    # NORMAL is durable across application crashes in WAL mode; only a power
    # loss can drop the last transactions, which are then recomputed.
    conn.execute("PRAGMA synchronous = NORMAL")
    result: CacheConnection = conn
    return result
