"""The encoder comparison page: encoders ranked by each trace metric, baseline beside.

Shown when a document holds records of two or more encoders (a run with
several ``--metatrace-encoder``, or documents merged by
``python -m pytest_metatrace.report compare a.json b.json``).

**What is ranked.** Only metrics an audit's spec declares to be a trace: a
:class:`~pytest_metatrace.spec.MetricSpec` with direction ``higher`` (a
larger value is a stronger trace) or ``lower`` (a smaller value is). Metrics
declared ``none`` (counts, the content task's accuracy, a recall where more
is *less* trace) and metrics no spec declares are shown as context, never
ranked.

**Ranks.** For each parameter, an encoder's rank is 1 + the number of
encoders whose 95% interval lies wholly on the stronger side of its own (a
record without an interval counts as its point value). Equal values share a
rank, and so do encoders whose intervals overlap: rank 1 means "no encoder
is separated above it", never a difference inside the noise. Ranks are
therefore 1, 1, 3 rather than 1, 2, 3 when the first two do not separate.

**Layout.** Per metric, a table (one column per encoder, ordered by mean
rank) and one panel per parameter with one bar per encoder, the interval as
a whisker and, for probe-type metrics, the chance level as a dashed mark -
the layout of the paper's Figs. 4, 6, 8 and 10. An overview first gives each
encoder's mean rank per metric; when the run was compared with
``--metatrace-baseline``, the baseline's value and the change are shown
beside the candidate's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from .charts import HBar, hbar_chart
from .charts.bars import shorten_middle
from .formatting import MISSING, as_float, format_interval, format_value
from .merge import merge_documents
from .sections import class_order, ordered, parameter_order, parameter_title

if TYPE_CHECKING:
    from ..spec import AuditRegistry, MetricSpec

__all__ = [
    "FAMILY_RULES",
    "comparison_context",
    "merge_documents",
    "rank_by_strength",
    "training_family",
]

#: (pattern on "family:architecture spec", training family), first match wins.
#: Encoders may also say it themselves with a ``training`` entry in ``describe()``.
FAMILY_RULES: tuple[tuple[str, str], ...] = (
    (r"clip|siglip|blip|align|eva02.*clip|coca", "vision-language"),
    (r"^open_clip:", "vision-language"),
    (r"dino|mae|ibot|moco|simclr|byol|msn|beit|data2vec|ijepa", "self-supervised"),
    (r"^(timm|lite\d|builtin)|efficientnet|resnet|convnext|vit_|deit|regnet", "supervised"),
)

#: What rank 1 means, per direction (the page's wording).
STRONGEST = {
    "higher": "a higher value is a stronger trace",
    "lower": "a lower value is a stronger trace",
}

#: Bar labels longer than this are cut in the middle (the full id is in the hover text).
LABEL_CHARS = 24

#: One point-or-interval per encoder: (value, low, high); low/high None without an interval.
Entry = tuple[float, float | None, float | None]


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


def _strength(entry: Entry, direction: str) -> tuple[float, float, float]:
    """(value, low, high) turned so that larger always means a stronger trace."""
    value, low, high = entry
    lo = value if low is None else min(low, value)
    hi = value if high is None else max(high, value)
    return (value, lo, hi) if direction == "higher" else (-value, -hi, -lo)


def rank_by_strength(entries: Mapping[str, Entry], direction: str) -> dict[str, int]:
    """Rank 1 = strongest trace: 1 + the encoders separated on the stronger side.

    ``entries``: encoder -> (value, low, high) of one metric and parameter;
    ``direction``: ``higher`` or ``lower`` (which way a value is more trace).
    Encoder *j* is separated above *i* when *j*'s interval lies wholly on the
    stronger side of *i*'s (an entry without an interval is its point).
    Equal values and overlapping intervals therefore share a rank.
    """
    if direction not in STRONGEST:
        raise ValueError(f"direction {direction!r} is not ranked: use 'higher' or 'lower'")
    turned = {enc: _strength(e, direction) for enc, e in entries.items()}

    def above(j: tuple[float, float, float], i: tuple[float, float, float]) -> bool:
        # Relative slack: 0.1 + 0.2 and 0.3 are the same value, not a separation.
        slack = 1e-12 + 1e-9 * max(abs(j[1]), abs(i[2]))
        return j[1] > i[2] + slack

    return {
        enc: 1 + sum(above(other, mine) for name, other in turned.items() if name != enc)
        for enc, mine in turned.items()
    }


def _parameters(records: Sequence[dict[str, Any]]) -> list[Any]:
    """Parameters in protocol order: the paper's groups, or the processing classes."""
    return ordered(parameter_order(records), class_order())


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _entry(record: Mapping[str, Any]) -> Entry:
    iv = record.get("interval") or {}
    return (float(record["value"]), as_float(iv.get("low")), as_float(iv.get("high")))


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


