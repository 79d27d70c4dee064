"""The shared Parquet-shard store: atomic shards, resume, split reads, checksums, the interface."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pyarrow", reason="the shard store needs the 'ray' extra (pyarrow, fsspec)")

import pyarrow.parquet as pq

from pytest_metatrace._sqlite import CacheWarning
from pytest_metatrace.embeddings import EmbeddingStore, Store, View, open_store
from pytest_metatrace.embeddings.sharded import ShardedStore

V1, V2 = View("jpeg85_444"), View("sharpen2")


def make(tmp_path, url=None) -> Store:
    return open_store(url, tmp_path / "cache", encoder_fingerprint="a" * 64, compute_key="cpu-fp32")


def test_both_stores_satisfy_the_interface(tmp_path):
    sqlite = make(tmp_path)
    shards = make(tmp_path, str(tmp_path / "shared"))
    assert isinstance(sqlite, EmbeddingStore) and isinstance(sqlite, Store)
    assert isinstance(shards, ShardedStore) and isinstance(shards, Store)
    sqlite.close()


@pytest.mark.parametrize("kind", ["sqlite", "shards"])
def test_roundtrip_split_reads_and_resume(tmp_path, kind):
    store = make(tmp_path, None if kind == "sqlite" else str(tmp_path / "shared"))
    vecs = np.arange(1200 * 3, dtype=np.float32).reshape(1200, 3)
    digests = [f"d{i:04d}" for i in range(1200)]
    rows = [(V1, d, v) for d, v in zip(digests, vecs)] + [(V2, "d0000", vecs[5])]
    assert store.put_many(rows[:700]) == 700
    assert store.put_many(rows[700:]) == 501
    assert store.put_many(rows[700:]) == 0  # finished batch: skipped, nothing duplicated
    assert store.count() == 1201
    # more rows than SQLite's parameter limit, out of order, with a repeat
    order = [1199, 3, 640, 3, *range(100, 1100)]
    np.testing.assert_array_equal(store.get(V1, [digests[i] for i in order]), vecs[order])
    np.testing.assert_array_equal(store.get(V2, ["d0000"]), vecs[5:6])
    assert store.missing(V2, ["d0000", "d0001", "d0001"]) == ["d0001"]
    with pytest.raises(KeyError, match="extract them first"):
        store.get(V2, ["d0001"])
    with pytest.raises(ValueError, match="non-finite"):
        store.put_many([(V2, "d9", np.array([np.inf], dtype=np.float32))])
    store.close()


def test_a_writer_killed_before_the_rename_leaves_no_shard(tmp_path, monkeypatch):
    url = str(tmp_path / "shared")
    store = make(tmp_path, url)
    row = [(V1, "d1", np.ones(4, dtype=np.float32))]

    def killed(src, dst):
        raise KeyboardInterrupt("killed between write and rename")

    monkeypatch.setattr(store._fs, "mv", killed)
    with pytest.raises(KeyboardInterrupt):
        store.put_many(row)
    monkeypatch.undo()
    other = make(tmp_path, url)  # another process sees no shard, only an ignored temp file
    assert other.shard_names() == []
    assert other.missing(V1, ["d1"]) == ["d1"]
    assert other.put_many(row) == 1  # the retry commits it
    np.testing.assert_array_equal(store.get(V1, ["d1"]), np.ones((1, 4), dtype=np.float32))


def test_an_unreadable_shard_is_moved_aside_named_and_its_rows_missing(tmp_path):
    store = make(tmp_path, str(tmp_path / "shared"))
    store.put_many([(V1, "d1", np.ones(4, dtype=np.float32))])
    (name,) = store.shard_names()
    shards = (tmp_path / "shared").joinpath(store.root.rsplit("/", 1)[-1], "shards")
    (shards / name).write_bytes(b"PAR1 torn")
    other = make(tmp_path, str(tmp_path / "shared"))
    with pytest.warns(CacheWarning, match=r"cannot be read \(ArrowInvalid: ") as caught:
        assert other.missing(V1, ["d1"]) == ["d1"]  # computed again by the next extraction
    (aside,) = shards.glob(f".corrupt-{name}-*")
    assert str(caught[0].message).startswith(
        f"shard {shards / name} of the shared store cannot be read (ArrowInvalid: Parquet magic "
        "bytes not found in footer."
    )
    assert str(caught[0].message).endswith(f"moved it aside to {aside}; its rows are recomputed")
    assert aside.read_bytes() == b"PAR1 torn" and other.shard_names() == []
    assert other.put_many([(V1, "d1", np.ones(4, dtype=np.float32))]) == 1
    np.testing.assert_array_equal(other.get(V1, ["d1"]), np.ones((1, 4), dtype=np.float32))


def test_every_row_carries_its_checksum(tmp_path):
    from pytest_metatrace.embeddings.store import row_checksum

    store = make(tmp_path, str(tmp_path / "shared"))
    vecs = np.arange(8, dtype=np.float32).reshape(2, 4)
    store.put_many([(V1, "d1", vecs[0]), (V2, "d2", vecs[1])])
    (name,) = store.shard_names()
    table = pq.read_table(f"{store.root}/shards/{name}").to_pydict()
    assert table["crc"] == [
        row_checksum(V1.key, "d1", 4, vecs[0].tobytes()),
        row_checksum(V2.key, "d2", 4, vecs[1].tobytes()),
    ]
