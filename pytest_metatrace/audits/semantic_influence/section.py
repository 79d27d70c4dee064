"""Report section of the kNN semantic-influence audit: Figs. 8, 2 and 9 and the per-pair table."""

from __future__ import annotations

import math
from typing import Any

from markupsafe import Markup

from pytest_metatrace.report.charts import (
    Bar,
    BarGroup,
    HeatScale,
    Line,
    grouped_bar_chart,
    step_chart,
)
from pytest_metatrace.report.formatting import (
    MISSING,
    as_float,
    format_count,
    format_interval,
    format_number,
    format_percent,
)
from pytest_metatrace.report.sections import (
    encoder_order,
    group_by,
    label,
    parameter_title,
    safe_image_uri,
)

from .results import SemanticDetails, SetupSummary

__all__ = ["SETUPS", "SIMILARITY_GROUPS", "semantic_context"]


#: The five kNN databases of docs/protocol.md §5, with their figure colours.
SETUPS = {
    "all_same": ("all-same", "#0072B2"),
    "all_diff": ("all-diff", "#56B4E9"),
    "pos_same": ("pos-same", "#009E73"),
    "neg_same": ("neg-same", "#D55E00"),
    "uniform": ("uniform", "#8c8c8c"),
}
#: The four similarity groups of Fig. 2: hue = semantic label, dash = metadata label.
SIMILARITY_GROUPS = {
    "same_sem_same_meta": ("same class, same processing", "#0072B2", None),
    "same_sem_diff_meta": ("same class, other processing", "#56B4E9", "6 3"),
    "diff_sem_same_meta": ("other class, same processing", "#D55E00", None),
    "diff_sem_diff_meta": ("other class, other processing", "#E69F00", "6 3"),
}
_GALLERY_SETUPS = ("all_same", "pos_same", "neg_same")


def _fig8(recs: list[dict[str, Any]], encoders: list[Any], title: str) -> Markup | None:
    """Five setups as bars per encoder, with intervals; the axis zooms to the data range."""
    groups, values = [], []
    for encoder in encoders:
        knn = next(
            (r for r in recs if r["encoder"] == encoder and r["metric"] == "knn_accuracy"), None
        )
        setups = SemanticDetails.from_dict(knn["details"]).setups if knn else {}
        bars = []
        for key, (name, _) in SETUPS.items():
            setup = setups.get(key, SetupSummary(None, None, None))
            value, low, high = setup.accuracy, setup.low, setup.high
            values += [v for v in (value, low, high) if v is not None]
            bars.append(
                Bar(
                    value,
                    low,
                    high,
                    note=f"{label(encoder)} · {name}: {_setup_interval(setup)}",
                )
            )
        groups.append(BarGroup(label(encoder), bars))
    if not values:
        return None
    # kNN accuracies differ by a few points between setups; a 0-100% axis
    # would hide exactly the gaps the figure is about (the paper zooms too).
    y_min = max(0.0, math.floor((min(values) - 0.05) * 10) / 10)
    y_max = min(1.0, math.ceil((max(values) + 0.02) * 10) / 10)
    return grouped_bar_chart(
        groups,
        [n for n, _ in SETUPS.values()],
        colors=[c for _, c in SETUPS.values()],
        y_min=y_min,
        y_max=y_max,
        y_label="kNN top-1 accuracy",
        label=title,
    )


def _setup_interval(setup: SetupSummary) -> str:
    return format_interval(setup.accuracy, {"low": setup.low, "high": setup.high})


def _fig2(details: SemanticDetails, title: str) -> dict[str, Any] | None:
    dist = details.similarity_distributions
    if dist is None or len(dist.bin_edges) < 2:
        return None
    edges = dist.bin_edges
    lines = []
    for key, (name, color, dash) in SIMILARITY_GROUPS.items():
        counts = dist.groups.get(key, [])
        total = sum(counts)
        if total <= 0:
            continue
        # Densities, not counts: the four groups differ in size by orders of magnitude.
        density: list[float | None] = [
            c / (total * (edges[i + 1] - edges[i]) or 1.0)
            for i, c in enumerate(counts[: len(edges) - 1])
        ]
        mean = dist.means.get(key)
        title = name if mean is None else f"{name} (mean {format_number(mean, digits=3)})"
        lines.append(Line(title, density, color, dash))
    if not lines:
        return None
    return {
        "query_class": label(dist.query_class) if dist.query_class is not None else None,
        "svg": step_chart(
            edges,
            lines,
            x_label="cosine similarity to the query",
            y_label="density",
            label=title,
        ),
    }


def _gallery(details: SemanticDetails) -> dict[str, Any] | None:
    gallery = details.gallery
    if gallery is None:
        return None
    thumbs = {k: safe_image_uri(v) for k, v in gallery.thumbs.items()}
    queries = []
    for query in gallery.queries:
        rows = [
            {
                "setup": SETUPS[key][0],
                "neighbours": [
                    {
                        "uri": thumbs.get(n.thumb),
                        "label": label(n.label),
                        "processing": label(n.processing),
                        "match": n.match,
                        "similarity": format_number(n.similarity, digits=3),
                    }
                    for n in query.setups[key]
                ],
            }
            for key in _GALLERY_SETUPS
            if key in query.setups
        ]
        queries.append(
            {
                "uri": thumbs.get(query.thumb),
                "label": label(query.label),
                "processing": label(query.processing),
                "rows": rows,
            }
        )
    if not queries:
        return None
    return {"pair": [label(p) for p in gallery.pair], "queries": queries}


