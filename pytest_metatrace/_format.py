"""Plain-text forms of measured values and durations, for messages and summaries.

One formatter for the gate and baseline messages, the terminal summary and
the JUnit properties (the HTML report has its own, HTML-aware formatters in
:mod:`pytest_metatrace.report.formatting`, which build on these). Stdlib only
(plugin load).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["format_duration", "format_measure"]


def format_measure(value: Any, unit: str, *, signed: bool = False) -> str:
    """``84.1%`` for a fraction (``+2.0 points`` signed), else 4 significant digits.

    A missing or non-finite value prints as ``n/a``.
    """
    if value is None or not math.isfinite(float(value)):
        return "n/a"
    sign = "+" if signed else ""
    if unit == "fraction":
        return f"{100 * float(value):{sign}.1f}" + (" points" if signed else "%")
    return f"{float(value):{sign}.4g}"


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
