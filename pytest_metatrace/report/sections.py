"""Shared pieces of the report's audit sections, and the generic section.

A section turns the records of one audit kind into a template context; each
audit declares its own in its spec (:class:`~pytest_metatrace.spec.SectionSpec`,
the context function and template in the audit's folder). Records of a kind
no audit declares fall back to the generic section here (a records table,
plus a bar chart when the values are fractions). The helpers below are what
the sections share: grouping in a deterministic order, labels, bars with
intervals and thresholds, safe image URIs.

Context functions receive *normalized* records (see
:func:`pytest_metatrace.report.render.normalize_record`): every key of
:class:`~pytest_metatrace.results.Record` is present, ``interval`` / ``gate``
are dicts or ``None``, ``details`` / ``provenance`` are dicts, and
``display`` holds the formatted value, interval, chance and threshold.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ..processing.groups import PARAMETER_GROUPS
from .charts import Bar, BarGroup, grouped_bar_chart
from .formatting import MISSING, as_float, format_percent, is_difference, is_fraction

__all__ = [
    "GENERIC_TEMPLATE",
    "ContextFunction",
    "Section",
    "as_dict",
    "as_list",
    "bars_per_parameter",
    "class_order",
    "encoder_order",
    "generic_context",
    "group_by",
    "interval_bounds",
    "label",
    "mean_std",
    "ordered",
    "parameter_order",
    "parameter_title",
    "record_bar",
    "safe_image_uri",
]

#: ``context(records_of_this_audit, normalized_document) -> template variables``.
ContextFunction = Callable[[list[dict[str, Any]], dict[str, Any]], dict[str, Any]]

#: Template used for audit kinds without a declared section.
GENERIC_TEMPLATE = "section_generic.html.j2"

K = TypeVar("K", bound=Hashable)

_DATA_URI = re.compile(r"^data:image/(png|jpeg|jpg|gif|webp);base64,[A-Za-z0-9+/=\s]+$")


@dataclass(frozen=True)
class Section:
    """How to render the records of one audit kind (built from a spec's ``SectionSpec``)."""

    audit: str  #: the records' ``audit`` value this section renders
    title: str  #: heading shown in the report and its table of contents
    template: str  #: a template name in ``report/templates`` or a path to a template file
    context: ContextFunction  #: builds the template variables from the records
    order: int  #: sections appear by increasing order, then by audit name

    @property
    def anchor(self) -> str:
        """The HTML id of the section."""
        return "sec-" + (re.sub(r"[^a-z0-9]+", "-", self.audit.lower()).strip("-") or "audit")


def safe_image_uri(value: Any) -> str | None:
    """``value`` if it is a base64 image data URI, else ``None`` (never an external URL)."""
    return value if isinstance(value, str) and _DATA_URI.match(value) else None


def group_by(
    records: Iterable[dict[str, Any]], key: Callable[[dict[str, Any]], K]
) -> dict[K, list[dict[str, Any]]]:
    """Group in first-appearance order (dicts keep insertion order), so pages are deterministic."""
    groups: dict[K, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(key(record), []).append(record)
    return groups


def label(value: Any) -> str:
    """A display label: ``—`` for ``None``, else ``str(value)``."""
    return MISSING if value is None else str(value)


def ordered(values: Iterable[Any], preferred: Sequence[Any] = ()) -> list[Any]:
    """Distinct values: those in ``preferred`` first in its order, then first appearance."""
    seen = list(dict.fromkeys(values))
    return [v for v in preferred if v in seen] + [v for v in seen if v not in preferred]


def encoder_order(records: Sequence[dict[str, Any]], doc: Mapping[str, Any]) -> list[Any]:
    """Encoder ids of ``records``, in the document's encoder order."""
    known = [e.get("id") for e in doc.get("encoders", []) if isinstance(e, Mapping)]
    return ordered((r["encoder"] for r in records), known)


def parameter_order(records: Sequence[dict[str, Any]]) -> list[Any]:
    """Parameters of ``records``: the paper's group order first."""
    return ordered((r["parameter"] for r in records), list(PARAMETER_GROUPS))


def parameter_title(parameter: Any) -> str:
    """Human name of a parameter group (``jpeg`` -> ``JPEG compression``)."""
    group = PARAMETER_GROUPS.get(parameter) if isinstance(parameter, str) else None
    return group.title if group is not None else label(parameter)


def class_order() -> list[str]:
    """Every processing class of the parameter groups, in protocol order, once."""
    return list(dict.fromkeys(c for g in PARAMETER_GROUPS.values() for c in g.classes))


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` as a dict if it is a mapping, else an empty dict."""
    return dict(value) if isinstance(value, Mapping) else {}


def as_list(value: Any) -> list[Any]:
    """``value`` as a list if it is a list or tuple, else an empty list."""
    return list(value) if isinstance(value, (list, tuple)) else []


def interval_bounds(interval: Any) -> tuple[float | None, float | None]:
    """``(low, high)`` of an interval dict when both are numbers, else ``(None, None)``."""
    if not isinstance(interval, Mapping):
        return None, None
    low, high = as_float(interval.get("low")), as_float(interval.get("high"))
    return (low, high) if low is not None and high is not None else (None, None)


def record_bar(record: dict[str, Any]) -> Bar:
    """A bar of ``record``: value, interval whiskers, threshold and a hover note."""
    low, high = interval_bounds(record["interval"])
    gate = record["gate"]
    return Bar(
        value=as_float(record["value"]),
        low=low,
        high=high,
        threshold=as_float(gate.get("threshold")) if gate else None,
        note=f"{label(record['encoder'])} · {parameter_title(record['parameter'])}: "
        f"{record['display']['interval']}",
    )


def bars_per_parameter(records: list[dict[str, Any]], encoders: list[Any]) -> list[BarGroup]:
    """Fig. 4 layout: a group per parameter, a bar per encoder, the chance level dashed."""
    by_key = {(r["parameter"], r["encoder"]): r for r in records}
    groups = []
    for parameter in parameter_order(records):
        chances = (as_float(r["chance"]) for r in records if r["parameter"] == parameter)
        bars = [
            record_bar(by_key[(parameter, e)]) if (parameter, e) in by_key else Bar(None)
            for e in encoders
        ]
        groups.append(
            BarGroup(
                parameter_title(parameter), bars, next((c for c in chances if c is not None), None)
            )
        )
    return groups


def mean_std(mean: Any, std: Any) -> str:
    """``mean ± std`` as percentages (``—`` without a mean)."""
    if as_float(mean) is None:
        return MISSING
    if as_float(std) is None:
        return format_percent(mean)
    return f"{format_percent(mean)} ± {format_percent(std, sign='')}"


# --------------------------------------------------------------------------- generic


def generic_context(records: list[dict[str, Any]], doc: dict[str, Any]) -> dict[str, Any]:
    """Records table, plus a bar chart per (dataset, metric) when values are fractions."""
    charts = []
    for (dataset, metric), recs in group_by(records, lambda r: (r["dataset"], r["metric"])).items():
        if not all(is_fraction(r["unit"]) for r in recs) or is_difference(metric):
            continue
        encoders = encoder_order(recs, doc)
        groups = bars_per_parameter(recs, encoders)
        if any(b.value is not None for g in groups for b in g.bars):
            charts.append(
                {
                    "title": f"{label(metric)} on {label(dataset)}",
                    "svg": grouped_bar_chart(
                        groups,
                        [label(e) for e in encoders],
                        y_label=label(metric),
                        label=f"{metric} on {dataset}, per parameter",
                    ),
                }
            )
    return {"records": records, "charts": charts}
