"""Line charts: step curves (Fig. 2 distributions), lines with markers, scatter maps."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup

from ..formatting import format_number
from .svg import (
    GRID,
    INK,
    MUTED,
    LegendItem,
    legend_items,
    nice_ceiling,
    nice_ticks,
    series_color,
    svg_document,
    svg_element,
    svg_text,
    svg_title,
    x_axis_label,
    y_axis_label,
)


@dataclass(frozen=True)
class Line:
    """One series of a step chart: a value per bin."""

    label: str
    values: Sequence[float | None]
    color: str
    dash: str | None = None  #: SVG dash pattern, e.g. ``"6 3"``


def step_chart(
    edges: Sequence[float],
    lines: Sequence[Line],
    *,
    x_label: str = "",
    y_label: str = "",
    label: str = "step chart",
) -> Markup:
    """Overlaid histograms drawn as step outlines over shared bin ``edges``."""
    finite_edges = [e for e in edges if math.isfinite(e)]
    x_lo, x_hi = (min(finite_edges), max(finite_edges)) if len(finite_edges) > 1 else (0.0, 1.0)
    if x_hi <= x_lo:
        x_hi = x_lo + 1.0
    peaks = [v for line in lines for v in line.values if v is not None and math.isfinite(v)]
    y_hi = nice_ceiling(max(peaks, default=1.0))
    left, right, plot_w, plot_h = 58.0, 16.0, 560.0, 200.0
    legend, legend_h = legend_items(
        [LegendItem(line.label, line.color, kind="line", dash=line.dash) for line in lines],
        left,
        4,
        plot_w,
    )
    top = 4 + legend_h + 10
    width, height = left + plot_w + right, top + plot_h + 44

    def x_of(v: float) -> float:
        return left + plot_w * (v - x_lo) / (x_hi - x_lo)

    def y_of(v: float) -> float:
        return top + plot_h * (1 - min(max(v, 0.0), y_hi) / y_hi)

    body = list(legend)
    for tick in nice_ticks(0.0, y_hi, 4):
        y = y_of(tick)
        body.append(svg_element("line", x1=left, x2=left + plot_w, y1=y, y2=y, stroke=GRID))
        body.append(
            svg_element(
                "text",
                svg_text(format_number(tick, digits=3)),
                x=left - 6,
                y=y + 4,
                text_anchor="end",
                fill=MUTED,
            )
        )
    for tick in nice_ticks(x_lo, x_hi, 6):
        x = x_of(tick)
        body.append(
            svg_element("line", x1=x, x2=x, y1=top + plot_h, y2=top + plot_h + 4, stroke=INK)
        )
        body.append(
            svg_element(
                "text",
                svg_text(format_number(tick, digits=3)),
                x=x,
                y=top + plot_h + 16,
                text_anchor="middle",
                fill=MUTED,
            )
        )
    n_bins = len(edges) - 1
    for line in lines:
        path: list[str] = []
        for i in range(min(n_bins, len(line.values))):
            value = line.values[i]
            if value is None or not math.isfinite(value):
                continue
            x0, x1, y = x_of(edges[i]), x_of(edges[i + 1]), y_of(value)
            # Start a new sub-path after a gap so missing bins are not bridged.
            start = "L" if path and i > 0 and line.values[i - 1] is not None else "M"
            path.append(f"{start}{x0:.1f} {y:.1f}H{x1:.1f}")
        if path:
            body.append(
                svg_element(
                    "path",
                    svg_title(line.label),
                    d="".join(path),
                    fill="none",
                    stroke=line.color,
                    stroke_width=2,
                    stroke_dasharray=line.dash,
                )
            )
    body.append(
        svg_element("line", x1=left, x2=left + plot_w, y1=top + plot_h, y2=top + plot_h, stroke=INK)
    )
    body.append(svg_element("line", x1=left, x2=left, y1=top, y2=top + plot_h, stroke=INK))
    if x_label:
        body.append(x_axis_label(x_label, left + plot_w / 2, top + plot_h + 34))
    if y_label:
        body.append(y_axis_label(y_label, top + plot_h / 2))
    return svg_document(width, height, body, label)


def line_chart(
    xs: Sequence[float],
    lines: Sequence[tuple[str, Sequence[float], str, float | None]],
    *,
    x_label: str,
    y_label: str,
    label: str,
) -> Markup:
    """Lines with markers on a [0, 1] y axis at the points ``xs``: ``(name, ys, colour, chance)``.

    A line's chance level is drawn dashed in its colour (the mask sweep, Fig. 5).
    """
    left, plot_w, plot_h = 56.0, 520.0, 220.0
    items = [LegendItem(name, color, kind="line") for name, _, color, _ in lines]
    legend, legend_h = legend_items(items, left, 6.0, plot_w)
    top = 14.0 + legend_h
    width, height = left + plot_w + 20, top + plot_h + 46
    x_lo, x_hi = min(xs, default=0.0), max(xs, default=1.0)
    span = (x_hi - x_lo) or 1.0

    def px(v: float) -> float:
        return left + plot_w * (v - x_lo) / span

    def py(v: float) -> float:
        return top + plot_h * (1.0 - v)

    body = list(legend)
    for t in nice_ticks(0.0, 1.0):
        body.append(svg_element("line", x1=left, x2=left + plot_w, y1=py(t), y2=py(t), stroke=GRID))
        body.append(
            svg_element(
                "text", svg_text(f"{t:.0%}"), x=left - 6, y=py(t) + 4, text_anchor="end", fill=MUTED
            )
        )
    for v in xs:
        body.append(
            svg_element(
                "text",
                svg_text(f"{v:g}"),
                x=px(v),
                y=top + plot_h + 16,
                text_anchor="middle",
                fill=MUTED,
            )
        )
    for name, ys, color, chance in lines:
        if chance is not None and math.isfinite(chance):
            body.append(
                svg_element(
                    "line",
                    svg_title(f"{name}: chance {chance:.1%}"),
                    x1=left,
                    x2=left + plot_w,
                    y1=py(chance),
                    y2=py(chance),
                    stroke=color,
                    stroke_dasharray="5 4",
                )
            )
        points = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None and math.isfinite(y)]
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        body.append(svg_element("polyline", points=path, fill="none", stroke=color, stroke_width=2))
        for x, y in points:
            body.append(
                svg_element(
                    "circle",
                    svg_title(f"{name} at {x:g}: {y:.1%}"),
                    cx=px(x),
                    cy=py(y),
                    r=3.5,
                    fill=color,
                )
            )
    body.append(x_axis_label(x_label, left + plot_w / 2, height - 8))
    body.append(y_axis_label(y_label, top + plot_h / 2))
    return svg_document(width, height, body, label)


def scatter_chart(
    x: Sequence[float],
    y: Sequence[float],
    labels: Sequence[str],
    ids: Sequence[str],
    *,
    label: str,
) -> Markup:
    """One dot per point, coloured by its label, with a legend (the t-SNE map, Fig. 7).

    The axes are equal (a map has no units): the larger span fills the square.
    """
    classes = sorted(set(labels))
    colors = {c: series_color(i)[0] for i, c in enumerate(classes)}
    size, left = 420.0, 10.0
    legend, legend_h = legend_items([LegendItem(c, colors[c]) for c in classes], left, 6.0, size)
    top = 12.0 + legend_h
    x_lo, x_hi = min(x, default=0.0), max(x, default=1.0)
    y_lo, y_hi = min(y, default=0.0), max(y, default=1.0)
    span = max(x_hi - x_lo, y_hi - y_lo, 1e-9)
    body = list(legend)
    body.append(
        svg_element("rect", x=left, y=top, width=size, height=size, fill="none", stroke=GRID)
    )
    for xv, yv, lab, ident in zip(x, y, labels, ids, strict=True):
        body.append(
            svg_element(
                "circle",
                svg_title(f"{ident}: {lab}"),
                cx=left + 8 + (size - 16) * (xv - x_lo) / span,
                cy=top + 8 + (size - 16) * (1 - (yv - y_lo) / span),
                r=2.8,
                fill=colors[lab],
                fill_opacity=0.6,
            )
        )
    return svg_document(size + 2 * left, top + size + 10, body, label)
