"""Report section of the processing probes: Fig. 4 bars, per-record cards, confusion matrices."""

from __future__ import annotations

from typing import Any

from pytest_metatrace.report.charts import grouped_bar_chart, heat_style
from pytest_metatrace.report.formatting import MISSING, format_count, format_number, format_percent
from pytest_metatrace.report.sections import (
    bars_per_parameter,
    encoder_order,
    group_by,
    label,
    mean_std,
    parameter_title,
)

from .results import ProbeDetails

__all__ = ["probe_context"]


def _confusion(details: ProbeDetails) -> dict[str, Any] | None:
    classes = [label(c) for c in details.classes]
    matrix = details.confusion
    if not matrix:
        return None
    size = max(len(matrix), *(len(row) for row in matrix))
    classes += [f"class {i}" for i in range(len(classes), size)]
    rows = []
    for i, counts in enumerate(matrix):
        total = sum(c for c in counts if c is not None)
        cells = [
            {
                "text": format_count(c),
                "style": heat_style(c / total if c is not None and total > 0 else None),
                "diagonal": j == i,
            }
            for j, c in enumerate(counts)
        ]
        cells += [{"text": "", "style": heat_style(None), "diagonal": False}] * (size - len(cells))
        accuracy = details.per_class_accuracy.get(classes[i])
        rows.append({"label": classes[i], "cells": cells, "accuracy": format_percent(accuracy)})
    return {"classes": classes[:size], "rows": rows}


def probe_context(records: list[dict[str, Any]], doc: dict[str, Any]) -> dict[str, Any]:
    """Fig. 4 per dataset (bars per parameter and encoder), then a card per record."""
    figures = []
    for dataset, recs in group_by(records, lambda r: r["dataset"]).items():
        encoders = encoder_order(recs, doc)
        groups = bars_per_parameter(recs, encoders)
        figures.append(
            {
                "dataset": label(dataset),
                "svg": grouped_bar_chart(
                    groups,
                    [label(e) for e in encoders],
                    y_label="top-1 accuracy",
                    label=f"Processing probe top-1 accuracy on {dataset}, per parameter",
                ),
            }
        )
    blocks = []
    for (encoder, dataset), recs in group_by(
        records, lambda r: (r["encoder"], r["dataset"])
    ).items():
        blocks.append(
            {
                "title": f"{label(encoder)} · {label(dataset)}",
                "failed": sum(r["display"]["status"] == "fail" for r in recs),
                "cards": [_probe_card(r) for r in recs],
            }
        )
    return {
        "figures": figures,
        "groups": blocks,
        "rows": [card for block in blocks for card in block["cards"]],
    }


def _probe_card(record: dict[str, Any]) -> dict[str, Any]:
    details = ProbeDetails.from_dict(record["details"])
    hyper = details.hyperparameters
    best = max(
        (t.val_top1 if t.val_top1 is not None else -1.0 for t in details.search), default=None
    )
    top1 = details.top1_mean if details.top1_mean is not None else record["value"]
    return {
        "record": record,
        "title": parameter_title(record["parameter"]),
        "top1": mean_std(top1, details.top1_std),
        "per_class": mean_std(details.mean_per_class_mean, details.mean_per_class_std),
        "setup": [
            ("learning rate", format_number(hyper.get("lr"), digits=3)),
            ("weight decay", format_number(hyper.get("weight_decay"), digits=3)),
            ("training images", format_count(details.n_train)),
            (
                "test images × classes",
                f"{format_count(details.n_test_images)} → "
                f"{format_count(details.n_test_samples)} samples",
            ),
            ("seeds", ", ".join(label(s) for s in details.seeds) or MISSING),
            (
                "top-1 per seed",
                ", ".join(format_percent(v) for v in details.top1_per_seed) or MISSING,
            ),
            ("mode", label(details.mode)),
        ],
        "confusion": _confusion(details),
        "search": [
            {
                "lr": format_number(t.lr, digits=3),
                "weight_decay": format_number(t.weight_decay, digits=3),
                "val_top1": format_percent(t.val_top1),
                "best": best is not None and t.val_top1 == best,
            }
            for t in details.search
        ],
    }
