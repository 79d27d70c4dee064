"""Inline SVG charts, generated in Python so that the report needs no script.

Each chart function returns :class:`markupsafe.Markup` holding one ``<svg>``
element; every piece of text that reaches the SVG is escaped here, so callers
may pass labels straight from a results document. Charts use a ``viewBox``
and scale down to the page width; hover titles (``<title>``) give exact
numbers without JavaScript.

Colours follow the Okabe-Ito palette, which stays distinguishable under the
common colour-vision deficiencies; series that also differ by meaning (the
similarity groups of Fig. 2) additionally differ by dash pattern.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

from .formatting import format_number, format_percent

__all__ = [
    "PALETTE",
    "Bar",
    "BarGroup",
    "HBar",
    "HeatScale",
    "Line",
    "grouped_bar_chart",
    "hbar_chart",
    "heat_style",
    "nice_ticks",
    "series_color",
    "step_chart",
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
_INK = "#222222"
_GRID = "#e3e3e3"
_MUTED = "#555555"
_FONT = 12
_CHAR_W = 0.6  # average glyph width / font size, to lay out text without a font engine
_MAX_PLOT_W = 1080.0  # widest plot area; wider charts would be scaled down to unreadable text
_SLANT_BELOW = 56.0  # group slots narrower than this get slanted labels
_SLANT_CHARS = 28  # slanted labels are cut to this many characters


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


def _nice_ceiling(value: float) -> float:
    if value <= 0 or not math.isfinite(value):
        return 1.0
    ticks = nice_ticks(0.0, value, 5)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else value
    return math.ceil(value / step - 1e-9) * step


def _text_width(text: str, size: float = _FONT) -> float:
    return len(text) * size * _CHAR_W


def _attrs(attrs: dict[str, object]) -> str:
    parts = []
    for key, value in attrs.items():
        if value is None:
            continue
        if isinstance(value, float):
            value = f"{value:.2f}".rstrip("0").rstrip(".")
        parts.append(f' {key.replace("_", "-")}="{escape(str(value), quote=True)}"')
    return "".join(parts)


def _el(tag: str, content: str = "", /, **attrs: object) -> str:
    """One SVG element; ``content`` must already be markup (use :func:`_txt` for text)."""
    return f"<{tag}{_attrs(attrs)}>{content}</{tag}>"


def _txt(text: str) -> str:
    return escape(text, quote=False)


def _title(text: str) -> str:
    return _el("title", _txt(text)) if text else ""


def _x_axis_label(text: str, cx: float, y: float) -> str:
    """A horizontal axis title centered at ``cx``, baseline ``y``."""
    return _el("text", _txt(text), x=cx, y=y, text_anchor="middle", fill=_MUTED)


def _y_axis_label(text: str, cy: float) -> str:
    """A vertical axis title centered at height ``cy``."""
    return _el(
        "text",
        _txt(text),
        x=14,
        y=cy,
        text_anchor="middle",
        fill=_MUTED,
        transform=f"rotate(-90 14 {cy:.1f})",
    )


def _svg(width: float, height: float, body: list[str], label: str) -> Markup:
    # No xmlns: inline SVG in an HTML5 document does not need it, and the
    # report stays free of any http(s) string in attributes.
    head = (
        f'<svg class="chart" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" '
        f'height="{height:.0f}" role="img" aria-label="{escape(label, quote=True)}" '
        f'font-size="{_FONT}">'
    )
    return Markup(head + _title(label) + "".join(body) + "</svg>")


@dataclass(frozen=True)
class _Legend:
    label: str
    color: str
    kind: str = "box"  # "box" (a swatch), "line" (a line sample), "tick" (a short thick bar)
    dash: str | None = None
    opacity: float = 1.0


def _legend(
    items: Sequence[_Legend], x0: float, y0: float, width: float
) -> tuple[list[str], float]:
    """Legend entries laid out left to right, wrapping at ``width``; returns (markup, height)."""
    out: list[str] = []
    x, y, row_h = x0, y0, 18.0
    for item in items:
        item_w = 22 + _text_width(item.label) + 14
        if x > x0 and x + item_w > x0 + width:
            x, y = x0, y + row_h
        cy = y + row_h / 2
        if item.kind == "box":
            out.append(
                _el(
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
                _el("line", x1=x, x2=x + 14, y1=cy, y2=cy, stroke=item.color, stroke_width=2.5)
            )
        else:
            out.append(
                _el(
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
        out.append(_el("text", _txt(item.label), x=x + 20, y=cy + 4, fill=_INK))
        x += item_w
    height = (y - y0 + row_h) if items else 0.0
    return out, height


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
    fmt: Callable[[float], str] = _axis_percent if percent else format_number
    values = [
        v
        for g in groups
        for b in g.bars
        for v in (b.value, b.high, b.threshold)
        if v is not None and math.isfinite(v)
    ] + [g.reference for g in groups if g.reference is not None and math.isfinite(g.reference)]
    lo = 0.0 if y_min is None else y_min
    hi = (
        y_max
        if y_max is not None
        else (1.0 if percent else _nice_ceiling(max(values, default=1.0)))
    )
    if hi <= lo:
        hi = lo + 1.0
    n_series = max(len(series), 1)
    bar_w = max(8.0, min(28.0, 200.0 / n_series))
    group_w = n_series * bar_w + 28
    # Past about a page width text would shrink illegibly: squeeze the bars instead.
    plot_w = min(max(560.0, len(groups) * group_w), _MAX_PLOT_W)
    slot = plot_w / max(len(groups), 1)
    bar_w = min(bar_w, (slot - 12) / n_series)
    # Crowded axes (many encoders) get labels slanted instead of wrapped.
    slanted = slot < _SLANT_BELOW
    if slanted:
        labels = [[_shorten_middle(g.label, _SLANT_CHARS)] for g in groups]
        longest = max((_text_width(lines[0]) for lines in labels), default=0.0)
        bottom = 20 + longest * 0.87 + 6  # sin(60°) of the slanted text's length
    else:
        labels = [_wrap(g.label, slot) for g in groups]
        longest, bottom = 0.0, 14 + 14 * max((len(lines) for lines in labels), default=1) + 6
    # The first slanted label reaches left of its group by cos(60°) of its length.
    left, right = max(58.0, longest * 0.5 - slot / 2 + 8), 16.0
    width = left + plot_w + right

    has_reference = any(g.reference is not None for g in groups)
    has_threshold = any(b.threshold is not None for g in groups for b in g.bars)
    legend_items = []
    for i, name in enumerate(series):
        color, opacity = series_color(i)
        if colors is not None and i < len(colors):
            color, opacity = colors[i], 1.0
        legend_items.append(_Legend(name, color, opacity=opacity))
    if has_reference:
        legend_items.append(_Legend(reference_label, _MUTED, kind="line", dash="5 3"))
    if has_threshold:
        legend_items.append(_Legend(threshold_label, _INK, kind="tick"))
    legend, legend_h = _legend(legend_items, left, 4, plot_w)
    top = 4 + legend_h + 10
    plot_h = 220.0
    height = top + plot_h + bottom

    def y_of(v: float) -> float:
        clamped = min(max(v, lo), hi)
        return top + plot_h * (1 - (clamped - lo) / (hi - lo))

    body = list(legend)
    for tick in nice_ticks(lo, hi, 5):
        y = y_of(tick)
        body.append(_el("line", x1=left, x2=left + plot_w, y1=y, y2=y, stroke=_GRID))
        body.append(
            _el("text", _txt(fmt(tick)), x=left - 6, y=y + 4, text_anchor="end", fill=_MUTED)
        )
    if y_label:
        body.append(_y_axis_label(y_label, top + plot_h / 2))

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
                    _el(
                        "rect",
                        _title(bar.note),
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
                    _el(
                        "path",
                        d=f"M{cx - cap:.1f} {y1:.1f}H{cx + cap:.1f}M{cx:.1f} "
                        f"{y1:.1f}V{y2:.1f}M{cx - cap:.1f} {y2:.1f}H{cx + cap:.1f}",
                        stroke=_INK,
                        stroke_width=1.2,
                        fill="none",
                    )
                )
            if bar.threshold is not None:
                ty = y_of(bar.threshold)
                body.append(
                    _el(
                        "line",
                        _title(f"threshold {fmt(bar.threshold)}"),
                        x1=bx - 1,
                        x2=bx + bar_w + 1,
                        y1=ty,
                        y2=ty,
                        stroke=_INK,
                        stroke_width=2.5,
                    )
                )
        if group.reference is not None:
            ry = y_of(group.reference)
            body.append(
                _el(
                    "line",
                    _title(f"{reference_label} {fmt(group.reference)}"),
                    x1=x0 + 4,
                    x2=x0 + slot - 4,
                    y1=ry,
                    y2=ry,
                    stroke=_MUTED,
                    stroke_width=1.5,
                    stroke_dasharray="5 3",
                )
            )
        for li, line in enumerate(labels[gi]):
            lx, ly = x0 + slot / 2, top + plot_h + 16 + 14 * li
            body.append(
                _el(
                    "text",
                    _txt(line),
                    x=lx,
                    y=ly,
                    text_anchor="end" if slanted else "middle",
                    fill=_INK,
                    transform=f"rotate(-60 {lx:.1f} {ly - 4:.1f})" if slanted else None,
                )
            )
    body.append(
        _el("line", x1=left, x2=left + plot_w, y1=top + plot_h, y2=top + plot_h, stroke=_INK)
    )
    body.append(_el("line", x1=left, x2=left, y1=top, y2=top + plot_h, stroke=_INK))
    return _svg(width, height, body, label)


def _axis_percent(value: float) -> str:
    """Axis labels: whole percentages without decimals (``70%``), others with one."""
    whole = abs(value * 100 - round(value * 100)) < 1e-6
    return format_percent(value, decimals=0 if whole else 1)


def _wrap(text: str, width: float, size: float = _FONT) -> list[str]:
    """Greedy word wrap for SVG labels (at most three lines, the last one cut)."""
    max_chars = max(int(width / (size * _CHAR_W)), 4)
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
    lines = [_shorten(line, max_chars) for line in lines]
    if len(lines) > 3:
        lines = [*lines[:2], _shorten(lines[2] + "…", max_chars)]
    return lines


def _shorten(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def _shorten_middle(text: str, max_chars: int) -> str:
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


def hbar_chart(
    rows: Sequence[HBar],
    *,
    x_label: str = "",
    whisker_label: str = "",
    color: str = PALETTE[0],
    x_max: float | None = None,
    label: str = "bar chart",
) -> Markup:
    """Horizontal bars from zero, one row each, with whiskers and value labels.

    Pass the same ``x_max`` to charts that readers compare side by side.
    """
    values = [v for r in rows for v in (r.value, r.high) if v is not None and math.isfinite(v)]
    hi = _nice_ceiling(max([*values, x_max or 0.0], default=1.0))
    lo = min([0.0, *values])
    left = 16 + max((_text_width(r.label) for r in rows), default=40.0)
    plot_w, right, row_h = 440.0, 64.0, 20.0
    legend_items = [_Legend("mean", color)]
    if whisker_label:
        legend_items.append(_Legend(whisker_label, _INK, kind="line"))
    legend, legend_h = _legend(legend_items, left, 4, plot_w)
    top = 4 + legend_h + 8
    plot_h = row_h * max(len(rows), 1)
    height = top + plot_h + 44
    width = left + plot_w + right

    def x_of(v: float) -> float:
        return left + plot_w * (min(max(v, lo), hi) - lo) / (hi - lo)

    body = list(legend)
    for tick in nice_ticks(lo, hi, 5):
        x = x_of(tick)
        body.append(_el("line", x1=x, x2=x, y1=top, y2=top + plot_h, stroke=_GRID))
        body.append(
            _el(
                "text",
                _txt(format_number(tick, digits=3)),
                x=x,
                y=top + plot_h + 16,
                text_anchor="middle",
                fill=_MUTED,
            )
        )
    for i, row in enumerate(rows):
        y = top + i * row_h
        cy = y + row_h / 2
        body.append(
            _el("text", _txt(row.label), x=left - 8, y=cy + 4, text_anchor="end", fill=_INK)
        )
        end = x_of(0.0)
        if row.value is not None and math.isfinite(row.value):
            x0, x1 = sorted((x_of(0.0), x_of(row.value)))
            body.append(
                _el(
                    "rect",
                    _title(row.note),
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
                _el(
                    "path",
                    d=f"M{xl:.1f} {cy - 4:.1f}V{cy + 4:.1f}M{xl:.1f} {cy:.1f}"
                    f"H{xh:.1f}M{xh:.1f} {cy - 4:.1f}V{cy + 4:.1f}",
                    stroke=_INK,
                    stroke_width=1.2,
                    fill="none",
                )
            )
            end = max(end, xh)
        body.append(
            _el(
                "text",
                _txt(format_number(row.value, digits=3)),
                x=end + 6,
                y=cy + 4,
                fill=_MUTED,
                font_size=11,
            )
        )
    body.append(_el("line", x1=x_of(0.0), x2=x_of(0.0), y1=top, y2=top + plot_h, stroke=_INK))
    if x_label:
        body.append(_x_axis_label(x_label, left + plot_w / 2, top + plot_h + 34))
    return _svg(width, height, body, label)


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
    y_hi = _nice_ceiling(max(peaks, default=1.0))
    left, right, plot_w, plot_h = 58.0, 16.0, 560.0, 200.0
    legend, legend_h = _legend(
        [_Legend(line.label, line.color, kind="line", dash=line.dash) for line in lines],
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
        body.append(_el("line", x1=left, x2=left + plot_w, y1=y, y2=y, stroke=_GRID))
        body.append(
            _el(
                "text",
                _txt(format_number(tick, digits=3)),
                x=left - 6,
                y=y + 4,
                text_anchor="end",
                fill=_MUTED,
            )
        )
    for tick in nice_ticks(x_lo, x_hi, 6):
        x = x_of(tick)
        body.append(_el("line", x1=x, x2=x, y1=top + plot_h, y2=top + plot_h + 4, stroke=_INK))
        body.append(
            _el(
                "text",
                _txt(format_number(tick, digits=3)),
                x=x,
                y=top + plot_h + 16,
                text_anchor="middle",
                fill=_MUTED,
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
                _el(
                    "path",
                    _title(line.label),
                    d="".join(path),
                    fill="none",
                    stroke=line.color,
                    stroke_width=2,
                    stroke_dasharray=line.dash,
                )
            )
    body.append(
        _el("line", x1=left, x2=left + plot_w, y1=top + plot_h, y2=top + plot_h, stroke=_INK)
    )
    body.append(_el("line", x1=left, x2=left, y1=top, y2=top + plot_h, stroke=_INK))
    if x_label:
        body.append(_x_axis_label(x_label, left + plot_w / 2, top + plot_h + 34))
    if y_label:
        body.append(_y_axis_label(y_label, top + plot_h / 2))
    return _svg(width, height, body, label)


_WHITE = (255, 255, 255)
_HEAT_HIGH = (0, 114, 178)  # Okabe-Ito blue
_HEAT_NEGATIVE = (0, 114, 178)  # diverging scales: blue below zero...
_HEAT_POSITIVE = (213, 94, 0)  # ...vermillion above (a trace: the gaps the gates test)


def _mix(color: tuple[int, int, int], share: float) -> tuple[int, int, int]:
    r, g, b = (round(255 + (c - 255) * share) for c in color)
    return r, g, b


def _cell_css(rgb: tuple[int, int, int], share: float) -> str:
    text = "#ffffff" if share > 0.55 else _INK
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
