"""Fault injection on the shared shard store and the Ray backend, each on a constructed fault.

The reliability promise (README, "Reliability") for ``--metatrace-store`` and
``--metatrace-ray``: a damaged shard is named, recomputed and rewritten, with
the numbers of a clean run; a killed writer's leftovers are removed; a store
URL or a Ray address that cannot work is one usage error at start (exit
status 4), never a traceback per test or minutes of waiting; SIGTERM ends a
session in its Ray phase. Each test builds the fault itself, asserts the
message and exit status, and that the good data's numbers do not change.
Every case that could hang runs in a subprocess with a timeout, so that a
regression fails instead of hanging CI.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_encoder import BatchMeanEncoder, FakeEncoder
from image_helpers import synthetic_rgb, write_image
from plugin_helpers import REPO, TINY_CONFTEST, copy_audits, make_tiny_dataset, preimport

pq = pytest.importorskip("pyarrow.parquet", reason="the shard store needs the 'ray' extra")
pytest.importorskip("fsspec", reason="the shard store needs the 'ray' extra")

from pytest_metatrace._backend import (  # noqa: E402
    RayAddressError,
    check_ray_address,
    check_store_url,
    describe_backend,
)
from pytest_metatrace._sqlite import CacheWarning  # noqa: E402
from pytest_metatrace.data import load_dataset  # noqa: E402
from pytest_metatrace.embeddings import Embeddings, View  # noqa: E402
from pytest_metatrace.embeddings.sharded import STALE_TEMP_S, ShardedStore  # noqa: E402

# pytester runs in-process; see plugin_helpers.preimport.
preimport()

TESTS = Path(__file__).parent
VIEWS = ["jpeg75_420", "sharpen2", "interp_bicubic"]
BATCH = 4  # 6 photos x 3 views = 18 rows: shards of 4, 4, 4, 4 and 2 rows
#: Masked views are not widened to the 14 standard classes; half the area leaves every
#: photo distinct (at 0.9 the 8x8 input is all black: every vector the same).
MASK = 0.5
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(REPO), *sys.path])}
#: What a subprocess run of pytest may take at most here, so that a hang fails the test.
GUARD_S = 120


def _folder(root: Path, classes: int = 2, per_class: int = 3) -> Path:
    for c in range(classes):
        for k in range(per_class):
            write_image(root / f"c{c}" / f"{k}.png", synthetic_rgb(8, 6, seed=10 * c + k))
    return root


class ProjectingEncoder(BatchMeanEncoder):
    """BatchMeanEncoder through a fixed random projection: float bytes Snappy cannot compress.

    A real encoder's floats look like these, so bytes flipped inside a shard land in a
    stored vector (the fake encoders' few distinct values compress to almost nothing).
    The batch mean keeps the numbers batch-dependent.
    """

    def embed(self, pixels: Any) -> Any:
        import torch

        projection = np.random.default_rng(0).normal(size=(8 * 8 * 3, 64)).astype(np.float32)
        return super().embed(pixels) @ torch.from_numpy(projection)


def _embeddings(store: Path, cache: Path, encoder: Any = None) -> Embeddings:
    return Embeddings(
        encoder or ProjectingEncoder(),
        cache_dir=cache,
        batch_size=BATCH,
        num_workers=0,
        store_url=str(store),
    )


def _shards(store: Path) -> list[Path]:
    return sorted(p for p in store.glob("*/shards/*.parquet") if not p.name.startswith("."))


# ---------------------------------------------------------------- damaged shards


def _damage(shard: Path, how: str) -> int:
    """Damage ``shard`` in place; return the row index whose bytes were hit (or -1)."""
    data = bytearray(shard.read_bytes())
    if how == "vector bytes":
        # 16 bytes inside one stored vector: Parquet's own framing does not notice.
        blob = pq.read_table(shard).column("vec").to_pylist()[2]
        at = bytes(data).find(blob)
        assert at > 0, "the vector is not stored verbatim; the test damages nothing"
        for i in range(at + 8, at + 24):
            data[i] ^= 0x5A
        row = 2
    elif how == "vector page header":
        # The vector column's first page header: the index (view, image) still reads.
        column = pq.ParquetFile(shard).metadata.row_group(0).column(3)
        at = column.dictionary_page_offset or column.data_page_offset
        data[at : at + 16] = b"\xff" * 16
        row = -1
    else:  # "truncated" (a torn copy): the file cannot even be indexed
        del data[-100:]
        row = -1
    shard.write_bytes(bytes(data))
    return row


@pytest.mark.parametrize("how", ["vector bytes", "vector page header", "truncated"])
def test_damaged_shard_is_named_recomputed_and_rewritten(tmp_path: Path, how: str) -> None:
    ds = load_dataset(str(_folder(tmp_path / "data")), cache_dir=tmp_path / "c0")
    store = tmp_path / "store"
    clean = _embeddings(store, tmp_path / "c1")
    before = clean.many(ds, "all", VIEWS, masked=MASK)
    clean.close()
    shard = _shards(store)[1]
    original = shard.read_bytes()
    rows = pq.read_table(shard).num_rows
    assert rows == BATCH
    row = _damage(shard, how)
    damaged = shard.read_bytes()

    emb = _embeddings(store, tmp_path / "c2")
    with pytest.warns(CacheWarning) as caught:
        after = emb.many(ds, "all", VIEWS, masked=MASK)
    # BatchMeanEncoder's numbers depend on the batch: equal numbers mean the shard's rows
    # were recomputed in the batch they were first computed in.
    for name in VIEWS:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    assert emb.stats.computed == rows  # that shard's rows, nothing else
    (warning,) = [str(w.message) for w in caught]
    assert f"shard {shard} " in warning or f"shard {shard}:" in warning
    (aside,) = shard.parent.glob(f".corrupt-{shard.name}-*")
    assert f"moved aside to {aside}" in warning or f"moved it aside to {aside}" in warning
    assert aside.read_bytes() == damaged  # kept for inspection, never read again
    assert shard.read_bytes() == original  # rewritten: the very same shard
    if how == "vector bytes":
        assert f"row(s) {row} of {rows} failed their checksum" in warning
        assert "recomputing them (the cache holds derived data only)" in warning
    elif how == "vector page header":
        assert "cannot be read (OSError: Couldn't deserialize thrift" in warning
    else:
        assert "cannot be read (ArrowInvalid: Parquet magic bytes not found in footer" in warning
        assert warning.endswith("; its rows are recomputed")

    # The next process finds every row intact: no warning, nothing computed.
    third = _embeddings(store, tmp_path / "c3")
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        again = third.many(ds, "all", VIEWS, masked=MASK)
    assert third.stats.computed == 0
    for name in VIEWS:
        np.testing.assert_array_equal(again[name], before[name], err_msg=name)


def test_shards_written_before_checksums_are_read_with_one_warning(tmp_path: Path) -> None:
    import pyarrow as pa

    store = ShardedStore(str(tmp_path / "s"), encoder_fingerprint="a" * 64, compute_key="cpu")
    view = View("jpeg85_444")
    vecs = np.arange(6, dtype=np.float32).reshape(2, 3)
    old = pa.table(  # the layout before the crc column
        {
            "view": pa.array([view.key] * 2),
            "image": pa.array(["d1", "d2"]),
            "dim": pa.array([3, 3], pa.int32()),
            "vec": pa.array([v.tobytes() for v in vecs], pa.binary()),
        }
    )
    pq.write_table(old, f"{store.root}/shards/{'0' * 32}.parquet")
    with pytest.warns(CacheWarning) as caught:
        got = store.get(view, ["d2", "d1"])
    np.testing.assert_array_equal(got, vecs[::-1])
    (text,) = [str(w.message) for w in caught]
    assert text == (
        f"1 shard(s) in {store.root}/shards carry no row checksums (written by an older "
        "pytest-metatrace): their rows are read unverified; delete those shards to have them "
        "recomputed with checksums"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        store.get(view, ["d1"])  # once per store, not per read
        store.put_many([(view, "d3", vecs[0])])
    assert set(pq.read_table(_shards(tmp_path / "s")[-1]).column_names) >= {"crc"}


# ---------------------------------------------------------------- killed writers' leftovers


def test_leftovers_of_killed_writers_are_removed_once_stale(tmp_path: Path, monkeypatch) -> None:
    url = str(tmp_path / "s")
    store = ShardedStore(url, encoder_fingerprint="a" * 64, compute_key="cpu")
    view = View("jpeg85_444")
    store.put_many([(view, "d1", np.ones(3, dtype=np.float32))])
    shards = Path(store.root) / "shards"
    stale = [shards / ".tmp-k1.parquet-dead", Path(store.root) / "views" / ".tmp-v.json-dead"]
    live = shards / ".tmp-k2.parquet-live"
    for path in [*stale, live]:
        path.write_bytes(b"half a shard")
    old = time.time() - STALE_TEMP_S - 60
    for path in stale:
        os.utime(path, (old, old))
    young = time.time() - STALE_TEMP_S + 60  # a writer at work (or a clock a minute off)
    os.utime(live, (young, young))

    reopened = ShardedStore(url, encoder_fingerprint="a" * 64, compute_key="cpu")
    assert reopened.removed_temporaries == 2
    assert not any(p.exists() for p in stale) and live.read_bytes() == b"half a shard"
    np.testing.assert_array_equal(reopened.get(view, ["d1"]), np.ones((1, 3), dtype=np.float32))
    assert STALE_TEMP_S == 3600.0

    # A writer suspended past the stale age finds its temporary file gone: it writes again.
    real_mv = reopened._fs.mv
    calls: list[str] = []

    def cleaned_meanwhile(src: str, dst: str, **kw: Any) -> None:
        calls.append(src)
        if len(calls) == 1:
            os.remove(src)  # what a cleaner in another process did
        real_mv(src, dst, **kw)

    monkeypatch.setattr(reopened._fs, "mv", cleaned_meanwhile)
    assert reopened.put_many([(view, "d2", np.full(3, 2.0, dtype=np.float32))]) == 1
    monkeypatch.undo()
    assert len(calls) == 2
    np.testing.assert_array_equal(reopened.get(view, ["d2"]), np.full((1, 3), 2.0, np.float32))


# ---------------------------------------------------------------- the plugin, end to end


#: The tiny encoder, widened by a fixed random projection to 64 floats that Snappy cannot
#: compress (as a real encoder's), so that flipped bytes land inside a stored vector.
WIDE_CONFTEST = (
    TINY_CONFTEST
    + """

class WideNet(TinyNet):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("proj", torch.randn(6, 64, generator=g))

    def forward(self, x):
        return super().forward(x) @ self.proj


def make_wide(**options):
    return WideNet().eval(), make_tiny()[1]


def pytest_metatrace_register_encoders(registry):
    registry.register("wide", make_wide, description="tiny, 64 dimensions")
"""
)


@pytest.fixture
def tiny_store_project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(WIDE_CONFTEST)
    make_tiny_dataset(pytester.path / "tinyset")
    copy_audits(pytester.path, ("test_processing_drift.py",))
    return pytester


def _numbers(path: Path) -> list[Any]:
    """Every record's numbers (value, interval, scores), without timings and provenance."""
    doc = json.loads(path.read_text())
    keep = ("audit", "parameter", "metric", "value", "interval", "scores", "score_ids", "details")
    return sorted(
        (json.dumps({k: r.get(k) for k in keep}, sort_keys=True) for r in doc["records"]),
    )


def test_flipped_shard_gives_a_clean_runs_json_numbers(tiny_store_project: pytest.Pytester):
    pytester = tiny_store_project
    store = pytester.path / "store"
    args = (
        "--metatrace-encoder=wide",
        "--metatrace-data=tinyset",
        "--metatrace-workers=0",
        f"--metatrace-store={store}",
        "--metatrace-report=none",
        "-p",
        "no:cacheprovider",
        "audits",
    )
    clean = pytester.runpytest(*args, "--metatrace-json=clean.json")
    clean.assert_outcomes(passed=13)
    header = f"*; device auto; store: {store} (Parquet shards)"
    clean.stdout.fnmatch_lines([f"metatrace: encoders wide; data *tinyset{header}"])
    clean.stdout.fnmatch_lines([f"*embeddings computed 336, reused from cache 0 (store: {store}*"])
    shard = _shards(store)[2]
    rows = pq.read_table(shard).num_rows
    _damage(shard, "vector bytes")

    after = pytester.runpytest(*args, "--metatrace-json=after.json")
    after.assert_outcomes(passed=13)
    out = after.stdout.str()
    assert f"row(s) 2 of {rows} failed their checksum" in out and str(shard) in out
    after.stdout.fnmatch_lines([f"*embeddings computed {rows}, reused from cache {336 - rows} *"])
    assert _numbers(pytester.path / "after.json") == _numbers(pytester.path / "clean.json")
    assert "Traceback" not in out


# ---------------------------------------------------------------- store URLs at start


def _runs_in_a_subprocess(pytester: pytest.Pytester, *args: str) -> tuple[Any, float]:
    """``pytest ARGS`` in a fresh interpreter, bounded by GUARD_S; its result and duration."""
    pytester.makepyfile("def test_nothing():\n    pass\n")
    cmd = (sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args)
    t0 = time.monotonic()
    proc = subprocess.run(
        cmd, cwd=pytester.path, env=ENV, capture_output=True, text=True, timeout=GUARD_S
    )
    return proc, time.monotonic() - t0


@pytest.mark.parametrize("fault", ["unknown protocol", "under a file", "s3 without s3fs"])
def test_store_url_that_cannot_work_is_one_usage_error(pytester: pytest.Pytester, fault: str):
    (pytester.path / "afile").write_text("x")
    url, message = {
        "unknown protocol": (
            "foo://x",
            "unknown protocol foo://; give a folder path or an fsspec URL such as "
            "s3://bucket/prefix, gs://bucket/prefix or file:///shared/folder",
        ),
        "under a file": (
            str(pytester.path / "afile" / "store"),
            f"{pytester.path / 'afile' / 'store'} is under {pytester.path / 'afile'}, which is "
            "a regular file, not a folder; give a folder path for the store",
        ),
        "s3 without s3fs": (
            "s3://bucket/prefix",
            "the s3:// protocol needs the s3fs package: pip install s3fs",
        ),
    }[fault]
    if fault == "s3 without s3fs" and __import__("importlib").util.find_spec("s3fs"):
        pytest.skip("s3fs is installed here")
    pytester.makepyfile("def test_a():\n    pass\n\ndef test_b():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", f"--metatrace-store={url}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert err.count(f"ERROR: --metatrace-store={url}: {message}") == 1, err
    assert "Traceback" not in err + result.stdout.str()
    assert not (pytester.path / "afile").is_dir()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_read_only_empty_store_folder_is_one_usage_error(pytester: pytest.Pytester):
    folder = pytester.path / "ro-store"
    folder.mkdir()
    folder.chmod(0o555)
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:  # root writes anywhere: run without the capability that allows it
        if shutil.which("capsh") is None:
            pytest.skip("root, and no capsh to drop CAP_DAC_OVERRIDE")
        prefix = ("capsh", "--drop=cap_dac_override,cap_dac_read_search", "--", "-c")
    args = (f"--metatrace-store={folder}",)
    try:
        if prefix:
            inner = " ".join([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args])
            pytester.makepyfile("def test_nothing():\n    pass\n")
            t0 = time.monotonic()
            proc = subprocess.run(
                [*prefix, inner],
                cwd=pytester.path,
                env=ENV,
                capture_output=True,
                text=True,
                timeout=GUARD_S,
            )
            elapsed = time.monotonic() - t0
        else:
            proc, elapsed = _runs_in_a_subprocess(pytester, *args)
    finally:
        folder.chmod(0o755)
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stderr[-2000:]
    assert (
        proc.stderr.count(
            f"ERROR: --metatrace-store={folder}: the store folder {folder} cannot be written "
            "(PermissionError: [Errno 13] Permission denied"
        )
        == 1
    ), proc.stderr
    assert "give write access to it, or drop --metatrace-store to use the local cache" in (
        proc.stderr
    )
    assert "Traceback" not in proc.stderr + proc.stdout
    assert list(folder.iterdir()) == []
    assert elapsed < GUARD_S


def test_check_store_url_accepts_a_writable_folder_and_leaves_nothing(tmp_path: Path) -> None:
    check_store_url(str(tmp_path / "new" / "store"))
    assert list((tmp_path / "new" / "store").iterdir()) == []


# ---------------------------------------------------------------- Ray addresses


@pytest.fixture
def silent_port() -> Iterator[str]:
    """A port that accepts connections and never answers (a firewall, a wrong service)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


@pytest.fixture
def http_port() -> Iterator[str]:
    """A port whose server answers, but not as Ray's GCS does."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    stop = threading.Event()

    def serve() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        sock.close()


HINT = (
    "Start one with `ray start --head` (it prints the address to pass), or use "
    "--metatrace-ray=auto for a local cluster; --metatrace-ray-timeout={t} is how many "
    "seconds to wait"
)


def test_ray_address_that_refuses_stops_the_session_at_start(pytester: pytest.Pytester):
    proc, elapsed = _runs_in_a_subprocess(pytester, "--metatrace-ray=127.0.0.1:1")
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stderr[-2000:]
    message = (
        "ERROR: --metatrace-ray=127.0.0.1:1: cannot join a Ray cluster at 127.0.0.1:1: nothing "
        "listens on that port (connection refused). " + HINT.format(t=30)
    )
    assert proc.stderr.count(message) == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert elapsed < 60  # Ray itself waits about 5 minutes per test


def test_ray_address_that_never_answers_stops_within_the_timeout(
    pytester: pytest.Pytester, silent_port: str
):
    proc, elapsed = _runs_in_a_subprocess(
        pytester, f"--metatrace-ray={silent_port}", "--metatrace-ray-timeout=1.5"
    )
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stderr[-2000:]
    assert (
        f"ERROR: --metatrace-ray={silent_port}: cannot join a Ray cluster at {silent_port}: "
        "the port accepts connections but sends nothing within 1.5 s"
    ) in proc.stderr
    assert elapsed < 60


def test_ray_address_of_another_service_is_refused(http_port: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(RayAddressError) as info:
        check_ray_address(http_port, 5)
    assert time.monotonic() - t0 < 5
    assert str(info.value) == (
        f"cannot join a Ray cluster at {http_port}: the port answers, but not with the gRPC "
        "handshake of a Ray head node's GCS port (6379 by default). " + HINT.format(t=5)
    )


@pytest.mark.parametrize("value", ["0", "-3", "nan", "inf"])
def test_ray_timeout_must_be_a_positive_number(pytester: pytest.Pytester, value: str) -> None:
    pytester.makepyfile("def test_a():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", f"--metatrace-ray-timeout={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert (
        f"ERROR: --metatrace-ray-timeout={float(value)}: give a positive number of seconds"
    ) in result.stderr.str()


CONNECT_TWICE = """
import time
from pytest_metatrace.embeddings.extract import ExtractionError
from pytest_metatrace.embeddings.ray_backend import connect
import ray
for attempt in range(2):
    t0 = time.monotonic()
    try:
        connect("127.0.0.1:1", 5)
    except ExtractionError as exc:
        print(f"{time.monotonic() - t0:.1f}", exc)
print("initialized", ray.is_initialized())
"""


def test_connect_fails_fast_once_then_points_to_the_first_error() -> None:
    # A regression here would wait ~5 minutes inside ray.init: a subprocess with a timeout.
    proc = subprocess.run(
        [sys.executable, "-c", CONNECT_TWICE],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=GUARD_S,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, second, done = proc.stdout.strip().splitlines()
    assert float(first.split()[0]) < 5 and float(second.split()[0]) < 1
    assert first.split(" ", 1)[1] == (
        "--metatrace-ray=127.0.0.1:1: cannot join a Ray cluster at 127.0.0.1:1: nothing listens "
        "on that port (connection refused). " + HINT.format(t=5)
    )
    assert second.split(" ", 1)[1] == (
        "--metatrace-ray=127.0.0.1:1: cannot join a Ray cluster at 127.0.0.1:1 (failed earlier "
        "in this session with the message shown first; not retried)"
    )
    assert done == "initialized False"


# ---------------------------------------------------------------- the Ray phase


SLOW_ENCODER = '''
import os, time
from fake_encoder import FakeEncoder


class SlowEncoder(FakeEncoder):
    """Marks that a Ray actor began embedding, then takes its time (a long job)."""

    def __init__(self, marker):
        super().__init__()
        self.marker = marker

    def embed(self, pixels):
        with open(self.marker, "a") as f:
            f.write(f"{os.getpid()}\\n")
        time.sleep(300)
        return super().embed(pixels)
'''

TWO_RAY_TESTS = """
from pathlib import Path
from slow_encoder import SlowEncoder
from pytest_metatrace.data.demo import demo_dataset
from pytest_metatrace.embeddings import Embeddings

HERE = Path(__file__).parent


def _run(tmp_path, name):
    emb = Embeddings(SlowEncoder(str(HERE / f"{name}.embedding")), cache_dir=tmp_path,
                     batch_size=4, ray_address="local")
    emb.many(demo_dataset(per_class=2), "all", ["jpeg75_420"], masked=True)


def test_first(tmp_path):
    _run(tmp_path, "first")


def test_second(tmp_path):
    (HERE / "second.started").write_text("yes")
    _run(tmp_path, "second")
"""


@pytest.mark.slow  # a fresh interpreter imports torch and starts its own Ray cluster
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_in_the_ray_phase_ends_the_session(pytester: pytest.Pytester) -> None:
    pytest.importorskip("ray")
    pytester.makepyfile(slow_encoder=SLOW_ENCODER, test_two=TWO_RAY_TESTS)
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(pytester.path), ENV["PYTHONPATH"]])}
    # Its own session (process group): whatever the run leaves behind can be ended by it.
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_two.py"],
        cwd=pytester.path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        marker = pytester.path / "first.embedding"
        deadline = time.monotonic() + GUARD_S
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert marker.exists(), "the Ray job never started embedding"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == -signal.SIGTERM, out[-3000:]
    assert took < 15
    assert not (pytester.path / "second.started").exists(), out[-3000:]
    # Ray went with it: no process of its local cluster is left in the run's session.
    time.sleep(1)
    left = subprocess.run(
        ["ps", "-o", "pid=,cmd=", "-g", str(proc.pid)], capture_output=True, text=True
    ).stdout.strip()
    if left:
        os.killpg(proc.pid, signal.SIGKILL)
    assert left == ""


# ---------------------------------------------------------------- what travels to Ray


def test_an_encoder_that_cannot_travel_is_named_and_does_not_stop_the_others(
    tmp_path: Path,
) -> None:
    import functools

    from pytest_metatrace.embeddings.extract import ExtractionError
    from pytest_metatrace.embeddings.ray_backend import RayExtractor
    from pytest_metatrace.embeddings.store import EmbeddingStore
    from pytest_metatrace.encoders import create_encoder
    from pytest_metatrace.encoders.registry import EncoderRegistry

    registry = EncoderRegistry(entry_points=False)
    registry.register("good", FakeEncoder)  # importable: travels by reference
    registry.register("good_alias", "good")
    registry.register("lambda_one", lambda **options: None)  # a conftest's lambda
    store = EmbeddingStore(tmp_path, encoder_fingerprint="f" * 64, compute_key="cpu")

    def shipped(spec: str) -> bytes:
        encoder = FakeEncoder()
        encoder.id = spec
        factory = functools.partial(create_encoder, spec, registry=registry)
        ex = RayExtractor(encoder, store, lock_dir=tmp_path, encoder_factory=factory)
        return ex._shippable_encoder()

    import pickle

    for spec in ("good", "good_alias"):
        rebuilt = pickle.loads(shipped(spec))
        assert rebuilt.args == (spec,)
        names = rebuilt.keywords["registry"].names()
        assert "good" in names and "good_alias" in names and "lambda_one" not in names
    with pytest.raises(ExtractionError) as info:
        shipped("lambda_one")
    message = str(info.value)
    assert message.startswith(
        "cannot send encoder lambda_one to Ray workers: the factory registered as 'lambda_one' "
        f"({__name__}.test_an_encoder_that_cannot_travel_is_named_and_does_not_stop_the_others."
        "<locals>.<lambda>) cannot be pickled ("
    )
    assert message.endswith(
        "Ray workers rebuild encoders from their spec - register a function defined at the top "
        "level of an importable module, not a lambda or a closure"
    )
    assert "good" not in message
    store.close()


# ---------------------------------------------------------------- what the run says


def test_header_and_summary_name_the_store_and_ray() -> None:
    import dataclasses

    from pytest_metatrace.settings import Settings

    base = Settings()
    replace = dataclasses.replace
    assert describe_backend(base, "/abs/.metatrace_cache") == "cache: /abs/.metatrace_cache"
    assert describe_backend(base) == "cache: .metatrace_cache"
    shared = replace(base, store="s3://team/emb", ray="10.0.0.5:6379")
    assert describe_backend(shared, "/abs/c") == (
        "store: s3://team/emb (Parquet shards); Ray: 10.0.0.5:6379"
    )
    assert describe_backend(replace(base, ray="auto")) == "cache: .metatrace_cache; Ray: auto"
    from pytest_metatrace import _backend

    _backend.JOINED["auto"] = "10.0.0.9:6379"  # what connect() records once it has joined
    try:
        assert describe_backend(replace(base, ray="auto")) == (
            "cache: .metatrace_cache; Ray: auto (cluster 10.0.0.9:6379)"
        )
    finally:
        del _backend.JOINED["auto"]


def test_header_of_a_ray_run_names_ray(pytester: pytest.Pytester, monkeypatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    pytester.makepyfile("def test_a():\n    pass\n")
    store = pytester.path / "shared"
    result = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "--collect-only",
        "--metatrace-ray=auto",
        f"--metatrace-store={store}",
    )
    assert result.ret == pytest.ExitCode.OK
    header = "metatrace: encoders lite0; data demo; device auto; "
    result.stdout.fnmatch_lines([f"{header}store: {store} (Parquet shards); Ray: auto"])


def test_rays_own_deprecation_warnings_stay_out_of_the_users_summary() -> None:
    ray_data = pytest.importorskip("ray.data")
    from pytest_metatrace.embeddings.ray_backend import quiet_ray_warnings

    with warnings.catch_warnings(record=True) as raw:
        warnings.simplefilter("always")
        ray_data.DataContext()
    ours = [w for w in raw if issubclass(w.category, DeprecationWarning)]
    if not ours:
        pytest.skip("this Ray version warns about nothing on creating its DataContext")
    with warnings.catch_warnings(record=True) as quiet:
        warnings.simplefilter("always")
        with quiet_ray_warnings():
            ray_data.DataContext()
            warnings.warn("the user's own", DeprecationWarning, stacklevel=1)
    assert [str(w.message) for w in quiet] == ["the user's own"]
