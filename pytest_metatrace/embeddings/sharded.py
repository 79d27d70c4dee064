"""A shared embedding store: content-addressed Parquet shards under a local path or fsspec URL.

Layout under ``<url>/<encoder fingerprint[:24]>-<device>-<precision>/``:

- ``shards/<key>.parquet``: one shard per committed batch, columns ``view``,
  ``image``, ``dim``, ``vec`` (float32 bytes) and ``crc``. ``<key>`` hashes the
  batch's (view key, image digest) pairs, so the same batch always lands in the
  same shard: a retried or duplicated job rewrites an identical file, and a
  batch whose shard exists is skipped (resumable).
- ``views/<view key>.json`` and ``meta.json``: what the keys mean, for people.

Atomicity: a shard is written under a temporary name (``.tmp-...``, never
read) and renamed into place when complete; on a local or network file system
the rename is atomic, on object stores the object appears whole. A killed
writer leaves at most an ignored temporary file, never a half shard; opening
the store removes such files once they are older than :data:`STALE_TEMP_S`.
Many writers on many machines need no lock: they only ever add whole files.

Integrity: every row carries the CRC-32 of its key and bytes
(:func:`~pytest_metatrace.embeddings.store.row_checksum`, as the SQLite
cache's rows do), checked on every read. Parquet itself does not notice a
flipped byte in the vectors: Snappy leaves float data mostly as it is. A shard
with a row that fails its checksum, or that cannot be parsed at all, is moved
aside (``shards/.corrupt-<name>-<time>``, never read again) and named in a
:class:`~pytest_metatrace.embeddings.store.CorruptEmbeddings` error, which the
caller answers by recomputing the shard's rows - the same batch, so the same
numbers. Shards written before the checksum existed are read unverified, with
one warning per store that says so and how to have them recomputed.

Reading a split reads only the shards that hold its rows, through an index of
(view, image) -> shard built from the shards' ``view`` and ``image`` columns.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import uuid
import warnings
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from pytest_metatrace._backend import StoreURLError, open_filesystem
from pytest_metatrace._sqlite import CacheWarning
from pytest_metatrace.embeddings.interface import missing_digests
from pytest_metatrace.embeddings.store import CorruptEmbeddings, View, row_checksum

__all__ = ["STALE_TEMP_S", "ShardedStore", "StoreError", "shard_key"]

_SHARDS = "shards"
_COLUMNS = ("view", "image", "dim", "vec")

#: Age (seconds) past which a ``.tmp-*`` file is taken for a killed writer's leftover and
#: removed. A live writer holds its temporary file only while it writes one batch's bytes
#: (kilobytes to a few megabytes: well under a minute even to an object store) and renames
#: it; machines sharing a store may disagree about the time by minutes. An hour is far
#: beyond both, and a writer that was suspended for longer simply writes its shard again.
STALE_TEMP_S = 3600.0


class StoreError(RuntimeError):
    """The shared store is unreadable or misconfigured; the message says what to do."""

    #: The plugin shows this error's message instead of a traceback.
    metatrace_clear = True


class _Unreadable(Exception):
    """A shard that cannot be parsed as the store's Parquet layout."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def shard_key(rows: Sequence[tuple[Any, ...]]) -> str:
    """Content address of a batch: hash of its (view key, image digest) pairs, in order.

    ``rows`` are ``(view, digest, ...)`` tuples; anything after the digest is ignored.
    """
    h = hashlib.sha256()
    for view, digest, *_ in rows:
        h.update(f"{view.key} {digest}\n".encode())
    return h.hexdigest()[:32]


