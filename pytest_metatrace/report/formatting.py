"""Number formatting shared by the report's tables and charts.

Every formatter accepts anything a JSON document may hold (``None``, strings,
booleans, NaN) and returns a string, so that a partial or hand-edited
document renders instead of crashing. Missing values print as an em dash.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .. import _format

__all__ = [
    "MISSING",
    "as_float",
    "display_scalar",
    "format_count",
    "format_duration",
    "format_interval",
    "format_number",
    "format_percent",
    "format_value",
    "is_difference",
    "is_fraction",
]

#: What a missing or non-numeric value prints as.
MISSING = "—"

# Metric-name endings that mark a difference of two fractions; those print in
# percentage points with a sign, so that "+3.2 pp" cannot be read as a level.
_DIFFERENCE_SUFFIXES = ("_gap", "_diff", "_delta", "_drop")


def as_float(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` (for None, NaN, bools, text)."""
    # bool is an int subclass; a True in a number slot is a bug, not a 1.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def is_fraction(unit: Any) -> bool:
    """True when values in ``unit`` are shown as percentages."""
    return unit in (None, "fraction")


def is_difference(metric: Any) -> bool:
    """True when ``metric`` names a difference (shown signed, in points)."""
    return isinstance(metric, str) and metric.endswith(_DIFFERENCE_SUFFIXES)


def format_percent(value: Any, *, decimals: int = 1, signed: bool = False, sign: str = "%") -> str:
    """A fraction as a percentage: ``0.6234`` -> ``62.3%``."""
    number = as_float(value)
    if number is None:
        return MISSING
    text = f"{number * 100:+.{decimals}f}" if signed else f"{number * 100:.{decimals}f}"
    # "-0.0%" is rounding noise around zero, not a negative result.
    if text.lstrip("+-").strip("0.") == "":
        text = f"{0:+.{decimals}f}" if signed else f"{0:.{decimals}f}"
    return text + sign


def format_number(value: Any, *, digits: int = 4) -> str:
    """A plain number with ``digits`` significant digits (integers stay whole)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return format_count(value)
    number = as_float(value)
    if number is None:
        return MISSING
    if number == 0:
        return "0"
    if abs(number) >= 10 ** (digits + 2) or abs(number) < 1e-4:
        return f"{number:.{max(digits - 1, 0)}e}"
    return f"{number:.{digits}g}"


def format_count(value: Any) -> str:
    """An integer count with thousands separators: ``12345`` -> ``12,345``."""
    number = as_float(value)
    if number is None:
        return MISSING
    if number != int(number):
        return format_number(number)
    return f"{int(number):,}"


def format_value(value: Any, unit: Any = "fraction", metric: Any = None) -> str:
    """A record value in its unit: ``62.3%``, ``+3.2 pp`` or ``0.01234``."""
    if is_fraction(unit):
        if is_difference(metric):
            return format_percent(value, signed=True, sign=" pp")
        return format_percent(value)
    return format_number(value)


def _bound(value: Any, unit: Any) -> str:
    if is_fraction(unit):
        return format_percent(value, sign="")
    return format_number(value)


def format_interval(
    value: Any, interval: Mapping[str, Any] | None, unit: Any = "fraction", metric: Any = None
) -> str:
    """Value and interval: ``62.3% [58.1, 66.0]``; just the value without an interval."""
    text = format_value(value, unit, metric)
    if not isinstance(interval, Mapping):
        return text
    low, high = as_float(interval.get("low")), as_float(interval.get("high"))
    if low is None or high is None:
        return text
    return f"{text} [{_bound(low, unit)}, {_bound(high, unit)}]"


def display_scalar(value: Any) -> str:
    """A JSON leaf as text, verbatim (``None`` as an em dash, lists in brackets)."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(display_scalar(v) for v in value) + "]"
    return str(value)


def format_duration(seconds: Any) -> str:
    """``42.1 s``, ``3 min 12 s`` or ``1 h 02 min``."""
    value = as_float(seconds)
    return MISSING if value is None else _format.format_duration(value)
