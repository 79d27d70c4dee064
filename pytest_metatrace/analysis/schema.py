"""Readers for typed ``details``: one vocabulary from engine to report.

An analysis result turns into records whose ``details`` is a typed class's
``to_dict()``; the report rebuilds the same class with ``from_dict`` and
reads attributes, never raw keys (each audit keeps its classes in its folder,
``results.py``). These readers make ``from_dict`` accept documents written by
older versions and by hand: a missing or mistyped field takes its empty
value, so the report shows a dash, not a traceback. This module imports
neither torch nor numpy, so the report (and ``python -m
pytest_metatrace.report``) stays light.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["as_float", "as_floats", "as_int", "as_map", "as_seq", "as_str"]


def as_float(value: Any) -> float | None:
    """``value`` as a finite float, else ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        out = float(value)
    except ValueError:
        return None
    return out if math.isfinite(out) else None


def as_int(value: Any) -> int | None:
    """``value`` as an int (via :func:`as_float`), else ``None``."""
    number = as_float(value)
    return None if number is None else int(number)


def as_str(value: Any) -> str | None:
    """``value`` as a string, ``None`` kept."""
    return None if value is None else str(value)


def as_map(value: Any) -> Mapping[str, Any]:
    """``value`` if it is a mapping, else an empty one."""
    return value if isinstance(value, Mapping) else {}


def as_seq(value: Any) -> list[Any]:
    """``value`` as a list if it is a list or tuple, else an empty list."""
    return list(value) if isinstance(value, (list, tuple)) else []


def as_floats(value: Any) -> list[float | None]:
    """Each element of ``value`` through :func:`as_float`."""
    return [as_float(v) for v in as_seq(value)]
