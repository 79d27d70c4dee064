"""Report section of the cross-camera retrieval audit (paper Sec. 4.2, Fig. 10).

Per protocol (whole frames, centre crops): recall@1 in the ``same`` setting
against the ``different`` setting, one point per encoder and query camera type
with the diagonal drawn (a point above it is a camera trace); the margin
distributions of both settings; a table with every gap and its interval; and
the failed queries, with the wrongly retrieved photo beside the true pair.
The typed :class:`~pytest_metatrace.audits.cross_camera_retrieval.analysis.RetrievalResult` is
rebuilt from each ``recall_gap`` record's details.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from markupsafe import Markup

from pytest_metatrace.report.charts import (
    GRID,
    Line,
    nice_ticks,
    series_color,
    step_chart,
    svg_document,
    svg_element,
    svg_text,
    svg_title,
    text_width,
    x_axis_label,
    y_axis_label,
)
from pytest_metatrace.report.formatting import format_interval, format_number, format_percent
from pytest_metatrace.report.sections import safe_image_uri

from .analysis import SETTINGS, TIE_RULE, QueryCameraResult, RetrievalResult

__all__ = ["recall_scatter", "retrieval_context"]

_SETTING_DASH = {"same": None, "different": "6 3"}


def recall_scatter(points: list[tuple[str, float, float]], *, label: str) -> Markup:
    """Fig. 10: ``(name, recall same, recall different)`` points over [0, 1]^2 with the diagonal.

    The axes zoom to the data (never beyond [0, 1]) so that near-saturated
    recalls stay readable.
    """
    values = [v for _, x, y in points for v in (x, y)]
    lo = max(0.0, min([*values, 0.9]) - 0.05)
    lo = float(np.floor(lo * 20) / 20)
    hi = 1.0
    ticks = [t for t in nice_ticks(lo, hi, 5) if lo <= t <= hi]
    # room for the rotated y title (28 px) and the widest tick label, so they never overlap
    left = 28.0 + max((text_width(format_percent(t)) for t in ticks), default=40.0) + 8.0
    top, size, pad = 14.0, 320.0, 16.0
    legend_x = left + size + 24

    def xy(x: float, y: float) -> tuple[float, float]:
        return left + size * (x - lo) / (hi - lo), top + size * (1 - (y - lo) / (hi - lo))

    body: list[str] = []
    for tick in ticks:
        x, _ = xy(tick, lo)
        _, y = xy(lo, tick)
        body.append(svg_element("line", x1=left, x2=left + size, y1=y, y2=y, stroke=GRID))
        body.append(svg_element("line", x1=x, x2=x, y1=top, y2=top + size, stroke=GRID))
        body.append(
            svg_element(
                "text", svg_text(format_percent(tick)), x=left - 6, y=y + 4, text_anchor="end"
            )
        )
        body.append(
            svg_element(
                "text", svg_text(format_percent(tick)), x=x, y=top + size + 16, text_anchor="middle"
            )
        )
    (x0, y0), (x1, y1) = xy(lo, lo), xy(hi, hi)
    body.append(
        svg_element(
            "line",
            svg_title("no trace: same = different"),
            x1=x0,
            y1=y0,
            x2=x1,
            y2=y1,
            stroke="#555555",
            stroke_dasharray="4 4",
        )
    )
    body.append(
        svg_element("rect", x=left, y=top, width=size, height=size, fill="none", stroke="#222222")
    )
    for i, (name, rs, rd) in enumerate(points):
        color, _ = series_color(i)
        x, y = xy(rs, rd)
        tip = f"{name}: recall@1 same {format_percent(rs)}, different {format_percent(rd)}"
        body.append(
            svg_element("circle", svg_title(tip), cx=x, cy=y, r=6, fill=color, stroke="#222222")
        )
        ly = top + 8 + 18 * i
        body.append(svg_element("circle", cx=legend_x, cy=ly, r=5, fill=color, stroke="#222222"))
        body.append(svg_element("text", svg_text(name), x=legend_x + 10, y=ly + 4))
    body.append(x_axis_label("recall@1, same-camera negatives", left + size / 2, top + size + 34))
    body.append(y_axis_label("recall@1, other-camera negatives", top + size / 2))
    width = legend_x + 10 + max([text_width(n) for n, _, _ in points] + [72.0]) + pad
    return svg_document(width, top + size + 44, body, label)


def _margin_chart(r: QueryCameraResult, title: str) -> Markup:
    margins = {s: np.asarray(getattr(r, s).margin, dtype=np.float64) for s in SETTINGS}
    everything = np.concatenate(list(margins.values()))
    lo, hi = float(everything.min()), float(everything.max())
    if hi <= lo:
        hi = lo + 1e-3
    edges = np.linspace(lo, hi, 21)
    lines = []
    for k, setting in enumerate(SETTINGS):
        counts, _ = np.histogram(margins[setting], bins=edges)
        lines.append(
            Line(
                f"{setting} (mean {format_number(float(margins[setting].mean()), digits=3)})",
                [float(c) for c in counts],
                series_color(k)[0],
                _SETTING_DASH[setting],
            )
        )
    return step_chart(
        [float(e) for e in edges],
        lines,
        x_label="margin: similarity of the positive − of the hardest negative",
        y_label="queries",
        label=title,
    )


def _missed(details: dict[str, Any]) -> str:
    """``"17 with same-camera negatives, 2 with other-camera ones"``, or "" (old documents)."""
    counts = (details.get("failures") or {}).get("missed")
    if not isinstance(counts, dict):
        return ""
    same, diff = counts.get("same"), counts.get("different")
    return f"{same} missed with same-camera negatives, {diff} with other-camera ones"


def _failures(details: dict[str, Any]) -> list[dict[str, Any]]:
    gallery = details.get("failures") or {}
    thumbs = {str(k): safe_image_uri(v) for k, v in (gallery.get("thumbs") or {}).items()}
    rows = []
    for q in gallery.get("queries") or []:
        rows.append(
            {
                "setting": q.get("setting"),
                "subject": q.get("subject"),
                "query": thumbs.get(str(q.get("query"))),
                "positive": thumbs.get(str(q.get("positive"))),
                "retrieved": thumbs.get(str(q.get("retrieved"))),
                "retrieved_label": f"{q.get('retrieved_subject')} ({q.get('retrieved_camera')})",
                "rank": q.get("rank"),
                "positive_similarity": format_number(q.get("positive_similarity"), digits=3),
                "retrieved_similarity": format_number(q.get("retrieved_similarity"), digits=3),
            }
        )
    return rows


def retrieval_context(records: list[dict[str, Any]], document: dict[str, Any]) -> dict[str, Any]:
    """Template variables: per protocol a Fig. 10 scatter, margin charts, a table and failures."""
    gates = {
        (r["encoder"], r["dataset"], r["parameter"], r["metric"]): r
        for r in records
        if r["metric"] in ("recall_gap", "margin_gap")
    }
    protocols: dict[tuple[str, str], dict[str, Any]] = {}
    for rec in records:
        details = rec.get("details") or {}
        if rec["metric"] != "recall_gap" or "result" not in details:
            continue
        protocol = str(details.get("protocol"))
        result = RetrievalResult.from_dict(details["result"])
        r = result.query(str(details.get("query_camera")))
        panel = protocols.setdefault(
            (protocol, rec["dataset"]),
            {
                "protocol": protocol,
                "dataset": rec["dataset"],
                "points": [],
                "rows": [],
                "n": len(result.subjects),
            },
        )
        name = f"{rec['encoder']} · {r.query_camera} queries"
        panel["points"].append((name, r.recall("same"), r.recall("different")))
        iv = r.intervals
        key = (rec["encoder"], rec["dataset"], rec["parameter"])
        panel["rows"].append(
            {
                "encoder": rec["encoder"],
                "query_camera": r.query_camera,
                "recall_same": format_interval(r.recall("same"), iv["recall_same"].to_dict()),
                "recall_different": format_interval(
                    r.recall("different"), iv["recall_different"].to_dict()
                ),
                "mrr_gap": format_interval(
                    r.mrr_gap, iv["mrr_gap"].to_dict(), "reciprocal rank", "mrr_gap"
                ),
                "median_rank": {
                    s: format_number(float(np.median(getattr(r, s).rank)), digits=3)
                    for s in SETTINGS
                },
                "recall_gate": gates.get((*key, "recall_gap")),
                "margin_gate": gates.get((*key, "margin_gap")),
                "margins": _margin_chart(r, f"Margins, {name}, {protocol}"),
                "failures": _failures(details),
                "missed": _missed(details),
                "name": name,
            }
        )
    panels = []
    for panel in protocols.values():
        panel["scatter"] = recall_scatter(
            panel["points"],
            label=f"Recall@1 same vs different, {panel['protocol']} ({panel['dataset']})",
        )
        panels.append(panel)
    return {"panels": panels, "tie_rule": TIE_RULE}
