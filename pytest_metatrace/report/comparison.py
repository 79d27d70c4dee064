"""The encoder comparison page: encoders ranked per audit and parameter, baseline beside.

Shown when a document holds records of two or more encoders (a run with
several ``--metatrace-encoder``, or documents merged by
``python -m pytest_metatrace.report compare a.json b.json``). For every audit
metric, one panel per parameter ranks the encoders by their value, strongest
trace first, with the interval as a whisker - the layout of the paper's
Figs. 4, 6, 8 and 10 (one panel per parameter, one bar per encoder). A table
gives each encoder's mean rank over the parameters, its training family and,
when the run was compared with ``--metatrace-baseline``, the baseline's value
and the change beside the candidate's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from markupsafe import Markup

from .charts import HBar, hbar_chart
from .formatting import MISSING, as_float, format_interval
from .sections import parameter_order, parameter_title

__all__ = ["FAMILY_RULES", "comparison_context", "merge_documents", "training_family"]

#: (pattern on "family:architecture spec", training family), first match wins.
#: Encoders may also say it themselves with a ``training`` entry in ``describe()``.
FAMILY_RULES: tuple[tuple[str, str], ...] = (
    (r"clip|siglip|blip|align|eva02.*clip|coca", "vision-language"),
    (r"^open_clip:", "vision-language"),
    (r"dino|mae|ibot|moco|simclr|byol|msn|beit|data2vec|ijepa", "self-supervised"),
    (r"^(timm|lite0|builtin)|efficientnet|resnet|convnext|vit_|deit|regnet", "supervised"),
)


def training_family(encoder: Mapping[str, Any]) -> str:
    """``supervised``, ``self-supervised``, ``vision-language`` or ``unknown``."""
    declared = encoder.get("training")
    if isinstance(declared, str) and declared:
        return declared
    text = " ".join(
        str(encoder.get(k) or "") for k in ("family", "architecture", "spec", "id")
    ).lower()
    key = f"{encoder.get('family') or ''}:{text}".lower()
    for pattern, family in FAMILY_RULES:
        if re.search(pattern, key):
            return family
    return "unknown"


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _baseline_text(record: Mapping[str, Any]) -> str | None:
    base = record.get("baseline")
    if not isinstance(base, Mapping):
        return None
    unit, metric = record.get("unit") or "fraction", record.get("metric")
    ref = format_interval(base.get("baseline_value"), base.get("baseline_interval"), unit, metric)
    diff = as_float(base.get("difference"))
    low, high = as_float(base.get("low")), as_float(base.get("high"))
    scale = 100.0 if unit == "fraction" else 1.0
    change = MISSING if diff is None else f"{scale * diff:+.4g}"
    if low is not None and high is not None:
        change += f" [{scale * low:+.4g}, {scale * high:+.4g}]"
    verdict = "grew" if base.get("passed") is False else "ok"
    return f"baseline {base.get('baseline_encoder')}: {ref}; change {change} ({verdict})"


def comparison_context(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """Template variables of the comparison page; None with fewer than two encoders."""
    records = [r for r in doc.get("records", []) if as_float(r.get("value")) is not None]
    encoders = list(dict.fromkeys(str(r.get("encoder")) for r in records))
    if len(encoders) < 2:
        return None
    described = {str(e.get("id")): e for e in doc.get("encoders", [])}
    families = {e: training_family(described.get(e, {"id": e})) for e in encoders}
    blocks = []
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in records:
        key = (str(r.get("audit")), str(r.get("metric")), str(r.get("dataset")))
        groups.setdefault(key, []).append(r)
    for (audit, metric, dataset), recs in groups.items():
        if len({r.get("encoder") for r in recs}) < 2:
            continue
        params = parameter_order(recs)
        unit = str(recs[0].get("unit") or "fraction")
        panels: list[dict[str, Any]] = []
        ranks: dict[str, list[int]] = {}
        for param in params:
            here = sorted(
                (r for r in recs if r.get("parameter") == param),
                key=lambda r: -float(r["value"]),
            )
            for rank, r in enumerate(here, 1):
                ranks.setdefault(str(r.get("encoder")), []).append(rank)
            rows = []
            for r in here:
                iv = r.get("interval") or {}
                enc = str(r.get("encoder"))
                rows.append(
                    HBar(
                        f"{enc} ({families.get(enc, 'unknown')})",
                        float(r["value"]),
                        as_float(iv.get("low")),
                        as_float(iv.get("high")),
                        note=_baseline_text(r) or "",
                    )
                )
                base = r.get("baseline")
                if isinstance(base, Mapping) and as_float(base.get("baseline_value")) is not None:
                    biv = base.get("baseline_interval") or {}
                    rows.append(
                        HBar(
                            f"  ↳ baseline {base.get('baseline_encoder')}",
                            float(base["baseline_value"]),
                            as_float(biv.get("low")),
                            as_float(biv.get("high")),
                        )
                    )
            panels.append(
                {
                    "title": parameter_title(param) if param is not None else metric,
                    "svg": Markup(
                        hbar_chart(rows, x_label=f"{metric} ({unit})", whisker_label="95% CI")
                    ),
                }
            )
        table = []
        for enc in sorted(encoders, key=lambda e: _mean(ranks.get(e, [])) if e in ranks else 1e9):
            if enc not in ranks:
                continue
            cells = []
            for param in params:
                rec = next(
                    (r for r in recs if r.get("encoder") == enc and r.get("parameter") == param),
                    None,
                )
                cells.append(
                    {
                        "text": format_interval(rec["value"], rec.get("interval"), unit, metric)
                        if rec
                        else MISSING,
                        "baseline": _baseline_text(rec) if rec else None,
                        "grew": bool(rec and (rec.get("baseline") or {}).get("passed") is False),
                    }
                )
            table.append(
                {
                    "encoder": enc,
                    "family": families.get(enc, "unknown"),
                    "mean_rank": _mean(ranks[enc]),
                    "cells": cells,
                }
            )
        blocks.append(
            {
                "audit": audit,
                "metric": metric,
                "dataset": dataset,
                "parameters": [MISSING if p is None else str(p) for p in params],
                "table": table,
                "panels": panels,
            }
        )
    return {
        "encoders": [{"id": e, "family": families[e]} for e in encoders],
        "blocks": blocks,
        "has_baseline": any(r.get("baseline") for r in records),
    }


def merge_documents(docs: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """One document from several ``(label, document)`` pairs, for a comparison page.

    An encoder id present in more than one document (the same name, release
    after release) becomes ``id@label`` in its records and description, so a
    history of releases shows one row per release.
    """
    if not docs:
        raise ValueError("no documents to merge")
    seen: dict[str, int] = {}
    for _, doc in docs:
        for enc in {str(r.get("encoder")) for r in doc.get("records", [])}:
            seen[enc] = seen.get(enc, 0) + 1
    records: list[dict[str, Any]] = []
    encoders: list[dict[str, Any]] = []
    datasets: dict[str, dict[str, Any]] = {}
    tests: list[Any] = []
    for label, doc in docs:

        def rename(enc: Any, label: str = label) -> Any:
            return f"{enc}@{label}" if seen.get(str(enc), 0) > 1 else enc

        records += [{**r, "encoder": rename(r.get("encoder"))} for r in doc.get("records", [])]
        encoders += [{**e, "id": rename(e.get("id"))} for e in doc.get("encoders", [])]
        for ds in doc.get("datasets", []):
            datasets.setdefault(str(ds.get("fingerprint") or ds.get("id")), ds)
        tests += list((doc.get("run") or {}).get("tests", []))
    first = docs[0][1]
    run = {
        **dict(first.get("run") or {}),
        "invocation": "python -m pytest_metatrace.report compare "
        + " ".join(label for label, _ in docs),
        "tests": tests,
        "merged_from": [label for label, _ in docs],
    }
    return {
        "schema_version": first.get("schema_version"),
        "run": run,
        "choices": list(first.get("choices", [])),
        "encoders": encoders,
        "datasets": list(datasets.values()),
        "records": records,
    }