def _per_pair(details: SemanticDetails) -> list[dict[str, Any]]:
    """Heat maps of accuracy per ordered pair, one per setup, then the two gaps per pair.

    The setups share one colour scale spanning their values (they differ in
    the third decimal; a 0..1 scale would shade them alike), and the gaps get
    a diverging scale around zero. Each table carries its scale's legend.
    """
    classes = [label(c) for c in details.classes]
    matrices = {
        key: [[as_float(v) for v in row] for row in setup.per_pair]
        for key, setup in details.setups.items()
    }
    matrices = {key: m for key, m in matrices.items() if m}
    gaps = {}
    for name, (plus, minus) in {
        "pos-same − all-same": ("pos_same", "all_same"),
        "all-same − neg-same": ("all_same", "neg_same"),
    }.items():
        if plus in matrices and minus in matrices:
            gaps[name] = [
                [
                    a - b if a is not None and b is not None else None
                    for a, b in zip(ra, rb, strict=False)
                ]
                for ra, rb in zip(matrices[plus], matrices[minus], strict=False)
            ]
    accuracy = HeatScale.spanning([v for m in matrices.values() for row in m for v in row])
    gap = HeatScale.spanning([v for m in gaps.values() for row in m for v in row], diverging=True)
    tables = []
    for title, matrix, scale, signed in [
        *((SETUPS.get(k, (k,))[0], m, accuracy, False) for k, m in matrices.items()),
        *((k, m, gap, True) for k, m in gaps.items()),
    ]:
        rows = [
            {
                "label": classes[i] if i < len(classes) else str(i),
                "cells": [
                    {
                        "text": format_percent(v, decimals=1, signed=signed, sign=""),
                        "style": scale.style(v),
                    }
                    for v in row
                ],
            }
            for i, row in enumerate(matrix)
        ]
        width = max(len(r["cells"]) for r in rows)
        columns = (classes + [str(i) for i in range(len(classes), width)])[:width]
        unit = " pp" if signed else "%"
        tables.append(
            {
                "setup": title,
                "columns": columns,
                "rows": rows,
                "legend": {
                    "low": format_percent(scale.low, decimals=1, signed=signed, sign=unit),
                    "high": format_percent(scale.high, decimals=1, signed=signed, sign=unit),
                    "gradient": scale.gradient(),
                },
            }
        )
    return tables


def semantic_context(records: list[dict[str, Any]], doc: dict[str, Any]) -> dict[str, Any]:
    """Fig. 8 per (dataset, group), the gaps table with gates, Figs. 2 and 9 per triple."""
    figures = []
    for (dataset, parameter), recs in group_by(
        records, lambda r: (r["dataset"], r["parameter"])
    ).items():
        title = f"{label(dataset)} · {parameter_title(parameter)}"
        encoders = encoder_order(recs, doc)
        svg = _fig8(recs, encoders, f"kNN accuracy per database setup: {title}")
        if svg is not None:
            # Up to three encoders fit half the page; more get the full width.
            figures.append({"title": title, "svg": svg, "wide": len(encoders) > 3})
    triples = []
    for (encoder, dataset, parameter), recs in group_by(
        records, lambda r: (r["encoder"], r["dataset"], r["parameter"])
    ).items():
        by_metric = {r["metric"]: r for r in recs}
        knn = by_metric.get("knn_accuracy")
        details = SemanticDetails.from_dict(knn["details"] if knn else {})
        title = f"{label(encoder)} · {label(dataset)} · {parameter_title(parameter)}"
        setups = details.setups
        triples.append(
            {
                "title": title,
                "failed": sum(r["display"]["status"] == "fail" for r in recs),
                "all_same": knn["display"]["interval"] if knn else MISSING,
                "setups": [
                    (name, _setup_interval(setups[k]))
                    for k, (name, _) in SETUPS.items()
                    if k in setups
                ],
                "gaps": [by_metric.get("pos_same_gap"), by_metric.get("neg_same_gap")],
                "others": [
                    r
                    for r in recs
                    if r["metric"] not in ("knn_accuracy", "pos_same_gap", "neg_same_gap")
                ],
                "k": format_count(details.k),
                "n_train": format_count(details.n_train),
                "n_test": format_count(details.n_test),
                "seeds": ", ".join(label(s) for s in details.seeds) or MISSING,
                "fig2": _fig2(details, f"Similarity distributions: {title}"),
                "gallery": _gallery(details),
                "per_pair": _per_pair(details),
            }
        )
    return {"figures": figures, "triples": triples, "setup_names": [n for n, _ in SETUPS.values()]}
