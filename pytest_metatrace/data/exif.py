"""Read and normalize camera EXIF into the acquisition labels of the paper (Sec. 3.2).

Pillow reads the tags (``Image.getexif()`` and its Exif sub-IFD): it is
already a dependency, it parses the JPEG/TIFF/WebP/PNG containers the loader
accepts, and it never needs the (often corrupt) MakerNote, which this module
ignores. Real EXIF is messy; every value is normalized to an *exact-value
class* (docs/protocol.md §4: classes are exact values, not bins), and the
numbers are those ``exiftool -n`` prints for the same tags (tested against
exiftool on real camera files, tests/test_exif_exiftool.py):

======================  =========================================  =====================
label                   source tag(s)                              class, e.g.
======================  =========================================  =====================
``make``                Make (vendor spellings unified)            ``Nikon``
``model``               Model (make removed, make label in front)  ``Nikon D5500``
``smartphone``          make/model in :data:`SMARTPHONE_TABLE`     ``smartphone``
``exposure``            ExposureTime (seconds)                     ``1/250``, ``0.3``
``aperture``            FNumber                                    ``2.8``, ``1.79``
``iso``                 ISOSpeedRatings / PhotographicSensitivity  ``200``
``focal_length``        FocalLength (mm)                           ``50 mm``, ``4.25 mm``
======================  =========================================  =====================

Text tags are decoded as UTF-8 when their bytes are valid UTF-8 and as
Latin-1 otherwise (:func:`decode_text`), cut at the first NUL, and lose
repeated blanks; text that is mostly unprintable is treated as missing.
Makes go through one vendor table (:data:`VENDORS`); a model never repeats
its make. An exposure is written ``1/N`` only when it is 1/N (within
:data:`ONE_OVER_N_TOLERANCE`); every other number is the shortest decimal equal
to the stored rational within single precision (:func:`exact_decimal`), so
0.3 s, 0.333 s and 0.35 s are three classes. Rationals may come as Pillow's
``IFDRational``, ``(numerator, denominator)`` tuples or numbers; a zero
denominator or a non-positive value is missing, not a crash. ``Software``
naming an editor (Photoshop, Lightroom, GIMP ...) flags the photo as edited.
"""

from __future__ import annotations

import csv
import io
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

__all__ = [
    "DECIMAL_TOLERANCE",
    "EDITOR_PATTERN",
    "EXIF_LABELS",
    "ONE_OVER_N_TOLERANCE",
    "SMARTPHONE_TABLE",
    "VENDORS",
    "ExifRecord",
    "SmartphoneRule",
    "SmartphoneTable",
    "clean_text",
    "decode_text",
    "exact_decimal",
    "format_aperture",
    "format_exposure",
    "format_focal_length",
    "normalize_make",
    "normalize_model",
    "read_exif",
]

#: The acquisition label columns this module fills (``ImageItem.meta`` keys).
EXIF_LABELS = ("make", "model", "smartphone", "exposure", "aperture", "iso", "focal_length")

# Tag numbers (Pillow's ExifTags.Base), spelled out so the module imports nothing heavy.
_MAKE, _MODEL, _SOFTWARE, _DATETIME, _ORIENTATION = 0x010F, 0x0110, 0x0131, 0x0132, 0x0112
_EXPOSURE, _FNUMBER, _ISO, _FOCAL = 0x829A, 0x829D, 0x8827, 0x920A
_EXIF_IFD = 0x8769

