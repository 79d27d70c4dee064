"""Fault injection on every input surface besides the class folder (issue 17).

The class folder's hostile cases live in ``test_fault_injection.py``; here the
same cases meet the surfaces added since: EXIF folders, pairs folders and
manifests, baselines and their tolerances, the command-line tools, the seed.
Each test builds the fault, asserts the message (and the exit status where
pytest or a command runs) and that the good data's numbers do not change.
Every case ends in a named skip or one clear usage error: never a hang, a raw
traceback or a silently changed number.
"""

from __future__ import annotations

import json
import os
import stat
import struct
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from image_helpers import synthetic_rgb, write_image
from PIL import Image
from plugin_helpers import FAST, TINY_CONFTEST, copy_audits, preimport

from pytest_metatrace._files import TextFileError, read_text_file
from pytest_metatrace.data.dataset import DatasetError

# pytester runs in-process; see plugin_helpers.preimport.
preimport("pytest_metatrace.audits.cross_camera_retrieval.analysis")

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file types")
linux_only = pytest.mark.skipif(sys.platform != "linux", reason="file names as raw bytes")
not_root = pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() == 0, reason="root reads any folder"
)

LEFT_OUT = "cannot read folder: Permission denied; its images are left out"
NOT_UTF8 = "file name is not valid UTF-8; rename it"
LOOP = "symbolic link loop; fix or remove the link"
FIFO = "not a regular file (a FIFO (named pipe)); only regular files are read"


