"""Bar charts: grouped bars with intervals and thresholds (Figs. 4 and 8), horizontal bars."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup

from ..formatting import format_number, format_percent
from .svg import (
    CHAR_W,
    FONT,
    GRID,
    INK,
    MAX_PLOT_W,
    MUTED,
    PALETTE,
    SLANT_BELOW,
    SLANT_CHARS,
    LegendItem,
    legend_items,
    nice_ceiling,
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


@dataclass(frozen=True)
class Bar:
    """One bar of a grouped bar chart (``None`` value: no bar drawn)."""

    value: float | None
    low: float | None = None  #: lower end of the error bar
    high: float | None = None  #: upper end of the error bar
    threshold: float | None = None  #: a gate threshold, drawn as a thick tick across the bar
    note: str = ""  #: hover text


@dataclass(frozen=True)
class BarGroup:
    """A labelled group of bars, one per series, with an optional reference line."""

    label: str
    bars: Sequence[Bar]  #: aligned with the chart's series
    reference: float | None = None  #: e.g. the chance level, drawn dashed across the group


def grouped_bar_chart(
    groups: Sequence[BarGroup],
    series: Sequence[str],
    *,
    percent: bool = True,
    y_min: float | None = None,
    y_max: float | None = None,
    y_label: str = "",
    colors: Sequence[str] | None = None,
    reference_label: str = "chance",
    threshold_label: str = "gate threshold",
    label: str = "bar chart",
) -> Markup:
    """Vertical bars grouped along x, one colour per series, with error bars.

    ``y_min`` above zero zooms the axis (bars then start at ``y_min``; the
    caller should say so in the caption).
    """
    fmt: Callable[[float], str] = axis_percent if percent else format_number
    values = [
        v
        for g in groups
        for b in g.bars
        for v in (b.value, b.high, b.threshold)
        if v is not None and math.isfinite(v)
    ] + [g.reference for g in groups if g.reference is not None and math.isfinite(g.reference)]
    lo = 0.0 if y_min is None else y_min
    hi = (
        y_max if y_max is not None else (1.0 if percent else nice_ceiling(max(values, default=1.0)))
    )
    if hi <= lo:
        hi = lo + 1.0
    n_series = max(len(series), 1)
    bar_w = max(8.0, min(28.0, 200.0 / n_series))
    group_w = n_series * bar_w + 28
    # Past about a page width text would shrink illegibly: squeeze the bars instead.
    plot_w = min(max(560.0, len(groups) * group_w), MAX_PLOT_W)
    slot = plot_w / max(len(groups), 1)
    bar_w = min(bar_w, (slot - 12) / n_series)
    # Crowded axes (many encoders) get labels slanted instead of wrapped.
    slanted = slot < SLANT_BELOW
    if slanted:
        labels = [[shorten_middle(g.label, SLANT_CHARS)] for g in groups]
        longest = max((text_width(lines[0]) for lines in labels), default=0.0)
        bottom = 20 + longest * 0.87 + 6  # sin(60°) of the slanted text's length
    else:
        labels = [wrap_label(g.label, slot) for g in groups]
        longest, bottom = 0.0, 14 + 14 * max((len(lines) for lines in labels), default=1) + 6
    # The first slanted label reaches left of its group by cos(60°) of its length.
    left, right = max(58.0, longest * 0.5 - slot / 2 + 8), 16.0
    width = left + plot_w + right

    has_reference = any(g.reference is not None for g in groups)
    has_threshold = any(b.threshold is not None for g in groups for b in g.bars)
    entries = []
    for i, name in enumerate(series):
        color, opacity = series_color(i)
        if colors is not None and i < len(colors):
            color, opacity = colors[i], 1.0
        entries.append(LegendItem(name, color, opacity=opacity))
    if has_reference:
        entries.append(LegendItem(reference_label, MUTED, kind="line", dash="5 3"))
    if has_threshold:
        entries.append(LegendItem(threshold_label, INK, kind="tick"))
    legend, legend_h = legend_items(entries, left, 4, plot_w)
    top = 4 + legend_h + 10
    plot_h = 220.0
    height = top + plot_h + bottom

    def y_of(v: float) -> float:
        clamped = min(max(v, lo), hi)
        return top + plot_h * (1 - (clamped - lo) / (hi - lo))

    body = list(legend)
    for tick in nice_ticks(lo, hi, 5):
        y = y_of(tick)
        body.append(svg_element("line", x1=left, x2=left + plot_w, y1=y, y2=y, stroke=GRID))
        body.append(
            svg_element(
                "text", svg_text(fmt(tick)), x=left - 6, y=y + 4, text_anchor="end", fill=MUTED
            )
        )
    if y_label:
        body.append(y_axis_label(y_label, top + plot_h / 2))

    for gi, group in enumerate(groups):
        x0 = left + gi * slot
        bars_x = x0 + (slot - n_series * bar_w) / 2
        for si, bar in enumerate(group.bars[:n_series]):
            color, opacity = series_color(si)
            if colors is not None and si < len(colors):
                color, opacity = colors[si], 1.0
            bx = bars_x + si * bar_w
            if bar.value is not None and math.isfinite(bar.value):
                y_top, y_base = y_of(bar.value), y_of(max(lo, 0.0))
                body.append(
                    svg_element(
                        "rect",
                        svg_title(bar.note),
                        x=bx + 1,
                        y=min(y_top, y_base),
                        width=max(bar_w - 2, 1),
                        height=abs(y_base - y_top),
                        fill=color,
                        fill_opacity=opacity,
                        stroke=color,
                    )
                )
            if bar.low is not None and bar.high is not None:
                cx, cap = bx + bar_w / 2, min(4.0, bar_w / 3)
                y1, y2 = y_of(bar.low), y_of(bar.high)
                body.append(
                    svg_element(
                        "path",
                        d=f"M{cx - cap:.1f} {y1:.1f}H{cx + cap:.1f}M{cx:.1f} "
                        f"{y1:.1f}V{y2:.1f}M{cx - cap:.1f} {y2:.1f}H{cx + cap:.1f}",
                        stroke=INK,
                        stroke_width=1.2,
                        fill="none",
                    )
                )
            if bar.threshold is not None:
                ty = y_of(bar.threshold)
                body.append(
                    svg_element(
                        "line",
                        svg_title(f"threshold {fmt(bar.threshold)}"),
                        x1=bx - 1,
                        x2=bx + bar_w + 1,
                        y1=ty,
                        y2=ty,
                        stroke=INK,
                        stroke_width=2.5,
                    )
                )
        if group.reference is not None:
            ry = y_of(group.reference)
            body.append(
                svg_element(
                    "line",
                    svg_title(f"{reference_label} {fmt(group.reference)}"),
                    x1=x0 + 4,
                    x2=x0 + slot - 4,
                    y1=ry,
                    y2=ry,
                    stroke=MUTED,
                    stroke_width=1.5,
                    stroke_dasharray="5 3",
                )
            )
        for li, line in enumerate(labels[gi]):
            lx, ly = x0 + slot / 2, top + plot_h + 16 + 14 * li
            body.append(
                svg_element(
                    "text",
                    svg_text(line),
                    x=lx,
                    y=ly,
                    text_anchor="end" if slanted else "middle",
                    fill=INK,
                    transform=f"rotate(-60 {lx:.1f} {ly - 4:.1f})" if slanted else None,
                )
            )
    body.append(
        svg_element("line", x1=left, x2=left + plot_w, y1=top + plot_h, y2=top + plot_h, stroke=INK)
    )
    body.append(svg_element("line", x1=left, x2=left, y1=top, y2=top + plot_h, stroke=INK))
    return svg_document(width, height, body, label)


def axis_percent(value: float) -> str:
    """Axis labels: whole percentages without decimals (``70%``), others with one."""
    whole = abs(value * 100 - round(value * 100)) < 1e-6
    return format_percent(value, decimals=0 if whole else 1)


def wrap_label(text: str, width: float, size: float = FONT) -> list[str]:
    """Greedy word wrap for SVG labels (at most three lines, the last one cut)."""
    max_chars = max(int(width / (size * CHAR_W)), 4)
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}".strip()
        if len(candidate) <= max_chars or not current:
            current = candidate
        else:
            lines.append(current)
            current = word
    lines.append(current)
    lines = [shorten(line, max_chars) for line in lines]
    if len(lines) > 3:
        lines = [*lines[:2], shorten(lines[2] + "…", max_chars)]
    return lines


def shorten(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars`` characters, ending in an ellipsis when cut."""
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def shorten_middle(text: str, max_chars: int) -> str:
    """Cut the middle: encoder specs differ at both ends (family, pretrained tag)."""
    if len(text) <= max_chars:
        return text
    head = (max_chars - 1) // 2
    return text[:head] + "…" + text[len(text) - (max_chars - 1 - head) :]