#: The vendor table: every spelling of a manufacturer's ``Make`` tag -> one make.
#:
#: Keys are the ``Make`` tag casefolded, blanks collapsed and corporate suffixes
#: (``_SUFFIXES``: Corporation, Co., Ltd, Inc. ...) removed, so that
#: ``"OLYMPUS OPTICAL CO.,LTD"`` is looked up as ``"olympus optical"``. The value is
#: the make label. The rule: the label names the *company* the Make tag names (EXIF
#: defines Make as "the manufacturer of the recording equipment"); one company's
#: renamed or older forms become one make, while a brand licensed to another
#: company stays that company (its photos come from another processing chain).
#: exiftool keeps the Make tag as written (``exiftool -Make``); the comments name
#: the raw forms each key stands for and who writes them. A make missing here
#: keeps its cleaned spelling (``Acme Cameras Inc.`` -> ``Acme Cameras``).
VENDORS: Mapping[str, str] = {
    # --- camera makers -------------------------------------------------------------
    "nikon": "Nikon",  # "NIKON CORPORATION" (DSLRs, Coolpix since ~2003), "NIKON" (older Coolpix)
    "canon": "Canon",  # "Canon" (every EOS and PowerShot)
    "sony": "Sony",  # "SONY" (Cyber-shot, Alpha, NEX) and "Sony" (Xperia since 2012)
    "olympus": "Olympus",  # "OLYMPUS CORPORATION" (2015-2021), "Olympus" (Olympus Corp.)
    "olympus optical": "Olympus",  # "OLYMPUS OPTICAL CO.,LTD": Olympus before 2003
    #                              (named in exiftool's MakerNotes.pm, MakerNoteOlympus)
    "olympus imaging": "Olympus",  # "OLYMPUS IMAGING CORP.": Olympus's camera arm 2004-2015
    "om digital solutions": "OM Digital Solutions",  # "OM Digital Solutions": bought
    #                              Olympus's camera business in 2021 (OM-1, "OM SYSTEM"
    #                              maker notes); another company, so not Olympus
    "fujifilm": "Fujifilm",  # "FUJIFILM" (since 2006)
    "fuji photo film": "Fujifilm",  # "FUJI PHOTO FILM CO., LTD.": Fujifilm's name before 2006
    "panasonic": "Panasonic",  # "Panasonic" (Lumix; also its Japanese carrier phones)
    "pentax": "Pentax",  # "PENTAX Corporation" (2002-2008), "PENTAX"
    "asahi optical": "Pentax",  # "ASAHI OPTICAL CO.,LTD": Pentax's name before 2002
    "ricoh": "Ricoh",  # "RICOH" (GR Digital, Caplio)
    "ricoh imaging": "Ricoh",  # "RICOH IMAGING COMPANY, LTD.": Pentax and Ricoh since 2013
    "pentax ricoh imaging": "Ricoh",  # "PENTAX RICOH IMAGING": 2011-2013, Ricoh's Pentax arm
    "kodak": "Kodak",  # "KODAK", "Kodak"
    "eastman kodak": "Kodak",  # "EASTMAN KODAK COMPANY": Kodak's own cameras (to 2012)
    "jk imaging": "JK Imaging",  # "JK Imaging, Ltd.": makes the KODAK PIXPRO cameras under
    #                              licence since 2013; exiftool keeps this Make and finds
    #                              them by "Kodak|PixPro" in the Model (MakerNotes.pm,
    #                              MakerNoteKodak11/12); another company than Eastman Kodak
    "leica": "Leica",  # "LEICA"
    "leica camera": "Leica",  # "Leica Camera AG", "LEICA CAMERA AG"
    "minolta": "Minolta",  # "Minolta Co., Ltd." (DiMAGE before the 2003 merger)
    "konica minolta": "Konica Minolta",  # "KONICA MINOLTA" (DiMAGE, Dynax 2003-2006)
    "konica minolta camera": "Konica Minolta",  # "Konica Minolta Camera, Inc."
    "casio": "Casio",  # "CASIO"
    "casio computer": "Casio",  # "CASIO COMPUTER CO.,LTD" / "...LTD." (Exilim, QV)
    "samsung": "Samsung",  # "SAMSUNG" (NX cameras), "samsung" (Galaxy phones)
    "samsung techwin": "Samsung",  # "Samsung Techwin" / "SAMSUNG TECHWIN": Samsung's camera
    #                              arm until 2010, merged into Samsung Electronics
    "hasselblad": "Hasselblad",  # "Hasselblad"
    "sigma": "Sigma",  # "SIGMA"
    "gopro": "GoPro",  # "GoPro"
    "dji": "DJI",  # "DJI" (drones, Osmo)
    # --- phone makers --------------------------------------------------------------
    "apple": "Apple",  # "Apple"
    "google": "Google",  # "Google" (Pixel)
    "huawei": "Huawei",  # "HUAWEI"
    "honor": "Honor",  # "HONOR": a separate company since 2020
    "xiaomi": "Xiaomi",  # "Xiaomi"
    "oneplus": "OnePlus",  # "OnePlus"
    "oppo": "OPPO",  # "OPPO"
    "vivo": "vivo",  # "vivo"
    "realme": "realme",  # "realme"
    "motorola": "Motorola",  # "motorola"
    "lg electronics": "LG",  # "LG Electronics"
    "lge": "LG",  # "LGE" (LG Android phones)
    "lg": "LG",  # "LG"
    "htc": "HTC",  # "HTC"
    "zte": "ZTE",  # "ZTE"
    "asus": "Asus",  # "asus", "ASUS"
    "lenovo": "Lenovo",  # "LENOVO", "Lenovo"
    "meizu": "Meizu",  # "Meizu", "MEIZU"
    "blackberry": "BlackBerry",  # "BlackBerry"
    "nokia": "Nokia",  # "Nokia", "NOKIA": Nokia's own phones (N-series, Lumia) to 2014
    "hmd global": "HMD Global",  # "HMD Global": Nokia-branded phones since 2017, made by
    #                              HMD under licence, so not Nokia (the model says "Nokia")
    "sony ericsson": "Sony Ericsson",  # "Sony Ericsson": the phone joint venture 2001-2012
    "sonyericsson": "Sony Ericsson",  # "SonyEricsson" (the same company, written without space)
    "jolla": "Jolla",  # "Jolla" (Jolla Ltd.: Sailfish OS phones, Model is often "Jolla" too)
    "sharp": "Sharp",  # "SHARP" (AQUOS phones)
    "fujitsu": "Fujitsu",  # "FUJITSU" (arrows phones; not Fujifilm)
    "nec": "NEC",  # "NEC" (MEDIAS and docomo N- phones)
    "kyocera": "Kyocera",  # "KYOCERA" (phones, and Finecam/Contax cameras to 2005)
}

