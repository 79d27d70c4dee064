"""Report sections of the acquisition audit (paper Sec. 3.2: Fig. 5, Fig. 6, Table 2, Fig. 7).

Five record kinds, five sections sharing one template
(``section_acquisition.html.j2``, switched by ``kind``): the target plan,
the probes (Fig. 6), neighbour agreement (Table 2), the mask sweep (Fig. 5)
and the t-SNE map (Fig. 7). Each context rebuilds the typed result from the
record's ``details``; the figures are drawn here, never by the audit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from markupsafe import Markup, escape

from ..analysis.agreement import NeighbourAgreement
from ..analysis.mask_sweep import EmbeddingMap, MaskSweep
from .charts import Bar, BarGroup, grouped_bar_chart, nice_ticks, series_color
from .formatting import format_interval, format_percent
from .sections import encoder_order, register_section

__all__ = [
    "agreement_context",
    "line_chart",
    "map_context",
    "probe_context",
    "scatter_chart",
    "sweep_context",
    "targets_context",
]

TEMPLATE = "section_acquisition.html.j2"
_INK, _GRID, _MUTED = "#222222", "#e3e3e3", "#555555"


def _svg(width: float, height: float, body: list[str], label: str) -> Markup:
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'aria-label="{escape(label)}" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="{width:.0f}" height="{height:.0f}" font-size="12">' + "".join(body) + "</svg>"
    )


def _legend(names: Sequence[str], colors: Sequence[str], x: float, y: float) -> list[str]:
    out = []
    for name, color in zip(names, colors, strict=True):
        out.append(f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="12" height="12" fill="{color}"/>')
        out.append(f'<text x="{x + 16:.1f}" y="{y + 1:.1f}" fill="{_INK}">{escape(name)}</text>')
        x += 28 + 7 * len(name)
    return out


def line_chart(
    xs: Sequence[float],
    lines: Sequence[tuple[str, Sequence[float], str, float | None]],
    *,
    x_label: str,
    y_label: str,
    label: str,
) -> Markup:
    """Lines with markers on a [0, 1] x [0, 1] plot; each ``(name, ys, colour, chance)``.

    A line's chance level is drawn dashed in its colour.
    """
    left, top, plot_w, plot_h = 56.0, 30.0, 520.0, 220.0
    width, height = left + plot_w + 20, top + plot_h + 46

    def px(v: float) -> float:
        return left + plot_w * v

    def py(v: float) -> float:
        return top + plot_h * (1.0 - v)

    body = _legend([n for n, *_ in lines], [c for _, _, c, _ in lines], left, 14)
    for t in nice_ticks(0.0, 1.0):
        body.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{py(t):.1f}" y2="{py(t):.1f}" '
            f'stroke="{_GRID}"/>'
        )
        body.append(
            f'<text x="{left - 6}" y="{py(t) + 4:.1f}" text-anchor="end" '
            f'fill="{_MUTED}">{t:.0%}</text>'
        )
    for v in xs:
        body.append(
            f'<text x="{px(v):.1f}" y="{top + plot_h + 16}" text-anchor="middle" '
            f'fill="{_MUTED}">{v:g}</text>'
        )
    for _name, ys, color, chance in lines:
        if chance is not None:
            body.append(
                f'<line x1="{left}" x2="{left + plot_w}" y1="{py(chance):.1f}" '
                f'y2="{py(chance):.1f}" stroke="{color}" stroke-dasharray="5 4"/>'
            )
        pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys, strict=True))
        body.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, y in zip(xs, ys, strict=True):
            body.append(
                f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{color}">'
                f"<title>{x:g}: {y:.1%}</title></circle>"
            )
    body.append(
        f'<text x="{left + plot_w / 2}" y="{height - 8}" text-anchor="middle" '
        f'fill="{_INK}">{escape(x_label)}</text>'
    )
    body.append(
        f'<text transform="translate(14 {top + plot_h / 2}) rotate(-90)" '
        f'text-anchor="middle" fill="{_INK}">{escape(y_label)}</text>'
    )
    return _svg(width, height, body, label)


def scatter_chart(emap: EmbeddingMap, *, label: str) -> Markup:
    """The t-SNE map: one dot per image, coloured by its label, with a legend."""
    classes = sorted(set(emap.labels))
    colors = [series_color(i)[0] for i in range(len(classes))]
    lookup = dict(zip(classes, colors, strict=True))
    size, top, left = 420.0, 34.0, 10.0
    x_lo, x_hi = min(emap.x, default=0.0), max(emap.x, default=1.0)
    y_lo, y_hi = min(emap.y, default=0.0), max(emap.y, default=1.0)
    span = max(x_hi - x_lo, y_hi - y_lo, 1e-9)
    body = _legend(classes, colors, left, 14)
    body.append(
        f'<rect x="{left}" y="{top}" width="{size}" height="{size}" fill="none" stroke="{_GRID}"/>'
    )
    for x, y, lab, ident in zip(emap.x, emap.y, emap.labels, emap.ids, strict=True):
        cx = left + 8 + (size - 16) * (x - x_lo) / span
        cy = top + 8 + (size - 16) * (1 - (y - y_lo) / span)
        body.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="2.8" fill="{lookup[lab]}" '
            f'fill-opacity="0.6"><title>{escape(ident)}: {escape(lab)}</title></circle>'
        )
    return _svg(max(size + 2 * left, 28.0 * len(classes) + 200), top + size + 10, body, label)


def targets_context(records: list[dict[str, Any]], doc: dict[str, Any]) -> dict[str, Any]:
    """Which targets ran, which did not and why; the grouping note; the EXIF counts."""
    datasets = {d.get("id"): d for d in doc.get("datasets", [])}
    plans = []
    for r in records:
        d = r["details"]
        ds = datasets.get(r["dataset"], {})
        rows = [
            {
                "target": t,
                "ran": True,
                "classes": ", ".join(s["classes"]),
                "note": f"{s['train_per_class']} train + {s['test_per_class']} test per class"
                + (f"; dropped (too few): {s['dropped']}" if s["dropped"] else ""),
            }
            for t, s in d.get("splits", {}).items()
        ] + [
            {"target": t, "ran": False, "classes": "", "note": reason}
            for t, reason in d.get("unavailable", {}).items()
        ]
        plans.append(
            {
                "encoder": r["encoder"],
                "dataset": r["dataset"],
                "name": ds.get("name", r["dataset"]),
                "rows": rows,
                "grouping_note": d.get("grouping_note", ""),
                "notes": ds.get("notes") or {},
                "skipped": ds.get("skipped") or [],
                "credits": ds.get("credits") or [],
            }
        )
    return {"kind": "targets", "plans": plans}


def probe_context(records: list[dict[str, Any]], doc: dict[str, Any]) -> dict[str, Any]:
    """Fig. 6: probe accuracy per target and encoder, with interval, chance and gate."""
    encoders = encoder_order(records, doc)
    targets = list(dict.fromkeys(r["parameter"] for r in records))
    by_key = {(r["encoder"], r["parameter"]): r for r in records}
    groups = []
    for t in targets:
        bars = []
        chance = None
        for e in encoders:
            r = by_key.get((e, t))
            if r is None:
                bars.append(Bar(None))
                continue
            iv = r["interval"] or {}
            gate = r["gate"] or {}
            chance = r["chance"]
            bars.append(
                Bar(
                    r["value"],
                    iv.get("low"),
                    iv.get("high"),
                    gate.get("threshold"),
                    f"{e} · {t}: {r['display']['interval']}",
                )
            )
        groups.append(BarGroup(t, bars, chance))
    svg = grouped_bar_chart(
        groups,
        [str(e) for e in encoders],
        y_min=0.0,
        y_max=1.0,
        y_label="top-1 accuracy",
        label="acquisition probe accuracy per target",
    )
    return {"kind": "probe", "svg": svg, "rows": records}


def agreement_context(records: list[dict[str, Any]], doc: dict[str, Any]) -> dict[str, Any]:
    """Table 2: same-label share of the top-k neighbours next to chance."""
    rows = []
    groups = []
    encoders = encoder_order(records, doc)
    for r in records:
        res = NeighbourAgreement.from_dict(r["details"])
        cells = [
            format_interval(a, iv.to_dict())
            for a, iv in zip(res.agreement, res.intervals, strict=True)
        ]
        rows.append(
            {"record": r, "result": res, "cells": cells, "chance": format_percent(res.chance)}
        )
    for r in records:
        res = NeighbourAgreement.from_dict(r["details"])
        for k, a, iv in zip(res.ks, res.agreement, res.intervals, strict=True):
            bars = [Bar(a, iv.low, iv.high) if e == r["encoder"] else Bar(None) for e in encoders]
            groups.append(BarGroup(f"{res.target} k={k}", bars, res.chance))
    svg = grouped_bar_chart(
        groups,
        [str(e) for e in encoders],
        y_min=0.0,
        y_max=1.0,
        y_label="same-label neighbours",
        label="neighbour agreement",
    )
    return {"kind": "agreement", "rows": rows, "svg": svg, "ks": [10, 25, 50]}


def sweep_context(records: list[dict[str, Any]], doc: dict[str, Any]) -> dict[str, Any]:
    """Fig. 5: semantic kNN and acquisition probe accuracy against the mask ratio."""
    figures = []
    for r in records:
        s = MaskSweep.from_dict(r["details"])
        svg = line_chart(
            s.ratios,
            [
                (
                    f"semantic kNN on {s.semantic_dataset} (k={s.knn_k})",
                    s.semantic_accuracy,
                    series_color(0)[0],
                    s.semantic_chance,
                ),
                (f"{s.probe_target} probe", s.probe_accuracy, series_color(1)[0], s.probe_chance),
            ],
            x_label="mask ratio (share of the crop blacked out)",
            y_label="top-1 accuracy",
            label="mask sweep",
        )
        vanished = next(
            (
                x
                for x, a in zip(s.ratios, s.semantic_accuracy, strict=True)
                if a <= s.semantic_chance + 0.05
            ),
            None,
        )
        figures.append({"record": r, "sweep": s, "svg": svg, "vanished": vanished})
    return {"kind": "sweep", "figures": figures}


def map_context(records: list[dict[str, Any]], doc: dict[str, Any]) -> dict[str, Any]:
    """Fig. 7: the t-SNE map of each encoder's embeddings, coloured by a label."""
    maps = []
    for r in records:
        emap = EmbeddingMap.from_dict(r["details"])
        if not emap.x or any(not math.isfinite(v) for v in emap.x + emap.y):
            continue
        maps.append({"record": r, "map": emap, "svg": scatter_chart(emap, label="t-SNE map")})
    return {"kind": "map", "maps": maps}


for _audit, _title, _context, _order in (
    ("acquisition_targets", "Acquisition targets", targets_context, 40),
    ("acquisition_probe", "Acquisition probes (Fig. 6)", probe_context, 41),
    ("neighbour_agreement", "Neighbour agreement (Table 2)", agreement_context, 42),
    ("mask_sweep", "Mask sweep (Fig. 5)", sweep_context, 43),
    ("embedding_map", "Embedding map (Fig. 7)", map_context, 44),
):
    register_section(_audit, title=_title, template=TEMPLATE, context=_context, order=_order)
