"""Report section of the processing-drift audit: distance of each class to the reference."""

from __future__ import annotations

from typing import Any

from pytest_metatrace.report.charts import HBar, hbar_chart
from pytest_metatrace.report.formatting import MISSING, as_float, format_count, format_number
from pytest_metatrace.report.sections import class_order, group_by, label, ordered

from .analysis import DriftResult

__all__ = ["drift_context"]


def drift_context(records: list[dict[str, Any]], doc: dict[str, Any]) -> dict[str, Any]:
    """One horizontal bar chart per (encoder, dataset): distance of each class to the reference."""
    panels = []
    order = class_order()
    # One scale per unit across panels, so that encoders compare at a glance.
    scale: dict[Any, float] = {}
    for record in records:
        drift = DriftResult.from_dict(record["details"])
        top = max(
            (v for v in (as_float(record["value"]), drift.quantiles.get("p95")) if v is not None),
            default=0.0,
        )
        scale[record["unit"]] = max(scale.get(record["unit"], 0.0), top)
    for (encoder, dataset), recs in group_by(
        records, lambda r: (r["encoder"], r["dataset"])
    ).items():
        by_class = {r["parameter"]: r for r in recs}
        rows, bars = [], []
        for name in ordered(by_class, order):
            record = by_class[name]
            drift = DriftResult.from_dict(record["details"])
            p05, p50, p95 = (drift.quantiles.get(q) for q in ("p05", "p50", "p95"))
            value = as_float(record["value"])
            bars.append(
                HBar(
                    label(name),
                    value,
                    p05 if p95 is not None else None,
                    p95 if p05 is not None else None,
                    note=f"{label(name)}: mean {format_number(value)}, p05 {format_number(p05)}, "
                    f"p50 {format_number(p50)}, p95 {format_number(p95)}",
                )
            )
            rows.append(
                {
                    "record": record,
                    "mean": format_number(value),
                    "p05": format_number(p05),
                    "p50": format_number(p50),
                    "p95": format_number(p95),
                    "n_images": format_count(drift.n_images),
                }
            )
        references = [DriftResult.from_dict(r["details"]).reference for r in recs]
        reference = ", ".join(ordered(label(r) for r in references if r)) or MISSING
        unit = label(recs[0]["unit"])
        panels.append(
            {
                "encoder": label(encoder),
                "dataset": label(dataset),
                "reference": reference,
                "unit": unit,
                "rows": rows,
                "gated": any(r["gate"] for r in recs),
                "svg": hbar_chart(
                    bars,
                    x_label=f"mean {unit} to {reference}",
                    whisker_label="p05–p95 over images",
                    x_max=scale.get(recs[0]["unit"]),
                    label=f"{label(encoder)} on {label(dataset)}: {unit} of each processing "
                    f"class to {reference}",
                ),
            }
        )
    return {"panels": panels}