# Corporate suffixes dropped before the vendor lookup ("NIKON CORPORATION" -> "nikon").
# "Imaging" is not one: it is part of "JK Imaging", "Ricoh Imaging", "Olympus Imaging".
_SUFFIXES = re.compile(
    r"[\s,.]+(corporation|corp|co|ltd|limited|inc|company|gmbh|ag|s\.?a)\.?$", re.I
)

#: ``Software`` values that name a photo editor (the photo was edited after capture).
EDITOR_PATTERN = re.compile(
    r"photoshop|lightroom|gimp|snapseed|picasa|paint\.net|capture one|affinity|pixelmator|"
    r"darktable|rawtherapee|luminar|vsco|acdsee|photoscape|photodirector|aperture|"
    r"digital photo professional|silkypix|dxo|on1|topaz|irfanview|faststone|pixlr|canva",
    re.I,
)


@dataclass(frozen=True)
class SmartphoneRule:
    """One row of the smartphone table: a make, an optional model pattern, and the answer."""

    make: str  #: normalized make, e.g. ``Samsung``
    model: str | None  #: regular expression searched in the normalized model; None = any
    smartphone: bool  #: True for phones, False for cameras

    def matches(self, make: str, model: str | None) -> bool:
        """Whether this rule applies to ``make`` / ``model``."""
        if make.casefold() != self.make.casefold():
            return False
        if self.model is None:
            return True
        return model is not None and re.search(self.model, model, re.I) is not None