def _modified(fs: Any, info: dict[str, Any]) -> float | None:
    """A listing entry's modification time (seconds since the epoch), or None if unknown."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "modified"):
        value = info.get(key)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, datetime):
            return value.timestamp()
    try:
        return float(fs.modified(info["name"]).timestamp())
    except Exception:  # a file system that cannot say: never remove what cannot be dated
        return None


class ShardedStore:
    """Embeddings of one encoder on one device type and precision, as Parquet shards."""

    def __init__(
        self,
        url: str,
        *,
        encoder_fingerprint: str,
        compute_key: str,
        encoder_info: dict[str, Any] | None = None,
    ) -> None:
        try:
            self._fs, base = open_filesystem(url)
        except StoreURLError as exc:
            raise StoreError(f"--metatrace-store={url}: {exc}") from None
        self.url = url
        self._args = (encoder_fingerprint, compute_key)
        self.root = f"{base.rstrip('/')}/{encoder_fingerprint[:24]}-{compute_key}"
        try:
            self._fs.makedirs(f"{self.root}/{_SHARDS}", exist_ok=True)
            self._fs.makedirs(f"{self.root}/views", exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"--metatrace-store={url}: cannot create {self.root} ({exc}); the shared store "
                "must be a folder this user can write"
            ) from None
        # (view key, image) -> shard name; shards already indexed; those without checksums.
        self._index: dict[tuple[str, str], str] = {}
        self._indexed: set[str] = set()
        self._unverified: set[str] = set()
        self._warned_unverified = False
        #: leftover temporary files of killed writers removed when this store was opened
        self.removed_temporaries = self.clean_temporaries()
        if encoder_info is not None:
            self._write_once(
                f"{self.root}/meta.json",
                json.dumps({"encoder": encoder_info}, sort_keys=True, default=str).encode(),
            )

    def __reduce__(self) -> tuple[Any, ...]:
        # Ray workers get a fresh handle (own file system object, empty index).
        fingerprint, compute_key = self._args
        return (_reopen, (self.url, fingerprint, compute_key))

    #: A shared store is written by whoever computes; it is never opened read-only.
    read_only = False

    @property
    def path(self) -> PurePosixPath:
        """The store's root (its stem names the extraction lock)."""
        return PurePosixPath(self.root)

    def _shard_path(self, name: str) -> str:
        return f"{self.root}/{_SHARDS}/{name}"

    def _write_once(self, final: str, data: bytes) -> bool:
        """Write ``data`` to ``final`` atomically unless it exists; True if this call wrote it."""
        if self._fs.exists(final):
            return False
        parent, name = final.rsplit("/", 1)
        for attempt in (1, 2):
            tmp = f"{parent}/.tmp-{name}-{uuid.uuid4().hex}"
            try:
                with self._fs.open(tmp, "wb") as f:
                    f.write(data)
                self._fs.mv(tmp, final)
                return True
            except FileNotFoundError:
                # The temporary file vanished: this writer was suspended for longer than
                # STALE_TEMP_S and another process took the file for a dead writer's. Again.
                if attempt == 2:
                    raise
            except BaseException:
                with contextlib.suppress(Exception):
                    self._fs.rm(tmp)
                raise
        return False  # pragma: no cover - the loop returns or raises

    def clean_temporaries(self, max_age_s: float = STALE_TEMP_S) -> int:
        """Remove ``.tmp-*`` files older than ``max_age_s`` (killed writers'); return how many.

        Younger ones may belong to a writer at work and are left alone, as is
        any file whose modification time the file system cannot tell.
        """
        now = time.time()
        removed = 0
        for folder in (self.root, f"{self.root}/{_SHARDS}", f"{self.root}/views"):
            try:
                entries = self._fs.ls(folder, detail=True)
            except OSError:
                continue
            for info in entries:
                name = PurePosixPath(str(info.get("name", ""))).name
                if not name.startswith(".tmp-") or info.get("type") != "file":
                    continue
                mtime = _modified(self._fs, info)
                if mtime is None or now - mtime < max_age_s:
                    continue
                try:
                    self._fs.rm(info["name"])
                except OSError:
                    continue  # another process removed it first
                removed += 1
        return removed

    def register_view(self, view: View) -> None:
        """Record what a view key means (for people inspecting the store)."""
        text = json.dumps({"label": view.label, **view.cache_params()}, sort_keys=True)
        self._write_once(f"{self.root}/views/{view.key}.json", text.encode())

    def _shards(self) -> list[str]:
        names = [PurePosixPath(p).name for p in self._fs.ls(f"{self.root}/{_SHARDS}", detail=False)]
        return sorted(n for n in names if n.endswith(".parquet") and not n.startswith("."))

    def _read(self, name: str, columns: list[str] | None = None) -> tuple[Any, bool]:
        """The shard's table (only ``columns`` when given) and whether it has row checksums.

        Raises :class:`_Unreadable` for a file that is not a shard of this layout,
        ``FileNotFoundError`` for one another process moved aside meanwhile.
        """
        import pyarrow.parquet as pq

        try:
            with self._fs.open(self._shard_path(name), "rb") as f:
                parquet = pq.ParquetFile(f)
                names = set(parquet.schema_arrow.names)
                lacking = sorted(set(columns or _COLUMNS) - names)
                if lacking:
                    raise _Unreadable(f"no column(s) {', '.join(lacking)}")
                return parquet.read(columns=columns), "crc" in names
        except FileNotFoundError:
            raise
        except _Unreadable:
            raise
        except Exception as exc:  # pyarrow reports damage as ArrowInvalid, OSError, ...
            text = str(exc).strip().splitlines()
            raise _Unreadable(f"{type(exc).__name__}: {text[0] if text else ''}") from None

    def _set_aside(self, name: str) -> str:
        """Move a damaged shard out of the store's sight; return where it went."""
        src = self._shard_path(name)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        dst = self._shard_path(f".corrupt-{name}-{stamp}-{uuid.uuid4().hex[:8]}")
        try:
            self._fs.mv(src, dst)
        except FileNotFoundError:
            dst = "(another process moved it aside first)"
        except OSError as exc:
            raise StoreError(
                f"shard {src} is damaged and cannot be moved aside ({exc}); delete it and rerun "
                "(its rows are recomputed)"
            ) from None
        self._forget()
        return dst

    def _forget(self) -> None:
        """Drop the index, so that the next read indexes the shards there are now.

        Rows a shard set aside shared with other shards are served by those then.
        """
        self._index.clear()
        self._indexed.clear()
        self._unverified.clear()

    def refresh(self) -> None:
        """Index shards written since the last call (by this or any other writer)."""
        for name in self._shards():
            if name in self._indexed:
                continue
            try:
                table, has_crc = self._read(name, ["view", "image"])
            except FileNotFoundError:
                continue  # moved aside by another process since the listing
            except _Unreadable as exc:
                # Its rows cannot even be named: they are missing now, and computed again
                # with the rest of whatever is missing.
                dst = self._set_aside(name)
                warnings.warn(
                    f"shard {self._shard_path(name)} of the shared store cannot be read "
                    f"({exc.reason}); moved it aside to {dst}; its rows are recomputed",
                    CacheWarning,
                    stacklevel=2,
                )
                return self.refresh()
            for key, image in zip(
                table.column("view").to_pylist(), table.column("image").to_pylist(), strict=True
            ):
                # Sorted shard names: the first shard holding a row serves it.
                self._index.setdefault((key, image), name)
            self._indexed.add(name)
            if not has_crc:
                self._unverified.add(name)
        if self._unverified and not self._warned_unverified:
            self._warned_unverified = True
            warnings.warn(
                f"{len(self._unverified)} shard(s) in {self.root}/{_SHARDS} carry no row "
                "checksums (written by an older pytest-metatrace): their rows are read "
                "unverified; delete those shards to have them recomputed with checksums",
                CacheWarning,
                stacklevel=2,
            )
        return None

    def present(self, view: View) -> set[str]:
        """Digests of images whose embedding under ``view`` is stored."""
        self.refresh()
        return {image for key, image in self._index if key == view.key}

    def missing(self, view: View, digests: Iterable[str]) -> list[str]:
        """Digests (deduplicated, in first-seen order) with no stored embedding under ``view``."""
        return missing_digests(self.present(view), digests)

    def has_shard(self, rows: Sequence[tuple[Any, ...]]) -> bool:
        """Whether the shard of this batch (``(view, digest, ...)`` rows) is committed."""
        return bool(self._fs.exists(self._shard_path(f"{shard_key(rows)}.parquet")))

    def put_many(self, rows: Sequence[tuple[View, str, np.ndarray]]) -> int:
        """Write one shard holding ``rows``; return its row count, or 0 if it already existed."""
        if not rows:
            return 0
        import pyarrow as pa
        import pyarrow.parquet as pq

        views, images, dims, vecs, crcs = [], [], [], [], []
        for view, digest, vec in rows:
            arr = np.ascontiguousarray(vec, dtype=np.float32)
            if arr.ndim != 1 or not np.isfinite(arr).all():
                raise ValueError(
                    f"refusing to store a non-finite or non-vector embedding for {view.label} "
                    f"of image {digest[:12]} (shape {arr.shape}); check the encoder's output"
                )
            blob = arr.tobytes()
            views.append(view.key)
            images.append(digest)
            dims.append(int(arr.shape[0]))
            vecs.append(blob)
            crcs.append(row_checksum(view.key, digest, int(arr.shape[0]), blob))
        table = pa.table(
            {
                "view": pa.array(views, pa.string()),
                "image": pa.array(images, pa.string()),
                "dim": pa.array(dims, pa.int32()),
                "vec": pa.array(vecs, pa.binary()),
                "crc": pa.array(crcs, pa.uint32()),
            }
        )
        sink = pa.BufferOutputStream()
        # No min/max statistics: nothing filters on them, and for ``vec`` they would store
        # two more copies of a vector per page.
        pq.write_table(table, sink, write_statistics=False)
        name = f"{shard_key(rows)}.parquet"
        wrote = self._write_once(self._shard_path(name), sink.getvalue().to_pybytes())
        return len(rows) if wrote else 0

    def _rows(
        self, table: Any, has_crc: bool, view_key: str, wanted: set[str]
    ) -> tuple[dict[str, np.ndarray], list[int]]:
        """The wanted vectors of one shard, and the indices of every row that fails its check."""
        found: dict[str, np.ndarray] = {}
        bad: list[int] = []
        crcs = table.column("crc").to_pylist() if has_crc else [None] * table.num_rows
        for i, (key, image, dim, blob, crc) in enumerate(
            zip(
                table.column("view").to_pylist(),
                table.column("image").to_pylist(),
                table.column("dim").to_pylist(),
                table.column("vec").to_pylist(),
                crcs,
                strict=True,
            )
        ):
            ok = (
                isinstance(key, str)
                and isinstance(image, str)
                and isinstance(blob, bytes)
                and isinstance(dim, int)
                and dim > 0
                and len(blob) == 4 * dim
            )
            if ok and has_crc:
                ok = crc == row_checksum(key, image, dim, blob)
            if not ok:
                bad.append(i)
            elif key == view_key and image in wanted and image not in found:
                found[image] = np.frombuffer(blob, dtype=np.float32, count=dim)
        return found, bad

    def get(self, view: View, digests: Sequence[str]) -> np.ndarray:
        """Stacked float32 embeddings of ``digests`` under ``view``, reading only their shards.

        Every row of a shard read is checked (length and checksum). A shard with a
        failing row, or one that cannot be parsed, is moved aside, and
        :class:`CorruptEmbeddings` names it with the digests of ``view`` it held: the
        caller recomputes them (every row of the shard is missing now).
        """
        self.refresh()
        by_shard: dict[str, set[str]] = {}
        absent: list[str] = []
        for d in digests:
            shard = self._index.get((view.key, d))
            if shard is None:
                absent.append(d)
            else:
                by_shard.setdefault(shard, set()).add(d)
        if absent:
            raise KeyError(
                f"{len(absent)} embeddings under {view.label} are not in {self.url} "
                f"(first: {absent[0][:12]}); extract them first"
            )
        if not digests:
            return np.zeros((0, 0), dtype=np.float32)
        found: dict[str, np.ndarray] = {}
        lost: set[str] = set()
        damage: list[str] = []
        for shard, wanted in by_shard.items():
            path = self._shard_path(shard)
            try:
                table, has_crc = self._read(shard)
            except FileNotFoundError:
                lost |= wanted
                damage.append(f"shard {path} was moved aside by another process")
                self._forget()
                continue
            except _Unreadable as exc:
                lost |= wanted
                damage.append(
                    f"shard {path} cannot be read ({exc.reason}); moved aside to "
                    f"{self._set_aside(shard)}"
                )
                continue
            rows, bad = self._rows(table, has_crc, view.key, wanted)
            if bad:
                shown = ", ".join(map(str, bad[:10])) + (", ..." if len(bad) > 10 else "")
                lost |= wanted
                damage.append(
                    f"shard {path}: row(s) {shown} of {table.num_rows} failed their checksum; "
                    f"moved aside to {self._set_aside(shard)}, all {table.num_rows} rows are "
                    "recomputed"
                )
                continue
            found.update(rows)
        if lost:
            if not self._indexed:
                self.refresh()  # a shard was set aside: index what remains
            first_seen = list(dict.fromkeys(d for d in digests if d in lost))
            raise CorruptEmbeddings(
                view,
                first_seen,
                PurePosixPath(self.root),
                reason="could not be read back intact",
                detail="; ".join(damage),
            )
        return np.stack([found[d] for d in digests]).astype(np.float32, copy=False)

    def count(self) -> int:
        """Number of stored embeddings (distinct view and image pairs)."""
        self.refresh()
        return len(self._index)

    def shard_names(self) -> list[str]:
        """Names of the committed shards, sorted."""
        return self._shards()

    def close(self) -> None:
        """Drop the in-memory index (nothing is held open)."""
        self._forget()


def _reopen(url: str, fingerprint: str, compute_key: str) -> ShardedStore:
    return ShardedStore(url, encoder_fingerprint=fingerprint, compute_key=compute_key)