def _bounded(fn: Callable[[], Any], fifo: Path | None = None, seconds: float = 60.0) -> Any:
    """``fn()``, failing (not hanging) when it blocks; a writer on ``fifo`` releases it."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # re-raised in the test's thread
            out["error"] = exc

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        if fifo is not None:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # unblock the reader
        pytest.fail(f"blocked for {seconds:.0f} s")
    if "error" in out:
        raise out["error"]
    return out["value"]


def _deny_listing(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """``folder`` cannot be listed, as after ``chmod 0`` for a user who is not root."""
    real = os.scandir

    def scandir(path: Any = ".") -> Any:
        if os.fspath(path) == str(folder):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)


def _raw_name(folder: Path, name: bytes, data: bytes) -> None:
    with open(os.path.join(os.fsencode(folder), name), "wb") as fh:
        fh.write(data)


# ---------------------------------------------------------------- the guarded text opener


def test_text_opener_names_the_file_the_problem_and_the_fix(tmp_path: Path) -> None:
    latin1 = tmp_path / "m.csv"
    latin1.write_bytes(b"path,label\na.png,caf\xe9\n")
    with pytest.raises(TextFileError) as info:
        read_text_file(latin1, what="manifest")
    assert str(info.value) == (
        f"manifest {latin1} is not UTF-8 text (invalid continuation byte at byte 20); "
        "save it as UTF-8"
    )
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfpath,label\r\na.png,caf\xc3\xa9\r\n")
    assert read_text_file(bom, what="manifest") == "path,label\r\na.png,café\r\n"
    with pytest.raises(TextFileError) as info:
        read_text_file(bom, what="baseline", max_bytes=10)
    assert str(info.value) == (
        f"baseline {bom}: file of 28 bytes is over the 10-byte limit for a baseline"
    )
    with pytest.raises(TextFileError) as info:
        read_text_file(tmp_path / "gone.json", what="baseline")
    assert (
        str(info.value)
        == f"cannot read baseline {tmp_path / 'gone.json'}: No such file or directory"
    )


@posix_only
def test_text_opener_refuses_a_fifo_and_dev_zero_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "m.csv"
    os.mkfifo(fifo)
    with pytest.raises(TextFileError) as info:
        _bounded(lambda: read_text_file(fifo, what="manifest"), fifo)
    assert str(info.value) == f"manifest {fifo}: {FIFO}"
    zero = tmp_path / "b.json"
    zero.symlink_to("/dev/zero")
    with pytest.raises(TextFileError, match=r"not a regular file \(a character device\)"):
        _bounded(lambda: read_text_file(zero, what="baseline"))


@posix_only
def test_manifest_that_is_a_fifo_is_a_dataset_error(tmp_path: Path) -> None:
    from pytest_metatrace.data import load_dataset

    fifo = tmp_path / "m.csv"
    os.mkfifo(fifo)
    with pytest.raises(DatasetError) as info:
        _bounded(lambda: load_dataset(str(fifo), cache_dir=tmp_path / "c"), fifo)
    assert str(info.value) == f"manifest {fifo}: {FIFO}"


# ---------------------------------------------------------------- the guarded walker


@posix_only
def test_walker_skips_and_names_every_hostile_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_metatrace.data.walk import walk_images

    top = tmp_path / "top"
    good = [write_image(top / f"{n}.png", synthetic_rgb(8, 6, seed=i)) for i, n in enumerate("ab")]
    write_image(top / "sub" / "c.png", synthetic_rgb(8, 6, seed=3))
    write_image(top / "locked" / "d.png", synthetic_rgb(8, 6, seed=4))
    os.mkfifo(top / "pipe.jpg")
    (top / "zero.png").symlink_to("/dev/zero")
    (top / "loop.png").symlink_to(top / "loop.png")
    (top / "gone.png").symlink_to(top / "nowhere.png")
    (top / "big.png").write_bytes(b"\0" * 10_001)
    (top / "notes.txt").write_text("x")
    (top / "up").symlink_to(top, target_is_directory=True)  # not followed
    _raw_name(top, b"caf\xe9.png", good[0].read_bytes())
    _deny_listing(monkeypatch, top / "locked")
    walk = walk_images(top, label="k", max_bytes=10_000)
    assert [(f.path, f.resolved) for f in walk.files] == [
        (good[0], str(good[0].resolve())),
        (good[1], str(good[1].resolve())),
        (top / "sub" / "c.png", str((top / "sub" / "c.png").resolve())),
    ]
    assert [(Path(s.path).name, s.reason, s.label) for s in walk.skipped] == [
        ("big.png", "file of 10,001 bytes is over the 10,000-byte limit for an image", "k"),
        ("caf\\xe9.png", NOT_UTF8, "k"),
        ("gone.png", "cannot read file: No such file or directory", "k"),
        ("loop.png", LOOP, "k"),
        ("pipe.jpg", FIFO, "k"),
        ("zero.png", "not a regular file (a character device); only regular files are read", "k"),
        ("locked", LEFT_OUT, "k"),
    ]
    assert dict(walk.ignored) == {".txt": 1} and walk.ignored_examples == ["notes.txt"]


# ---------------------------------------------------------------- EXIF folders

MAKE, MODEL = 0x010F, 0x0110


def _exif_jpeg(path: Path, make: str, model: str, seed: int) -> Path:
    exif = Image.Exif()
    exif[MAKE], exif[MODEL] = make, model
    path.parent.mkdir(parents=True, exist_ok=True)
    synthetic_rgb(16, 12, seed=seed).save(path, exif=exif)
    return path


def _exif_folder(root: Path) -> Path:
    for k, (owner, make, model) in enumerate(
        [("alice", "Apple", "iPhone 12"), ("bob", "Canon", "EOS 70D"), ("carol", "NIKON", "D750")]
    ):
        for j in range(2):
            _exif_jpeg(root / owner / f"{j}.jpg", make, model, seed=10 * k + j)
    return root


def _exif_numbers(ds: Any) -> dict[str, tuple[str, str | None, tuple[tuple[str, str], ...]]]:
    return {it.id: (it.digest, it.group, tuple(sorted(it.meta.items()))) for it in ds.items}


@pytest.fixture
def exif_clean(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    from pytest_metatrace.data.exif_folder import exif_dataset

    root = _exif_folder(tmp_path / "photos")
    return root, _exif_numbers(exif_dataset(root, cache_dir=tmp_path / "c0"))


@posix_only
def test_fifo_in_an_exif_folder_is_skipped_without_blocking(
    tmp_path: Path, exif_clean: tuple[Path, dict[str, Any]]
) -> None:
    from pytest_metatrace.data.exif_folder import exif_dataset

    root, before = exif_clean
    os.mkfifo(root / "bob" / "pipe.jpg")
    ds = _bounded(lambda: exif_dataset(root, cache_dir=tmp_path / "c1"), root / "bob" / "pipe.jpg")
    assert [(s.path, s.reason) for s in ds.skipped] == [(str(root / "bob" / "pipe.jpg"), FIFO)]
    assert _exif_numbers(ds) == before


@pytest.mark.parametrize("how", ["chmod", "simulated"])
def test_unreadable_group_folder_of_an_exif_folder_is_named(
    tmp_path: Path,
    exif_clean: tuple[Path, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    from pytest_metatrace.data.exif_folder import exif_dataset

    root, before = exif_clean
    locked = root / "bob"
    if how == "chmod":
        if sys.platform == "win32" or os.geteuid() == 0:
            pytest.skip("root reads any folder")
        locked.chmod(0)
    else:
        _deny_listing(monkeypatch, locked)
    try:
        ds = exif_dataset(root, cache_dir=tmp_path / "c1")
    finally:
        locked.chmod(stat.S_IRWXU)
    assert [(s.path, s.reason) for s in ds.skipped] == [(str(locked), LEFT_OUT)]
    assert ds.describe()["skipped"] == [{"path": str(locked), "reason": LEFT_OUT, "label": None}]
    assert _exif_numbers(ds) == {k: v for k, v in before.items() if not k.startswith("bob/")}


def _jpeg_bomb(path: Path, side: int = 20000) -> Path:
    """A small JPEG with EXIF whose frame header announces side x side pixels (400 MP)."""
    data = bytearray(_exif_jpeg(path, "Canon", "EOS 70D", seed=5).read_bytes())
    sof = data.index(b"\xff\xc0")  # baseline frame: marker, length, precision, height, width
    data[sof + 5 : sof + 9] = struct.pack(">HH", side, side)
    path.write_bytes(bytes(data))
    return path


def test_decompression_bomb_in_an_exif_folder_is_skipped_and_named(
    tmp_path: Path, exif_clean: tuple[Path, dict[str, Any]]
) -> None:
    from pytest_metatrace.data import exif_folder
    from pytest_metatrace.data.exif import SmartphoneTable

    root, before = exif_clean
    bomb = _jpeg_bomb(root / "carol" / "bomb.jpg")
    with pytest.raises(Image.DecompressionBombError):  # what the EXIF reader met before
        Image.open(bomb)
    ds = exif_folder.exif_dataset(root, cache_dir=tmp_path / "c1")
    assert [(s.path, s.reason) for s in ds.skipped] == [
        (
            str(bomb),
            "20000x20000 is over the 100,000,000-pixel limit "
            "(raise --metatrace-max-pixels to include it)",
        )
    ]
    assert _exif_numbers(ds) == before
    # Under a raised limit, above Pillow's own guard (2 x 89 MP): its EXIF is read.
    record = exif_folder._guarded_exif(bomb, SmartphoneTable(), 500_000_000)
    assert not isinstance(record, str) and (record.status, record.make) == ("ok", "Canon")
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # the guard is restored


@linux_only
def test_exif_photo_whose_name_is_not_utf8_is_skipped_and_named(
    tmp_path: Path, exif_clean: tuple[Path, dict[str, Any]]
) -> None:
    from pytest_metatrace.data.exif_folder import exif_dataset

    root, before = exif_clean
    _raw_name(root / "alice", b"caf\xe9.jpg", (root / "alice" / "0.jpg").read_bytes())
    ds = exif_dataset(root, cache_dir=tmp_path / "c1")
    assert [(s.path, s.reason) for s in ds.skipped] == [(f"{root}/alice/caf\\xe9.jpg", NOT_UTF8)]
    assert _exif_numbers(ds) == before
    json.dumps(ds.describe(), ensure_ascii=False).encode("utf-8")  # storable as shown


# ---------------------------------------------------------------- pairs


def _pair_photo(path: Path, value: int, noise: float, size: int = 48) -> Path:
    rng = np.random.default_rng(value)
    scene = np.full((size, size, 3), value, dtype=np.float64)
    scene[: size // 2, : size // 2, 0] = 255 - value
    img = np.clip(scene + rng.normal(0, noise, scene.shape), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


def _pairs_folder(root: Path, subjects: int = 4) -> Path:
    for s in range(subjects):
        _pair_photo(root / f"s{s}" / "camera.png", 30 + 50 * s, 2.0)
        _pair_photo(root / f"s{s}" / "phone.png", 30 + 50 * s, 30.0)
    return root


def _pairs_numbers(pairs: Any) -> list[tuple[str, str, str]]:
    return [(s, a.digest, b.digest) for s, (a, b) in zip(pairs.subjects, pairs.pairs, strict=True)]


@pytest.fixture
def pairs_clean(tmp_path: Path) -> tuple[Path, list[tuple[str, str, str]]]:
    from pytest_metatrace.data.pairs import load_pairs

    root = _pairs_folder(tmp_path / "pairs")
    return root, _pairs_numbers(load_pairs(str(root), cache_dir=tmp_path / "c0"))


@posix_only
def test_symlink_loop_and_fifo_in_a_pairs_folder_are_named_and_left_out(
    tmp_path: Path, pairs_clean: tuple[Path, list[tuple[str, str, str]]]
) -> None:
    from pytest_metatrace.data.pairs import load_pairs

    root, before = pairs_clean
    (root / "s1" / "phone.png").unlink()
    (root / "s1" / "phone.png").symlink_to(root / "s1" / "phone.png")
    os.mkfifo(root / "s2" / "tablet.jpg")  # never read, so never a camera type
    pairs = _bounded(lambda: load_pairs(str(root), cache_dir=tmp_path / "c1"))
    assert [(s.path, s.reason) for s in pairs.skipped] == [
        (str(root / "s1" / "phone.png"), LOOP),
        (str(root / "s2" / "tablet.jpg"), FIFO),
    ]
    assert [(s.subject, s.reason) for s in pairs.incomplete] == [("s1", "no phone photo")]
    assert _pairs_numbers(pairs) == [row for row in before if row[0] != "s1"]


@linux_only
def test_photo_and_subject_names_that_are_not_utf8_are_named(
    tmp_path: Path, pairs_clean: tuple[Path, list[tuple[str, str, str]]]
) -> None:
    from pytest_metatrace.data.pairs import load_pairs

    root, before = pairs_clean
    photo = (root / "s0" / "phone.png").read_bytes()
    _raw_name(root / "s0", b"caf\xe9.png", photo)
    subject = os.path.join(os.fsencode(root), b"r\xe9gion")
    os.mkdir(subject)
    _raw_name(Path(os.fsdecode(subject)), b"phone.png", photo)
    pairs = load_pairs(str(root), cache_dir=tmp_path / "c1")
    assert [(s.path, s.reason) for s in pairs.skipped] == [
        (f"{root}/r\\xe9gion", "subject folder name is not valid UTF-8; rename it"),
        (f"{root}/s0/caf\\xe9.png", NOT_UTF8),
    ]
    assert _pairs_numbers(pairs) == before
    json.dumps(pairs.describe(), ensure_ascii=False).encode("utf-8")  # storable as shown


@pytest.mark.parametrize("how", ["chmod", "simulated"])
def test_unreadable_subject_folder_is_named_and_left_out(
    tmp_path: Path,
    pairs_clean: tuple[Path, list[tuple[str, str, str]]],
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    from pytest_metatrace.data.pairs import load_pairs

    root, before = pairs_clean
    locked = root / "s2"
    if how == "chmod":
        if sys.platform == "win32" or os.geteuid() == 0:
            pytest.skip("root reads any folder")
        locked.chmod(0)
    else:
        _deny_listing(monkeypatch, locked)
    try:
        pairs = load_pairs(str(root), cache_dir=tmp_path / "c1")
    finally:
        locked.chmod(stat.S_IRWXU)
    assert [(s.path, s.reason) for s in pairs.skipped] == [(str(locked), LEFT_OUT)]
    assert [(s.subject, s.reason) for s in pairs.incomplete] == [
        ("s2", "cannot read folder: Permission denied")
    ]
    assert _pairs_numbers(pairs) == [row for row in before if row[0] != "s2"]


def test_one_stray_camera_type_leaves_only_that_subject_out(
    tmp_path: Path, pairs_clean: tuple[Path, list[tuple[str, str, str]]]
) -> None:
    from pytest_metatrace.data.pairs import load_pairs

    root, before = pairs_clean
    (root / "s3" / "camera.png").rename(root / "s3" / "DSC_0001.png")
    pairs = load_pairs(str(root), cache_dir=tmp_path / "c1")
    assert pairs.cameras == ("camera", "phone")
    assert [(s.subject, s.reason) for s in pairs.incomplete] == [
        (
            "s3",
            "stray camera type 'DSC_0001' (DSC_0001.png); the pairs' types are camera and "
            "phone; no camera photo",
        )
    ]
    assert _pairs_numbers(pairs) == before[:3]
    # Two types as common as each other: no pair of types stands out, as before.
    (root / "s2" / "camera.png").rename(root / "s2" / "DSC_0001.png")
    with pytest.raises(DatasetError) as info:
        load_pairs(str(root), cache_dir=tmp_path / "c1")
    assert str(info.value) == (
        "pairs 'pairs': need exactly two camera types, found 3 (DSC_0001, camera, phone), and "
        "no two are held by more subjects than the others (phone: 4 subject(s), DSC_0001: 2 "
        "subject(s), camera: 2 subject(s)); name the photos by type (phone.jpg, camera.jpg) or "
        "map file names to types with --metatrace-pairs-camera PATTERN=TYPE"
    )


def test_pairs_manifest_with_a_loop_a_nul_byte_and_latin1(tmp_path: Path) -> None:
    from pytest_metatrace.data.pairs import load_pairs

    root = _pairs_folder(tmp_path / "img", subjects=3)
    (root / "loop.png").symlink_to(root / "loop.png")
    rows = ["path,subject,camera"]
    rows += [f"img/s{s}/{c}.png,s{s},{c}" for s in range(3) for c in ("camera", "phone")]
    rows[2] = "img/loop.png,s0,phone"
    rows.append("img/x\0y.png,s2,camera")
    manifest = tmp_path / "pairs.csv"
    manifest.write_text("\n".join(rows) + "\n")
    pairs = load_pairs(str(manifest), cache_dir=tmp_path / "c")
    assert [(s.path, s.reason, s.label) for s in pairs.skipped] == [
        (f"{manifest}:3: 'img/loop.png'", LOOP, "phone"),
        (f"{manifest}:8: 'img/x\\x00y.png'", "path contains a NUL byte", "camera"),
    ]
    assert pairs.subjects == ["s1", "s2"]
    assert [(s.subject, s.reason) for s in pairs.incomplete] == [("s0", "no phone photo")]
    manifest.write_bytes(b"path,subject,camera\nimg/s0/camera.png,caf\xe9,camera\n")
    with pytest.raises(DatasetError) as info:
        load_pairs(str(manifest), cache_dir=tmp_path / "c")
    assert str(info.value) == (
        f"pairs manifest {manifest} is not UTF-8 text (invalid continuation byte at byte 41); "
        "save it as UTF-8"
    )


def test_tiny_pairs_crop_is_refused_with_the_smallest_usable_value(
    tmp_path: Path, pairs_clean: tuple[Path, list[tuple[str, str, str]]]
) -> None:
    from pytest_metatrace.data.pairs import MIN_CROP_SIDE, crop_sides, load_pairs

    root, before = pairs_clean
    _pair_photo(root / "s0" / "phone.png", 30, 30.0, size=40)  # the smallest photo
    with pytest.raises(DatasetError) as info:
        load_pairs(str(root), cache_dir=tmp_path / "c1", crop=1e-6)
    assert str(info.value) == (
        f"--metatrace-pairs-crop=1e-06 keeps 0x0 pixels of the smallest photo "
        f"({root}/s0/phone.png, 40x40); a crop needs at least 16 pixels on each side: use "
        "--metatrace-pairs-crop=0.15 or more (1 turns the crop protocol off)"
    )
    assert crop_sides(40, 40, 0.15) == (MIN_CROP_SIDE, MIN_CROP_SIDE)
    assert min(crop_sides(40, 40, 0.14)) < MIN_CROP_SIDE  # 0.15 is the smallest at 2 digits
    with pytest.raises(DatasetError, match="keeps 14x14 pixels of the smallest photo"):
        load_pairs(str(root), cache_dir=tmp_path / "c1", crop=0.14)
    pairs = load_pairs(str(root), cache_dir=tmp_path / "c1", crop=0.15)
    assert _pairs_numbers(pairs)[1:] == before[1:]
    img, _ = pairs.dataset(0.15).items[1].source.load()
    assert min(img.size) >= MIN_CROP_SIDE


# ---------------------------------------------------------------- baselines and tolerances

IDS = [f"img{i:02d}" for i in range(40)]


def _drift_record(encoder: str, shift: float = 0.0) -> Any:
    from pytest_metatrace.results import Record

    scores = np.linspace(0.1, 0.3, len(IDS)) + shift
    value = float(scores.mean())
    return Record(
        audit="processing_drift",
        metric="mean_cosine_distance",
        value=value,
        encoder=encoder,
        dataset="set",
        parameter="jpeg75_420",
        unit="cosine distance",
        interval={"low": value - 0.01, "high": value + 0.01, "level": 0.95},
        scores=scores.tolist(),
        score_ids=list(IDS),
    )


def _baseline_file(path: Path, edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    from pytest_metatrace.baseline import save_baseline
    from pytest_metatrace.settings import protocol_option_names

    doc = {
        "run": {"options": {name: None for name in protocol_option_names()}},
        "records": [_drift_record("old").to_dict()],
    }
    save_baseline(path, doc)
    if edit is not None:
        data = json.loads(path.read_text())
        edit(data["records"][0])
        path.write_text(json.dumps(data))  # NaN and Infinity as Python's json writes them
    return path


def _set(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(record: dict[str, Any]) -> None:
        target = record
        *parents, last = field.split(".")
        for name in parents:
            target = target[name]
        target[int(last) if isinstance(target, list) else last] = value

    return edit


RECORD_0 = "record 0 (processing_drift/mean_cosine_distance/jpeg75_420; encoder old, dataset set)"


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("value", float("nan"), "its value is nan, not a finite number"),
        ("value", "0.2", 'its value is str "0.2", not a number'),
        ("value", True, "its value is bool true, not a number"),
        ("interval.high", float("inf"), "its interval's high is inf, not a finite number"),
        ("interval", [0.1, 0.2], "its interval is list, not an object with low and high"),
        ("scores.3", float("nan"), "its score 3 (image 'img03') is nan, not a finite number"),
        ("scores.5", None, "its score 5 (image 'img05') is missing (null)"),
        ("scores.0", "x", "its score 0 (image 'img00') is str \"x\", not a number"),
        ("score_ids", IDS[:-1], "it has 40 scores but 39 score_ids"),
    ],
)
def test_baseline_with_unusable_numbers_is_refused_naming_the_record(
    tmp_path: Path, field: str, value: Any, problem: str
) -> None:
    from pytest_metatrace.baseline import BaselineError, load_baseline

    path = _baseline_file(tmp_path / "base.json", _set(field, value))
    with pytest.raises(BaselineError) as info:
        load_baseline(path)
    assert str(info.value) == (
        f"baseline {path}: {RECORD_0}: {problem}; the comparison cannot use it. Re-save the "
        "baseline (`pytest --metatrace-save-baseline=PATH ...`) instead of editing it"
    )


def test_good_baseline_numbers_and_a_null_value_compare_as_before(tmp_path: Path) -> None:
    from pytest_metatrace.baseline import compare_record, load_baseline

    good = load_baseline(_baseline_file(tmp_path / "good.json"))
    # a shift of 0.3 on 40 images: the paired gate interval over (-1, 1) excludes zero
    grown = compare_record(_drift_record("new", shift=0.3), "drift.jpeg75_420", good)
    assert grown is not None and not grown.passed and grown.method == "paired betting"
    assert grown.difference == pytest.approx(0.3, abs=1e-12)
    # A null (not measurable when saved) is "not compared", and says so; it never crashes.
    unmeasured = load_baseline(_baseline_file(tmp_path / "null.json", _set("value", None)))
    out = compare_record(_drift_record("new", shift=0.05), "drift.jpeg75_420", unmeasured)
    assert out is not None and out.method == "not compared" and out.low is None
    assert "change n/a (the baseline holds no value for it (not measurable))" in out.message
    assert out.to_dict()["difference"] is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"baseline": "caf\xe9"}', "is not UTF-8 text (invalid continuation byte at byte 17)"),
        (b"{not json", "is not JSON (Expecting property name enclosed in double quotes"),
        (b"[" * 100_000 + b"]" * 100_000, "is not JSON (nested too deeply)"),
    ],
)
def test_baseline_that_is_not_utf8_or_not_json_is_a_usage_error(
    pytester: pytest.Pytester, content: bytes, message: str
) -> None:
    (pytester.path / "base.json").write_bytes(content)
    pytester.makepyfile("def test_a():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--metatrace-baseline=base.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert f"ERROR: --metatrace-baseline: baseline {pytester.path / 'base.json'} {message}" in err
    assert "save one with `pytest --metatrace-save-baseline=PATH ...`" in err
    assert "INTERNALERROR" not in err + result.stdout.str() and "Traceback" not in err


def test_nan_baseline_is_a_usage_error_at_start(pytester: pytest.Pytester) -> None:
    path = _baseline_file(pytester.path / "base.json", _set("value", float("nan")))
    pytester.makepyfile("def test_a():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", f"--metatrace-baseline={path}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert err.count(f"{RECORD_0}: its value is nan, not a finite number") == 1, err


@pytest.mark.parametrize("tolerance", ["nan", "inf", "probe.*=nan", "drift.*=-inf", "1e999"])
def test_non_finite_tolerance_is_refused_like_a_threshold(tolerance: str) -> None:
    from pytest_metatrace.baseline import BaselineError, parse_tolerances

    with pytest.raises(BaselineError) as info:
        parse_tolerances(["0.01", tolerance])
    assert str(info.value) == (
        f"--metatrace-baseline-tolerance {tolerance!r}: an infinite or NaN tolerance can never "
        "fail, so it switches the comparison off; use a finite non-negative number in the "
        "record's unit (0.02, 2%), e.g. probe.*=0.02"
    )
    assert parse_tolerances(["0.01", "probe.*=2%"]) == [("*", 0.01), ("probe.*", 0.02)]


def test_nan_tolerance_is_a_usage_error_at_start(pytester: pytest.Pytester) -> None:
    path = _baseline_file(pytester.path / "base.json")
    pytester.makepyfile("def test_a():\n    pass\n")
    result = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        f"--metatrace-baseline={path}",
        "--metatrace-baseline-tolerance=probe.*=nan",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "'probe.*=nan': an infinite or NaN tolerance can never fail" in result.stderr.str()


def test_saving_a_baseline_onto_a_folder_says_so_and_leaves_nothing(tmp_path: Path) -> None:
    from pytest_metatrace.baseline import save_baseline

    folder = tmp_path / "base"
    folder.mkdir()
    with pytest.raises(IsADirectoryError) as info:
        save_baseline(folder, {"records": []})
    assert info.value.strerror == f"it is a folder; give a file path, e.g. {folder}/baseline.json"
    assert list(tmp_path.iterdir()) == [folder] and list(folder.iterdir()) == []


# ---------------------------------------------------------------- command-line tools


def _refuse_temp_files_in(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """``folder`` is read-only (root writes anywhere, so the refusal is simulated)."""
    import tempfile

    real = tempfile.mkstemp

    def mkstemp(*args: Any, dir: Any = None, **kw: Any) -> Any:
        if dir is not None and Path(dir) == folder:
            raise PermissionError(13, "Permission denied", str(dir))
        return real(*args, dir=dir, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def _cli(main: Callable[[list[str]], int], argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def test_report_cli_on_bad_input_or_output_prints_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_metatrace.report.__main__ import main

    good = tmp_path / "results.json"
    good.write_text(json.dumps({"records": []}))
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes(b'{"records": [], "note": "caf\xe9"}')
    (tmp_path / "afile").write_text("x")
    readonly = tmp_path / "ro"
    readonly.mkdir()
    _refuse_temp_files_in(monkeypatch, readonly)
    cases = [
        (
            [str(latin1), "-o", str(tmp_path / "a.html")],
            2,
            f"error: results file {latin1} is not UTF-8 text (invalid continuation byte at byte "
            "28); pass the file written by `pytest --metatrace-json=PATH`",
        ),
        (
            [str(good), "-o", str(tmp_path / "afile" / "r.html")],
            1,
            f"error: cannot write the report {tmp_path}/afile/r.html: {tmp_path}/afile is a "
            "file, not a folder; choose another path with -o",
        ),
        (
            [str(good), "-o", str(readonly / "r.html")],
            1,
            f"error: cannot write the report {readonly}/r.html: Permission denied; choose "
            "another path with -o",
        ),
    ]
    for argv, status, line in cases:
        assert _cli(main, argv) == status, argv
        captured = capsys.readouterr()
        assert captured.err == line + "\n" and captured.out == ""
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [
        "afile",
        "latin1.json",
        "results.json",
    ]  # no report, no temporary file
    assert _cli(main, [str(good), "-o", str(tmp_path / "ok.html")]) == 0
    assert (tmp_path / "ok.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_copy_audits_into_a_read_only_folder_or_under_a_file_prints_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_metatrace.__main__ import main

    (tmp_path / "afile").write_text("x")
    readonly = tmp_path / "ro"
    readonly.mkdir()
    _refuse_temp_files_in(monkeypatch, readonly)
    cases = [
        (
            tmp_path / "afile" / "audits",
            f"error: cannot write the audits to {tmp_path}/afile/audits: {tmp_path}/afile is a "
            "file, not a folder; give a folder you can write to",
        ),
        (
            readonly,
            f"error: cannot write the audits to {readonly}: Permission denied; give a folder "
            "you can write to",
        ),
    ]
    for target, line in cases:
        assert _cli(main, ["copy-audits", str(target)]) == 1
        captured = capsys.readouterr()
        assert captured.err == line + "\n" and captured.out == ""
    assert list(readonly.iterdir()) == []
    assert _cli(main, ["copy-audits", str(tmp_path / "mine")]) == 0
    assert (tmp_path / "mine" / "test_processing_drift.py").is_file()


# ---------------------------------------------------------------- seeds


@pytest.mark.parametrize("seed", ["-1", "4294967296"])
def test_seed_out_of_range_is_a_usage_error_at_start(pytester: pytest.Pytester, seed: str) -> None:
    pytester.makepyfile("def test_a():\n    pass\ndef test_b():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", f"--metatrace-seed={seed}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert (
        err.count(
            f"--metatrace-seed = {seed!r}: must be an integer from 0 to 4294967295 (2**32 - 1)"
        )
        == 1
    ), err
    assert "Traceback" not in err


def test_largest_seed_is_accepted(pytester: pytest.Pytester) -> None:
    from pytest_metatrace.options import seed as _seed

    assert _seed("4294967295") == 2**32 - 1 and _seed("0") == 0
    pytester.makepyfile("def test_a():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--metatrace-seed=4294967295")
    result.assert_outcomes(passed=1)


# ---------------------------------------------------------------- end to end: pairs


def test_tiny_pairs_crop_fails_the_retrieval_audit_with_the_fix(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(TINY_CONFTEST)
    _pairs_folder(pytester.path / "mypairs")
    copy_audits(pytester.path, ("test_cross_camera_retrieval.py",))
    result = pytester.runpytest(
        *FAST, "--metatrace-pairs=mypairs", "--metatrace-pairs-crop=1e-6", "audits"
    )
    result.assert_outcomes(errors=2)
    out = result.stdout.str().split("short test summary info")[0]
    message = (
        "cannot load the paired photos of --metatrace-pairs: --metatrace-pairs-crop=1e-06 "
        "keeps 0x0 pixels of the smallest photo ("
    )
    assert out.count(message) == 1, out  # in full once; then one line (issue 17, item 6)
    assert (
        out.count(
            "cannot load the paired photos of --metatrace-pairs (the same error as in "
            "audits/test_cross_camera_retrieval.py::test_cross_camera_retrieval[tiny-whole], shown "
            "there in full)"
        )
        == 1
    )
    assert "use --metatrace-pairs-crop=0.098 or more (1 turns the crop protocol off)" in out
    assert "ZeroDivisionError" not in out and "Traceback" not in out


def test_a_job_summary_that_is_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    from pytest_metatrace.report.markdown import write_summaries

    fifo = tmp_path / "step_summary"
    os.mkfifo(fifo)
    record = {"audit": "mine", "metric": "m", "value": 0.5, "encoder": "e", "dataset": "d"}
    out = _bounded(
        lambda: write_summaries(
            None, [record], report_path=None, json_path=None, cwd=tmp_path, step_summary=str(fifo)
        ),
        seconds=20,
    )
    assert out.step_summary is None
    assert out.errors == [
        f"could not append the Markdown summary to $GITHUB_STEP_SUMMARY ({fifo}): not a "
        "regular file (a pipe, device or socket); GitHub's job summary is a regular file"
    ]