# Japanese carrier model codes (the maker is the code's letters):
# - NTT docomo since 2008: maker code, "-", two digits, a season letter (SC-02C,
#   SH-01D, SO-01B, F-05D, P-07B, N-04C, L-01D, KY-51B, CA-01C);
# - au (KDDI) since 2012: maker code, a series letter (L: LTE, V: VoLTE, G: 5G,
#   F: feature phones, Y: 2013-2015 models such as KYY21), two digits (SCL21, SHV31,
#   SOV33, FJL22, KYL21, KYV31, KYF31, SCG01);
# - SoftBank: three digits, the maker code (302SH, 402SO, 101F, 101P, 101N, 503KC).
def _carrier(docomo: str, au: str | None = None, softbank: str | None = None) -> str:
    """A pattern for one maker's Japanese carrier model codes."""
    parts = [rf"\b{docomo}-\d\d[A-Z]\b"]
    if au:
        parts.append(rf"\b{au}[LVGFY]\d\d\b")
    if softbank:
        parts.append(rf"\b\d{{3}}{softbank}\b")
    return "|".join(parts)


#: Built-in rules, most specific first (a make's model rules before its catch-all).
#: "smartphone" means a phone's camera (feature phones included); a make with
#: model rules and no catch-all is unknown (None) for other models.
SMARTPHONE_TABLE: tuple[SmartphoneRule, ...] = (
    # Samsung phones: SM- (since 2013), GT-I/GT-N, SGH-/SCH-/SPH- (US carriers),
    # SHV-/SHW- (Korean carriers), "Galaxy", and docomo SC-, au SCL/SCV/SCG.
    SmartphoneRule(
        "Samsung",
        r"\b(SM-[A-Z]|GT-I|GT-N|SGH-|SCH-|SPH-|SHV-|SHW-|Galaxy)|" + _carrier("SC", "SC"),
        True,
    ),
    SmartphoneRule("Samsung", None, False),  # NX, WB, ES, PL, ST ... compact and system cameras
    # Sony phones: Xperia; docomo SO-, au SOL/SOV/SOG, SoftBank nnnSO; Sony Mobile's
    # letter + four digits (C6603, D6503, E6653, F8331, G8141, H8216, J9110) and XQ- (2019-);
    # LT/MT/ST/SK/WT + two digits + i (Xperia S LT26i ..., 2011-2012).
    SmartphoneRule(
        "Sony",
        r"Xperia|\bXQ-|\b[CDEFGHJ]\d{4}\b|\b(LT|MT|ST|SK|WT)\d\d[a-z]{1,2}\b|"
        + _carrier("SO", "SO", "SO"),
        True,
    ),
    SmartphoneRule("Sony", None, False),  # DSC-, ILCE-, NEX-, SLT-, DSLR-
    SmartphoneRule("Sony Ericsson", None, True),  # made only phones (2001-2012)
    # Panasonic phones: Lumix CM1/CM10; docomo P- (P-01A ... P-07D); SoftBank nnnP.
    SmartphoneRule("Panasonic", r"\bDMC-CM|" + _carrier("P", None, "P"), True),
    SmartphoneRule("Panasonic", None, False),  # Lumix DMC-, DC-
    SmartphoneRule("Leica", r"\bLeitz Phone", True),
    SmartphoneRule("Leica", None, False),
    # Casio phones (Casio Hitachi Mobile): docomo CA-, au CAL21 and CA001-CA007, G'zOne.
    SmartphoneRule("Casio", r"G'?zOne|\bCA\d{3}\b|" + _carrier("CA", "CA"), True),
    SmartphoneRule("Casio", None, False),  # Exilim EX-, QV-
    # Kyocera: docomo KY-, au KYL/KYV/KYF/KYG/KYY, SoftBank nnnKC; its cameras
    # (Finecam, Contax N Digital, SAMURAI; exiftool's KyoceraRaw.pm) are cameras.
    SmartphoneRule("Kyocera", _carrier("KY", "KY", "KC") + r"|\b(DIGNO|URBANO|TORQUE)", True),
    SmartphoneRule("Kyocera", r"Finecam|Contax|N DIGITAL|SAMURAI", False),
    # Fujitsu (not Fujifilm): docomo F-, au FJL/FJV, SoftBank nnnF, "arrows"; no catch-all,
    # as Fujitsu scanners write EXIF too.
    SmartphoneRule("Fujitsu", _carrier("F", "FJ", "F") + r"|arrows", True),
    # NEC: docomo N-, SoftBank nnnN, MEDIAS; no catch-all (NEC made other devices).
    SmartphoneRule("NEC", _carrier("N", None, "N") + r"|MEDIAS", True),
    # Sharp makes no digital still cameras: its EXIF comes from its phones (AQUOS;
    # docomo SH-, au SHL/SHV/SHG/SHF, SoftBank nnnSH, SIM-free SH-M).
    SmartphoneRule("Sharp", None, True),
    *(
        SmartphoneRule(m, None, True)
        for m in (
            "Apple",
            "Huawei",
            "Honor",
            "Xiaomi",
            "Google",
            "OnePlus",
            "Motorola",
            "LG",
            "HTC",
            "OPPO",
            "vivo",
            "realme",
            "Nokia",
            "HMD Global",
            "Jolla",  # Jolla Ltd.: Sailfish OS phones (Jolla, Jolla C)
            "ZTE",
            "BlackBerry",
            "Meizu",
            "Asus",
            "Lenovo",
        )
    ),
    *(
        SmartphoneRule(m, None, False)
        for m in (
            "Nikon",
            "Canon",
            "Olympus",
            "OM Digital Solutions",
            "Fujifilm",
            "Pentax",
            "Ricoh",
            "Kodak",
            "JK Imaging",
            "Minolta",
            "Konica Minolta",
            "Hasselblad",
            "Sigma",
            "GoPro",
            "DJI",
        )
    ),
)


