"""Tests of datasets: image folders, CSV manifests, the demo set, the image index and splits."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from image_helpers import encode, synthetic_rgb, write_image
from PIL import Image

import pytest_metatrace
from pytest_metatrace.data import (
    Dataset,
    DatasetError,
    DatasetRegistry,
    FileSource,
    ImageItem,
    dataset_id,
    load_dataset,
)
from pytest_metatrace.data import index as index_module
from pytest_metatrace.data.demo import DEMO_PHOTOS, DemoCrop, demo_dataset
from pytest_metatrace.data.index import ImageIndex, sha256_file
from pytest_metatrace.data.loading import load_rgb

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = Path(pytest_metatrace.__file__).resolve().parents[1]
DAY_NS = 86_400 * 10**9


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _png(path: Path, seed: int, size: tuple[int, int] = (8, 6)) -> Path:
    return write_image(path, synthetic_rgb(*size, seed=seed))


def _age(root: Path, ns: int = DAY_NS) -> None:
    """Set every file's modification time ``ns`` into the past."""
    old = time.time_ns() - ns
    for p in root.rglob("*"):
        if p.is_file():
            os.utime(p, ns=(old, old))


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths decoded by dataset checks, in call order."""
    calls: list[str] = []

    def counting(source: Any, **kw: Any) -> Any:
        calls.append(str(source))
        return load_rgb(source, **kw)

    # FileSource.load looks the name up in the dataset module at call time.
    monkeypatch.setattr("pytest_metatrace.data.dataset.load_rgb", counting)
    return calls


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths hashed by the image index, in call order."""
    calls: list[str] = []

    def counting(path: Path, chunk: int = 1 << 20) -> str:
        calls.append(str(path))
        return sha256_file(path, chunk)

    monkeypatch.setattr(index_module, "sha256_file", counting)
    return calls


# --------------------------------------------------------------------------- image folders
@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    _png(root / "cat" / "a.png", 1)
    _png(root / "cat" / "B.PNG", 2)  # extensions are case-insensitive
    _png(root / "cat" / "sub" / "deeper" / "c.png", 3)  # nested folders are found
    write_image(root / "dog" / "x.jpg", synthetic_rgb(8, 6, seed=4), quality=90)
    _png(root / "dog" / "y.png", 5)
    # ignored: hidden files and folders, non-image files, files outside class folders
    _png(root / "cat" / ".hidden.png", 6)
    _png(root / "cat" / ".thumbs" / "t.png", 7)
    _png(root / ".git" / "z.png", 8)
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "dog" / "Thumbs.db").write_bytes(b"\0" * 10)
    _png(root / "stray.png", 9)
    return root


def test_folder_classes_are_sub_folders(folder: Path, cache: Path) -> None:
    ds = load_dataset(str(folder), cache_dir=cache)
    assert [it.id for it in ds.items] == [
        "cat/B.PNG",
        "cat/a.png",
        "cat/sub/deeper/c.png",
        "dog/x.jpg",
        "dog/y.png",
    ]
    assert [it.label for it in ds.items] == ["cat"] * 3 + ["dog"] * 2
    assert ds.classes == ["cat", "dog"]
    assert ds.label_indices().tolist() == [0, 0, 0, 1, 1]
    for it in ds.items:
        path = folder / it.id
        assert it.digest == _sha(path)
        assert it.source == FileSource(str(path.resolve()))
        assert it.group is None
        assert it.meta == {}
    assert (ds.id, ds.kind, ds.root) == ("photos", "folder", str(folder.resolve()))
    assert ds.skipped == []
    assert ds.group_column is None
    # notes.txt and Thumbs.db are not images: counted, and the count reaches the report
    assert ds.ignored_files == 2
    assert ds.describe()["ignored_files"] == 2


def test_folder_without_class_folders_is_refused(tmp_path: Path, cache: Path) -> None:
    _png(tmp_path / "flat" / "a.png", 1)
    _png(tmp_path / "flat" / ".hidden" / "b.png", 2)
    with pytest.raises(DatasetError, match=r"has no class sub-folders; lay it out as .*/<class>/"):
        load_dataset(str(tmp_path / "flat"), cache_dir=cache)


