"""What an embedding store must offer, and how a ``--metatrace-store`` URL opens one.

Two stores satisfy :class:`Store`: the local SQLite file
(:class:`~pytest_metatrace.embeddings.store.EmbeddingStore`, the default) and
the shared Parquet-shard store
(:class:`~pytest_metatrace.embeddings.sharded.ShardedStore`) for many writers on
many machines. Both are keyed the same way (encoder fingerprint, device type,
precision; view key; image digest), so they hold the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pytest_metatrace._backend import StoreURLError, check_store_url, describe_backend

if TYPE_CHECKING:
    import numpy as np

    from pytest_metatrace.embeddings.store import View

__all__ = [
    "Store",
    "StoreURLError",
    "check_store_url",
    "describe_backend",
    "missing_digests",
    "open_store",
]


@runtime_checkable
class Store(Protocol):
    """Embeddings of one encoder on one device type and precision."""

    @property
    def path(self) -> PurePath:
        """Where the store lives (its stem names the extraction lock)."""
        ...

    @property
    def read_only(self) -> bool:
        """True when nothing can be written (a read-only cache folder used as it is)."""
        ...

    def register_view(self, view: View) -> None:
        """Record what a view key means (for people inspecting the cache)."""
        ...

    def present(self, view: View) -> set[str]:
        """Digests of images whose embedding under ``view`` is stored."""
        ...

    def missing(self, view: View, digests: Iterable[str]) -> list[str]:
        """Digests (deduplicated, in first-seen order) with no stored embedding under ``view``."""
        ...

    def put_many(self, rows: Sequence[tuple[View, str, np.ndarray]]) -> int:
        """Store ``(view, digest, vector)`` rows atomically; return how many were new."""
        ...

    def get(self, view: View, digests: Sequence[str]) -> np.ndarray:
        """Stacked float32 embeddings of ``digests`` under ``view``; reads only those rows."""
        ...

    def count(self) -> int:
        """Number of stored embeddings."""
        ...

    def close(self) -> None:
        """Release whatever the store holds open."""
        ...


def missing_digests(have: set[str], digests: Iterable[str]) -> list[str]:
    """``digests`` not in ``have``, deduplicated, in first-seen order (both stores' ``missing``)."""
    out: list[str] = []
    seen: set[str] = set()
    for d in digests:
        if d not in have and d not in seen:
            seen.add(d)
            out.append(d)
    return out


def open_store(
    url: str | None,
    cache_dir: Path,
    *,
    encoder_fingerprint: str,
    compute_key: str,
    encoder_info: dict[str, Any] | None = None,
) -> Store:
    """The SQLite store under ``cache_dir`` when ``url`` is None, else a sharded store at ``url``.

    ``url`` is a local directory or any fsspec URL (``s3://bucket/prefix``,
    ``gs://...``, a mounted network file system); the sharded store needs the
    ``ray`` extra's pyarrow and fsspec. :func:`check_store_url` says beforehand
    whether ``url`` can work (the plugin calls it at start).
    """
    if url is None:
        from pytest_metatrace.embeddings.store import EmbeddingStore

        return EmbeddingStore(
            cache_dir,
            encoder_fingerprint=encoder_fingerprint,
            compute_key=compute_key,
            encoder_info=encoder_info,
        )
    from pytest_metatrace.embeddings.sharded import ShardedStore

    return ShardedStore(
        url,
        encoder_fingerprint=encoder_fingerprint,
        compute_key=compute_key,
        encoder_info=encoder_info,
    )
