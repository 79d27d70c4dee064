"""EXIF normalization: one test per messy case, on values and on files written here with Pillow.

The same labels are checked against exiftool on real camera files in
tests/test_exif_exiftool.py.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from PIL import Image, TiffImagePlugin

from pytest_metatrace.data import exif as exif_module
from pytest_metatrace.data.exif import (
    VENDORS,
    SmartphoneTable,
    clean_text,
    decode_text,
    exact_decimal,
    format_aperture,
    format_exposure,
    format_focal_length,
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
        "4.25 mm",  # exact: 425/100 is not rounded to 4.2
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
        # every Olympus form is one make
        ("OLYMPUS OPTICAL CO.,LTD", "Olympus"),
        ("OLYMPUS IMAGING CORP.", "Olympus"),
        ("OLYMPUS CORPORATION", "Olympus"),
        ("Olympus", "Olympus"),
        ("OM Digital Solutions", "OM Digital Solutions"),  # another company since 2021
        ("EASTMAN KODAK COMPANY", "Kodak"),
        ("JK Imaging, Ltd.", "JK Imaging"),  # Kodak PIXPRO licensee: readable, not "JK"
        ("samsung", "Samsung"),
        ("Samsung Techwin", "Samsung"),
        ("FUJIFILM", "Fujifilm"),
        ("FUJI PHOTO FILM CO., LTD.", "Fujifilm"),
        ("ASAHI OPTICAL CO.,LTD", "Pentax"),
        ("PENTAX Corporation ", "Pentax"),
        ("PENTAX RICOH IMAGING", "Ricoh"),
        ("RICOH IMAGING COMPANY, LTD.", "Ricoh"),
        ("CASIO COMPUTER CO.,LTD", "Casio"),
        ("KONICA MINOLTA ", "Konica Minolta"),
        ("Sony Ericsson", "Sony Ericsson"),
        ("SonyEricsson", "Sony Ericsson"),
        ("HMD Global", "HMD Global"),
        ("Jolla", "Jolla"),
        ("Acme Cameras Inc.", "Acme Cameras"),
        ("Acme Imaging Co., Ltd.", "Acme Imaging"),  # "Imaging" is part of a name
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
        # Japanese carrier model codes: docomo XX-nnL, au XX[LVGFY]nn, SoftBank nnnXX
        ("Samsung", "Samsung SC-02C", True),  # docomo Galaxy S II
        ("Samsung", "Samsung SCL21", True),  # au Galaxy S III Progre
        ("Samsung", "Samsung SCV31", True),
        ("Samsung", "Samsung SHV-E160S", True),  # Korean carrier code
        ("Samsung", "Samsung NX1000", False),
        ("Sharp", "Sharp SH-01D", True),
        ("Sharp", "Sharp SHV31", True),
        ("Sharp", "Sharp 302SH", True),
        ("Sony", "Sony SO-01B", True),
        ("Sony", "Sony SOL21", True),
        ("Sony", "Sony 402SO", True),
        ("Sony", "Sony LT26i", True),  # Xperia S (2012)
        ("Sony", "Sony C6603", True),  # Xperia Z
        ("Sony", "Sony DSC-RX100M4", False),
        ("Fujitsu", "Fujitsu F-05D", True),
        ("Fujitsu", "Fujitsu FJL22", True),
        ("Fujitsu", "Fujitsu fi-7160", None),  # a scanner: no catch-all
        ("Panasonic", "Panasonic P-07B", True),
        ("Panasonic", "Panasonic DMC-CM1", True),
        ("Panasonic", "Panasonic DMC-GH4", False),
        ("NEC", "NEC N-04C", True),
        ("Kyocera", "Kyocera KYL21", True),
        ("Kyocera", "Kyocera KYV31", True),
        ("Kyocera", "Kyocera KYF31", True),
        ("Kyocera", "Kyocera KY-51B", True),
        ("Kyocera", "Kyocera 503KC", True),
        ("Kyocera", "Kyocera Finecam S5", False),
        ("Kyocera", "Kyocera FS-1020", None),
        ("Casio", "Casio CA-01C", True),
        ("Casio", "Casio EX-100", False),
        ("LG", "LG L-01D", True),
        ("Sony Ericsson", "Sony Ericsson K800i", True),
        ("Jolla", "Jolla", True),
        ("HMD Global", "HMD Global Nokia 7 plus", True),
        ("JK Imaging", "JK Imaging KODAK PIXPRO AZ421", False),
        ("Olympus", "Olympus E-M1", False),
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
    [
        (0.004, "1/250"),
        (1 / 30, "1/30"),
        (10 / 30, "1/3"),  # 1/3 stored as 10/30
        (0.333333, "1/3"),  # ... or as a six-digit decimal
        (0.3, "0.3"),  # not 1/3: 0.3, 0.333 and 0.35 are three classes
        (0.333, "0.333"),
        (0.35, "0.35"),
        (0.3333, "0.3333"),
        (0.0735, "0.0735"),  # not 1/14
        (1 / 14, "1/14"),
        (0.07142857143, "1/14"),  # exiftool's ten digits of 1/14
        (0.007396, "0.007396"),  # Nokia N70 (Pillow's iptc.jpg)
        (10 / 13, "0.7692308"),  # Olympus E-M1 "1/1.3" (plasma DarkestHour)
        (0.5, "1/2"),
        (0.4, "0.4"),
        (1.0, "1"),
        (2.0, "2"),
        (1.3, "1.3"),
        (1.25, "1.25"),  # was 1.2 when rounded to one decimal
        (8.0, "8"),
        (1 / 8000, "1/8000"),
        (1 / 3200, "1/3200"),
        (1 / 3201, "1/3201"),
    ],
)
def test_format_exposure(seconds, text):
    assert format_exposure(seconds) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (2.8, "2.8"),
        (11.0, "11"),
        (1.79, "1.79"),  # Xiaomi's f/1.79 is not f/1.8
        (1.78, "1.78"),
        (9227469 / 4194304, "2.2"),  # float32 2.2 as a rational (Nokia N9): 2.2000000477
        (673500 / 65536, "10.276794"),  # 16.16 fixed point (Konica Minolta DiMAGE Z5)
        (21.3125, "21.3125"),
        (1e-5, "0.00001"),  # never exponent notation
        (1500.0, "1500"),
    ],
)
def test_exact_decimal(value, text):
    assert exact_decimal(value) == text
    assert float(text) == pytest.approx(value, rel=1e-7)


def test_aperture_and_focal_length_are_exact_values():
    assert (format_aperture(1.85), format_aperture(5.6)) == ("1.85", "5.6")
    assert (format_focal_length(4.25), format_focal_length(50.0)) == ("4.25 mm", "50 mm")
    assert format_focal_length(673500 / 65536) == "10.276794 mm"


def test_exposure_classes_from_files(tmp_path):
    """The stored rationals, as a camera writes them, give the exact classes."""
    cases = {
        "a": (R(1, 250), "1/250"),
        "b": (R(3, 10), "0.3"),
        "c": (R(333, 1000), "0.333"),
        "d": (R(35, 100), "0.35"),
        "e": (R(10, 30), "1/3"),
        "f": (R(333333, 1000000), "1/3"),
        "g": (R(735, 10000), "0.0735"),
        "h": (R(10, 13), "0.7692308"),
        "i": (R(8, 1), "8"),
        "j": (R(125, 100), "1.25"),
    }
    got = {
        name: read_exif(write_jpeg(tmp_path / f"{name}.jpg", {MAKE: "Canon"}, {EXPOSURE: value}))
        for name, (value, _) in cases.items()
    }
    assert {name: rec.exposure for name, rec in got.items()} == {
        name: text for name, (_, text) in cases.items()
    }
    assert len({got[n].exposure for n in "bcd"}) == 3


@pytest.mark.parametrize(
    ("model", "make", "raw_make", "label"),
    [
        ("Jolla", "Jolla", "Jolla", "Jolla"),  # model equal to make: not "Jolla Jolla"
        ("Canon Canon EOS 5D", "Canon", "Canon", "Canon EOS 5D"),
        ("Canon EOS 70D", "Canon", "Canon", "Canon EOS 70D"),
        ("NIKON D5500", "Nikon", "NIKON CORPORATION", "Nikon D5500"),
        ("SAMSUNG-SM-G930F", "Samsung", "SAMSUNG", "Samsung SM-G930F"),
        ("SIGMA DP3 Merrill", "Sigma", "SIGMA", "Sigma DP3 Merrill"),
        ("E-M1", "Olympus", "OLYMPUS IMAGING CORP.", "Olympus E-M1"),
        ("Sony Ericsson K800i", "Sony Ericsson", "Sony Ericsson", "Sony Ericsson K800i"),
        ("Nokia 7 plus", "HMD Global", "HMD Global", "HMD Global Nokia 7 plus"),
        ("Canonet QL17", "Canon", "Canon", "Canon Canonet QL17"),  # a whole word only
    ],
)
def test_model_never_repeats_the_make(model, make, raw_make, label):
    assert normalize_model(model, make, raw_make) == label


def test_model_equal_to_make_from_a_file(tmp_path):
    rec = read_exif(write_jpeg(tmp_path / "j.jpg", {MAKE: "Jolla", MODEL: "Jolla"}))
    assert rec.labels() == {"make": "Jolla", "model": "Jolla", "smartphone": "smartphone"}


def test_every_vendor_entry_says_where_its_form_comes_from():
    source = inspect.getsource(exif_module)
    block = source[source.index("VENDORS: Mapping[str, str] = {") : source.index("\n}\n")]
    entries = [line for line in block.splitlines()[1:] if line.strip().startswith('"')]
    assert len(entries) == len(VENDORS)
    assert [line for line in entries if "  # " not in line] == []
    assert all(key == key.casefold() for key in VENDORS)


def test_text_is_utf8_when_valid_else_latin1():
    # Pillow hands EXIF ASCII over decoded as Latin-1: UTF-8 bytes arrive as mojibake.
    assert decode_text("Леика".encode().decode("latin-1")) == "Леика"
    assert decode_text("Ð\x9bÐµÐ¸ÐºÐ°") == "Леика"  # the mojibake of issue 17
    assert decode_text(b"Soci\xe9t\xe9") == "Société"  # Latin-1 bytes (invalid UTF-8)
    assert decode_text("Soci\xe9t\xe9") == "Société"
    assert decode_text("Nokia\x002") == "Nokia"  # junk after the NUL
    assert decode_text(b"\xd0\x9b\xd0\xb5\x00\xff") == "Ле"  # junk cannot spoil the text
    assert decode_text(12) is None
    assert clean_text(" Леика \x00 ") == "Леика"


def test_non_ascii_make_and_model_from_files(tmp_path):
    utf8 = write_jpeg(tmp_path / "u.jpg", {MAKE: "Леика".encode(), MODEL: "Леика М10".encode()})
    latin1 = write_jpeg(
        tmp_path / "l.jpg",
        {MAKE: "Société Photo".encode("latin-1"), MODEL: "Modèle 1".encode("latin-1")},
    )
    u, la = read_exif(utf8), read_exif(latin1)
    assert (u.make, u.model) == ("Леика", "Леика М10")  # model kept: printable once decoded
    assert (la.make, la.model) == ("Société Photo", "Société Photo Modèle 1")


def test_user_table_in_latin1_names_the_file_and_the_fix(tmp_path):
    path = tmp_path / "phones.csv"
    path.write_bytes("make,model,smartphone\nSociété,,yes\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"phones\.csv is not UTF-8 text") as info:
        SmartphoneTable.from_csv(path)
    message = str(info.value)
    assert "byte 0xe9 at line 2, column 5" in message
    assert "save the file as UTF-8" in message and "--metatrace-smartphone-table" in message
    assert "codec" not in message
    path.write_bytes("\ufeffmake,model,smartphone\nSociété,,yes\n".encode())  # UTF-8, BOM
    assert SmartphoneTable.from_csv(path).lookup("Société", None) is True


def test_user_table_that_cannot_be_read_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"smartphone table .*missing.csv cannot be read"):
        SmartphoneTable.from_csv(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="cannot be read"):
        SmartphoneTable.from_csv(tmp_path)  # a folder