class SmartphoneTable:
    """Smartphone-or-camera lookup: user rules first, then :data:`SMARTPHONE_TABLE`."""

    def __init__(self, user_rules: Sequence[SmartphoneRule] = ()) -> None:
        self.user_rules = tuple(user_rules)
        self.rules = (*self.user_rules, *SMARTPHONE_TABLE)

    @classmethod
    def from_csv(cls, path: str | Path) -> SmartphoneTable:
        """Rules from a UTF-8 CSV with columns ``make,model,smartphone`` (model: regex or empty).

        ``smartphone`` is ``yes``/``no`` (or true/false, 1/0). Raises
        :class:`ValueError` naming the file and the fix for a file that cannot be
        read or is not UTF-8 (a Latin-1 or Windows-1252 export), and the line of a
        bad row.
        """
        text = _read_utf8(path, "smartphone table", "--metatrace-smartphone-table")
        rules: list[SmartphoneRule] = []
        reader = csv.DictReader(io.StringIO(text, newline=""))
        try:
            fieldnames = reader.fieldnames
            missing = {"make", "smartphone"} - set(fieldnames or [])
            if missing:
                raise ValueError(
                    f"smartphone table {path} lacks column(s) {sorted(missing)}; "
                    "the header must be make,model,smartphone"
                )
            for row in reader:
                rules.append(_rule_from_row(row, path, reader.line_num))
        except csv.Error as exc:
            raise ValueError(
                f"{path}:{reader.line_num}: not a valid CSV row ({exc}); the smartphone table "
                "is a CSV file with the header make,model,smartphone"
            ) from None
        return cls(rules)

    def lookup(self, make: str | None, model: str | None) -> bool | None:
        """True (phone), False (camera) or None (make unknown to every rule)."""
        if make is None:
            return None
        for rule in self.rules:
            if rule.matches(make, model):
                return rule.smartphone
        return None