def _chance(record: Mapping[str, Any], spec: MetricSpec) -> float | None:
    return as_float(record.get("chance")) if spec.chance == "record" else None


def _at_chance(entry: Entry, chance: float | None, direction: str) -> bool:
    """True when the interval does not leave the chance level on the trace side."""
    if chance is None:
        return False
    _, low, _ = _strength(entry, direction)
    return low <= (chance if direction == "higher" else -chance) + 1e-12


def _ranked_block(
    audit: str,
    metric: str,
    dataset: str,
    recs: list[dict[str, Any]],
    spec: MetricSpec,
    families: Mapping[str, str],
) -> dict[str, Any]:
    """Table and panels of one trace metric on one dataset."""
    direction = spec.direction
    params = _parameters(recs)
    unit = str(recs[0].get("unit") or "fraction")
    at = {(str(r.get("encoder")), r.get("parameter")): r for r in recs}
    position = {e: i for i, e in enumerate(families)}
    encoders = sorted(dict.fromkeys(str(r.get("encoder")) for r in recs), key=position.__getitem__)
    ranks: dict[tuple[str, Any], int] = {}
    for param in params:
        entries = {enc: _entry(at[enc, param]) for enc in encoders if (enc, param) in at}
        ranks.update({(enc, param): n for enc, n in rank_by_strength(entries, direction).items()})
    per_encoder = {e: [ranks[e, p] for p in params if (e, p) in ranks] for e in encoders}
    # Equal means keep the document's order (a release history stays v1, v2, v3).
    order = sorted(encoders, key=lambda e: (_mean(per_encoder[e]), position[e]))
    # One scale for the block's panels: bars of neighbouring panels compare at a glance.
    tops = [
        v
        for r in recs
        for v in (as_float(r.get("value")), as_float((r.get("interval") or {}).get("high")))
        if v is not None
    ]
    x_max = max(tops, default=None)
    panels, parameters = [], []
    for param in params:
        here = [enc for enc in encoders if (enc, param) in ranks]
        here.sort(
            key=lambda e: (
                ranks[e, param],
                -_strength(_entry(at[e, param]), direction)[0],
                position[e],
            )
        )
        chances = {_chance(at[e, param], spec) for e in here} - {None}
        rows: list[HBar] = []
        for enc in here:
            r = at[enc, param]
            value, low, high = _entry(r)
            shown = format_interval(value, r.get("interval"), unit, metric)
            note = f"rank {ranks[enc, param]}: {enc}, {shown}"
            base_note = _baseline_text(r)
            rows.append(
                HBar(
                    f"{ranks[enc, param]}. {shorten_middle(enc, LABEL_CHARS)}"
                    f" ({families.get(enc, 'unknown')})",
                    value,
                    low,
                    high,
                    note=note + (f"; {base_note}" if base_note else ""),
                    reference=_chance(r, spec),
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
                        reference=_chance(r, spec),
                    )
                )
        title = parameter_title(param) if param is not None else spec.label or metric
        panels.append(
            {
                "title": title,
                "svg": Markup(
                    hbar_chart(
                        rows,
                        x_label=f"{spec.label or metric} ({unit})",
                        whisker_label="95% CI",
                        x_max=x_max,
                        label=f"{spec.label or metric}, {title}: encoders, strongest trace first",
                    )
                ),
            }
        )
        parameters.append(
            {
                "name": MISSING if param is None else str(param),
                "chance": format_value(chances.pop(), unit) if len(chances) == 1 else None,
            }
        )
    table = []
    for enc in order:
        cells: list[dict[str, Any]] = []
        for param in params:
            rec = at.get((enc, param))
            if rec is None:
                cells.append(
                    {
                        "text": MISSING,
                        "rank": None,
                        "at_chance": False,
                        "baseline": None,
                        "grew": False,
                    }
                )
                continue
            entry = _entry(rec)
            cells.append(
                {
                    "text": format_interval(rec["value"], rec.get("interval"), unit, metric),
                    "rank": ranks[enc, param],
                    "at_chance": _at_chance(entry, _chance(rec, spec), direction),
                    "baseline": _baseline_text(rec),
                    "grew": (rec.get("baseline") or {}).get("passed") is False,
                }
            )
        table.append(
            {
                "encoder": enc,
                "family": families.get(enc, "unknown"),
                "mean_rank": _mean(per_encoder[enc]),
                "n_ranked": len(per_encoder[enc]),
                "cells": cells,
            }
        )
    return {
        "audit": audit,
        "metric": metric,
        "label": spec.label or metric,
        "dataset": dataset,
        "direction": direction,
        "strongest": STRONGEST[direction],
        "has_chance": spec.chance == "record"
        and any(as_float(r.get("chance")) is not None for r in recs),
        "parameters": parameters,
        "n_parameters": len(params),
        "table": table,
        "panels": panels,
    }


