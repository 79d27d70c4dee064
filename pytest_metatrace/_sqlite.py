"""SQLite connections tuned for a cache shared by concurrent pytest-xdist workers.

SQLite gives what the cache needs without a server: a committed write is
atomic (an interrupted run leaves every finished batch behind and nothing
half-written), primary keys make duplicate entries impossible, and WAL mode
lets workers read while one writes. The cache directory must be on a local
file system (SQLite's locking is unreliable over NFS); that is documented.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["connect"]

#: How long a writer waits for another process's write lock, in milliseconds.
BUSY_TIMEOUT_MS = 300_000


def connect(path: Path, schema: str) -> sqlite3.Connection:
    """Open (creating if needed) the database at ``path`` and apply ``schema``.

    ``schema`` must be idempotent (``CREATE TABLE IF NOT EXISTS``).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    # NORMAL is durable across application crashes in WAL mode; only a power
    # loss can drop the last transactions, which are then recomputed.
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.executescript(schema)
    return conn
