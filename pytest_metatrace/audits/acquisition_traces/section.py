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
from .targets import Confound

__all__ = [
    "agreement_context",
    "map_context",
    "probe_context",
    "sweep_context",
    "targets_context",
]


def targets_context(records: list[dict[str, Any]], doc: dict[str, Any]) -> dict[str, Any]:
    """Which targets ran, which did not and why; the grouping note; confounds; EXIF counts."""
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
                "confounds": list((d.get("confound_warnings") or {}).values()),
                "notes": ds.get("notes") or {},
                "skipped": ds.get("skipped") or [],
                "credits": ds.get("credits") or [],
            }
        )
    return {"kind": "targets", "plans": plans}


def probe_context(records: list[dict[str, Any]], doc: dict[str, Any]) -> dict[str, Any]:
    """Fig. 6: probe accuracy per target and encoder, with interval, chance and gate."""
    encoders = encoder_order(records, doc)
    # One bar group per target, per dataset when the records hold several.
    keys = list(dict.fromkeys((r["dataset"], r["parameter"]) for r in records))
    several = len({d for d, _ in keys}) > 1
    by_key = {(r["encoder"], r["dataset"], r["parameter"]): r for r in records}
    groups = []
    for d, t in keys:
        bars = []
        chance = None
        for e in encoders:
            r = by_key.get((e, d, t))
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
                    f"{e} · {d} · {t}: {r['display']['interval']}",
                )
            )
        groups.append(BarGroup(f"{d} · {t}" if several else t, bars, chance))
    svg = grouped_bar_chart(
        groups,
        [str(e) for e in encoders],
        y_min=0.0,
        y_max=1.0,
        y_label="top-1 accuracy",
        label="acquisition probe accuracy per target",
    )
    columns = {
        r["dataset"]: (r["details"] or {}).get("group_column")
        for r in doc.get("records", [])
        if r.get("audit") == "acquisition_targets"
    }
    confounds = [
        f"{r['encoder']} · {r['dataset']} · {r['parameter']}: "
        f"{Confound.from_dict(c).describe(columns.get(r['dataset']))}"
        for r in records
        for c in (r["details"].get("split") or {}).get("confounds") or []
    ]
    return {"kind": "probe", "svg": svg, "rows": records, "confounds": confounds}


def agreement_context(records: list[dict[str, Any]], doc: dict[str, Any]) -> dict[str, Any]:
    """Table 2: same-label share of the top-k neighbours next to chance, group-aware."""
    rows: list[dict[str, Any]] = []
    groups = []
    encoders = encoder_order(records, doc)
    for r in records:
        res = NeighbourAgreement.from_dict(r["details"])
        cells = [
            format_interval(a, iv.to_dict())
            for a, iv in zip(res.agreement, res.intervals, strict=True)
        ]
        rows.append(
            {
                "record": r,
                "result": res,
                "cells": cells,
                "chance": format_percent(res.chance),
                "own_group": _own_group_cell(res),
                "note": r["details"].get("grouping_note") or res.grouping_note,
            }
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
    notes = list(dict.fromkeys(row["note"] for row in rows))
    return {
        "kind": "agreement",
        "rows": rows,
        "svg": svg,
        "ks": [10, 25, 50],
        "notes": notes,
    }


def _own_group_cell(res: NeighbourAgreement) -> str:
    """How the own group was treated, its share of the top-k, and the other rule's figure."""
    if res.own_group == "no groups" or not res.own_group_share:
        return "no groups"
    col = res.group_column or "group"
    share = f"{format_percent(res.own_group_share[0])} of the top-{res.ks[0]} from it"
    if res.own_group == "excluded":
        other = format_percent(res.agreement_with_own_group[0])
        chance = format_percent(res.chance_with_own_group)
        return f"own {col} left out ({share}); counted: {other} (chance {chance})"
    other = format_percent(res.agreement_without_own_group[0])
    chance = format_percent(res.chance_without_own_group)
    return f"own {col} counted ({share}); left out: {other} (chance {chance})"


def sweep_context(records: list[dict[str, Any]], doc: dict[str, Any]) -> dict[str, Any]:
    """Fig. 5: the semantic curve and the acquisition probe accuracy against the mask ratio."""
    figures = []
    for r in records:
        s = MaskSweep.from_dict(r["details"])
        sem = s.semantic
        name = (
            f"twin recall@1 on {sem.dataset} ({sem.candidates} candidates)"
            if sem.source == "pairs"
            else f"semantic kNN on {sem.dataset} (k={sem.knn_k})"
        )
        svg = line_chart(
            s.ratios,
            [
                (name, sem.scores, series_color(0)[0], sem.chance),
                (f"{s.probe_target} probe", s.probe_accuracy, series_color(1)[0], s.probe_chance),
            ],
            x_label="mask ratio (share of the crop blacked out)",
            y_label="recall@1 / top-1 accuracy" if sem.source == "pairs" else "top-1 accuracy",
            label="mask sweep",
        )
        # Ratio 1 is all black, at chance by construction: the question is where below it.
        vanished = next(
            (
                x
                for x, a in zip(s.ratios, sem.scores, strict=True)
                if x < 1.0 and a <= sem.chance + 0.05
            ),
            None,
        )
        figures.append({"record": r, "sweep": s, "semantic": sem, "svg": svg, "vanished": vanished})
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
