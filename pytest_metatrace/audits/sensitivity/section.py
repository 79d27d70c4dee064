"""Report section of the sensitivity audit: the detection curve and the steps tried."""

from __future__ import annotations

from typing import Any

from pytest_metatrace.report.charts import line_chart, series_color
from pytest_metatrace.report.formatting import MISSING, as_float, format_number, format_percent
from pytest_metatrace.report.sections import as_dict, as_list, label

__all__ = ["sensitivity_context"]


def _step_rows(details: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for raw in as_list(details.get("steps")):
        step = as_dict(raw)
        interval = as_dict(step.get("interval"))
        rows.append(
            {
                "name": label(step.get("name")),
                "size": as_float(step.get("size")),
                "size_text": format_number(step.get("size")),
                "accuracy": as_float(step.get("accuracy")),
                "accuracy_text": format_percent(step.get("accuracy")),
                "low": as_float(interval.get("low")),
                "interval": f"{format_percent(interval.get('low'))} to "
                f"{format_percent(interval.get('high'))}",
                "top1": format_percent(step.get("top1")),
                "verdict": label(step.get("verdict")),
            }
        )
    return sorted(rows, key=lambda r: r["size"] if r["size"] is not None else 0.0)


def sensitivity_context(records: list[dict[str, Any]], doc: dict[str, Any]) -> dict[str, Any]:
    """One card per record: the detection curve (paired accuracy against step size)."""
    cards = []
    for record in records:
        details = as_dict(record.get("details"))
        rows = _step_rows(details)
        plotted = [r for r in rows if r["size"] is not None and r["accuracy"] is not None]
        svg = None
        if plotted:
            margin = as_float(details.get("margin")) or 0.0
            svg = line_chart(
                [r["size"] for r in plotted],
                [
                    ("paired accuracy", [r["accuracy"] for r in plotted], series_color(0)[0], 0.5),
                    (
                        f"interval lower end (detected above {format_number(0.5 + margin)})",
                        [r["low"] if r["low"] is not None else 0.0 for r in plotted],
                        series_color(1)[0],
                        0.5 + margin,
                    ),
                ],
                x_label=f"step from {label(details.get('reference'))} ({record.get('unit')})",
                y_label="paired accuracy",
                label=f"detection curve, {label(details.get('title'))}",
            )
        smallest = details.get("smallest")
        cards.append(
            {
                "record": record,
                "title": f"{label(details.get('title'))} · {label(record.get('encoder'))} · "
                f"{label(record.get('dataset'))}",
                "smallest": label(smallest) if smallest else MISSING,
                "value": format_number(record.get("value")),
                "verdict": label(details.get("verdict")),
                "method": label(details.get("method")),
                "evaluations": details.get("evaluations"),
                "rows": rows,
                "svg": svg,
            }
        )
    return {"cards": cards}
