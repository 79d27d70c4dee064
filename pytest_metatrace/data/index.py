"""A persistent index of image files: content digests and decode checks.

Content digests key every cached embedding, so they must be exact; hashing
every file on every run would cost a full read of the dataset, so a digest is
remembered per (path, size, modification time) and recomputed when any of
them changes. A file modified within the last two seconds is not remembered:
on file systems with coarse timestamps (1-2 s on HFS+ / FAT, a few ms on
older ext4), a second same-size edit in the same tick would otherwise keep
the old digest ("racily clean", as git calls it). Decode checks (usable or
not, why, which conversions) are remembered per content digest, so a warm
run never decodes an image.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_metatrace._files import sha256_file as _sha256_file
from pytest_metatrace._sqlite import connect
from pytest_metatrace.data.loading import open_image_file

__all__ = ["LOADER_VERSION", "RACY_WINDOW_NS", "ImageCheck", "ImageIndex", "sha256_file"]

#: Bump when :mod:`pytest_metatrace.data.loading` changes what it accepts or converts.
#: 2: RGB images with a transparent colour are flattened; empty files named as such.
#: 3: 16-bit-per-channel colour images name their conversion to 8 bits.
LOADER_VERSION = 3

#: Files modified less than this long ago are hashed but not remembered (see ``file_digest``).
RACY_WINDOW_NS = 2_000_000_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, digest TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checks (
    digest TEXT NOT NULL, loader INTEGER NOT NULL, max_pixels INTEGER NOT NULL,
    ok INTEGER NOT NULL, info TEXT NOT NULL,
    PRIMARY KEY (digest, loader, max_pixels)
) WITHOUT ROWID;
"""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of an image file's bytes, read in chunks.

    Raises :class:`~pytest_metatrace.data.loading.UnusableImage` for a FIFO,
    a device or an over-sized file (see ``open_image_file``).
    """
    return _sha256_file(path, chunk, opener=open_image_file)


@dataclass
class ImageCheck:
    """The outcome of decoding one image once."""

    ok: bool  #: usable
    reason: str = ""  #: why not, when not usable
    size: tuple[int, int] = (0, 0)  #: decoded (width, height)
    mode: str = ""  #: Pillow mode of the file
    conversions: list[str] = field(default_factory=list)  #: conversions applied on decode

    def to_json(self) -> str:
        """Serialized form stored in the index."""
        return json.dumps(
            {
                "reason": self.reason,
                "size": list(self.size),
                "mode": self.mode,
                "conversions": self.conversions,
            }
        )

    @classmethod
    def from_row(cls, ok: int, info: str) -> ImageCheck:
        """Inverse of :meth:`to_json` plus the ``ok`` column."""
        data: dict[str, Any] = json.loads(info)
        return cls(
            ok=bool(ok),
            reason=data["reason"],
            size=(int(data["size"][0]), int(data["size"][1])),
            mode=data["mode"],
            conversions=list(data["conversions"]),
        )


class ImageIndex:
    """File digests and decode checks, persisted under the cache directory."""

    def __init__(self, cache_dir: Path) -> None:
        self.path = Path(cache_dir) / "images.sqlite"
        self._local = threading.local()

    @property
    def _conn(self) -> Any:
        # One connection per thread: sqlite3 connections are not shareable.
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, _SCHEMA)
            self._local.conn = conn
        return conn

    def file_digest(self, path: Path) -> str:
        """Content digest of ``path``, recomputed only when its size or mtime changed."""
        resolved = str(Path(path).resolve())
        st = os.stat(resolved)
        row = self._conn.execute(
            "SELECT size, mtime_ns, digest FROM files WHERE path = ?", (resolved,)
        ).fetchone()
        if row is not None and row[0] == st.st_size and row[1] == st.st_mtime_ns:
            return str(row[2])
        digest = sha256_file(Path(resolved))
        # A read-only cache cannot remember: the digest is simply recomputed next time.
        if time.time_ns() - st.st_mtime_ns > RACY_WINDOW_NS and not self._conn.read_only:
            self._conn.execute(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)",
                (resolved, st.st_size, st.st_mtime_ns, digest),
            )
        return digest

    def get_check(self, digest: str, max_pixels: int) -> ImageCheck | None:
        """The remembered check of an image, if any."""
        row = self._conn.execute(
            "SELECT ok, info FROM checks WHERE digest = ? AND loader = ? AND max_pixels = ?",
            (digest, LOADER_VERSION, max_pixels),
        ).fetchone()
        return None if row is None else ImageCheck.from_row(row[0], row[1])

    def put_checks(self, checks: dict[str, ImageCheck], max_pixels: int) -> None:
        """Remember several checks in one transaction."""
        if not checks or self._conn.read_only:
            return
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT OR REPLACE INTO checks VALUES (?, ?, ?, ?, ?)",
                [
                    (d, LOADER_VERSION, max_pixels, int(c.ok), c.to_json())
                    for d, c in checks.items()
                ],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
