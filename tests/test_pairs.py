"""Tests of the paired-photo layer: City100, folders, manifests, Hugging Face rows, crops."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pytest_metatrace.data.dataset import DatasetError
from pytest_metatrace.data.pairs import (
    CropSource,
    MemorySource,
    camera_type_of,
    load_pairs,
    parse_camera_mapping,
)
from pytest_metatrace.data.pairs_hf import is_phone_model, pairs_from_hf


def _photo(path: Path, value: int, size: tuple[int, int] = (40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((size[1], size[0], 3), value, dtype=np.uint8)
    arr[: size[1] // 2, : size[0] // 2, 0] = 255 - value  # not uniform: crops differ
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "pairs"
    for k, subject in enumerate(["bridge", "cat", "door", "elm"]):
        _photo(root / subject / "camera.jpg", 10 + 40 * k)
        _photo(root / subject / "phone.png", 20 + 40 * k)
    (root / "door" / "phone.png").unlink()  # missing side
    _photo(root / "elm" / "phone.jpg", 7)  # two phone photos: ambiguous
    _photo(root / "fig" / "camera.jpg", 200)
    (root / "fig" / "phone.jpg").write_bytes(b"not an image")  # unusable side
    (root / "bridge" / "notes.txt").write_text("ignored")
    return root


def test_folder_pairs_are_aligned_and_incomplete_subjects_left_out(folder, tmp_path):
    pairs = load_pairs(str(folder), cache_dir=tmp_path / "cache")
    assert pairs.cameras == ("camera", "phone")
    assert pairs.subjects == ["bridge", "cat"]
    assert {s.subject: s.reason for s in pairs.incomplete} == {
        "door": "no phone photo",
        "elm": "2 phone photos",
        "fig": "phone photo unusable",
    }
    assert [s.path for s in pairs.skipped] == [str(folder / "fig" / "phone.jpg")]
    for subject, (cam, phone) in zip(pairs.subjects, pairs.pairs, strict=True):
        assert cam.source.describe().endswith(f"{subject}/camera.jpg")
        assert phone.source.describe().endswith(f"{subject}/phone.png")
    ds = pairs.dataset()
    a, b = pairs.sides(ds)
    assert [ds.items[i].id for i in a] == ["bridge/camera", "cat/camera"]
    assert [ds.items[i].id for i in b] == ["bridge/phone", "cat/phone"]
    assert [ds.items[i].meta["subject"] for i in b] == pairs.subjects
    assert ds.items[int(a[1])].group == "cat" and ds.items[int(a[1])].label == "camera"


def test_camera_mapping_names_types_from_file_names(tmp_path):
    root = tmp_path / "p"
    for subject in ("a", "b"):
        _photo(root / subject / "IMG_0001.jpg", 50)
        _photo(root / subject / "DSC_0001.jpg", 90)
    mapping = parse_camera_mapping(["img_*=smartphone", "dsc_*=dslr"])
    pairs = load_pairs(str(root), cache_dir=tmp_path / "c", mapping=mapping)
    assert pairs.cameras == ("dslr", "smartphone")
    assert camera_type_of("IMG_9.JPG", mapping) == "smartphone"
    assert camera_type_of("other.jpg", mapping) == "other"
    with pytest.raises(DatasetError, match="PATTERN=TYPE"):
        parse_camera_mapping(["iphone"])


def test_more_than_two_camera_types_is_an_error_with_the_fix(tmp_path):
    root = tmp_path / "p"
    for subject, names in (("a", ("x.jpg", "y.jpg")), ("b", ("x.jpg", "z.jpg"))):
        for n in names:
            _photo(root / subject / n, 60)
    with pytest.raises(DatasetError, match=r"exactly two camera types.*--metatrace-pairs-camera"):
        load_pairs(str(root), cache_dir=tmp_path / "c")


def test_manifest_pairs(tmp_path):
    for k, s in enumerate(("s1", "s2", "s3")):
        _photo(tmp_path / "img" / f"{s}_p.jpg", 30 * k)
        _photo(tmp_path / "img" / f"{s}_c.jpg", 30 * k + 9)
    rows = ["path,subject,camera"]
    rows += [f"img/{s}_p.jpg,{s},phone" for s in ("s1", "s2", "s3")]
    rows += [f"img/{s}_c.jpg,{s},camera" for s in ("s2", "s1")]  # s3 has no camera photo
    manifest = tmp_path / "pairs.csv"
    manifest.write_text("\n".join(rows) + "\n")
    pairs = load_pairs(str(manifest), cache_dir=tmp_path / "c")
    assert pairs.id == "pairs" and pairs.subjects == ["s1", "s2"]
    assert [s.reason for s in pairs.incomplete] == ["no camera photo"]
    assert pairs.pairs[1][0].source.describe().endswith("s2_c.jpg")
    bad = tmp_path / "bad.csv"
    bad.write_text("path,camera\na.jpg,phone\n")
    with pytest.raises(DatasetError, match=r"lacks column\(s\) \['subject'\]"):
        load_pairs(str(bad), cache_dir=tmp_path / "c")


def test_too_few_subjects_and_unknown_spec(tmp_path):
    root = tmp_path / "p"
    _photo(root / "only" / "a.jpg", 1)
    _photo(root / "only" / "b.jpg", 2)
    with pytest.raises(DatasetError, match="1 complete subject"):
        load_pairs(str(root), cache_dir=tmp_path / "c")
    with pytest.raises(DatasetError, match="city100"):
        load_pairs("cty100", cache_dir=tmp_path / "c")


def test_city100_pairs_load_with_both_sides(tmp_path):
    pairs = load_pairs("city100", cache_dir=tmp_path / "c")
    assert pairs.cameras == ("camera", "smartphone")
    assert len(pairs) == 100 and pairs.subjects[0] == "001" and not pairs.incomplete
    cam, phone = pairs.pairs[6]
    assert cam.source.describe().endswith("nikon_d5500/007.jpg")
    assert phone.source.describe().endswith("iphone_x/007.jpg")
    assert pairs.credits[0].license == "MIT"


def test_crop_view_keeps_the_centre_under_its_own_digest(folder, tmp_path):
    pairs = load_pairs(str(folder), cache_dir=tmp_path / "cache")
    whole, crop = pairs.dataset(), pairs.dataset(0.25)
    assert crop.id == "pairs-pairs-crop0.25" and whole.id == "pairs-pairs"
    assert {it.digest for it in whole.items}.isdisjoint(it.digest for it in crop.items)
    item = crop.items[0]
    assert isinstance(item.source, CropSource)
    img, _ = item.source.load()
    assert img.size == (20, 14)  # margins round half up: 10 of 40, 8 of 30 on each side
    full, _ = whole.items[0].source.load()
    assert np.array_equal(np.asarray(img), np.asarray(full)[8:22, 10:30])
    assert pairs.dataset(0.25).items[0].digest == item.digest  # stable
    with pytest.raises(DatasetError, match="crop area"):
        pairs.dataset(0.0)


def _png(value: int) -> Image.Image:
    return Image.fromarray(np.full((12, 16, 3), value, dtype=np.uint8))


def test_hugging_face_rows_map_models_to_phone_or_not():
    datasets = pytest.importorskip("datasets")
    rows = {
        "subject_idx": [0, 0, 1, 1, 2],
        "model": ["iPhone 12", "Canon EOS R5", "SM-G991B", "NIKON D750", "Pixel 7"],
        "image": [_png(v) for v in (10, 20, 30, 40, 50)],
    }
    ds = datasets.Dataset.from_dict(
        rows,
        features=datasets.Features(
            {
                "subject_idx": datasets.Value("int64"),
                "model": datasets.Value("string"),
                "image": datasets.Image(),
            }
        ),
    )
    pairs = pairs_from_hf(ds, id="PairCams")
    assert pairs.cameras == ("camera", "smartphone")
    assert pairs.subjects == ["0", "1"]
    assert [s.subject for s in pairs.incomplete] == ["2"]
    assert pairs.incomplete[0].reason == "no camera photo"
    cam0, phone0 = pairs.pairs[0]
    img, _ = phone0.source.load()
    assert np.asarray(img)[0, 0, 0] == 10
    assert np.asarray(cam0.source.load()[0])[0, 0, 0] == 20
    assert isinstance(cam0.source, MemorySource) and "Canon EOS R5" in cam0.source.describe()
    with pytest.raises(DatasetError, match="lacks field"):
        pairs_from_hf(ds.remove_columns("model"), id="x")


def test_phone_model_table_and_override():
    assert is_phone_model("Apple iPhone X") == "smartphone"
    assert is_phone_model("Canon EOS 5D Mark IV") == "camera"
    assert is_phone_model("Canon EOS 5D", [("canon*", "smartphone")]) == "smartphone"


def test_memory_source_rejects_garbage():
    from pytest_metatrace.data.loading import UnusableImage

    buf = io.BytesIO()
    _png(3).save(buf, format="PNG")
    assert MemorySource(buf.getvalue(), "ok").load()[0].size == (16, 12)
    with pytest.raises(UnusableImage):
        MemorySource(b"nope", "bad").load()


def test_hf_spec_without_the_datasets_cache_says_how_to_get_it(tmp_path, monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(DatasetError, match="cannot load Hugging Face dataset 'CTU-OU/PairCams'"):
        load_pairs("hf:CTU-OU/PairCams", cache_dir=tmp_path / "c")
