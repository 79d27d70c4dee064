"""Parametric processing views: JPEG quality, sharpening factor, resize factor by name.

Besides the 14 fixed classes of docs/protocol.md §1, :func:`get_processing`
accepts three name forms whose number is the operation's parameter:

* ``jpeg<q>_<444|420>``: JPEG quality ``q`` (an integer, 1..100) with 4:4:4
  or 4:2:0 chroma subsampling, decoded again (the bare JPEG classes);
* ``sharpen<f>``: ``ImageEnhance.Sharpness`` factor ``f`` (0..10; 1 is the
  identity), then the protocol's JPEG 95 4:4:4 re-encode;
* ``resize<r>``: bilinear rescale by ``r`` (0 < r <= 4, sizes truncated as
  for ``resize_half``), then JPEG 95 4:4:4.

Each parses to a :class:`~pytest_metatrace.processing.ops.ProcessingOp` of
the same kind as the fixed classes, so it is applied by the same code (hence
bit-exact with the Pillow calls of the fixed classes) and cached under its
name and parameter like them. Names are strict and canonical: the number is
written as Python's shortest ``repr`` of it, without a trailing ``.0``
(``sharpen1.2``, ``resize0.9``, ``sharpen2``); ``sharpen1.20``,
``sharpen2.0`` or ``jpeg092_444`` are refused with the canonical spelling in
the message, so one operation never has two cache entries under two names.
A name whose parameter is a fixed class's returns that class itself:
``jpeg75_420`` is the catalog's, ``sharpen2`` and ``sharpen4`` are the
catalog's, and ``resize0.5`` / ``resize2`` return ``resize_half`` /
``resize_double`` (their cache rows are shared).
"""

from __future__ import annotations

import math
import re

from pytest_metatrace.processing.ops import PROCESSING_CLASSES, ProcessingOp

__all__ = [
    "JPEG_QUALITY_RANGE",
    "PARAMETRIC_FORMS",
    "RESIZE_RANGE",
    "SHARPEN_RANGE",
    "ProcessingNameError",
    "format_number",
    "parametric_name",
    "parse_parametric",
]

#: Accepted JPEG qualities, inclusive (Pillow's range is 0..100; 0 is not a quality).
JPEG_QUALITY_RANGE = (1, 100)
#: Accepted sharpening factors, inclusive (0 blurs, 1 is the identity, 2 and 4 are classes).
SHARPEN_RANGE = (0.0, 10.0)
#: Accepted resize factors: ``low < r <= high`` (0.5 and 2 are the fixed classes).
RESIZE_RANGE = (0.0, 4.0)

#: The accepted parametric forms, for error messages.
PARAMETRIC_FORMS = (
    "jpeg<q>_444 / jpeg<q>_420 (integer quality 1..100, e.g. jpeg92_444)",
    "sharpen<f> (factor 0..10, e.g. sharpen1.2)",
    "resize<r> (factor 0 < r <= 4, e.g. resize0.9)",
)

_SUB_NAMES = {"444": "4:4:4", "420": "4:2:0"}
_JPEG = re.compile(r"jpeg(\d+)_(444|420)")
_FACTOR = re.compile(r"(sharpen|resize)(\d+(?:\.\d+)?)")
_FIXED_FACTORS = {("resize", 0.5): "resize_half", ("resize", 2.0): "resize_double"}


class ProcessingNameError(KeyError):
    """A processing name that is neither a fixed class nor a valid parametric form.

    A :class:`KeyError` (what an unknown class always raised) whose ``str`` is
    the message itself, not its ``repr``.
    """

    def __str__(self) -> str:
        return str(self.args[0])


def format_number(value: float) -> str:
    """The canonical spelling of a factor in a name: shortest ``repr``, no trailing ``.0``.

    ``format_number(1.2) == "1.2"``, ``format_number(2.0) == "2"``.
    """
    text = repr(float(value))
    if "e" in text or "inf" in text or "nan" in text:
        raise ProcessingNameError(f"cannot name a factor of {value!r}: write it as a decimal")
    return text[:-2] if text.endswith(".0") else text


def parametric_name(kind: str, value: float, subsampling: str = "444") -> str:
    """The canonical name of a parametric view.

    ``kind`` is ``jpeg`` (``value`` the quality, ``subsampling`` ``444`` or
    ``420``), ``sharpen`` or ``resize`` (``value`` the factor). The name is
    checked: ``get_processing(parametric_name(...))`` never fails.
    """
    if kind == "jpeg":
        if float(value) != int(value):
            raise ProcessingNameError(f"a JPEG quality is an integer, got {value!r}")
        name = f"jpeg{int(value)}_{subsampling}"
    elif kind in ("sharpen", "resize"):
        name = f"{kind}{format_number(value)}"
    else:
        raise ProcessingNameError(f"unknown parametric kind {kind!r}; known: jpeg, sharpen, resize")
    parse_parametric(name)  # range and canonical form
    return name


def _refuse(name: str, why: str) -> ProcessingNameError:
    return ProcessingNameError(
        f"processing {name!r}: {why}; accepted parametric forms: " + "; ".join(PARAMETRIC_FORMS)
    )


def parse_parametric(name: str) -> ProcessingOp | None:
    """The operation a parametric ``name`` stands for, or None if it has no parametric form.

    Raises :class:`ProcessingNameError` for a name of a parametric form whose
    number is out of range or not in canonical spelling.
    """
    if name in PROCESSING_CLASSES:
        return PROCESSING_CLASSES[name]
    m = _JPEG.fullmatch(name)
    if m is not None:
        text, sub = m.groups()
        quality = int(text)
        q_low, q_high = JPEG_QUALITY_RANGE
        if not q_low <= quality <= q_high:
            raise _refuse(name, f"JPEG quality must be {q_low}..{q_high}, got {quality}")
        if text != str(quality):
            raise _refuse(name, f"write the quality without leading zeros: jpeg{quality}_{sub}")
        return ProcessingOp(name, "jpeg", {"quality": quality, "subsampling": _SUB_NAMES[sub]})
    m = _FACTOR.fullmatch(name)
    if m is None:
        return None
    kind, text = m.groups()
    value = float(text)
    if not math.isfinite(value):  # pragma: no cover - the pattern admits only decimals
        raise _refuse(name, "the factor must be finite")
    if kind == "sharpen":
        low, high = SHARPEN_RANGE
        if not low <= value <= high:
            raise _refuse(name, f"sharpening factor must be {low:g}..{high:g}, got {text}")
    else:
        low, high = RESIZE_RANGE
        if not low < value <= high:
            raise _refuse(name, f"resize factor must be > {low:g} and <= {high:g}, got {text}")
    canonical = f"{kind}{format_number(value)}"
    if canonical != name:
        raise _refuse(name, f"write the factor in canonical form: {canonical!r}")
    fixed = _FIXED_FACTORS.get((kind, value))
    if fixed is not None:
        return PROCESSING_CLASSES[fixed]
    if canonical in PROCESSING_CLASSES:  # sharpen2, sharpen4
        return PROCESSING_CLASSES[canonical]
    key = "factor" if kind == "sharpen" else "scale"
    return ProcessingOp(name, kind, {key: value})
