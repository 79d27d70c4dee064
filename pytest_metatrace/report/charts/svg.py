"""The primitives every chart of the report is drawn with: palette, ticks, elements, legends.

One idiom for every figure: build a list of element strings with
:func:`svg_element` (text escaped by :func:`svg_text`), lay text out with
:func:`text_width`, add a legend with :func:`legend_items` and wrap the body in
:func:`svg_document`. Colours follow the Okabe-Ito palette, which stays
distinguishable under the common colour-vision deficiencies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

__all__ = [
    "CHAR_W",
    "FONT",
    "GRID",
    "INK",
    "MAX_PLOT_W",
    "MUTED",
    "PALETTE",
    "SLANT_BELOW",
    "SLANT_CHARS",
    "LegendItem",
    "legend_items",
    "nice_ceiling",
    "nice_ticks",
    "series_color",
    "svg_attrs",
    "svg_document",
    "svg_element",
    "svg_text",
    "svg_title",
    "text_width",
    "x_axis_label",
    "y_axis_label",
]

#: Okabe-Ito colours, most distinct first (yellow last: weak on white paper).
PALETTE = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#D55E00",  # vermillion
    "#F0E442",  # yellow
)
INK = "#222222"
GRID = "#e3e3e3"
MUTED = "#555555"
FONT = 12
CHAR_W = 0.6  # average glyph width / font size, to lay out text without a font engine
MAX_PLOT_W = 1080.0  # widest plot area; wider charts would be scaled down to unreadable text
SLANT_BELOW = 56.0  # group slots narrower than this get slanted labels
SLANT_CHARS = 28  # slanted labels are cut to this many characters


def series_color(index: int) -> tuple[str, float]:
    """Colour and fill opacity of series ``index``.

    Past the palette's end colours repeat with a light fill (the outline keeps
    the full colour), which doubles the number of distinguishable series.
    """
    color = PALETTE[index % len(PALETTE)]
    return color, 1.0 if (index // len(PALETTE)) % 2 == 0 else 0.35


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering ``[low, high]``."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else [0.0]
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def nice_ceiling(value: float) -> float:
    """The smallest round tick value at or above ``value`` (1 for non-positive values)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    ticks = nice_ticks(0.0, value, 5)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else value
    return math.ceil(value / step - 1e-9) * step


def text_width(text: str, size: float = FONT) -> float:
    """Estimated width of ``text`` in pixels (no font engine: an average glyph width)."""
    return len(text) * size * CHAR_W


def svg_attrs(attrs: dict[str, object]) -> str:
    """Escaped SVG attributes; ``_`` in names becomes ``-``, ``None`` values are left out."""
    parts = []
    for key, value in attrs.items():
        if value is None:
            continue
        if isinstance(value, float):
            value = f"{value:.2f}".rstrip("0").rstrip(".")
        parts.append(f' {key.replace("_", "-")}="{escape(str(value), quote=True)}"')
    return "".join(parts)


def svg_element(tag: str, content: str = "", /, **attrs: object) -> str:
    """One SVG element; ``content`` must already be markup (use :func:`svg_text` for text)."""
    return f"<{tag}{svg_attrs(attrs)}>{content}</{tag}>"


def svg_text(text: str) -> str:
    """``text`` escaped for an element's content."""
    return escape(text, quote=False)


def svg_title(text: str) -> str:
    """A ``<title>`` (the hover text of its parent element), empty for no text."""
    return svg_element("title", svg_text(text)) if text else ""


def x_axis_label(text: str, cx: float, y: float) -> str:
    """A horizontal axis title centered at ``cx``, baseline ``y``."""
    return svg_element("text", svg_text(text), x=cx, y=y, text_anchor="middle", fill=MUTED)


def y_axis_label(text: str, cy: float) -> str:
    """A vertical axis title centered at height ``cy``."""
    return svg_element(
        "text",
        svg_text(text),
        x=14,
        y=cy,
        text_anchor="middle",
        fill=MUTED,
        transform=f"rotate(-90 14 {cy:.1f})",
    )


def svg_document(width: float, height: float, body: list[str], label: str) -> Markup:
    """The ``<svg>`` element holding ``body``, sized, labelled for screen readers."""
    # No xmlns: inline SVG in an HTML5 document does not need it, and the
    # report stays free of any http(s) string in attributes.
    head = (
        f'<svg class="chart" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" '
        f'height="{height:.0f}" role="img" aria-label="{escape(label, quote=True)}" '
        f'font-size="{FONT}">'
    )
    return Markup(head + svg_title(label) + "".join(body) + "</svg>")


@dataclass(frozen=True)
class LegendItem:
    """One legend entry: a swatch, a line sample or a short thick bar, and its label."""

    label: str
    color: str
    kind: str = "box"  # "box" (a swatch), "line" (a line sample), "tick" (a short thick bar)
    dash: str | None = None
    opacity: float = 1.0


def legend_items(
    items: Sequence[LegendItem], x0: float, y0: float, width: float
) -> tuple[list[str], float]:
    """Legend entries laid out left to right, wrapping at ``width``; returns (markup, height)."""
    out: list[str] = []
    x, y, row_h = x0, y0, 18.0
    for item in items:
        item_w = 22 + text_width(item.label) + 14
        if x > x0 and x + item_w > x0 + width:
            x, y = x0, y + row_h
        cy = y + row_h / 2
        if item.kind == "box":
            out.append(
                svg_element(
                    "rect",
                    x=x,
                    y=cy - 5,
                    width=14,
                    height=10,
                    fill=item.color,
                    fill_opacity=item.opacity,
                    stroke=item.color,
                )
            )
        elif item.kind == "tick":
            out.append(
                svg_element(
                    "line", x1=x, x2=x + 14, y1=cy, y2=cy, stroke=item.color, stroke_width=2.5
                )
            )
        else:
            out.append(
                svg_element(
                    "line",
                    x1=x,
                    x2=x + 16,
                    y1=cy,
                    y2=cy,
                    stroke=item.color,
                    stroke_width=2,
                    stroke_dasharray=item.dash,
                )
            )
        out.append(svg_element("text", svg_text(item.label), x=x + 20, y=cy + 4, fill=INK))
        x += item_w
    height = (y - y0 + row_h) if items else 0.0
    return out, height