def test_broken_files_are_skipped_and_named_conversions_counted(
    tmp_path: Path, cache: Path
) -> None:
    root = tmp_path / "mixed"
    _png(root / "a" / "ok.png", 1)
    cmyk = Image.fromarray(np.full((6, 8, 4), 40, dtype=np.uint8), mode="CMYK")
    write_image(root / "a" / "cmyk1.jpg", cmyk)
    write_image(root / "b" / "cmyk2.jpg", cmyk.rotate(90, expand=True))
    write_image(root / "b" / "grey.png", Image.new("L", (5, 5), 9))
    exif = Image.Exif()
    exif[0x0112] = 6
    write_image(root / "b" / "rotated.jpg", synthetic_rgb(8, 6), exif=exif)
    good_png = encode(synthetic_rgb(40, 30), "PNG")
    (root / "a" / "truncated.png").write_bytes(good_png[: len(good_png) // 2])
    (root / "b" / "noise.jpg").write_bytes(bytes(range(256)) * 4)
    (root / "b" / "empty.png").write_bytes(b"")

    ds = load_dataset(str(root), cache_dir=cache)
    assert [it.id for it in ds.items] == [
        "a/cmyk1.jpg",
        "a/ok.png",
        "b/cmyk2.jpg",
        "b/grey.png",
        "b/rotated.jpg",
    ]
    skipped = {Path(s.path).name: s.reason for s in ds.skipped}
    assert set(skipped) == {"truncated.png", "noise.jpg", "empty.png"}
    assert skipped["truncated.png"].startswith("truncated or corrupt image data")
    assert skipped["noise.jpg"] == "not an image Pillow can identify"
    assert skipped["empty.png"] == "empty file (0 bytes)"
    assert ds.conversions == Counter({"cmyk->rgb": 2, "l->rgb": 1, "exif-orientation applied": 1})
    described = ds.describe()
    assert described["n_images"] == 5
    assert {Path(s["path"]).name for s in described["skipped"]} == set(skipped)
    assert described["conversions"] == dict(sorted(ds.conversions.items()))


def test_max_pixels_is_passed_to_the_check(tmp_path: Path, cache: Path) -> None:
    root = tmp_path / "sizes"
    _png(root / "a" / "small.png", 1, size=(10, 10))
    _png(root / "a" / "big.png", 2, size=(20, 10))
    ds = load_dataset(str(root), cache_dir=cache, max_pixels=150)
    assert [it.id for it in ds.items] == ["a/small.png"]
    assert [Path(s.path).name for s in ds.skipped] == ["big.png"]
    assert "over the 150-pixel limit" in ds.skipped[0].reason
    # A larger limit is a different check: the big image is decoded and kept.
    assert len(load_dataset(str(root), cache_dir=cache, max_pixels=200)) == 2


# --------------------------------------------------------------------------- the image index
def test_second_load_decodes_nothing(
    folder: Path, cache: Path, decodes: list[str], hashes: list[str]
) -> None:
    _age(folder)
    first = load_dataset(str(folder), cache_dir=cache)
    assert len(decodes) == 5
    assert len(hashes) == 5
    decodes.clear()
    hashes.clear()
    second = load_dataset(str(folder), cache_dir=cache)
    assert decodes == []
    assert hashes == []  # digests of unchanged, settled files are remembered too
    assert second.items == first.items
    assert second.fingerprint == first.fingerprint


def test_unusable_images_are_remembered_too(
    tmp_path: Path, cache: Path, decodes: list[str]
) -> None:
    root = tmp_path / "d"
    _png(root / "a" / "ok.png", 1)
    (root / "a" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n junk")
    first = load_dataset(str(root), cache_dir=cache)
    assert len(decodes) == 2
    second = load_dataset(str(root), cache_dir=cache)
    assert len(decodes) == 2
    assert second.skipped == first.skipped
    assert len(second.skipped) == 1


def test_identical_files_are_decoded_once(tmp_path: Path, cache: Path, decodes: list[str]) -> None:
    root = tmp_path / "dups"
    data = encode(synthetic_rgb(8, 8), "PNG")
    for name in ("a/1.png", "a/2.png", "b/3.png"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    ds = load_dataset(str(root), cache_dir=cache)
    assert len(decodes) == 1
    assert len(ds) == 3
    assert len({it.digest for it in ds.items}) == 1


def test_modified_file_is_re_digested(
    tmp_path: Path, cache: Path, decodes: list[str], hashes: list[str]
) -> None:
    root = tmp_path / "m"
    for i, name in enumerate(("a/1.bmp", "a/2.bmp", "b/3.bmp")):
        write_image(root / name, synthetic_rgb(8, 8, seed=i))
    _age(root)
    before = load_dataset(str(root), cache_dir=cache)
    decodes.clear()
    hashes.clear()
    target = root / "a" / "2.bmp"
    size = target.stat().st_size
    write_image(target, synthetic_rgb(8, 8, seed=99))  # same size (BMP), new pixels
    assert target.stat().st_size == size
    after = load_dataset(str(root), cache_dir=cache)
    assert hashes == [str(target.resolve())]
    assert decodes == [str(target.resolve())]
    new = {it.id: it.digest for it in after.items}
    old = {it.id: it.digest for it in before.items}
    assert new["a/2.bmp"] == _sha(target) != old["a/2.bmp"]
    assert {k: v for k, v in new.items() if k != "a/2.bmp"} == {
        k: v for k, v in old.items() if k != "a/2.bmp"
    }
    assert after.fingerprint != before.fingerprint


def test_same_size_edit_within_one_timestamp_tick_is_seen(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On file systems with coarse timestamps two edits can share (size, mtime):
    # a freshly written file must not be trusted by (size, mtime) alone.
    path = tmp_path / "x.bmp"
    write_image(path, synthetic_rgb(8, 8, seed=1))
    stamp = path.stat().st_mtime_ns

    class Clock:  # the index reads the clock one millisecond after the write
        @staticmethod
        def time_ns() -> int:
            return stamp + 1_000_000

    monkeypatch.setattr(index_module, "time", Clock)
    index = ImageIndex(cache)
    try:
        assert index.file_digest(path) == _sha(path)
        write_image(path, synthetic_rgb(8, 8, seed=2))
        os.utime(path, ns=(stamp, stamp))  # the same tick as the first write
        assert index.file_digest(path) == _sha(path)
    finally:
        index.close()


def test_progress_reports_only_new_checks(folder: Path, cache: Path) -> None:
    events: list[tuple[str, Any]] = []

    class Progress:
        def start(self, what: str, total: int) -> None:
            events.append(("start", (what, total)))

        def advance(self, n: int) -> None:
            events.append(("advance", n))

        def finish(self) -> None:
            events.append(("finish", None))

    load_dataset(str(folder), cache_dir=cache, progress=Progress())
    assert events[0] == ("start", ("checking 5 new images", 5))
    assert events[1:] == [("advance", 1)] * 5 + [("finish", None)]
    events.clear()
    load_dataset(str(folder), cache_dir=cache, progress=Progress())
    assert events == []


# --------------------------------------------------------------------------- CSV manifests
@pytest.fixture
def manifest_dir(tmp_path: Path) -> Path:
    root = tmp_path / "shots"
    for i in range(6):
        _png(root / "img" / f"{i}.png", i)
    _png(tmp_path / "elsewhere" / "abs.png", 42)
    return root


def _write_manifest(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_text(text, encoding=encoding)
    return path


def test_manifest_paths_groups_and_metadata(
    manifest_dir: Path, tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    absolute = (tmp_path / "elsewhere" / "abs.png").resolve()
    manifest = _write_manifest(
        manifest_dir / "photos.csv",
        "path, label ,group,make,iso\n"
        "img/0.png,street,alice,Canon,100\n"
        " img/1.png ,street,bob,Nikon,200\n"
        f"{absolute},park,,Canon,\n",
        encoding="utf-8-sig",  # a BOM, as spreadsheet programs write
    )
    monkeypatch.chdir(tmp_path)  # relative paths are relative to the manifest, not the cwd
    ds = load_dataset(str(manifest), cache_dir=cache)
    assert (ds.id, ds.kind) == ("photos", "csv")
    assert ds.metadata_columns == ["make", "iso"]
    assert ds.group_column == "group"
    by_id = {it.id: it for it in ds.items}
    assert set(by_id) == {"img/0.png", "img/1.png", str(absolute)}
    assert by_id["img/0.png"].label == "street"
    assert by_id["img/0.png"].group == "alice"
    assert by_id["img/0.png"].meta == {"make": "Canon", "iso": "100"}
    assert by_id["img/1.png"].group == "bob"
    assert by_id[str(absolute)].group is None  # an empty cell is no group
    assert by_id[str(absolute)].meta == {"make": "Canon", "iso": ""}
    assert by_id[str(absolute)].digest == _sha(absolute)
    assert by_id["img/1.png"].source == FileSource(str((manifest_dir / "img/1.png").resolve()))


def test_manifest_listing_missing_files_skips_them(manifest_dir: Path, cache: Path) -> None:
    manifest = _write_manifest(manifest_dir / "m.csv", "path,label\nimg/0.png,a\nimg/nope.png,a\n")
    ds = load_dataset(str(manifest), cache_dir=cache)
    assert [it.id for it in ds.items] == ["img/0.png"]
    assert len(ds.skipped) == 1
    assert ds.skipped[0].path.endswith("nope.png")
    assert ds.skipped[0].reason.startswith("cannot read file: No such file")


@pytest.mark.parametrize(
    ("header", "missing"),
    [("file,class", "['path', 'label']"), ("path,class", "['label']"), ("label", "['path']")],
)
def test_manifest_missing_columns_are_named(
    manifest_dir: Path, cache: Path, header: str, missing: str
) -> None:
    manifest = _write_manifest(manifest_dir / "m.csv", f"{header}\nimg/0.png,a\n")
    expected = rf"lacks column\(s\) {re.escape(missing)}.*path,label\[,group"
    with pytest.raises(DatasetError, match=expected):
        load_dataset(str(manifest), cache_dir=cache)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("img/0.png,a\nimg/1.png,\n", r"m\.csv:3: empty path or label"),
        ("img/0.png,a\n\n,b\n", r"m\.csv:4: empty path or label"),  # blank lines count
        ("img/0.png,a\nimg/1.png,b\nimg/0.png,c\n", r"m\.csv:4: path 'img/0.png' .* line 2"),
        ("img/0.png,a\n./img/0.png,c\n", r"m\.csv:3: path './img/0.png' already listed on line 2"),
        ("img/0.png,a\nimg/1.png,b,extra\n", r"m\.csv:3: more values than the 2 header columns"),
        ("", r"m\.csv lists no images"),
    ],
)
def test_manifest_row_errors_name_the_line(
    manifest_dir: Path, cache: Path, body: str, message: str
) -> None:
    manifest = _write_manifest(manifest_dir / "m.csv", "path,label\n" + body)
    with pytest.raises(DatasetError, match=message):
        load_dataset(str(manifest), cache_dir=cache)


def test_manifest_that_is_not_utf8_is_refused(manifest_dir: Path, cache: Path) -> None:
    manifest = manifest_dir / "m.csv"
    manifest.write_bytes(b"path,label\nimg/0.png,caf\xe9\n")
    with pytest.raises(DatasetError, match=r"is not UTF-8 text.*save it as UTF-8"):
        load_dataset(str(manifest), cache_dir=cache)


def test_fingerprint_follows_manifest_labels_and_image_bytes(
    manifest_dir: Path, cache: Path
) -> None:
    manifest = manifest_dir / "m.csv"
    _write_manifest(manifest, "path,label\nimg/0.png,a\nimg/1.png,b\n")
    base = load_dataset(str(manifest), cache_dir=cache).fingerprint
    assert load_dataset(str(manifest), cache_dir=cache).fingerprint == base
    _write_manifest(manifest, "path,label\nimg/0.png,a\nimg/1.png,c\n")
    relabelled = load_dataset(str(manifest), cache_dir=cache).fingerprint
    _write_manifest(manifest, "path,label\nimg/0.png,a\nimg/1.png,b\n")
    _png(manifest_dir / "img" / "1.png", 77)
    new_pixels = load_dataset(str(manifest), cache_dir=cache).fingerprint
    assert len({base, relabelled, new_pixels}) == 3


# --------------------------------------------------------------------------- load_dataset
def test_unknown_spec_suggests_a_name(tmp_path: Path, cache: Path) -> None:
    registry = DatasetRegistry()
    registry.register("street_photos", lambda **kw: Dataset("s", "s", "x", []))
    with pytest.raises(DatasetError, match=r"'dmeo' is neither .*did you mean 'demo'\?"):
        load_dataset("dmeo", cache_dir=cache, registry=registry)
    with pytest.raises(DatasetError, match=r"did you mean 'street_photos'\?.*registered: demo"):
        load_dataset("street_photo", cache_dir=cache, registry=registry)


def test_file_that_is_not_a_manifest_is_refused(tmp_path: Path, cache: Path) -> None:
    path = _png(tmp_path / "one.png", 1)
    with pytest.raises(DatasetError, match=r"is a file but not a \.csv manifest"):
        load_dataset(str(path), cache_dir=cache)


def test_registered_factories(cache: Path) -> None:
    registry = DatasetRegistry()
    made = Dataset("mine", "my set", "custom", [])
    seen: list[dict[str, Any]] = []

    def factory(**context: Any) -> Dataset:
        seen.append(context)
        return made

    registry.register("mine", factory, description="custom")

    def bad(**context: Any) -> Any:
        return "not a dataset"

    registry.register("bad", bad)
    assert registry.names() == ["bad", "mine"]
    ds = load_dataset("mine", cache_dir=cache, registry=registry, context={"seed": 3})
    assert ds is made
    assert seen == [{"seed": 3}]
    with pytest.raises(DatasetError, match="factory 'bad' returned str, not a Dataset"):
        load_dataset("bad", cache_dir=cache, registry=registry)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("demo", "demo"), ("/data/shots/photos.csv", "photos"), ("data/folder/", "folder")],
)
def test_dataset_id(spec: str, expected: str) -> None:
    assert dataset_id(spec) == expected


# --------------------------------------------------------------------------- splits
def _items(
    per_class: dict[str, int], group: Callable[[str, int], str | None] = lambda c, i: None
) -> list[ImageItem]:
    return [
        ImageItem(
            f"{label}/{i:03d}",
            label,
            hashlib.sha256(f"{label}{i}".encode()).hexdigest(),
            FileSource(f"/nowhere/{label}/{i}.png"),
            group(label, i),
        )
        for label, n in per_class.items()
        for i in range(n)
    ]


def _ds(items: list[ImageItem]) -> Dataset:
    return Dataset("t", "t", "test", items)


def _check_partition(ds: Dataset, split: Any) -> None:
    train, test = split.train, split.test
    assert train.dtype == test.dtype == np.int64
    assert np.array_equal(train, np.sort(train))
    assert np.array_equal(test, np.sort(test))
    assert not set(train) & set(test)
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(len(ds)))
    assert np.array_equal(split.indices("all"), np.arange(len(ds)))


@pytest.mark.parametrize(("fraction", "per_class_test"), [(0.5, 4), (0.25, 2)])
def test_split_is_stratified(fraction: float, per_class_test: int) -> None:
    ds = _ds(_items({"a": 8, "b": 8, "c": 8}))
    split = ds.split(seed=0, test_fraction=fraction)
    _check_partition(ds, split)
    labels = ds.labels
    assert Counter(labels[split.test]) == dict.fromkeys("abc", per_class_test)
    assert Counter(labels[split.train]) == dict.fromkeys("abc", 8 - per_class_test)
    assert not split.group_disjoint
    assert [it.id for it in ds.subset(split, "test")] == [ds.items[i].id for i in split.test]


def test_split_is_seeded_and_independent_of_item_order() -> None:
    items = _items({"a": 10, "b": 10, "c": 10})
    shuffled = [items[i] for i in np.random.default_rng(1).permutation(len(items))]
    one, two = _ds(items), _ds(shuffled)
    for seed in (0, 1, 2):
        assert np.array_equal(one.split(seed=seed).test, two.split(seed=seed).test)
    tests = {tuple(one.split(seed=seed).test) for seed in range(5)}
    assert len(tests) == 5


def test_split_is_cached_per_seed_and_fraction() -> None:
    ds = _ds(_items({"a": 6, "b": 6}))
    assert ds.split(seed=4) is ds.split(seed=4)
    assert ds.split(seed=4) is not ds.split(seed=4, test_fraction=1 / 3)
    # the cached split is shared by every audit: nobody may change it in place
    with pytest.raises(ValueError, match="read-only"):
        ds.split(seed=4).train[0] = 99


def test_split_with_groups_is_group_disjoint() -> None:
    # 6 photographers, each with 2 images of each of 3 classes.
    ds = _ds(_items({"a": 12, "b": 12, "c": 12}, group=lambda c, i: f"g{i % 6}"))
    for seed in range(3):
        split = ds.split(seed=seed)
        _check_partition(ds, split)
        assert split.group_disjoint
        groups = np.array([it.group for it in ds.items])
        assert not set(groups[split.train]) & set(groups[split.test])
        assert set(ds.labels[split.train]) == set(ds.labels[split.test]) == {"a", "b", "c"}
    assert ds.describe(ds.split(seed=0))["split"]["group_disjoint"] is True


def test_items_without_a_group_are_their_own_group() -> None:
    ds = _ds(_items({"a": 8, "b": 8}, group=lambda c, i: "solo" if i < 2 else None))
    split = ds.split(seed=0)
    _check_partition(ds, split)
    solo = [i for i, it in enumerate(ds.items) if it.group == "solo"]
    assert set(solo) <= set(split.train) or set(solo) <= set(split.test)


def test_group_split_leaving_a_class_on_one_side_is_refused() -> None:
    # Every image of class "c" was taken by one photographer.
    ds = _ds(_items({"a": 8, "b": 8, "c": 4}, group=lambda c, i: "solo" if c == "c" else f"g{i}"))
    with pytest.raises(DatasetError, match=r"classes \['c'\] end up on one side"):
        ds.split(seed=0)


def test_class_with_one_image_is_refused() -> None:
    ds = _ds(_items({"a": 5, "lonely": 1, "b": 5}))
    with pytest.raises(DatasetError, match=r"classes \['lonely'\] have fewer than 2 images"):
        ds.split()


def test_split_errors() -> None:
    with pytest.raises(DatasetError, match="has no usable images"):
        _ds([]).split()
    with pytest.raises(DatasetError, match=r"cannot split 6 images over 3 classes"):
        _ds(_items({"a": 2, "b": 2, "c": 2})).split(test_fraction=0.2)
    with pytest.raises(ValueError, match="unknown split 'val'"):
        _ds(_items({"a": 2, "b": 2})).split().indices("val")
    items = _items({"a": 2})
    with pytest.raises(DatasetError, match=r"item id 'a/000' appears more than once"):
        _ds([*items, items[0]])


def test_fingerprint_covers_every_field_but_not_order() -> None:
    items = _items({"a": 3, "b": 3})
    base = _ds(items).fingerprint
    assert _ds(list(reversed(items))).fingerprint == base
    it = items[0]
    variants = [
        ImageItem(it.id, "b", it.digest, it.source),
        ImageItem(it.id, it.label, "0" * 64, it.source),
        ImageItem(it.id, it.label, it.digest, it.source, group="g"),
        ImageItem(it.id, it.label, it.digest, it.source, meta={"make": "Canon"}),
        ImageItem("a/zzz", it.label, it.digest, it.source),
    ]
    prints = {_ds([v, *items[1:]]).fingerprint for v in variants}
    assert len(prints) == len(variants)
    assert base not in prints


# --------------------------------------------------------------------------- the demo set
@pytest.fixture(scope="module")
def demo() -> Dataset:
    return demo_dataset()


def test_demo_has_ten_classes_of_thirty(demo: Dataset) -> None:
    assert demo.classes == sorted(p.label for p in DEMO_PHOTOS)
    assert len(demo.classes) == 10
    assert Counter(it.label for it in demo.items) == dict.fromkeys(demo.classes, 30)
    assert [it.id for it in demo.items if it.label == "cat"] == [f"cat/{k:03d}" for k in range(30)]
    assert len({it.digest for it in demo.items}) == 300
    assert (demo.id, demo.kind, demo.skipped) == ("demo", "demo", [])


def test_demo_credits_every_photo(demo: Dataset) -> None:
    assert len(demo.credits) == 10
    assert demo.credits == [p.credit for p in DEMO_PHOTOS]
    for credit in demo.credits:
        assert credit.title
        assert credit.author
        assert credit.license
    described = demo.describe()["credits"]
    assert [c["author"] for c in described] == [c.author for c in demo.credits]


def test_demo_crops_are_rgb_with_shorter_side_256(demo: Dataset) -> None:
    mirrored = 0
    for it in demo.items:
        img, info = it.source.load()
        assert img.mode == "RGB"
        assert min(img.size) == 256
        assert 3 / 4 - 0.01 <= img.width / img.height <= 4 / 3 + 0.01
        assert info.size == img.size
        assert isinstance(it.source, DemoCrop)
        mirrored += it.source.mirror
    assert 90 <= mirrored <= 210


def test_demo_conversions_come_from_the_source_photos(demo: Dataset) -> None:
    from pytest_metatrace.data.demo import _package_data_dir

    expected: Counter[str] = Counter()
    for photo in DEMO_PHOTOS:
        with Image.open(_package_data_dir(photo.package) / photo.filename) as img:
            if img.mode != "RGB":
                expected[f"{img.mode.lower()}->rgb"] += 30
    assert demo.conversions == expected


def test_demo_digest_is_keyed_by_pillow_version(monkeypatch: pytest.MonkeyPatch) -> None:
    import PIL

    before = [it.digest for it in demo_dataset(per_class=2).items]
    monkeypatch.setattr(PIL, "__version__", "0.0.0-other-resampler")
    after = [it.digest for it in demo_dataset(per_class=2).items]
    assert len(set(before)) == len(before)
    assert not set(before) & set(after)  # another Pillow may resample differently


def test_demo_digests_and_pixels_are_deterministic(demo: Dataset) -> None:
    again = demo_dataset(per_class=3)
    first = {it.id: it.digest for it in demo.items}
    for it in again.items:
        assert it.digest == first[it.id]
        a, _ = it.source.load()
        b, _ = it.source.load()
        assert a.tobytes() == b.tobytes()
    # different crops of one photo differ in pixels, not just in name
    cat = [it for it in again.items if it.label == "cat"]
    assert cat[0].source.load()[0].tobytes() != cat[1].source.load()[0].tobytes()


_DEMO_SUBPROCESS = """
from pytest_metatrace.data.demo import demo_dataset
for it in demo_dataset(per_class=2).items:
    print(it.id, it.digest)
"""


def test_demo_digests_are_identical_in_another_process(demo: Dataset) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(TESTS_DIR)])
    env["PYTHONHASHSEED"] = "99"
    proc = subprocess.run(
        [sys.executable, "-c", _DEMO_SUBPROCESS],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    lines = proc.stdout.split()
    theirs = dict(zip(lines[::2], lines[1::2], strict=True))
    ours = {it.id: it.digest for it in demo.items}
    assert len(theirs) == 20
    assert all(ours[k] == v for k, v in theirs.items())


def test_load_dataset_demo(demo: Dataset, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_metatrace.data import demo as demo_module

    monkeypatch.setattr(demo_module, "demo_dataset", lambda: demo)  # skip a second build
    assert load_dataset("demo", cache_dir=cache) is demo
    assert not cache.exists()  # the demo needs no index
