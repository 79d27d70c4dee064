"""SQLite connections tuned for a cache shared by concurrent pytest-xdist workers.

SQLite gives what the cache needs without a server: a committed write is
atomic (an interrupted run leaves every finished batch behind and nothing
half-written), primary keys make duplicate entries impossible, and WAL mode
lets workers read while one writes. The cache directory must be on a local
file system (SQLite's locking is unreliable over NFS); that is documented.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

__all__ = ["connect", "retry_locked"]

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


def connect(path: Path, schema: str) -> sqlite3.Connection:
    """Open (creating if needed) the database at ``path`` and apply ``schema``.

    ``schema`` must be idempotent (``CREATE TABLE IF NOT EXISTS``).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

    def setup() -> None:
        # WAL is persistent in the file: only its creator needs to switch.
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(schema)

    retry_locked(setup)
    # NORMAL is durable across application crashes in WAL mode; only a power
    # loss can drop the last transactions, which are then recomputed.
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn
