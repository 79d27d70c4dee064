"""The embedding store and extraction: keys, resume, no duplicate work, concurrency."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from fake_encoder import FakeEncoder
from PIL import Image

from pytest_metatrace.data import load_dataset
from pytest_metatrace.embeddings import Embeddings, EmbeddingStore, ExtractionError, Extractor, View
from pytest_metatrace.processing import list_processing


def make_folder(root: Path, classes: int = 3, per_class: int = 4, size=(24, 20)) -> Path:
    rng = np.random.default_rng(0)
    for c in range(classes):
        d = root / f"class{c}"
        d.mkdir(parents=True)
        for k in range(per_class):
            arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(arr).save(d / f"img{k}.png")
    return root


@pytest.fixture
def dataset(tmp_path):
    root = make_folder(tmp_path / "data")
    return load_dataset(str(root), cache_dir=tmp_path / "cache")


def test_view_keys_cover_what_changes_pixels():
    assert View("jpeg75_420").key != View("jpeg75_444").key
    assert View("jpeg75_420").key != View("jpeg75_420", mask_ratio=0.9).key
    assert View("jpeg75_420", mask_ratio=0.9).key != View("jpeg75_420", mask_ratio=0.95).key
    # the seed only matters where it changes pixels
    assert View("sharpen2", seed=0).key == View("sharpen2", seed=1).key
    assert View("interp_box", seed=0).key != View("interp_box", seed=1).key
    assert View(None).key != View("jpeg95_444").key
    assert View("jpeg75_420").key == View("jpeg75_420").key  # stable
    assert View("jpeg95_444", mask_ratio=0.9).label == "jpeg95_444+mask0.9"


def test_store_roundtrip_no_duplicates_and_refuses_nan(tmp_path):
    store = EmbeddingStore(tmp_path, encoder_fingerprint="a" * 64, compute_key="cpu-fp32")
    view = View("jpeg85_444")
    vecs = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert store.put_many([(view, "d1", vecs[0]), (view, "d2", vecs[1])]) == 2
    assert store.put_many([(view, "d1", vecs[1] + 100)]) == 0  # first write wins, no duplicate
    assert store.count() == 2
    np.testing.assert_array_equal(store.get(view, ["d2", "d1"]), vecs[::-1])
    assert store.missing(view, ["d1", "d3", "d3", "d4"]) == ["d3", "d4"]
    with pytest.raises(KeyError, match="not in"):
        store.get(view, ["d1", "nope"])
    with pytest.raises(ValueError, match="non-finite"):
        store.put_many([(view, "d5", np.array([np.nan, 1.0], dtype=np.float32))])
    assert store.count() == 2  # the failed batch left nothing behind


def test_warm_run_computes_nothing(dataset, tmp_path):
    views = [View(p) for p in ("jpeg75_420", "sharpen2", "interp_box")]
    enc = FakeEncoder()
    store = EmbeddingStore(tmp_path / "c", encoder_fingerprint=enc.fingerprint, compute_key="cpu")
    ex = Extractor(enc, store, lock_dir=tmp_path / "locks", batch_size=5, num_workers=0)
    first = ex.ensure(dataset, views)
    assert first.computed == len(dataset) * 3
    assert first.images_decoded == len(dataset)  # each photo decoded once for all views
    assert enc.rows == len(dataset) * 3
    cold = {v.label: store.get(v, [it.digest for it in dataset.items]) for v in views}

    enc2 = FakeEncoder()
    store2 = EmbeddingStore(tmp_path / "c", encoder_fingerprint=enc.fingerprint, compute_key="cpu")
    second = Extractor(enc2, store2, lock_dir=tmp_path / "locks", num_workers=0).ensure(
        dataset, views
    )
    assert second.computed == 0 and enc2.calls == 0
    assert second.reused == len(dataset) * 3
    for v in views:
        np.testing.assert_array_equal(
            store2.get(v, [it.digest for it in dataset.items]), cold[v.label]
        )


def test_interrupted_run_resumes_where_it_stopped(dataset, tmp_path):
    views = [View("jpeg75_420"), View("resize_half")]
    total = len(dataset) * 2
    enc = FakeEncoder(fail_after=2)
    store = EmbeddingStore(tmp_path / "c", encoder_fingerprint=enc.fingerprint, compute_key="cpu")
    ex = Extractor(enc, store, lock_dir=tmp_path / "locks", batch_size=4, num_workers=0)
    with pytest.raises(KeyboardInterrupt):
        ex.ensure(dataset, views)
    assert store.count() == 8  # two committed batches of 4 survived

    enc2 = FakeEncoder()
    ex2 = Extractor(enc2, store, lock_dir=tmp_path / "locks", batch_size=4, num_workers=0)
    resumed = ex2.ensure(dataset, views)
    assert resumed.computed == total - 8 and enc2.rows == total - 8
    # identical to an uninterrupted run
    ref_store = EmbeddingStore(tmp_path / "ref", encoder_fingerprint="r" * 64, compute_key="cpu")
    Extractor(FakeEncoder(), ref_store, lock_dir=tmp_path / "l2", num_workers=0).ensure(
        dataset, views
    )
    digests = [it.digest for it in dataset.items]
    for v in views:
        np.testing.assert_array_equal(store.get(v, digests), ref_store.get(v, digests))


def test_worker_processes_give_identical_embeddings(dataset, tmp_path):
    views = [View("interp_lanczos", seed=3), View("jpeg85_420", mask_ratio=0.9)]
    digests = [it.digest for it in dataset.items]
    out = []
    for workers in (0, 2):
        store = EmbeddingStore(
            tmp_path / f"w{workers}", encoder_fingerprint="x" * 64, compute_key="cpu"
        )
        Extractor(FakeEncoder(), store, lock_dir=tmp_path / "l", num_workers=workers).ensure(
            dataset, views
        )
        out.append([store.get(v, digests) for v in views])
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)


def _concurrent_worker(args):
    cache, data_root, fingerprint = args
    ds = load_dataset(data_root, cache_dir=Path(cache))
    store = EmbeddingStore(Path(cache), encoder_fingerprint=fingerprint, compute_key="cpu")
    enc = FakeEncoder(fingerprint)
    stats = Extractor(
        enc, store, lock_dir=Path(cache) / "locks", batch_size=3, num_workers=0
    ).ensure(ds, [View(p) for p in ("jpeg75_420", "jpeg95_444", "sharpen4")])
    return stats.computed, enc.rows


def test_concurrent_processes_never_duplicate_work(tmp_path):
    root = make_folder(tmp_path / "data", classes=2, per_class=5)
    cache = tmp_path / "cache"
    load_dataset(str(root), cache_dir=cache)  # warm the image index once
    ctx = mp.get_context("spawn")
    with ctx.Pool(3) as pool:
        results = pool.map(_concurrent_worker, [(str(cache), str(root), "c" * 64)] * 3)
    computed = sum(r[0] for r in results)
    forwarded = sum(r[1] for r in results)
    assert computed == 10 * 3  # each embedding computed exactly once over all processes
    assert forwarded == 10 * 3
    db = next((cache / "embeddings").glob("*.sqlite"))
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT COUNT(*) FROM emb").fetchone()[0] == 30


def test_changed_file_is_refused_not_cached_under_its_old_digest(dataset, tmp_path):
    item = dataset.items[0]
    Image.new("RGB", (24, 20), (1, 2, 3)).save(item.source.path)
    store = EmbeddingStore(tmp_path / "c", encoder_fingerprint="e" * 64, compute_key="cpu")
    ex = Extractor(FakeEncoder(), store, lock_dir=tmp_path / "locks", num_workers=0)
    with pytest.raises(ExtractionError, match="changed since the dataset was loaded"):
        ex.ensure(dataset, [View("jpeg75_420")])


def test_embeddings_provider_extracts_the_standard_set_together(dataset, tmp_path):
    enc = FakeEncoder()
    emb = Embeddings(enc, cache_dir=tmp_path / "c", seed=0, test_fraction=0.5, num_workers=0)
    x = emb(dataset, "test", "jpeg75_420")
    split = emb.split(dataset)
    assert x.shape == (len(split.test), 3 * 8 * 8)
    # every unmasked processing class was extracted in that one call
    assert emb.stats.computed == len(dataset) * len(list_processing())
    calls = enc.calls
    many = emb.many(dataset, "train", ["sharpen4", "interp_box"])
    assert enc.calls == calls  # nothing new to compute
    assert many["sharpen4"].shape[0] == len(split.train)
    # masked views are separate entries, computed on demand
    masked = emb(dataset, "all", "jpeg95_444", masked=True)
    assert emb.stats.computed == len(dataset) * (len(list_processing()) + 1)
    unmasked = emb(dataset, "all", "jpeg95_444")
    assert not np.array_equal(masked, unmasked)
    labels = emb.labels(dataset, "test")
    assert labels.shape == (len(split.test),)


def _open_and_write(path, worker, barrier, results):
    from pytest_metatrace._sqlite import connect

    barrier.wait()  # everyone opens the brand-new file at the same moment
    try:
        conn = connect(Path(path), "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, w INTEGER);")
        for i in range(20):
            conn.execute("INSERT OR IGNORE INTO t VALUES (?, ?)", (f"k{i}", worker))
        conn.close()
        results.put((worker, "ok"))
    except Exception as exc:
        results.put((worker, repr(exc)))


def test_many_processes_creating_the_same_new_cache_at_once(tmp_path):
    # xdist workers start together and all create images.sqlite: none may fail with
    # "database is locked" (switching to WAL is not covered by SQLite's busy handler)
    ctx = mp.get_context("spawn")
    n = 6
    for attempt in range(2):
        path = tmp_path / f"new{attempt}.sqlite"
        barrier, results = ctx.Barrier(n), ctx.Queue()
        procs = [
            ctx.Process(target=_open_and_write, args=(str(path), w, barrier, results))
            for w in range(n)
        ]
        for proc in procs:
            proc.start()
        outcomes = sorted(results.get(timeout=120) for _ in range(n))
        for proc in procs:
            proc.join(timeout=60)
        assert outcomes == [(w, "ok") for w in range(n)]
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 20
