"""EXIF labels against exiftool (``exiftool -j -n``): real camera photos and files written here.

exiftool (Debian ``libimage-exiftool-perl``) is the reference reader: for every
file, the numbers behind ``read_exif``'s exposure, aperture, ISO and focal-length
labels must equal exiftool's ``-n`` values of the same EXIF tags, and the text
form must follow the documented rule (``1/N`` only for 1/N, else the exact
decimal). Make, model and smartphone-or-not are checked against a table
written by hand for every camera these files hold (:data:`KNOWN_CAMERAS`,
keyed by exiftool's Make and Model), so the vendor table, the model rule and
the smartphone table meet real EXIF.

The real photos install offline, as Debian packages whose wallpapers keep the
EXIF of the camera that took them (Debian 12 "bookworm", found with
``apt-cache search`` and checked with exiftool; the files are listed with
``dpkg-query -L``):

- ``plasma-workspace-wallpapers`` (KDE Plasma 5.27): Nokia N9 (a phone),
  Olympus E-M1, Sony NEX-3N, Canon EOS 70D, each at several sizes;
- ``mate-backgrounds`` (MATE 1.26): Sony DSC-RX100M4, Canon EOS 350D / 400D /
  DIGITAL REBEL, Konica Minolta DiMAGE Z5.

``.ci/run`` installs both and exiftool; with ``CI`` or
``METATRACE_REQUIRE_EXIFTOOL`` set, a missing exiftool or package fails these
tests instead of skipping them. More real files, optional:
``METATRACE_EXIF_SAMPLES=DIR[:DIR...]``, e.g. the ``Tests/images`` folder of
Pillow's source distribution (Xiaomi, Apple, Google, Nokia N70, Samsung NX,
Fujifilm ...) and the ``tests/images`` folder of piexif's (``pip download
--no-deps --no-binary :all: pillow piexif``; unpack). Skipped locally when
absent, with the command that installs what is missing.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn

import pytest
from PIL import Image, TiffImagePlugin

from pytest_metatrace.data.exif import (
    DECIMAL_TOLERANCE,
    MAX_EXPOSURE_S,
    ONE_OVER_N_TOLERANCE,
    ExifRecord,
    read_exif,
)
from pytest_metatrace.data.sources import IMAGE_EXTENSIONS

MAKE, MODEL = 0x010F, 0x0110
EXPOSURE, FNUMBER, ISO, FOCAL = 0x829A, 0x829D, 0x8827, 0x920A
EXIF_IFD = 0x8769
R = TiffImagePlugin.IFDRational

#: The EXIF tags compared (exiftool names, EXIF group only: not XMP, not maker notes).
TAGS = ("Make", "Model", "ExposureTime", "FNumber", "ISO", "FocalLength")

#: Debian packages whose images carry camera EXIF, and the cameras each holds.
DEBIAN_PACKAGES = ("plasma-workspace-wallpapers", "mate-backgrounds")
APT_INSTALL = "apt-get install libimage-exiftool-perl " + " ".join(DEBIAN_PACKAGES)

#: exiftool's (Make, Model) -> the labels read_exif must give: make, model, smartphone.
KNOWN_CAMERAS: dict[tuple[str | None, str | None], tuple[str | None, str | None, bool | None]] = {
    # plasma-workspace-wallpapers
    ("Nokia", "N9"): ("Nokia", "Nokia N9", True),
    ("OLYMPUS IMAGING CORP.", "E-M1"): ("Olympus", "Olympus E-M1", False),
    ("SONY", "NEX-3N"): ("Sony", "Sony NEX-3N", False),
    ("Canon", "Canon EOS 70D"): ("Canon", "Canon EOS 70D", False),
    # mate-backgrounds
    ("SONY", "DSC-RX100M4"): ("Sony", "Sony DSC-RX100M4", False),
    ("Canon", "Canon EOS 350D DIGITAL"): ("Canon", "Canon EOS 350D DIGITAL", False),
    ("Canon", "Canon EOS 400D DIGITAL"): ("Canon", "Canon EOS 400D DIGITAL", False),
    ("Canon", "Canon EOS DIGITAL REBEL"): ("Canon", "Canon EOS DIGITAL REBEL", False),
    ("KONICA MINOLTA", "DiMAGE Z5"): ("Konica Minolta", "Konica Minolta DiMAGE Z5", False),
    # Pillow's Tests/images (optional, METATRACE_EXIF_SAMPLES)
    ("NIKON CORPORATION", "NIKON D800"): ("Nikon", "Nikon D800", False),
    ("Xiaomi", "Redmi Note 9S"): ("Xiaomi", "Xiaomi Redmi Note 9S", True),
    ("Canon", "Canon PowerShot S40"): ("Canon", "Canon PowerShot S40", False),
    ("Canon", "Canon EOS Rebel T6"): ("Canon", "Canon EOS Rebel T6", False),
    ("Nokia", "N70-1"): ("Nokia", "Nokia N70-1", True),
    ("Google", "Pixel 6"): ("Google", "Google Pixel 6", True),
    ("Apple", "iPhone 14 Pro Max"): ("Apple", "Apple iPhone 14 Pro Max", True),
    ("SAMSUNG", "NX1000"): ("Samsung", "Samsung NX1000", False),
    ("FUJIFILM", "FinePix REAL 3D W3"): ("Fujifilm", "Fujifilm FinePix REAL 3D W3", False),
    ("FLIR", "Duo Pro R"): ("FLIR", "FLIR Duo Pro R", None),  # thermal camera: not in the table
    ("Nintendo", "Nintendo 3DS"): ("Nintendo", "Nintendo 3DS", None),
    ("CINOGY Technologies GmbH", None): ("CINOGY Technologies", None, None),
    ("Make", "XXX-XXX"): ("Make", "Make XXX-XXX", None),  # placeholder EXIF in test files
    # exiftool writes "?" for the byte 0x8c, an unprintable control character in Latin-1
    ("?", "Photosmart Plus B210 series"): (None, "Photosmart Plus B210 series", None),
    # piexif's tests/images (optional)
    ("CASIO COMPUTER CO.,LTD", "QV-R51"): ("Casio", "Casio QV-R51", False),
    ("CASIO COMPUTER CO.,LTD.", "EX-100"): ("Casio", "Casio EX-100", False),
    ("Canon", "Canon PowerShot G1 X Mark II"): ("Canon", "Canon PowerShot G1 X Mark II", False),
    ("OLYMPUS IMAGING CORP.", "STYLUS1"): ("Olympus", "Olympus STYLUS1", False),
    ("OLYMPUS IMAGING CORP.", "E-P3"): ("Olympus", "Olympus E-P3", False),
    ("Panasonic", "DMC-L10"): ("Panasonic", "Panasonic DMC-L10", False),
    ("PENTAX RICOH IMAGING", "GR"): ("Ricoh", "Ricoh GR", False),
    ("SIGMA", "SIGMA DP3 Merrill"): ("Sigma", "Sigma DP3 Merrill", False),
    ("SONY", "DSC-RX1R"): ("Sony", "Sony DSC-RX1R", False),
    (None, None): (None, None, None),  # files with other EXIF only
}

#: Whole label sets for a few real photos, the text forms spelled out.
EXPECTED_FILES: dict[str, dict[str, str]] = {
    # exposure 10/13 s (Olympus's "1/1.3"): not 1/N, so its exact decimal
    "/usr/share/wallpapers/DarkestHour/contents/screenshot.jpg": {
        "make": "Olympus",
        "model": "Olympus E-M1",
        "smartphone": "camera",
        "exposure": "0.7692308",
        "aperture": "2.8",
        "iso": "200",
        "focal_length": "14 mm",
    },
    "/usr/share/wallpapers/ColdRipple/contents/screenshot.jpg": {
        "make": "Olympus",
        "model": "Olympus E-M1",
        "smartphone": "camera",
        "exposure": "8",
        "aperture": "5.6",
        "iso": "200",
        "focal_length": "7 mm",
    },
    # Make "Nokia\x002" (junk after the NUL); FNumber 9227469/4194304, a float32 2.2
    "/usr/share/wallpapers/BytheWater/contents/screenshot.jpg": {
        "make": "Nokia",
        "model": "Nokia N9",
        "smartphone": "smartphone",
        "exposure": "1/1000",
        "aperture": "2.2",
        "iso": "100",
        "focal_length": "28 mm",
    },
    "/usr/share/wallpapers/FallenLeaf/contents/screenshot.jpg": {
        "make": "Canon",
        "model": "Canon EOS 70D",
        "smartphone": "camera",
        "exposure": "1/4000",
        "aperture": "2",
        "iso": "100",
        "focal_length": "50 mm",
    },
    "/usr/share/backgrounds/mate/nature/Storm.jpg": {
        "make": "Canon",
        "model": "Canon EOS 400D DIGITAL",
        "smartphone": "camera",
        "exposure": "0.4",
        "aperture": "3.5",
        "iso": "100",
        "focal_length": "18 mm",
    },
    # FocalLength 673500/65536 (16.16 fixed point)
    "/usr/share/backgrounds/mate/nature/Wood.jpg": {
        "make": "Konica Minolta",
        "model": "Konica Minolta DiMAGE Z5",
        "smartphone": "camera",
        "exposure": "1/1000",
        "aperture": "3.2",
        "iso": "50",
        "focal_length": "10.276794 mm",
    },
    # FNumber and FocalLength 0 (a manual lens): missing, not "0"
    "/usr/share/backgrounds/mate/nature/Dune.jpg": {
        "make": "Canon",
        "model": "Canon EOS DIGITAL REBEL",
        "smartphone": "camera",
        "exposure": "1/4000",
        "iso": "100",
    },
}


def _required() -> bool:
    return any(
        os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")
        for name in ("CI", "METATRACE_REQUIRE_EXIFTOOL")
    )


def _unavailable(reason: str) -> NoReturn:
    """Fail in CI (CI or METATRACE_REQUIRE_EXIFTOOL set), skip elsewhere, naming the fix."""
    if _required():
        pytest.fail(
            f"{reason}; required here (CI or METATRACE_REQUIRE_EXIFTOOL is set): "
            f"as root, {APT_INSTALL} (.ci/run does)",
            pytrace=False,
        )
    pytest.skip(f"{reason} (Debian: {APT_INSTALL})")


@pytest.fixture(scope="module")
def exiftool() -> str:
    """The exiftool executable."""
    path = shutil.which("exiftool")
    if path is None:
        _unavailable("exiftool is not installed")
    return path


def run_exiftool(exe: str, files: Iterable[Path], charset: str | None = None) -> dict[str, Any]:
    """exiftool's ``-j -n`` values of :data:`TAGS` (EXIF group) per file (its path as given)."""
    args = [exe, "-j", "-n", "-q", "-q", *(f"-EXIF:{tag}" for tag in TAGS)]
    if charset:
        args += ["-charset", f"exif={charset}"]
    names = [str(f) for f in files]
    out = subprocess.run(
        [*args, *names], capture_output=True, encoding="utf-8", timeout=600, check=False
    )
    rows = json.loads(out.stdout) if out.stdout.strip() else []
    return {row["SourceFile"]: row for row in rows}