def _read_utf8(path: str | Path, what: str, option: str) -> str:
    """The text of a UTF-8 file (a BOM allowed), or a ValueError naming it and the fix."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ValueError(
            f"{what} {path} cannot be read ({reason}); check the path given to {option}"
        ) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ValueError(
            f"{what} {path} is not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line}, "
            f"column {column} is not valid UTF-8 (a Latin-1 or Windows-1252 export?); save "
            f"the file as UTF-8 (e.g. iconv -f latin1 -t utf-8 {Path(path).name} > "
            f"{Path(path).stem}-utf8.csv) and pass that to {option}"
        ) from None


def _rule_from_row(row: Mapping[str | Any, Any], path: str | Path, line: int) -> SmartphoneRule:
    answer = (row.get("smartphone") or "").strip().lower()
    if answer not in ("yes", "no", "true", "false", "1", "0"):
        raise ValueError(f"{path}:{line}: smartphone must be yes or no, got {answer!r}")
    pattern = (row.get("model") or "").strip() or None
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(
                f"{path}:{line}: model {pattern!r} is not a valid regular expression ({exc})"
            ) from None
    make = normalize_make((row.get("make") or "").strip()) or ""
    return SmartphoneRule(make, pattern, answer in ("yes", "true", "1"))


# --------------------------------------------------------------------------------------
# Value normalization


def decode_text(value: Any) -> str | None:
    r"""The text of an EXIF ASCII tag, up to its first NUL: UTF-8 when valid, else Latin-1.

    EXIF says ASCII, but phones and editors write UTF-8 (``Лейка``) or Latin-1
    (``Caméra``) bytes. Pillow hands the bytes over decoded as Latin-1, so a
    UTF-8 make arrives as mojibake (``Ð\x9bÐµÐ¹ÐºÐ°``); this undoes that: the
    bytes are decoded as UTF-8 when they are valid UTF-8 (Latin-1 text almost
    never is) and as Latin-1 otherwise, so no byte is lost and none is garbled.
    Anything after the first NUL is padding or junk (``Nokia\x002``) and is dropped.
    Returns None for values that are not text.
    """
    if isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    elif isinstance(value, str):
        try:
            data = value.encode("latin-1")  # Pillow's decoding, undone
        except UnicodeEncodeError:
            return value.split("\x00", 1)[0]  # already text beyond Latin-1
    else:
        return None
    data = data.split(b"\x00", 1)[0]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def clean_text(value: Any) -> str | None:
    """Decoded text (:func:`decode_text`) with blanks collapsed; None when empty or unprintable.

    Text is unprintable when under 90% of its characters are printable.
    """
    text = decode_text(value)
    if text is None:
        return None
    text = " ".join(text.split())
    if not text:
        return None
    printable = sum(ch.isprintable() and ch != "\ufffd" for ch in text)
    return text if printable / len(text) >= 0.9 else None


def normalize_make(value: Any) -> str | None:
    """The make label: ``NIKON CORPORATION`` -> ``Nikon`` (see :data:`VENDORS`).

    Corporate suffixes are removed and the rest looked up in :data:`VENDORS`;
    an unknown make keeps its cleaned spelling without the suffixes.
    """
    text = clean_text(value)
    if text is None:
        return None
    base = text
    while True:
        stripped = _SUFFIXES.sub("", base).strip()
        if stripped == base or not stripped:
            break
        base = stripped
    return VENDORS.get(base.casefold(), VENDORS.get(text.casefold(), base))


def normalize_model(value: Any, make: str | None, raw_make: Any = None) -> str | None:
    """The model label with the make written once in front: ``Canon EOS 70D``, ``Nikon D5500``.

    The make is removed wherever the model starts with it (the make label, the
    raw Make tag or its first word, as a whole word, repeatedly:
    ``Canon`` + ``Canon EOS 70D``, ``NIKON CORPORATION`` + ``NIKON D5500``,
    ``SAMSUNG`` + ``SAMSUNG-SM-G930F``) before the make label is put in front,
    so model classes are unique across makes and never say the make twice. A
    model that is only the make (Jolla's phones write Make ``Jolla``, Model
    ``Jolla``) is the make label itself. Without a make the model is kept as is.
    """
    text = clean_text(value)
    if text is None:
        return None
    if make is None:
        return text
    prefixes = {make}
    raw = clean_text(raw_make)
    if raw:
        prefixes.add(raw)
        prefixes.add(raw.split()[0])
    ordered = sorted(prefixes, key=len, reverse=True)
    stripped = True
    while stripped:
        stripped = False
        for prefix in ordered:
            n = len(prefix)
            head, rest = text[:n], text[n:]
            if head.casefold() == prefix.casefold() and not rest[:1].isalnum():
                rest = rest.lstrip(" -_")
                if not rest:
                    return make  # the model names only the make
                text, stripped = rest, True
                break
    return f"{make} {text}"


def rational(value: Any) -> float | None:
    """A positive finite number from an IFDRational, a (num, den) tuple or a number; else None."""
    if isinstance(value, (tuple, list)):
        if len(value) == 2 and all(isinstance(v, int) for v in value):
            num, den = value
            if den == 0:
                return None
            value = num / den
        elif len(value) >= 1:
            return rational(value[0])
        else:
            return None
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not math.isfinite(number) or number <= 0:
        return None
    return number


#: Longer "exposures" are corrupt values (e.g. 2**32 - 1), treated as missing.
MAX_EXPOSURE_S = 3600.0

#: An exposure is written ``1/N`` when it is within this relative distance of 1/N:
#: what a six-significant-digit decimal of 1/N (``0.333333``) or a binary float of
#: it can be off by, far below the 0.1% between ``0.333`` and 1/3.
ONE_OVER_N_TOLERANCE = 5e-6

#: A number is written as the shortest decimal within this relative distance of the
#: stored rational: single precision (2**-24 ~ 6e-8, rounded up), as phones that
#: compute in float32 store f/2.2 as 9227469/4194304 = 2.2000000477; so that is
#: ``2.2``, and 10/13 is ``0.7692308``.
DECIMAL_TOLERANCE = 1e-7


def exact_decimal(value: float) -> str:
    """The shortest plain decimal within :data:`DECIMAL_TOLERANCE` of ``value``.

    ``0.3`` -> ``0.3``, ``0.0735`` -> ``0.0735``, ``9227469/4194304`` -> ``2.2``,
    ``10/13`` -> ``0.7692308``, ``8.0`` -> ``8``: exact values, never binned.
    """
    text = repr(value)
    for digits in range(1, 18):
        candidate = f"{value:.{digits}g}"
        if abs(float(candidate) - value) <= DECIMAL_TOLERANCE * abs(value):
            text = candidate
            break
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    return text


def format_exposure(seconds: float) -> str:
    """The exposure class of ``seconds``: ``1/N`` when it is 1/N, else its exact decimal.

    ``0.004`` -> ``1/250``, 10/30 and ``0.333333`` -> ``1/3`` (within
    :data:`ONE_OVER_N_TOLERANCE`), ``0.3`` -> ``0.3``, ``0.333`` -> ``0.333``,
    ``0.35`` -> ``0.35``, ``0.0735`` -> ``0.0735``, ``2.0`` -> ``2``,
    ``1.25`` -> ``1.25`` (:func:`exact_decimal`). The number is exiftool's
    ``-n`` value of ExposureTime.
    """
    if 0 < seconds < 1.0:
        n = round(1.0 / seconds)
        if n >= 2 and abs(seconds * n - 1.0) <= ONE_OVER_N_TOLERANCE:
            return f"1/{n}"
    return exact_decimal(seconds)


def format_aperture(f_number: float) -> str:
    """The aperture class, the exact f-number: ``2.8``, ``1.79``, ``11.0`` -> ``11``."""
    return exact_decimal(f_number)


def format_focal_length(mm: float) -> str:
    """The focal-length class: ``50.0`` -> ``50 mm``, ``4.25`` -> ``4.25 mm`` (exact, in mm)."""
    return f"{exact_decimal(mm)} mm"


def _iso(value: Any) -> int | None:
    if isinstance(value, (tuple, list)):
        value = value[0] if value else None
    if isinstance(value, bytes) or value is None:
        return None
    try:
        number = int(float(value))
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


# --------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class ExifRecord:
    """The normalized EXIF of one photo."""

    path: str  #: the file
    status: str  #: ``ok``, ``no exif`` or ``unreadable exif: <reason>``
    make: str | None = None  #: normalized make
    model: str | None = None  #: normalized model, make included
    smartphone: bool | None = None  #: from the smartphone table; None when unknown
    exposure: str | None = None  #: ``1/250``
    aperture: str | None = None  #: ``2.8``
    iso: int | None = None  #: ``200``
    focal_length: str | None = None  #: ``50 mm``
    software: str | None = None  #: the Software tag, cleaned
    edited: bool = False  #: Software names an editor
    datetime: str | None = None  #: DateTime, cleaned
    orientation: int | None = None  #: Orientation 1..8
    raw: dict[str, str] = field(default_factory=dict)  #: the raw values read, as text

    def labels(self) -> dict[str, str]:
        """The acquisition labels present, as strings (``ImageItem.meta`` form)."""
        out: dict[str, str] = {}
        if self.make:
            out["make"] = self.make
        if self.model:
            out["model"] = self.model
        if self.smartphone is not None:
            out["smartphone"] = "smartphone" if self.smartphone else "camera"
        if self.exposure:
            out["exposure"] = self.exposure
        if self.aperture:
            out["aperture"] = self.aperture
        if self.iso is not None:
            out["iso"] = str(self.iso)
        if self.focal_length:
            out["focal_length"] = self.focal_length
        return out


def read_exif(path: str | Path, table: SmartphoneTable | None = None) -> ExifRecord:
    """Read and normalize one file's EXIF; never raises for a bad file (see ``status``)."""
    from PIL import Image, UnidentifiedImageError

    table = table or SmartphoneTable()
    try:
        with warnings.catch_warnings(record=True) as caught, Image.open(path) as img:
            # Pillow warns ("Corrupt EXIF data") instead of raising on a broken block.
            warnings.simplefilter("always")
            exif = img.getexif()
            sub = exif.get_ifd(_EXIF_IFD) if _EXIF_IFD in exif else {}
            tags = dict(exif)
            tags.update(sub)
            has_block = "exif" in img.info
    except (
        OSError,
        UnidentifiedImageError,
        SyntaxError,
        ValueError,
        TypeError,
        KeyError,
        Image.DecompressionBombError,  # refused at open, before any EXIF is read
    ) as exc:
        # Pillow raises these on truncated or corrupt EXIF blocks.
        return ExifRecord(str(path), f"unreadable exif: {type(exc).__name__}: {exc}")
    tags.pop(_EXIF_IFD, None)
    if not tags:
        if has_block:
            reason = str(caught[0].message).strip() if caught else "the EXIF block cannot be parsed"
            return ExifRecord(str(path), f"unreadable exif: {reason}")
        return ExifRecord(str(path), "no exif")
    raw = {f"0x{k:04x}": repr(v)[:80] for k, v in tags.items() if k in _READ_TAGS}
    make = normalize_make(tags.get(_MAKE))
    model = normalize_model(tags.get(_MODEL), make, tags.get(_MAKE))
    exposure = rational(tags.get(_EXPOSURE))
    f_number = rational(tags.get(_FNUMBER))
    focal = rational(tags.get(_FOCAL))
    software = clean_text(tags.get(_SOFTWARE))
    orientation = tags.get(_ORIENTATION)
    return ExifRecord(
        path=str(path),
        status="ok",
        make=make,
        model=model,
        smartphone=table.lookup(make, model),
        exposure=format_exposure(exposure) if exposure and exposure <= MAX_EXPOSURE_S else None,
        aperture=format_aperture(f_number) if f_number else None,
        iso=_iso(tags.get(_ISO)),
        focal_length=format_focal_length(focal) if focal else None,
        software=software,
        edited=bool(software and EDITOR_PATTERN.search(software)),
        datetime=clean_text(tags.get(_DATETIME)),
        orientation=orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else None,
        raw=raw,
    )


_READ_TAGS = frozenset(
    {_MAKE, _MODEL, _SOFTWARE, _DATETIME, _ORIENTATION, _EXPOSURE, _FNUMBER, _ISO, _FOCAL}
)
