"""Plain-text forms of measured values and durations, for messages and summaries.

One formatter for the gate and baseline messages, the terminal summary and
the JUnit properties (the HTML report has its own, HTML-aware formatters in
:mod:`pytest_metatrace.report.formatting`, which build on these). Stdlib only
(plugin load).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["format_apart", "format_duration", "format_measure"]


def format_measure(
    value: Any, unit: str, *, signed: bool = False, digits: int | None = None
) -> str:
    """``84.1%`` for a fraction (``+2.0 points`` signed), else 4 significant digits.

    ``digits`` overrides the decimals of a fraction's percent (1) or the
    significant digits of other units (4). A missing or non-finite value
    prints as ``n/a``.
    """
    if value is None or not math.isfinite(float(value)):
        return "n/a"
    sign = "+" if signed else ""
    if unit == "fraction":
        places = 1 if digits is None else digits
        return f"{100 * float(value):{sign}.{places}f}" + (" points" if signed else "%")
    return f"{float(value):{sign}.{4 if digits is None else digits}g}"


def _rounded(value: float, unit: str, digits: int) -> float:
    return float(f"{100 * value:.{digits}f}" if unit == "fraction" else f"{value:.{digits}g}")


def format_apart(
    value: float, bound: float, unit: str, *, signed: bool = False, bound_signed: bool = False
) -> tuple[str, str]:
    """``value`` and ``bound`` printed with the digits that keep their order visible.

    A gate compares ``value`` (an interval's lower end) with ``bound`` (a
    threshold or a tolerance): when ``value > bound``, the printed numbers must
    read that way too, never "+0.0 points exceeds 0.0 points". Rounding is
    monotonic, so ``value <= bound`` always prints in order; a strict excess
    gets up to 8 more digits than :func:`format_measure` gives.
    """
    base = 1 if unit == "fraction" else 4
    digits = base
    finite = math.isfinite(value) and math.isfinite(bound)
    if finite and value > bound:
        while digits < base + 8 and not _rounded(value, unit, digits) > _rounded(
            bound, unit, digits
        ):
            digits += 1
    return (
        format_measure(value, unit, signed=signed, digits=digits),
        format_measure(bound, unit, signed=bound_signed, digits=digits),
    )


def format_duration(seconds: float, *, compact: bool = False) -> str:
    """``42.1 s``, ``3 min 12 s``, ``1 h 02 min``; ``compact``: ``42s``, ``3m12s``, ``1h02m``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f}s" if compact else f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds) if not compact else int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s" if compact else f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if compact else f"{hours} h {minutes:02d} min"
