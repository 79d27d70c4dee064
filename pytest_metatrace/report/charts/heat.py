"""Heat-map cell colours: sequential (accuracies) and diverging (gaps) scales, as inline CSS."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .svg import INK

_WHITE = (255, 255, 255)
_HEAT_HIGH = (0, 114, 178)  # Okabe-Ito blue
_HEAT_NEGATIVE = (0, 114, 178)  # diverging scales: blue below zero...
_HEAT_POSITIVE = (213, 94, 0)  # ...vermillion above (a trace: the gaps the gates test)


def _mix(color: tuple[int, int, int], share: float) -> tuple[int, int, int]:
    r, g, b = (round(255 + (c - 255) * share) for c in color)
    return r, g, b


def _cell_css(rgb: tuple[int, int, int], share: float) -> str:
    text = "#ffffff" if share > 0.55 else INK
    return f"background:#{rgb[0]:02x}{rgb[1]:02x}{rgb[2]:02x};color:{text}"


def _hex(rgb: tuple[int, int, int]) -> str:
    return f"#{rgb[0]:02x}{rgb[1]:02x}{rgb[2]:02x}"


def heat_style(share: float | None) -> str:
    """Inline CSS for a heat-map cell: white to blue by ``share`` in [0, 1]."""
    if share is None or not math.isfinite(share):
        return "background:#ffffff;color:#999999"
    share = min(max(share, 0.0), 1.0)
    # Interpolate white -> Okabe-Ito blue (0, 114, 178); a single hue reads the
    # same under colour-vision deficiencies and in greyscale print.
    return _cell_css(_mix(_HEAT_HIGH, share), share)


@dataclass(frozen=True)
class HeatScale:
    """The colour scale of one heat map, spanning the values it shows.

    A fixed 0..1 scale shades accuracies of 96.0% and 97.3% the same dark
    blue; spanning the data range makes third-decimal differences visible,
    and the legend (:meth:`gradient`, with the two ends) says what the
    colours mean. A diverging scale is symmetric around zero: blue below,
    vermillion above, white at zero, for differences such as the gaps.
    """

    low: float  #: value shaded white (sequential) or full blue (diverging)
    high: float  #: value shaded full blue (sequential) or full vermillion (diverging)
    diverging: bool = False

    @classmethod
    def spanning(cls, values: Sequence[float | None], *, diverging: bool = False) -> HeatScale:
        """The scale from the smallest to the largest finite value (``±max|v|`` if diverging)."""
        finite = [v for v in values if v is not None and math.isfinite(v)]
        if not finite:
            return cls(0.0, 0.0, diverging)
        if diverging:
            extent = max(abs(v) for v in finite)
            return cls(-extent, extent, True)
        return cls(min(finite), max(finite), False)

    def share(self, value: float) -> float:
        """Where ``value`` sits on the scale: 0..1, or -1..1 when diverging."""
        if self.high <= self.low:
            return 0.0 if self.diverging else 0.5  # one value: a mid shade, not an extreme
        if self.diverging:
            return min(max(value / self.high, -1.0), 1.0)
        return min(max((value - self.low) / (self.high - self.low), 0.0), 1.0)

    def style(self, value: float | None) -> str:
        """Inline CSS for a cell holding ``value`` (``None``: an empty white cell)."""
        if value is None or not math.isfinite(value):
            return "background:#ffffff;color:#999999"
        share = self.share(value)
        if self.diverging:
            color = _HEAT_POSITIVE if share >= 0 else _HEAT_NEGATIVE
            return _cell_css(_mix(color, abs(share)), abs(share))
        return _cell_css(_mix(_HEAT_HIGH, share), share)

    def gradient(self) -> str:
        """A CSS ``linear-gradient`` of the scale, left (low) to right (high), for its legend."""
        stops = [_HEAT_NEGATIVE, _WHITE, _HEAT_POSITIVE] if self.diverging else [_WHITE, _HEAT_HIGH]
        return "linear-gradient(to right, " + ", ".join(_hex(c) for c in stops) + ")"