def _package_images(package: str) -> list[Path]:
    try:
        out = subprocess.run(
            ["dpkg-query", "-L", package], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        _unavailable(f"dpkg-query is missing, so the Debian package {package} cannot be listed")
    if out.returncode != 0:
        _unavailable(f"the Debian package {package} is not installed")
    paths = (Path(line) for line in out.stdout.splitlines())
    return sorted(p for p in paths if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


@pytest.fixture(scope="module")
def real_photos(exiftool: str) -> list[tuple[str, Path, dict[str, Any]]]:
    """(source, file, exiftool's values) of every real photo with camera EXIF."""
    photos: list[tuple[str, Path, dict[str, Any]]] = []
    for package in DEBIAN_PACKAGES:
        files = _package_images(package)
        values = run_exiftool(exiftool, files)
        with_exif = [
            (package, f, values[str(f)]) for f in files if "Make" in values.get(str(f), {})
        ]
        if not with_exif:
            _unavailable(f"the Debian package {package} holds no image with a camera's EXIF")
        photos += with_exif
    for folder in filter(None, os.environ.get("METATRACE_EXIF_SAMPLES", "").split(os.pathsep)):
        files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        values = run_exiftool(exiftool, files)
        photos += [(folder, f, values.get(str(f), {})) for f in files]
    return photos


# --------------------------------------------------------------------------------------
# The comparison


def _number(value: Any) -> float | None:
    """exiftool's number (its first one for a list); None for missing or zero."""
    if isinstance(value, str):
        value = value.split()[0] if value.split() else None
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number and number > 0 and math.isfinite(number) else None


_DECIMAL = re.compile(r"\d+(\.\d+)?")


def _decimal_mismatch(text: str, value: float, what: str) -> str | None:
    if not _DECIMAL.fullmatch(text):
        return f"{what} {text!r} is not a plain decimal"
    # exiftool -n prints ten significant digits: its own rounding is 5e-10.
    if not math.isclose(float(text), value, rel_tol=DECIMAL_TOLERANCE + 1e-9):
        return f"{what} {text!r} != exiftool's {value!r}"
    return None


def _exposure_mismatch(text: str | None, value: float | None) -> str | None:
    if value is None or value > MAX_EXPOSURE_S:
        return None if text is None else f"exposure {text!r}, exiftool has none"
    if text is None:
        return f"exposure missing, exiftool has {value!r}"
    n = round(1 / value) if value < 1 else 0
    one_over_n = n >= 2 and abs(value * n - 1) <= ONE_OVER_N_TOLERANCE + 1e-9
    if text.startswith("1/"):
        if not (one_over_n and text == f"1/{n}"):
            return f"exposure {text!r} but exiftool's {value!r} is not 1/N"
        return None
    if one_over_n:
        return f"exposure {text!r}, but exiftool's {value!r} is 1/{n}"
    return _decimal_mismatch(text, value, "exposure")


def mismatches(rec: ExifRecord, tool: dict[str, Any]) -> list[str]:
    """Every difference between ``read_exif``'s labels and exiftool's values for one file."""
    problems: list[str] = []
    make, model = tool.get("Make"), tool.get("Model")
    key = (None if make is None else str(make), None if model is None else str(model))
    if key != (None, None) and rec.status != "ok":
        return [f"read_exif: {rec.status}, exiftool reads Make/Model {key}"]
    if key not in KNOWN_CAMERAS:
        problems.append(f"camera {key} is not in KNOWN_CAMERAS: add its expected labels")
    else:
        want = KNOWN_CAMERAS[key]
        if (rec.make, rec.model, rec.smartphone) != want:
            problems.append(f"make/model/smartphone {(rec.make, rec.model, rec.smartphone)}")
    problem = _exposure_mismatch(rec.exposure, _number(tool.get("ExposureTime")))
    problems += [problem] if problem else []
    f_number = _number(tool.get("FNumber"))
    if (rec.aperture is None) != (f_number is None):
        problems.append(f"aperture {rec.aperture!r}, exiftool {tool.get('FNumber')!r}")
    elif rec.aperture is not None and f_number is not None:
        problem = _decimal_mismatch(rec.aperture, f_number, "aperture")
        problems += [problem] if problem else []
    focal = _number(tool.get("FocalLength"))
    if (rec.focal_length is None) != (focal is None):
        problems.append(f"focal length {rec.focal_length!r}, exiftool {tool.get('FocalLength')!r}")
    elif rec.focal_length is not None and focal is not None:
        if not rec.focal_length.endswith(" mm"):
            problems.append(f"focal length {rec.focal_length!r} lacks ' mm'")
        else:
            problem = _decimal_mismatch(rec.focal_length[:-3], focal, "focal length")
            problems += [problem] if problem else []
    iso = _number(tool.get("ISO"))
    if rec.iso != (None if iso is None else int(iso)):
        problems.append(f"ISO {rec.iso!r}, exiftool {tool.get('ISO')!r}")
    return problems


# --------------------------------------------------------------------------------------
# Real photos


def test_labels_equal_exiftool_on_every_real_photo(real_photos):
    found: dict[str, int] = {}
    failures: list[str] = []
    for source, path, tool in real_photos:
        found[source] = found.get(source, 0) + 1
        failures += [f"{path}: {p}" for p in mismatches(read_exif(path), tool)]
    assert failures == [], "\n".join(failures[:40])
    assert set(DEBIAN_PACKAGES) <= set(found), found


def test_cameras_of_the_debian_packages(real_photos):
    cameras = {
        source: sorted({(t["Make"], str(t.get("Model"))) for s, _, t in real_photos if s == source})
        for source in DEBIAN_PACKAGES
    }
    assert cameras == {
        "plasma-workspace-wallpapers": [
            ("Canon", "Canon EOS 70D"),
            ("Nokia", "N9"),
            ("OLYMPUS IMAGING CORP.", "E-M1"),
            ("SONY", "NEX-3N"),
        ],
        "mate-backgrounds": [
            ("Canon", "Canon EOS 350D DIGITAL"),
            ("Canon", "Canon EOS 400D DIGITAL"),
            ("Canon", "Canon EOS DIGITAL REBEL"),
            ("KONICA MINOLTA", "DiMAGE Z5"),
            ("SONY", "DSC-RX100M4"),
        ],
    }


def test_whole_labels_of_some_real_photos(real_photos):
    by_path = {str(path): tool for _, path, tool in real_photos}
    for name, labels in EXPECTED_FILES.items():
        assert name in by_path, f"{name} is not among the packages' photos"
        assert read_exif(name).labels() == labels, name


# --------------------------------------------------------------------------------------
# Files written here with the exact values of the normalization rules

#: name -> (IFD0 tags, Exif IFD tags, exiftool -charset exif=..., exiftool's Make and
#: Model, the labels read_exif must give).
WRITTEN: dict[str, tuple[dict[int, Any], dict[int, Any], str | None, tuple[str, str], dict]] = {
    "olympus-optical": (
        {MAKE: "OLYMPUS OPTICAL CO.,LTD", MODEL: "C5050Z"},
        {EXPOSURE: R(3, 10), FNUMBER: R(28, 10), ISO: 64, FOCAL: R(71, 10)},
        None,
        ("OLYMPUS OPTICAL CO.,LTD", "C5050Z"),
        {"make": "Olympus", "model": "Olympus C5050Z", "smartphone": "camera"}
        | {"exposure": "0.3", "aperture": "2.8", "iso": "64", "focal_length": "7.1 mm"},
    ),
    "olympus-corporation": (
        {MAKE: "OLYMPUS CORPORATION", MODEL: "E-M1MarkII"},
        {EXPOSURE: R(333, 1000), FNUMBER: R(4, 1)},
        None,
        ("OLYMPUS CORPORATION", "E-M1MarkII"),
        {"make": "Olympus", "model": "Olympus E-M1MarkII", "smartphone": "camera"}
        | {"exposure": "0.333", "aperture": "4"},
    ),
    "olympus": (
        {MAKE: "Olympus", MODEL: "TG-6"},
        {EXPOSURE: R(35, 100)},
        None,
        ("Olympus", "TG-6"),
        {"make": "Olympus", "model": "Olympus TG-6", "smartphone": "camera", "exposure": "0.35"},
    ),
    "jk-imaging": (
        {MAKE: "JK Imaging, Ltd.", MODEL: "KODAK PIXPRO AZ421"},
        {EXPOSURE: R(10, 30), FOCAL: R(425, 100)},
        None,
        ("JK Imaging, Ltd.", "KODAK PIXPRO AZ421"),
        {"make": "JK Imaging", "model": "JK Imaging KODAK PIXPRO AZ421", "smartphone": "camera"}
        | {"exposure": "1/3", "focal_length": "4.25 mm"},
    ),
    "jolla": (
        {MAKE: "Jolla", MODEL: "Jolla"},
        {EXPOSURE: R(333333, 1000000), ISO: 100},
        None,
        ("Jolla", "Jolla"),
        {"make": "Jolla", "model": "Jolla", "smartphone": "smartphone"}
        | {"exposure": "1/3", "iso": "100"},
    ),
    "canon": (
        {MAKE: "Canon", MODEL: "Canon EOS 70D"},
        {EXPOSURE: R(1, 250), FNUMBER: R(56, 10), ISO: 200, FOCAL: R(50, 1)},
        None,
        ("Canon", "Canon EOS 70D"),
        {"make": "Canon", "model": "Canon EOS 70D", "smartphone": "camera"}
        | {"exposure": "1/250", "aperture": "5.6", "iso": "200", "focal_length": "50 mm"},
    ),
    "docomo": (
        {MAKE: "SAMSUNG", MODEL: "SC-02C"},
        {EXPOSURE: R(735, 10000), FNUMBER: R(265, 100), FOCAL: R(397, 100)},
        None,
        ("SAMSUNG", "SC-02C"),
        {"make": "Samsung", "model": "Samsung SC-02C", "smartphone": "smartphone"}
        | {"exposure": "0.0735", "aperture": "2.65", "focal_length": "3.97 mm"},
    ),
    "sony-ericsson": (
        {MAKE: "Sony Ericsson", MODEL: "K800i"},
        {EXPOSURE: R(10, 13), FNUMBER: R(9227469, 4194304)},
        None,
        ("Sony Ericsson", "K800i"),
        {"make": "Sony Ericsson", "model": "Sony Ericsson K800i", "smartphone": "smartphone"}
        | {"exposure": "0.7692308", "aperture": "2.2"},
    ),
    "utf8": (
        {MAKE: "Леика".encode(), MODEL: "Леика М10".encode()},
        {EXPOSURE: R(125, 100), FOCAL: R(673500, 65536)},
        None,
        ("Леика", "Леика М10"),
        {"make": "Леика", "model": "Леика М10", "exposure": "1.25"}
        | {"focal_length": "10.276794 mm"},
    ),
    "latin1": (
        {MAKE: "Société Photo".encode("latin-1"), MODEL: "Modèle 1".encode("latin-1")},
        {EXPOSURE: R(8, 1), FNUMBER: R(179, 100)},
        "latin",
        ("Société Photo", "Modèle 1"),
        {"make": "Société Photo", "model": "Société Photo Modèle 1"}
        | {"exposure": "8", "aperture": "1.79"},
    ),
}


def write_jpeg(path: Path, base: dict[int, Any], sub: dict[int, Any]) -> Path:
    """A small JPEG whose EXIF holds ``base`` (IFD0) and ``sub`` (Exif IFD) tags."""
    exif = Image.Exif()
    for tag, value in base.items():
        exif[tag] = value
    ifd = exif.get_ifd(EXIF_IFD)
    for tag, value in sub.items():
        ifd[tag] = value
    Image.new("RGB", (16, 12), (120, 80, 40)).save(path, exif=exif)
    return path


@pytest.mark.parametrize("name", list(WRITTEN))
def test_written_files_equal_exiftool(tmp_path, exiftool, name):
    base, sub, charset, (make, model), labels = WRITTEN[name]
    path = write_jpeg(tmp_path / f"{name}.jpg", base, sub)
    tool = run_exiftool(exiftool, [path], charset)[str(path)]
    assert (tool["Make"], str(tool["Model"])) == (make, model)  # decoded as exiftool does
    rec = read_exif(path)
    assert rec.labels() == labels
    assert [p for p in mismatches(rec, tool) if "KNOWN_CAMERAS" not in p] == []


def test_three_exposure_classes_where_rounding_made_one(tmp_path, exiftool):
    """0.3 s, 0.333 s and 0.35 s: three exiftool values, three classes (not three "1/3")."""
    paths = [
        write_jpeg(tmp_path / f"{k}.jpg", {MAKE: "Canon"}, {EXPOSURE: value})
        for k, value in enumerate((R(3, 10), R(333, 1000), R(35, 100), R(10, 30)))
    ]
    tool = run_exiftool(exiftool, paths)
    assert [tool[str(p)]["ExposureTime"] for p in paths] == [0.3, 0.333, 0.35, 0.3333333333]
    assert [read_exif(p).exposure for p in paths] == ["0.3", "0.333", "0.35", "1/3"]


# --------------------------------------------------------------------------------------
# Required in CI, skipped with the fix elsewhere


@pytest.mark.parametrize(
    ("env", "required"),
    [
        ({}, False),
        ({"CI": "true"}, True),
        ({"CI": "false"}, False),
        ({"METATRACE_REQUIRE_EXIFTOOL": "1"}, True),
        ({"METATRACE_REQUIRE_EXIFTOOL": "0"}, False),
    ],
)
def test_which_environments_require_exiftool(monkeypatch, env, required):
    for name in ("CI", "METATRACE_REQUIRE_EXIFTOOL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert _required() is required


@pytest.mark.parametrize(
    ("ci", "outcome", "message"),
    [
        ("true", "errors", "exiftool is not installed; required here (CI or *"),
        (None, "skipped", "*exiftool is not installed (Debian: apt-get install*"),
    ],
)
def test_missing_exiftool_fails_in_ci_and_skips_elsewhere(
    pytester, monkeypatch, ci, outcome, message
):
    for name in ("CI", "METATRACE_REQUIRE_EXIFTOOL"):
        monkeypatch.delenv(name, raising=False)
    if ci:
        monkeypatch.setenv("CI", ci)
    monkeypatch.setenv("PATH", str(Path(os.__file__).parent))  # no exiftool on it
    result = pytester.runpytest_subprocess(
        __file__, "-k", "written_files and canon", "-p", "no:cacheprovider", "-rs"
    )
    result.assert_outcomes(**{outcome: 1})
    assert result.ret != 0 if ci else result.ret == 0
    result.stdout.fnmatch_lines([message])