def _context_block(
    audit: str,
    metric: str,
    dataset: str,
    recs: list[dict[str, Any]],
    spec: MetricSpec | None,
    encoders: Sequence[str],
) -> dict[str, Any]:
    """Values of a metric that is not a trace, side by side and unranked."""
    params = _parameters(recs)
    unit = str(recs[0].get("unit") or "fraction")
    at = {(str(r.get("encoder")), r.get("parameter")): r for r in recs}
    shown = [e for e in encoders if any((e, p) in at for p in params)]
    why = (
        "declared not a trace by its audit"
        if spec is not None
        else "no audit's spec says whether it is a trace"
    )
    rows = []
    for param in params:
        cells = []
        for enc in shown:
            rec = at.get((enc, param))
            cells.append(
                MISSING
                if rec is None
                else format_interval(rec["value"], rec.get("interval"), unit, metric)
            )
        rows.append({"parameter": MISSING if param is None else str(param), "cells": cells})
    return {
        "audit": audit,
        "metric": metric,
        "label": (spec.label if spec is not None else "") or metric,
        "dataset": dataset,
        "unit": unit,
        "why": why,
        "encoders": shown,
        "rows": rows,
    }


def _overview(blocks: Sequence[dict[str, Any]], encoders: Sequence[str]) -> dict[str, Any]:
    """Mean rank of every encoder per trace metric, and how often it ranks first."""
    means = [{row["encoder"]: row["mean_rank"] for row in b["table"]} for b in blocks]
    firsts = {
        e: sum(1 for m in means if e in m and m[e] <= min(m.values()) + 1e-9) for e in encoders
    }
    ranked = [e for e in encoders if any(e in m for m in means)]
    order = sorted(
        ranked, key=lambda e: (_mean([m[e] for m in means if e in m]), encoders.index(e))
    )
    rows = []
    for block, m in zip(blocks, means, strict=True):
        best = min(m.values())
        rows.append(
            {
                "block": block,
                "cells": [
                    {"mean": m.get(e), "best": e in m and m[e] <= best + 1e-9} for e in order
                ],
            }
        )
    return {
        "encoders": order,
        "rows": rows,
        "firsts": [firsts[e] for e in order],
    }


def comparison_context(
    doc: Mapping[str, Any], registry: AuditRegistry | None = None
) -> dict[str, Any] | None:
    """Template variables of the comparison page; None with fewer than two encoders.

    ``registry`` says which metrics are traces and in which direction
    (default: the built-in and installed audits).
    """
    if registry is None:
        from ..spec import default_registry

        registry = default_registry()
    records = [r for r in doc.get("records", []) if as_float(r.get("value")) is not None]
    encoders = list(dict.fromkeys(str(r.get("encoder")) for r in records))
    if len(encoders) < 2:
        return None
    described = {str(e.get("id")): e for e in doc.get("encoders", [])}
    families = {e: training_family(described.get(e, {"id": e})) for e in encoders}
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in records:
        key = (str(r.get("audit")), str(r.get("metric")), str(r.get("dataset")))
        groups.setdefault(key, []).append(r)
    blocks, context = [], []
    for (audit, metric, dataset), recs in groups.items():
        if len({str(r.get("encoder")) for r in recs}) < 2:
            continue
        spec = registry.metric(audit, metric)
        if spec is not None and spec.direction in STRONGEST:
            blocks.append(_ranked_block(audit, metric, dataset, recs, spec, families))
        else:
            context.append(_context_block(audit, metric, dataset, recs, spec, encoders))
    return {
        "encoders": [{"id": e, "family": families[e]} for e in encoders],
        "blocks": blocks,
        "overview": _overview(blocks, encoders) if blocks else None,
        "context": context,
        "has_baseline": any(r.get("baseline") for r in records),
        "has_chance": any(b["has_chance"] for b in blocks),
    }
