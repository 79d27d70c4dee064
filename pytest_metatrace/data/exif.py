"""Read and normalize camera EXIF into the acquisition labels of the paper (Sec. 3.2).

Pillow reads the tags (``Image.getexif()`` and its Exif sub-IFD): it is
already a dependency, it parses the JPEG/TIFF/WebP/PNG containers the loader
accepts, and it never needs the (often corrupt) MakerNote, which this module
ignores. Real EXIF is messy; every value is normalized to an *exact-value
class* (docs/protocol.md §4: classes are exact values, not bins):

======================  =========================================  ===============
label                   source tag(s)                              class, e.g.
======================  =========================================  ===============
``make``                Make (vendor spellings unified)            ``Nikon``
``model``               Model (make prefix removed, make added)    ``Nikon D5500``
``smartphone``          make/model in :data:`SMARTPHONE_TABLE`     ``smartphone``
``exposure``            ExposureTime (seconds)                     ``1/250``
``aperture``            FNumber                                    ``2.8``
``iso``                 ISOSpeedRatings / PhotographicSensitivity  ``200``
``focal_length``        FocalLength (mm)                           ``50 mm``
======================  =========================================  ===============

Text tags lose NUL bytes, trailing spaces and repeated blanks; text that is
mostly unprintable is treated as missing. Rationals may come as Pillow's
``IFDRational``, ``(numerator, denominator)`` tuples or numbers; a zero
denominator or a non-positive value is missing, not a crash. ``Software``
naming an editor (Photoshop, Lightroom, GIMP ...) flags the photo as edited.
"""

from __future__ import annotations

import csv
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