@dataclass(frozen=True)
class HBar:
    """One row of a horizontal bar chart, with an optional whisker."""

    label: str
    value: float | None
    low: float | None = None
    high: float | None = None
    note: str = ""  #: hover text
    reference: float | None = None  #: e.g. the chance level, drawn dashed across the row


def hbar_chart(
    rows: Sequence[HBar],
    *,
    x_label: str = "",
    whisker_label: str = "",
    color: str = PALETTE[0],
    x_max: float | None = None,
    label: str = "bar chart",
    reference_label: str = "chance",
) -> Markup:
    """Horizontal bars from zero, one row each, with whiskers and value labels.

    Pass the same ``x_max`` to charts that readers compare side by side. A
    row's ``reference`` is drawn as a dashed mark across it (``reference_label``
    names it in the legend).
    """
    values = [
        v
        for r in rows
        for v in (r.value, r.low, r.high, r.reference)
        if v is not None and math.isfinite(v)
    ]
    hi = nice_ceiling(max([*values, x_max or 0.0], default=1.0))
    lo = min([0.0, *values])
    left = 16 + max((text_width(r.label) for r in rows), default=40.0)
    plot_w, right, row_h = 440.0, 64.0, 20.0
    entries = [LegendItem("mean", color)]
    if whisker_label:
        entries.append(LegendItem(whisker_label, INK, kind="line"))
    if any(r.reference is not None for r in rows):
        entries.append(LegendItem(reference_label, MUTED, kind="line", dash="5 3"))
    legend, legend_h = legend_items(entries, left, 4, plot_w)
    top = 4 + legend_h + 8
    plot_h = row_h * max(len(rows), 1)
    height = top + plot_h + 44
    width = left + plot_w + right

    def x_of(v: float) -> float:
        return left + plot_w * (min(max(v, lo), hi) - lo) / (hi - lo)

    body = list(legend)
    for tick in nice_ticks(lo, hi, 5):
        x = x_of(tick)
        body.append(svg_element("line", x1=x, x2=x, y1=top, y2=top + plot_h, stroke=GRID))
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
    for i, row in enumerate(rows):
        y = top + i * row_h
        cy = y + row_h / 2
        body.append(
            svg_element(
                "text", svg_text(row.label), x=left - 8, y=cy + 4, text_anchor="end", fill=INK
            )
        )
        end = x_of(0.0)
        if row.value is not None and math.isfinite(row.value):
            x0, x1 = sorted((x_of(0.0), x_of(row.value)))
            body.append(
                svg_element(
                    "rect",
                    svg_title(row.note),
                    x=x0,
                    y=y + 4,
                    width=max(x1 - x0, 0.5),
                    height=row_h - 8,
                    fill=color,
                )
            )
            end = x1
        if row.low is not None and row.high is not None:
            xl, xh = x_of(row.low), x_of(row.high)
            body.append(
                svg_element(
                    "path",
                    d=f"M{xl:.1f} {cy - 4:.1f}V{cy + 4:.1f}M{xl:.1f} {cy:.1f}"
                    f"H{xh:.1f}M{xh:.1f} {cy - 4:.1f}V{cy + 4:.1f}",
                    stroke=INK,
                    stroke_width=1.2,
                    fill="none",
                )
            )
            end = max(end, xh)
        if row.reference is not None and math.isfinite(row.reference):
            rx = x_of(row.reference)
            body.append(
                svg_element(
                    "line",
                    svg_title(f"{reference_label} {format_number(row.reference, digits=3)}"),
                    x1=rx,
                    x2=rx,
                    y1=y + 1,
                    y2=y + row_h - 1,
                    stroke=MUTED,
                    stroke_width=1.5,
                    stroke_dasharray="3 2",
                )
            )
            # The value's label goes past the mark rather than through it.
            text = format_number(row.value, digits=3)
            if end <= rx < end + 6 + text_width(text, 11):
                end = rx
        body.append(
            svg_element(
                "text",
                svg_text(format_number(row.value, digits=3)),
                x=end + 6,
                y=cy + 4,
                fill=MUTED,
                font_size=11,
            )
        )
    body.append(
        svg_element("line", x1=x_of(0.0), x2=x_of(0.0), y1=top, y2=top + plot_h, stroke=INK)
    )
    if x_label:
        body.append(x_axis_label(x_label, left + plot_w / 2, top + plot_h + 34))
    return svg_document(width, height, body, label)
