"""Extraction on a real local Ray cluster into the shared Parquet-shard store.

The cluster is started by the tests (2 CPUs, no dashboard) and shut down after.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from fake_encoder import BatchMeanEncoder, KillOnceEncoder

ray = pytest.importorskip(
    "ray", reason="the Ray tests need the 'ray' extra: pip install 'pytest-metatrace[ray]'"
)
pq = pytest.importorskip("pyarrow.parquet", reason="needs the 'ray' extra (pyarrow)")

from pytest_metatrace.data.demo import demo_dataset  # noqa: E402
from pytest_metatrace.embeddings import Embeddings  # noqa: E402
from pytest_metatrace.embeddings.sharded import ShardedStore  # noqa: E402

TESTS = Path(__file__).parent
# Masked views are not widened to the 14 standard classes: 20 photos x 2 views
# keep the jobs small. 7 does not divide 2: batches straddle images, as in real runs.
VIEWS = ["jpeg75_420", "interp_bicubic"]
BATCH = 7
N_ROWS = 20 * len(VIEWS)


@pytest.fixture(scope="module")
def cluster():
    """A fresh local cluster whose workers can import this directory's helpers."""
    if ray.is_initialized():
        ray.shutdown()
    path = os.pathsep.join([str(TESTS), *sys.path])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        logging_level="WARNING",
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def photos():
    return demo_dataset(per_class=2)


@pytest.fixture(scope="module")
def reference(photos, tmp_path_factory):
    """The in-process path's embeddings of every standard view, and its batches."""
    emb = Embeddings(BatchMeanEncoder(), cache_dir=tmp_path_factory.mktemp("ref"), batch_size=BATCH)
    out = emb.many(photos, "all", VIEWS, masked=True)
    batches = sorted(emb.stats.batches)
    emb.close()
    return out, batches


def _shard_rows(store: ShardedStore) -> list[tuple[str, str]]:
    rows = []
    for name in store.shard_names():
        table = pq.read_table(f"{store.root}/shards/{name}", columns=["view", "image"])
        rows += zip(table.column("view").to_pylist(), table.column("image").to_pylist())
    return rows


@pytest.mark.parametrize("shared", [False, True], ids=["sqlite", "shards"])
def test_ray_embeddings_are_bit_identical_to_in_process(
    cluster, photos, reference, tmp_path, shared
):
    ref, ref_batches = reference
    emb = Embeddings(
        BatchMeanEncoder(),
        cache_dir=tmp_path / "cache",
        batch_size=BATCH,
        store_url=str(tmp_path / "store") if shared else None,
        ray_address="auto",
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = emb.many(photos, "all", VIEWS, masked=True)
    # Ray Data warns about its own deprecated settings when its context is created (in the
    # first of these runs); none of that may reach the user's warnings summary.
    assert [w for w in caught if w.category is DeprecationWarning] == []
    assert sorted(emb.stats.batches) == ref_batches
    assert emb.stats.computed == N_ROWS
    for name, vectors in ref.items():
        np.testing.assert_array_equal(got[name], vectors, err_msg=name)
    # a split reads back exactly its rows, in split order
    idx = emb.split(photos).indices("test")
    assert len(idx) == 10
    test_rows = emb(photos, "test", "jpeg75_420", masked=True)
    np.testing.assert_array_equal(test_rows, ref["jpeg75_420"][idx])
    emb.close()


def test_a_worker_killed_mid_job_is_retried_without_torn_or_duplicate_shards(
    cluster, photos, reference, tmp_path
):
    ref, _ = reference
    marker = tmp_path / "killed"
    emb = Embeddings(
        KillOnceEncoder(str(marker)),
        cache_dir=tmp_path / "cache",
        batch_size=BATCH,
        store_url=str(tmp_path / "store"),
        ray_address="auto",
    )
    got = emb.many(photos, "all", VIEWS, masked=True)
    assert marker.exists(), "the worker was never killed; the test tested nothing"
    assert int(marker.read_text()) != os.getpid()
    for name, vectors in ref.items():
        np.testing.assert_array_equal(got[name], vectors, err_msg=name)
    store = emb.store
    assert isinstance(store, ShardedStore)
    rows = _shard_rows(store)  # every committed shard is whole (it parses)
    assert len(rows) == len(set(rows)) == N_ROWS
    leftovers = [p.name for p in (Path(store.root) / "shards").iterdir() if p.name.startswith(".")]
    assert leftovers == []
    emb.close()


DRIVER = """
import os, sys
from fake_encoder import BatchMeanEncoder
import ray
from pytest_metatrace.data.demo import demo_dataset
from pytest_metatrace.embeddings import Embeddings

address, store, cache = sys.argv[1:]
ray.init(address=address, logging_level="WARNING",
         runtime_env={{"env_vars": {{"PYTHONPATH": os.environ["PYTHONPATH"]}}}})
emb = Embeddings(BatchMeanEncoder(), cache_dir=cache, batch_size={batch},
                 store_url=store, ray_address=address)
emb.many(demo_dataset(per_class=2), "all", {views!r}, masked=True)
print("computed", emb.stats.computed)
"""


@pytest.mark.slow  # two fresh interpreters import torch and ray and join the cluster
def test_two_drivers_write_the_same_store_at_once(cluster, photos, reference, tmp_path):
    ref, _ = reference
    store_url = str(tmp_path / "store")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}
    script = textwrap.dedent(DRIVER.format(batch=BATCH, views=VIEWS))
    procs = [
        subprocess.Popen(  # separate cache dirs: no shared lock, as on two machines
            [sys.executable, "-c", script, cluster, store_url, str(tmp_path / f"cache{i}")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    total = N_ROWS
    computed = [int(out.split("computed")[-1]) for out, _ in outs]
    assert total <= sum(computed) <= 2 * total  # each batch once or, when raced, rewritten
    reader = Embeddings(
        BatchMeanEncoder(), cache_dir=tmp_path / "reader", batch_size=BATCH, store_url=store_url
    )
    rows = _shard_rows(reader.store)
    assert len(rows) == len(set(rows)) == total
    got = reader.many(photos, "all", VIEWS, masked=True)
    assert reader.stats.computed == 0
    for name, vectors in ref.items():
        np.testing.assert_array_equal(got[name], vectors, err_msg=name)
    reader.close()