__all__ = [
    "EDITOR_PATTERN",
    "EXIF_LABELS",
    "SMARTPHONE_TABLE",
    "ExifRecord",
    "SmartphoneRule",
    "SmartphoneTable",
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

#: Vendor spellings -> one make (keys compared case-insensitively, suffixes already removed).
_MAKE_ALIASES: Mapping[str, str] = {
    "nikon": "Nikon",
    "canon": "Canon",
    "sony": "Sony",
    "apple": "Apple",
    "samsung": "Samsung",
    "samsung techwin": "Samsung",
    "olympus": "Olympus",
    "olympus imaging": "Olympus",
    "om digital solutions": "OM System",
    "fujifilm": "Fujifilm",
    "fuji photo film": "Fujifilm",
    "panasonic": "Panasonic",
    "pentax": "Pentax",
    "asahi optical": "Pentax",
    "ricoh": "Ricoh",
    "ricoh imaging": "Ricoh",
    "pentax ricoh": "Ricoh",
    "eastman kodak": "Kodak",
    "kodak": "Kodak",
    "leica": "Leica",
    "leica camera": "Leica",
    "huawei": "Huawei",
    "xiaomi": "Xiaomi",
    "google": "Google",
    "oneplus": "OnePlus",
    "motorola": "Motorola",
    "lg electronics": "LG",
    "lge": "LG",
    "lg": "LG",
    "htc": "HTC",
    "oppo": "OPPO",
    "vivo": "vivo",
    "honor": "Honor",
    "hmd global": "Nokia",
    "nokia": "Nokia",
    "minolta": "Minolta",
    "konica minolta": "Konica Minolta",
    "casio computer": "Casio",
    "casio": "Casio",
    "hasselblad": "Hasselblad",
    "sigma": "Sigma",
    "gopro": "GoPro",
    "dji": "DJI",
}

# Corporate suffixes dropped before the alias lookup ("NIKON CORPORATION" -> "nikon").
_SUFFIXES = re.compile(
    r"[\s,.]+(corporation|corp|co|ltd|limited|inc|company|imaging|gmbh|ag|s\.?a)\.?$", re.I
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


#: Built-in rules, most specific first (a make's model rules before its catch-all).
SMARTPHONE_TABLE: tuple[SmartphoneRule, ...] = (
    SmartphoneRule("Samsung", r"\b(SM-[A-Z]|GT-I|GT-N|SGH-|SCH-|SPH-|Galaxy)", True),
    SmartphoneRule("Samsung", None, False),  # NX, WB, ES ... compact and system cameras
    SmartphoneRule("Sony", r"Xperia|\b(SO-|SOV|XQ-)|\b[CDEFGHJ]\d{4}\b", True),
    SmartphoneRule("Sony", None, False),  # DSC-, ILCE-, NEX-, SLT-, DSLR-
    SmartphoneRule("Panasonic", r"\bDMC-CM", True),  # Lumix CM1/CM10 phones
    SmartphoneRule("Leica", r"\bLeitz Phone", True),
    *(
        SmartphoneRule(m, None, True)
        for m in (
            "Apple",
            "Huawei",
            "Xiaomi",
            "Google",
            "OnePlus",
            "Motorola",
            "LG",
            "HTC",
            "OPPO",
            "vivo",
            "Honor",
            "Nokia",
            "realme",
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
            "OM System",
            "Fujifilm",
            "Panasonic",
            "Pentax",
            "Ricoh",
            "Kodak",
            "Leica",
            "Minolta",
            "Konica Minolta",
            "Casio",
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
        """Rules from a CSV with columns ``make,model,smartphone`` (model: regex or empty).

        ``smartphone`` is ``yes``/``no`` (or true/false, 1/0). Raises
        :class:`ValueError` naming the line of a bad row.
        """
        rules: list[SmartphoneRule] = []
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = {"make", "smartphone"} - set(reader.fieldnames or [])
            if missing:
                raise ValueError(
                    f"smartphone table {path} lacks column(s) {sorted(missing)}; "
                    "the header must be make,model,smartphone"
                )
            for row in reader:
                answer = (row.get("smartphone") or "").strip().lower()
                if answer not in ("yes", "no", "true", "false", "1", "0"):
                    raise ValueError(
                        f"{path}:{reader.line_num}: smartphone must be yes or no, got {answer!r}"
                    )
                pattern = (row.get("model") or "").strip() or None
                if pattern is not None:
                    try:
                        re.compile(pattern)
                    except re.error as exc:
                        raise ValueError(
                            f"{path}:{reader.line_num}: model {pattern!r} is not a valid "
                            f"regular expression ({exc})"
                        ) from None
                make = normalize_make((row.get("make") or "").strip()) or ""
                rules.append(SmartphoneRule(make, pattern, answer in ("yes", "true", "1")))
        return cls(rules)

    def lookup(self, make: str | None, model: str | None) -> bool | None:
        """True (phone), False (camera) or None (make unknown to every rule)."""
        if make is None:
            return None
        for rule in self.rules:
            if rule.matches(make, model):
                return rule.smartphone
        return None


# --------------------------------------------------------------------------------------
# Value normalization


def clean_text(value: Any) -> str | None:
    """Text of a tag without NUL padding and blanks; None when empty or mostly unprintable."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    text = value.split("\x00", 1)[0]  # C strings: anything after the first NUL is padding
    text = " ".join(text.split())
    if not text:
        return None
    printable = sum(ch.isprintable() and ch != "\ufffd" for ch in text)
    return text if printable / len(text) >= 0.9 else None


def normalize_make(value: Any) -> str | None:
    """``NIKON CORPORATION`` / ``NIKON`` -> ``Nikon``; unknown makes keep their spelling."""
    text = clean_text(value)
    if text is None:
        return None
    base = text
    while True:
        stripped = _SUFFIXES.sub("", base).strip()
        if stripped == base or not stripped:
            break
        base = stripped
    return _MAKE_ALIASES.get(base.casefold(), _MAKE_ALIASES.get(text.casefold(), base))


def normalize_model(value: Any, make: str | None, raw_make: Any = None) -> str | None:
    """The model with the make written once in front: ``Canon EOS 70D``, ``Nikon D5500``.

    A make repeated inside the model (``Canon`` + ``Canon EOS 70D``,
    ``NIKON CORPORATION`` + ``NIKON D5500``) is removed before the
    normalized make is prefixed, so that model classes are unique across makes.
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
    for prefix in sorted(prefixes, key=len, reverse=True):
        if text.casefold().startswith(prefix.casefold()):
            rest = text[len(prefix) :].lstrip(" -_")
            if rest:
                text = rest
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


def format_exposure(seconds: float) -> str:
    """``0.004`` -> ``1/250``; one second and longer as decimal seconds (``2``, ``1.3``)."""
    if seconds >= 1.0 - 1e-9:
        return f"{round(seconds, 1):g}"
    inverse = 1.0 / seconds
    if abs(inverse - round(inverse)) < 0.05 * inverse or inverse >= 3:
        return f"1/{round(inverse)}"
    frac = Fraction(seconds).limit_denominator(10)
    return f"{frac.numerator}/{frac.denominator}"


def format_aperture(f_number: float) -> str:
    """``2.8`` -> ``2.8``, ``11.0`` -> ``11`` (one decimal, as lenses are marked)."""
    return f"{round(f_number, 1):g}"


def format_focal_length(mm: float) -> str:
    """``50.0`` -> ``50 mm``, ``4.25`` -> ``4.2 mm`` (one decimal)."""
    return f"{round(mm, 1):g} mm"


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
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, TypeError, KeyError) as exc:
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
