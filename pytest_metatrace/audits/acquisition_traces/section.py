"""Report sections of the acquisition audit (paper Sec. 3.2: Fig. 5, Fig. 6, Table 2, Fig. 7).

Five record kinds, five sections sharing one template
(``section.html.j2`` beside this module, switched by ``kind``): the target plan,
the probes (Fig. 6), neighbour agreement (Table 2), the mask sweep (Fig. 5)
and the t-SNE map (Fig. 7). Each context rebuilds the typed result from the
record's ``details``; the figures are drawn here, never by the audit.
"""

from __future__ import annotations

import math
from typing import Any

from pytest_metatrace.report.charts import (
    Bar,
    BarGroup,
    grouped_bar_chart,
    line_chart,
    scatter_chart,
    series_color,
)
from pytest_metatrace.report.formatting import format_interval, format_percent
from pytest_metatrace.report.sections import encoder_order

from .agreement import NeighbourAgreement
from .mask_sweep import EmbeddingMap, MaskSweep

__all__ = [
    "agreement_context",
    "map_context",
    "probe_context",
    "sweep_context",
    "targets_context",
]


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
        maps.append(
            {
                "record": r,
                "map": emap,
                "svg": scatter_chart(emap.x, emap.y, emap.labels, emap.ids, label="t-SNE map"),
            }
        )
    return {"kind": "map", "maps": maps}
