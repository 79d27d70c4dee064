"""A shared embedding store: content-addressed Parquet shards under a local path or fsspec URL.

Layout under ``<url>/<encoder fingerprint[:24]>-<device>-<precision>/``:

- ``shards/<key>.parquet``: one shard per committed batch, columns ``view``,
  ``image``, ``dim``, ``vec`` (float32 bytes). ``<key>`` hashes the batch's
  (view key, image digest) pairs, so the same batch always lands in the same
  shard: a retried or duplicated job rewrites an identical file, and a batch
  whose shard exists is skipped (resumable).
- ``views/<view key>.json`` and ``meta.json``: what the keys mean, for people.

Atomicity: a shard is written under a temporary name (``.tmp-...``, never
read) and renamed into place when complete; on a local or network file system
the rename is atomic, on object stores the object appears whole. A killed
writer leaves at most an ignored temporary file, never a half shard. Many
writers on many machines need no lock: they only ever add whole files.

Reading a split reads only the shards that hold its rows, through an index of
(view, image) -> shard built from the shards' ``view`` and ``image`` columns.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Sequence
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from pytest_metatrace.embeddings.interface import missing_digests
from pytest_metatrace.embeddings.store import View

__all__ = ["ShardedStore", "StoreError"]

_SHARDS = "shards"


class StoreError(RuntimeError):
    """The shared store is unreadable or misconfigured; the message says what to do."""


def _require_pyarrow() -> Any:
    try:
        import fsspec
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise StoreError(
            f"--metatrace-store needs pyarrow and fsspec ({exc.name} is missing): "
            "pip install 'pytest-metatrace[ray]'"
        ) from None
    return fsspec


def shard_key(rows: Sequence[tuple[Any, ...]]) -> str:
    """Content address of a batch: hash of its (view key, image digest) pairs, in order.

    ``rows`` are ``(view, digest, ...)`` tuples; anything after the digest is ignored.
    """
    h = hashlib.sha256()
    for view, digest, *_ in rows:
        h.update(f"{view.key} {digest}\n".encode())
    return h.hexdigest()[:32]


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
        fsspec = _require_pyarrow()
        self.url = url
        self._args = (encoder_fingerprint, compute_key)
        self._fs, base = fsspec.core.url_to_fs(url)
        self.root = f"{base.rstrip('/')}/{encoder_fingerprint[:24]}-{compute_key}"
        self._fs.makedirs(f"{self.root}/{_SHARDS}", exist_ok=True)
        self._fs.makedirs(f"{self.root}/views", exist_ok=True)
        # (view key, image) -> shard name; shards already indexed.
        self._index: dict[tuple[str, str], str] = {}
        self._indexed: set[str] = set()
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

    def _write_once(self, final: str, data: bytes) -> bool:
        """Write ``data`` to ``final`` atomically unless it exists; True if this call wrote it."""
        if self._fs.exists(final):
            return False
        parent, name = final.rsplit("/", 1)
        tmp = f"{parent}/.tmp-{name}-{uuid.uuid4().hex}"
        with self._fs.open(tmp, "wb") as f:
            f.write(data)
        self._fs.mv(tmp, final)
        return True

    def register_view(self, view: View) -> None:
        """Record what a view key means (for people inspecting the store)."""
        text = json.dumps({"label": view.label, **view.cache_params()}, sort_keys=True)
        self._write_once(f"{self.root}/views/{view.key}.json", text.encode())

    def _shards(self) -> list[str]:
        names = [PurePosixPath(p).name for p in self._fs.ls(f"{self.root}/{_SHARDS}", detail=False)]
        return sorted(n for n in names if n.endswith(".parquet") and not n.startswith("."))

    def _read(self, name: str, columns: list[str] | None = None) -> Any:
        import pyarrow.parquet as pq

        path = f"{self.root}/{_SHARDS}/{name}"
        try:
            with self._fs.open(path, "rb") as f:
                return pq.read_table(f, columns=columns)
        except (OSError, ValueError) as exc:
            raise StoreError(
                f"shard {self.url}/.../{name} is unreadable ({exc}); the store's file system "
                "may not rename atomically - delete the shard and rerun to recompute it"
            ) from None

    def refresh(self) -> None:
        """Index shards written since the last call (by this or any other writer)."""
        for name in self._shards():
            if name in self._indexed:
                continue
            table = self._read(name, ["view", "image"])
            for key, image in zip(
                table.column("view").to_pylist(), table.column("image").to_pylist(), strict=True
            ):
                # Sorted shard names: the first shard holding a row serves it.
                self._index.setdefault((key, image), name)
            self._indexed.add(name)

    def present(self, view: View) -> set[str]:
        """Digests of images whose embedding under ``view`` is stored."""
        self.refresh()
        return {image for key, image in self._index if key == view.key}

    def missing(self, view: View, digests: Iterable[str]) -> list[str]:
        """Digests (deduplicated, in first-seen order) with no stored embedding under ``view``."""
        return missing_digests(self.present(view), digests)

    def has_shard(self, rows: Sequence[tuple[Any, ...]]) -> bool:
        """Whether the shard of this batch (``(view, digest, ...)`` rows) is committed."""
        return bool(self._fs.exists(f"{self.root}/{_SHARDS}/{shard_key(rows)}.parquet"))

    def put_many(self, rows: Sequence[tuple[View, str, np.ndarray]]) -> int:
        """Write one shard holding ``rows``; return its row count, or 0 if it already existed."""
        if not rows:
            return 0
        import pyarrow as pa
        import pyarrow.parquet as pq

        views, images, dims, vecs = [], [], [], []
        for view, digest, vec in rows:
            arr = np.ascontiguousarray(vec, dtype=np.float32)
            if arr.ndim != 1 or not np.isfinite(arr).all():
                raise ValueError(
                    f"refusing to store a non-finite or non-vector embedding for {view.label} "
                    f"of image {digest[:12]} (shape {arr.shape}); check the encoder's output"
                )
            views.append(view.key)
            images.append(digest)
            dims.append(int(arr.shape[0]))
            vecs.append(arr.tobytes())
        table = pa.table(
            {
                "view": pa.array(views, pa.string()),
                "image": pa.array(images, pa.string()),
                "dim": pa.array(dims, pa.int32()),
                "vec": pa.array(vecs, pa.binary()),
            }
        )
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        name = f"{shard_key(rows)}.parquet"
        wrote = self._write_once(f"{self.root}/{_SHARDS}/{name}", sink.getvalue().to_pybytes())
        return len(rows) if wrote else 0

    def get(self, view: View, digests: Sequence[str]) -> np.ndarray:
        """Stacked float32 embeddings of ``digests`` under ``view``, reading only their shards."""
        import pyarrow.compute as pc

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
        for shard, wanted in by_shard.items():
            table = self._read(shard)
            table = table.filter(pc.equal(table.column("view"), view.key))
            for image, dim, blob in zip(
                table.column("image").to_pylist(),
                table.column("dim").to_pylist(),
                table.column("vec").to_pylist(),
                strict=True,
            ):
                if image in wanted and image not in found:
                    found[image] = np.frombuffer(blob, dtype=np.float32, count=dim)
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
        self._index.clear()
        self._indexed.clear()


def _reopen(url: str, fingerprint: str, compute_key: str) -> ShardedStore:
    return ShardedStore(url, encoder_fingerprint=fingerprint, compute_key=compute_key)
