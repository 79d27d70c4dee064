"""The content-addressed embedding store.

One SQLite file per (encoder fingerprint, device type, precision) under
``<cache dir>/embeddings/``; inside it one row per (view key, image digest).
The encoder fingerprint covers the architecture, weights digest and
preprocessing (resize policy included); the view key covers the processing
class and its parameters, the seed where it changes pixels, the mask ratio
and the pipeline version; the image digest covers the image bytes. Device type
and precision are in the file name because they change the numbers
(autocast, kernels). Everything that changes an embedding is in its key.

Writes are transactions of whole batches: an interrupted run keeps every
finished batch and the next run computes only what is missing; concurrent
pytest-xdist workers cannot corrupt the file or duplicate a row (primary key,
``INSERT OR IGNORE``).

Every row carries a CRC-32 of its key and bytes, checked on every read: a
vector damaged inside the file (a flipped bit SQLite's own checks do not see)
is never returned. :meth:`EmbeddingStore.get` deletes such rows and raises
:class:`CorruptEmbeddings`; the caller recomputes them and says so. Rows of a
cache written before the checksum existed get theirs when the file is first
opened by this version (trusted on first use).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from pytest_metatrace._sqlite import CacheError, connect, read_only_message, retry_locked
from pytest_metatrace.embeddings.interface import missing_digests

__all__ = ["PIPELINE_VERSION", "CorruptEmbeddings", "EmbeddingStore", "View", "row_checksum"]

#: Bump when the extraction pipeline changes its output (decode, processing order, ...).
PIPELINE_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS emb (
    view TEXT NOT NULL, image TEXT NOT NULL, dim INTEGER NOT NULL, vec BLOB NOT NULL,
    crc INTEGER,
    PRIMARY KEY (view, image)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS views (view TEXT PRIMARY KEY, description TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""


def row_checksum(view_key: str, digest: str, dim: int, blob: bytes) -> int:
    """CRC-32 of one stored row: its key, its length and its bytes."""
    return zlib.crc32(blob, zlib.crc32(f"{view_key}\0{digest}\0{dim}".encode()))


class CorruptEmbeddings(KeyError):
    """Stored rows failed their checksum; they were deleted and must be recomputed.

    ``reason`` replaces "failed their checksum" and ``detail`` is appended, for a
    store that names more (the sharded store names each damaged shard).
    """

    def __init__(
        self,
        view: View,
        digests: list[str],
        path: PurePath,
        *,
        reason: str = "failed their checksum",
        detail: str = "",
    ) -> None:
        super().__init__(
            f"{len(digests)} embedding(s) under {view.label} in {path} {reason} "
            f"(first image: {digests[0][:12]})" + (f": {detail}" if detail else "")
        )
        self.view = view
        self.digests = digests
        self.path = path

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class View:
    """How an image is turned into pixels before the encoder: processing and masking."""

    processing: str | None  #: processing class name, or None for the decoded original
    mask_ratio: float | None = None  #: center-mask ratio, or None for no mask
    seed: int = 0  #: seed of randomized processing (interpolation classes)

    def cache_params(self) -> dict[str, Any]:
        """Everything about this view that changes pixels."""
        from pytest_metatrace.processing import get_processing

        proc = None
        if self.processing is not None:
            proc = get_processing(self.processing).cache_params(self.seed)
        return {"pipeline": PIPELINE_VERSION, "processing": proc, "mask_ratio": self.mask_ratio}

    @property
    def key(self) -> str:
        """Stable hash of :meth:`cache_params`."""
        text = json.dumps(self.cache_params(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    @property
    def label(self) -> str:
        """Readable name, e.g. ``jpeg75_420`` or ``jpeg95_444+mask0.9``."""
        name = self.processing or "original"
        return name if self.mask_ratio is None else f"{name}+mask{self.mask_ratio:g}"


class EmbeddingStore:
    """Embeddings of one encoder on one device type and precision."""

    def __init__(
        self,
        cache_dir: Path,
        *,
        encoder_fingerprint: str,
        compute_key: str,
        encoder_info: dict[str, Any] | None = None,
    ) -> None:
        self.path = (
            Path(cache_dir) / "embeddings" / f"{encoder_fingerprint[:24]}-{compute_key}.sqlite"
        )
        self._conn = connect(self.path, _SCHEMA)
        self.read_only = self._conn.read_only  #: the cache folder cannot be written
        columns = {r[1] for r in self._conn.execute("PRAGMA table_info(emb)")}
        self._has_crc = "crc" in columns
        if not self._has_crc and not self.read_only:
            self._add_checksums()
        if encoder_info is not None and not self.read_only:
            self._conn.execute(
                "INSERT OR IGNORE INTO meta VALUES ('encoder', ?)",
                (json.dumps(encoder_info, sort_keys=True, default=str),),
            )

    def _add_checksums(self) -> None:
        """Give a cache written before row checksums existed its checksums (trust on first use)."""
        conn = self._conn
        conn.create_function("mt_row_crc", 4, row_checksum, deterministic=True)

        def migrate() -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                columns = {r[1] for r in conn.execute("PRAGMA table_info(emb)")}
                if "crc" not in columns:  # another process may have migrated meanwhile
                    conn.execute("ALTER TABLE emb ADD COLUMN crc INTEGER")
                conn.execute(
                    "UPDATE emb SET crc = mt_row_crc(view, image, dim, vec) WHERE crc IS NULL"
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        retry_locked(migrate)
        self._has_crc = True

    def register_view(self, view: View) -> None:
        """Record what a view key means (for people inspecting the cache)."""
        if self.read_only:
            return
        self._conn.execute(
            "INSERT OR IGNORE INTO views VALUES (?, ?)",
            (view.key, json.dumps({"label": view.label, **view.cache_params()}, sort_keys=True)),
        )

    def present(self, view: View) -> set[str]:
        """Digests of images whose embedding under ``view`` is stored."""
        rows = self._conn.execute("SELECT image FROM emb WHERE view = ?", (view.key,))
        return {r[0] for r in rows}

    def missing(self, view: View, digests: Iterable[str]) -> list[str]:
        """Digests (deduplicated, in first-seen order) with no stored embedding under ``view``."""
        return missing_digests(self.present(view), digests)

    def put_many(self, rows: Sequence[tuple[View, str, np.ndarray]]) -> int:
        """Store ``(view, digest, vector)`` rows in one transaction; return how many were new."""
        if not rows:
            return 0
        payload = []
        for view, digest, vec in rows:
            arr = np.ascontiguousarray(vec, dtype=np.float32)
            if arr.ndim != 1 or not np.isfinite(arr).all():
                raise ValueError(
                    f"refusing to cache a non-finite or non-vector embedding for {view.label} "
                    f"of image {digest[:12]} (shape {arr.shape}); check the encoder's output"
                )
            blob = arr.tobytes()
            dim = int(arr.shape[0])
            payload.append((view.key, digest, dim, blob, row_checksum(view.key, digest, dim, blob)))
        if self.read_only:
            raise CacheError(
                read_only_message(self.path, f"{len(payload)} embedding(s) this run needs")
            )
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            before = conn.total_changes
            conn.executemany("INSERT OR IGNORE INTO emb VALUES (?, ?, ?, ?, ?)", payload)
            added = conn.total_changes - before
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return int(added)

    def get(self, view: View, digests: Sequence[str]) -> np.ndarray:
        """Stacked float32 embeddings of ``digests`` under ``view``, in the given order."""
        wanted = sorted(set(digests))
        found: dict[str, np.ndarray] = {}
        damaged: list[str] = []
        crc_col = "crc" if self._has_crc else "NULL"
        # Only the split's rows, by primary key (chunks stay under SQLite's parameter limit).
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            for image, dim, blob, crc in self._conn.execute(
                f"SELECT image, dim, vec, {crc_col} FROM emb WHERE view = ? AND image IN "
                f"({','.join('?' * len(chunk))})",
                (view.key, *chunk),
            ):
                ok = isinstance(blob, bytes) and len(blob) == 4 * dim
                if ok and crc is not None:
                    ok = crc == row_checksum(view.key, image, dim, blob)
                if not ok:
                    damaged.append(image)
                    continue
                found[image] = np.frombuffer(blob, dtype=np.float32, count=dim)
        if damaged:
            self._discard(view, damaged)
            raise CorruptEmbeddings(view, damaged, self.path)
        absent = [d for d in digests if d not in found]
        if absent:
            raise KeyError(
                f"{len(absent)} embeddings under {view.label} are not in {self.path} "
                f"(first: {absent[0][:12]}); extract them first"
            )
        if not digests:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([found[d] for d in digests]).astype(np.float32, copy=False)

    def _discard(self, view: View, digests: Sequence[str]) -> None:
        """Delete damaged rows so that the next extraction recomputes them."""
        if self.read_only:
            raise CacheError(
                f"{len(digests)} embedding(s) under {view.label} in {self.path} failed their "
                "checksum and the cache folder is read-only, so they cannot be recomputed; "
                "point --metatrace-cache-dir (or METATRACE_CACHE_DIR) at a writable folder"
            )
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "DELETE FROM emb WHERE view = ? AND image = ?", [(view.key, d) for d in digests]
            )
            conn.execute("COMMIT")
        except sqlite3.Error:
            conn.execute("ROLLBACK")
            raise

    def count(self) -> int:
        """Number of stored embeddings."""
        return int(self._conn.execute("SELECT COUNT(*) FROM emb").fetchone()[0])

    def close(self) -> None:
        """Close the database connection."""
        self._conn.close()
