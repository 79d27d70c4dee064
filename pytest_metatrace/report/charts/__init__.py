"""Inline SVG charts, generated in Python so that the report needs no script.

Each chart function returns :class:`markupsafe.Markup` holding one ``<svg>``
element; every piece of text that reaches the SVG is escaped, so callers may
pass labels straight from a results document. Charts use a ``viewBox`` and
scale down to the page width; hover titles (``<title>``) give exact numbers
without JavaScript. Every chart, the audits' own included, is drawn with the
primitives of :mod:`.svg` (one idiom: element strings, a legend, a document).

Colours follow the Okabe-Ito palette, which stays distinguishable under the
common colour-vision deficiencies; series that also differ by meaning (the
similarity groups of Fig. 2) additionally differ by dash pattern.
"""

from __future__ import annotations

from .bars import Bar, BarGroup, HBar, grouped_bar_chart, hbar_chart
from .heat import HeatScale, heat_style
from .lines import Line, line_chart, scatter_chart, step_chart
from .svg import (
    GRID,
    INK,
    MUTED,
    PALETTE,
    LegendItem,
    legend_items,
    nice_ticks,
    series_color,
    svg_document,
    svg_element,
    svg_text,
    svg_title,
    text_width,
    x_axis_label,
    y_axis_label,
)

__all__ = [
    "GRID",
    "INK",
    "MUTED",
    "PALETTE",
    "Bar",
    "BarGroup",
    "HBar",
    "HeatScale",
    "LegendItem",
    "Line",
    "grouped_bar_chart",
    "hbar_chart",
    "heat_style",
    "legend_items",
    "line_chart",
    "nice_ticks",
    "scatter_chart",
    "series_color",
    "step_chart",
    "svg_document",
    "svg_element",
    "svg_text",
    "svg_title",
    "text_width",
    "x_axis_label",
    "y_axis_label",
]
