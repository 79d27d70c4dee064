"""EXIF normalization: one test per messy case, on files written here with Pillow."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image, TiffImagePlugin

from pytest_metatrace.data.exif import (
    SmartphoneTable,
    format_exposure,
    normalize_make,
    normalize_model,
    read_exif,
)

MAKE, MODEL, SOFTWARE, ORIENTATION, DATETIME = 0x010F, 0x0110, 0x0131, 0x0112, 0x0132
EXPOSURE, FNUMBER, ISO, FOCAL, MAKERNOTE = 0x829A, 0x829D, 0x8827, 0x920A, 0x927C
EXIF_IFD = 0x8769
R = TiffImagePlugin.IFDRational


def write_jpeg(path: Path, base: dict[int, object], sub: dict[int, object] | None = None) -> Path:
    """A small JPEG whose EXIF holds ``base`` (IFD0) and ``sub`` (Exif IFD) tags."""
    exif = Image.Exif()
    for tag, value in base.items():
        exif[tag] = value
    if sub:
        ifd = exif.get_ifd(EXIF_IFD)
        for tag, value in sub.items():
            ifd[tag] = value
    Image.new("RGB", (16, 12), (120, 80, 40)).save(path, exif=exif)
    return path


def test_nul_bytes_and_trailing_spaces_are_stripped(tmp_path):
    path = write_jpeg(
        tmp_path / "a.jpg", {MAKE: "NIKON CORPORATION\x00\x00  ", MODEL: "NIKON D5500   "}
    )
    rec = read_exif(path)
    assert (rec.status, rec.make, rec.model) == ("ok", "Nikon", "Nikon D5500")


def test_make_repeated_inside_model_is_written_once(tmp_path):
    path = write_jpeg(tmp_path / "a.jpg", {MAKE: "Canon", MODEL: "Canon EOS 70D"})
    assert read_exif(path).model == "Canon EOS 70D"
    assert normalize_model("EOS 70D", "Canon", "Canon") == "Canon EOS 70D"


def test_ifd_rationals_become_exact_value_classes(tmp_path):
    sub = {EXPOSURE: R(1, 250), FNUMBER: R(28, 10), ISO: 200, FOCAL: R(50, 1)}
    rec = read_exif(write_jpeg(tmp_path / "a.jpg", {MAKE: "Canon"}, sub))
    assert (rec.exposure, rec.aperture, rec.iso, rec.focal_length) == ("1/250", "2.8", 200, "50 mm")
    assert rec.labels()["iso"] == "200"


def test_rationals_written_as_tuples(tmp_path):
    sub = {EXPOSURE: (10, 2500), FNUMBER: (28, 10), FOCAL: (425, 100), ISO: (400, 0)}
    rec = read_exif(write_jpeg(tmp_path / "a.jpg", {MAKE: "Canon"}, sub))
    assert (rec.exposure, rec.aperture, rec.focal_length, rec.iso) == (
        "1/250",
        "2.8",
        "4.2 mm",
        400,
    )


def test_zero_denominators_are_missing_not_a_crash(tmp_path):
    sub = {EXPOSURE: R(1, 0), FNUMBER: (28, 0), FOCAL: R(50, 0)}
    rec = read_exif(write_jpeg(tmp_path / "a.jpg", {MAKE: "Sony", MODEL: "ILCE-7M3"}, sub))
    assert rec.status == "ok"
    assert (rec.exposure, rec.aperture, rec.focal_length) == (None, None, None)
    assert rec.labels() == {"make": "Sony", "model": "Sony ILCE-7M3", "smartphone": "camera"}


def test_missing_tags_leave_only_present_labels(tmp_path):
    rec = read_exif(write_jpeg(tmp_path / "a.jpg", {MAKE: "Apple"}))
    assert rec.labels() == {"make": "Apple", "smartphone": "smartphone"}
    assert rec.model is None and rec.iso is None


@pytest.mark.parametrize(
    ("raw", "make"),
    [
        ("NIKON CORPORATION", "Nikon"),
        ("NIKON", "Nikon"),
        ("OLYMPUS IMAGING CORP.", "Olympus"),
        ("EASTMAN KODAK COMPANY", "Kodak"),
        ("samsung", "Samsung"),
        ("FUJIFILM", "Fujifilm"),
        ("PENTAX RICOH IMAGING", "Ricoh"),
        ("Acme Cameras Inc.", "Acme Cameras"),
    ],
)
def test_vendor_spellings_are_unified(tmp_path, raw, make):
    assert normalize_make(raw) == make
    assert read_exif(write_jpeg(tmp_path / "a.jpg", {MAKE: raw})).make == make


def test_makernote_garbage_is_ignored(tmp_path):
    sub = {MAKERNOTE: b"\xff\x00\x13garbage\x00\x00" * 20, EXPOSURE: R(1, 60)}
    rec = read_exif(write_jpeg(tmp_path / "a.jpg", {MAKE: "Canon", MODEL: "\x01\x02\xff\xfe"}, sub))
    assert (rec.status, rec.make, rec.exposure) == ("ok", "Canon", "1/60")
    assert rec.model is None  # unprintable text is not a model


def test_editor_software_is_flagged(tmp_path):
    edited = read_exif(
        write_jpeg(tmp_path / "e.jpg", {MAKE: "Canon", SOFTWARE: "Adobe Photoshop 24.1"})
    )
    firmware = read_exif(write_jpeg(tmp_path / "f.jpg", {MAKE: "Canon", SOFTWARE: "Ver.1.00 "}))
    assert (edited.edited, firmware.edited, firmware.software) == (True, False, "Ver.1.00")


def test_orientation_and_datetime(tmp_path):
    base = {MAKE: "Apple", ORIENTATION: 6, DATETIME: "2024:05:01 10:00:00\x00"}
    rec = read_exif(write_jpeg(tmp_path / "a.jpg", base))
    assert (rec.orientation, rec.datetime) == (6, "2024:05:01 10:00:00")


def test_no_exif_and_unreadable_files_are_named(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.jpg")
    truncated = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05\x01\x0f\x00\x02\xff\xff"
    Image.new("RGB", (8, 8)).save(tmp_path / "truncated.jpg", exif=truncated)
    Image.new("RGB", (8, 8)).save(tmp_path / "nottiff.jpg", exif=b"Exif\x00\x00XXgarbage")
    (tmp_path / "notimage.jpg").write_bytes(b"not an image")
    assert read_exif(tmp_path / "plain.jpg").status == "no exif"
    assert read_exif(tmp_path / "truncated.jpg").status == (
        "unreadable exif: Corrupt EXIF data.  Expecting to read 12 bytes but only got 6."
    )
    assert read_exif(tmp_path / "nottiff.jpg").status == (
        "unreadable exif: the EXIF block cannot be parsed"
    )
    broken = read_exif(tmp_path / "notimage.jpg")
    assert broken.status.startswith("unreadable exif: UnidentifiedImageError")
    assert broken.path.endswith("notimage.jpg")


@pytest.mark.parametrize(
    ("make", "model", "phone"),
    [
        ("Apple", "Apple iPhone X", True),
        ("Samsung", "Samsung SM-G991B", True),
        ("Samsung", "Samsung NX300", False),
        ("Sony", "Sony Xperia 1 II", True),
        ("Sony", "Sony ILCE-7M3", False),
        ("Nikon", "Nikon D5500", False),
        ("Acme", "Acme X1", None),
    ],
)
def test_smartphone_table(make, model, phone):
    assert SmartphoneTable().lookup(make, model) is phone


def test_user_smartphone_table_overrides_the_builtin_one(tmp_path):
    csv_path = tmp_path / "phones.csv"
    csv_path.write_text("make,model,smartphone\nAcme,^Acme X,yes\nNIKON CORPORATION,,yes\n")
    table = SmartphoneTable.from_csv(csv_path)
    assert table.lookup("Acme", "Acme X1") is True
    assert table.lookup("Nikon", "Nikon D5500") is True
    bad = tmp_path / "bad.csv"
    bad.write_text("make,model,smartphone\nAcme,,maybe\n")
    with pytest.raises(ValueError, match=r"bad.csv:2: smartphone must be yes or no"):
        SmartphoneTable.from_csv(bad)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.004, "1/250"), (1 / 30, "1/30"), (0.3, "1/3"), (2.0, "2"), (1.3, "1.3")],
)
def test_format_exposure(seconds, text):
    assert format_exposure(seconds) == text


#: Real camera JPEGs from piexif's source distribution (tests/images), with their expected labels.
REAL_FILES = {
    "r_canon.jpg": ("Canon", "Canon PowerShot G1 X Mark II", "1/50", "5.6", 100, "12.5 mm"),
    "r_sony.jpg": ("Sony", "Sony DSC-RX1R", "1/125", "8", 100, "35 mm"),
    "r_pana.jpg": ("Panasonic", "Panasonic DMC-L10", "1/200", "10", 100, "50 mm"),
    "r_olympus.jpg": ("Olympus", "Olympus STYLUS1", "1/25", "2.8", 100, "16.1 mm"),
    "r_ricoh.jpg": ("Ricoh", "Ricoh GR", "1/500", "2.8", 100, "18.3 mm"),
}


def test_real_camera_files():
    """Real EXIF from five cameras, when piexif's test images are available offline."""
    folder = os.environ.get("METATRACE_EXIF_SAMPLES")
    if not folder or not (Path(folder) / "r_canon.jpg").is_file():
        pytest.skip(
            "real camera JPEGs not available: set METATRACE_EXIF_SAMPLES to the tests/images "
            "folder of piexif's source distribution (pip download --no-deps --no-binary :all: "
            "piexif; unzip it)"
        )
    for name, expected in REAL_FILES.items():
        rec = read_exif(Path(folder) / name)
        got = (rec.make, rec.model, rec.exposure, rec.aperture, rec.iso, rec.focal_length)
        assert got == expected, name
        assert rec.smartphone is False
    assert read_exif(Path(folder) / "noexif.jpg").status == "no exif"
    assert read_exif(Path(folder) / "notjpeg.jpg").status.startswith("unreadable exif")
