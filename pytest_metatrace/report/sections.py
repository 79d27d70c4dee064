"""The registry of per-audit report sections, and the built-in sections.

A section turns the records of one audit kind into a template context. Audits
register theirs with :func:`register_section`; records of a kind nobody
registered fall back to the generic section (a records table, plus a bar
chart when the values are fractions). The built-in sections reproduce the
paper's figures: processing drift (distance to the reference class), the
processing probe (Fig. 4) and kNN semantic influence (Figs. 2, 8 and 9).

Context functions receive *normalized* records (see
:func:`pytest_metatrace.report.render.normalize_record`): every key of
:class:`~pytest_metatrace.results.Record` is present, ``interval`` / ``gate``
are dicts or ``None``, ``details`` / ``provenance`` are dicts, and
``display`` holds the formatted value, interval, chance and threshold.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from markupsafe import Markup

from ..analysis.drift import DriftResult
from ..analysis.schema import ProbeDetails, SemanticDetails, SetupSummary
from ..processing.groups import PARAMETER_GROUPS
from .charts import (
    Bar,
    BarGroup,
    HBar,
    HeatScale,
    Line,
    grouped_bar_chart,
    hbar_chart,
    heat_style,
    step_chart,
)
from .formatting import (
    MISSING,
    as_float,
    format_count,
    format_interval,
    format_number,
    format_percent,
    is_difference,
    is_fraction,
)

__all__ = [
    "GENERIC_TEMPLATE",
    "SETUPS",
    "SIMILARITY_GROUPS",
    "ContextFunction",
    "Section",
    "drift_context",
    "encoder_order",
    "generic_context",
    "get_section",
    "parameter_order",
    "parameter_title",
    "probe_context",
    "register_section",
    "registered_sections",
    "safe_image_uri",
    "semantic_context",
]

#: ``context(records_of_this_audit, normalized_document) -> template variables``.
ContextFunction = Callable[[list[dict[str, Any]], dict[str, Any]], dict[str, Any]]

#: Template used for audit kinds without a registered section.
GENERIC_TEMPLATE = "section_generic.html.j2"

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Section:
    """How to render the records of one audit kind."""

    audit: str  #: the records' ``audit`` value this section renders
    title: str  #: heading shown in the report and its table of contents
    template: str  #: a template name in ``report/templates`` or a path to a template file
    context: ContextFunction  #: builds the template variables from the records
    order: int  #: sections appear by increasing order, then by audit name

    @property
    def anchor(self) -> str:
        """The HTML id of the section."""
        return "sec-" + (re.sub(r"[^a-z0-9]+", "-", self.audit.lower()).strip("-") or "audit")


_REGISTRY: dict[str, Section] = {}


def register_section(
    audit: str, *, title: str, template: str, context: ContextFunction, order: int
) -> None:
    """Register (or replace) the report section of audit kind ``audit``.

    ``template`` is a template name under ``pytest_metatrace/report/templates``
    or a path to a Jinja2 file (it may ``{% import "_macros.html.j2" as m %}``).
    The template receives the dict returned by ``context`` plus ``section``
    (this :class:`Section`). Autoescaping is on: mark trusted markup (charts)
    with :class:`markupsafe.Markup`.
    """
    if not isinstance(audit, str) or not audit:
        raise ValueError(f"audit kind must be a non-empty string, got {audit!r}")
    if not callable(context):
        raise TypeError(f"context for audit {audit!r} must be callable, got {context!r}")
    _REGISTRY[audit] = Section(audit, title, template, context, order)


def get_section(audit: str) -> Section | None:
    """The section registered for ``audit``, if any."""
    return _REGISTRY.get(audit)


def registered_sections() -> list[Section]:
    """Every registered section, in page order."""
    return sorted(_REGISTRY.values(), key=lambda s: (s.order, s.audit))


# --------------------------------------------------------------------------- helpers


def _group(
    records: Iterable[dict[str, Any]], key: Callable[[dict[str, Any]], K]
) -> dict[K, list[dict[str, Any]]]:
    """Group in first-appearance order (dicts keep insertion order), so pages are deterministic."""
    groups: dict[K, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(key(record), []).append(record)
    return groups


def _label(value: Any) -> str:
    return MISSING if value is None else str(value)


def _ordered(values: Iterable[Any], preferred: Sequence[Any] = ()) -> list[Any]:
    """Distinct values: those in ``preferred`` first in its order, then first appearance."""
    seen = list(dict.fromkeys(values))
    return [v for v in preferred if v in seen] + [v for v in seen if v not in preferred]


def encoder_order(records: Sequence[dict[str, Any]], doc: Mapping[str, Any]) -> list[Any]:
    """Encoder ids of ``records``, in the document's encoder order."""
    known = [e.get("id") for e in doc.get("encoders", []) if isinstance(e, Mapping)]
    return _ordered((r["encoder"] for r in records), known)


def parameter_order(records: Sequence[dict[str, Any]]) -> list[Any]:
    """Parameters of ``records``: the paper's group order first."""
    return _ordered((r["parameter"] for r in records), list(PARAMETER_GROUPS))


def parameter_title(parameter: Any) -> str:
    """Human name of a parameter group (``jpeg`` -> ``JPEG compression``)."""
    group = PARAMETER_GROUPS.get(parameter) if isinstance(parameter, str) else None
    return group.title if group is not None else _label(parameter)


def _class_order() -> list[str]:
    return list(dict.fromkeys(c for g in PARAMETER_GROUPS.values() for c in g.classes))


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


def _interval_bounds(interval: Any) -> tuple[float | None, float | None]:
    if not isinstance(interval, Mapping):
        return None, None
    low, high = as_float(interval.get("low")), as_float(interval.get("high"))
    return (low, high) if low is not None and high is not None else (None, None)


def _bar(record: dict[str, Any]) -> Bar:
    low, high = _interval_bounds(record["interval"])
    gate = record["gate"]
    return Bar(
        value=as_float(record["value"]),
        low=low,
        high=high,
        threshold=as_float(gate.get("threshold")) if gate else None,
        note=f"{_label(record['encoder'])} · {parameter_title(record['parameter'])}: "
        f"{record['display']['interval']}",
    )


def _bars_per_parameter(records: list[dict[str, Any]], encoders: list[Any]) -> list[BarGroup]:
    """Fig. 4 layout: a group per parameter, a bar per encoder, the chance level dashed."""
    by_key = {(r["parameter"], r["encoder"]): r for r in records}
    groups = []
    for parameter in parameter_order(records):
        chances = (as_float(r["chance"]) for r in records if r["parameter"] == parameter)
        bars = [
            _bar(by_key[(parameter, e)]) if (parameter, e) in by_key else Bar(None)
            for e in encoders
        ]
        groups.append(
            BarGroup(
                parameter_title(parameter), bars, next((c for c in chances if c is not None), None)
            )
        )
    return groups


def _mean_std(mean: Any, std: Any) -> str:
    if as_float(mean) is None:
        return MISSING
    if as_float(std) is None:
        return format_percent(mean)
    return f"{format_percent(mean)} ± {format_percent(std, sign='')}"


# --------------------------------------------------------------------------- generic


def generic_context(records: list[dict[str, Any]], doc: dict[str, Any]) -> dict[str, Any]:
    """Records table, plus a bar chart per (dataset, metric) when values are fractions."""
    charts = []
    for (dataset, metric), recs in _group(records, lambda r: (r["dataset"], r["metric"])).items():
        if not all(is_fraction(r["unit"]) for r in recs) or is_difference(metric):
            continue
        encoders = encoder_order(recs, doc)
        groups = _bars_per_parameter(recs, encoders)
        if any(b.value is not None for g in groups for b in g.bars):
            charts.append(
                {
                    "title": f"{_label(metric)} on {_label(dataset)}",
                    "svg": grouped_bar_chart(
                        groups,
                        [_label(e) for e in encoders],
                        y_label=_label(metric),
                        label=f"{metric} on {dataset}, per parameter",
                    ),
                }
            )
    return {"records": records, "charts": charts}


# --------------------------------------------------------------------------- processing drift


def drift_context(records: list[dict[str, Any]], doc: dict[str, Any]) -> dict[str, Any]:
    """One horizontal bar chart per (encoder, dataset): distance of each class to the reference."""
    panels = []
    order = _class_order()
    # One scale per unit across panels, so that encoders compare at a glance.
    scale: dict[Any, float] = {}
    for record in records:
        drift = DriftResult.from_dict(record["details"])
        top = max(
            (v for v in (as_float(record["value"]), drift.quantiles.get("p95")) if v is not None),
            default=0.0,
        )
        scale[record["unit"]] = max(scale.get(record["unit"], 0.0), top)
    for (encoder, dataset), recs in _group(records, lambda r: (r["encoder"], r["dataset"])).items():
        by_class = {r["parameter"]: r for r in recs}
        rows, bars = [], []
        for name in _ordered(by_class, order):
            record = by_class[name]
            drift = DriftResult.from_dict(record["details"])
            p05, p50, p95 = (drift.quantiles.get(q) for q in ("p05", "p50", "p95"))
            value = as_float(record["value"])
            bars.append(
                HBar(
                    _label(name),
                    value,
                    p05 if p95 is not None else None,
                    p95 if p05 is not None else None,
                    note=f"{_label(name)}: mean {format_number(value)}, p05 {format_number(p05)}, "
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
        reference = ", ".join(_ordered(_label(r) for r in references if r)) or MISSING
        unit = _label(recs[0]["unit"])
        panels.append(
            {
                "encoder": _label(encoder),
                "dataset": _label(dataset),
                "reference": reference,
                "unit": unit,
                "rows": rows,
                "gated": any(r["gate"] for r in recs),
                "svg": hbar_chart(
                    bars,
                    x_label=f"mean {unit} to {reference}",
                    whisker_label="p05–p95 over images",
                    x_max=scale.get(recs[0]["unit"]),
                    label=f"{_label(encoder)} on {_label(dataset)}: {unit} of each processing "
                    f"class to {reference}",
                ),
            }
        )
    return {"panels": panels}


# --------------------------------------------------------------------------- processing probe


def _confusion(details: ProbeDetails) -> dict[str, Any] | None:
    classes = [_label(c) for c in details.classes]
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
    for dataset, recs in _group(records, lambda r: r["dataset"]).items():
        encoders = encoder_order(recs, doc)
        groups = _bars_per_parameter(recs, encoders)
        figures.append(
            {
                "dataset": _label(dataset),
                "svg": grouped_bar_chart(
                    groups,
                    [_label(e) for e in encoders],
                    y_label="top-1 accuracy",
                    label=f"Processing probe top-1 accuracy on {dataset}, per parameter",
                ),
            }
        )
    blocks = []
    for (encoder, dataset), recs in _group(records, lambda r: (r["encoder"], r["dataset"])).items():
        blocks.append(
            {
                "title": f"{_label(encoder)} · {_label(dataset)}",
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
        "top1": _mean_std(top1, details.top1_std),
        "per_class": _mean_std(details.mean_per_class_mean, details.mean_per_class_std),
        "setup": [
            ("learning rate", format_number(hyper.get("lr"), digits=3)),
            ("weight decay", format_number(hyper.get("weight_decay"), digits=3)),
            ("training images", format_count(details.n_train)),
            (
                "test images × classes",
                f"{format_count(details.n_test_images)} → "
                f"{format_count(details.n_test_samples)} samples",
            ),
            ("seeds", ", ".join(_label(s) for s in details.seeds) or MISSING),
            (
                "top-1 per seed",
                ", ".join(format_percent(v) for v in details.top1_per_seed) or MISSING,
            ),
            ("mode", _label(details.mode)),
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


# --------------------------------------------------------------------------- semantic influence

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
_DATA_URI = re.compile(r"^data:image/(png|jpeg|jpg|gif|webp);base64,[A-Za-z0-9+/=\s]+$")


def safe_image_uri(value: Any) -> str | None:
    """``value`` if it is a base64 image data URI, else ``None`` (never an external URL)."""
    return value if isinstance(value, str) and _DATA_URI.match(value) else None


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
                    note=f"{_label(encoder)} · {name}: {_setup_interval(setup)}",
                )
            )
        groups.append(BarGroup(_label(encoder), bars))
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
        label = name if mean is None else f"{name} (mean {format_number(mean, digits=3)})"
        lines.append(Line(label, density, color, dash))
    if not lines:
        return None
    return {
        "query_class": _label(dist.query_class) if dist.query_class is not None else None,
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
                        "label": _label(n.label),
                        "processing": _label(n.processing),
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
                "label": _label(query.label),
                "processing": _label(query.processing),
                "rows": rows,
            }
        )
    if not queries:
        return None
    return {"pair": [_label(p) for p in gallery.pair], "queries": queries}


def _per_pair(details: SemanticDetails) -> list[dict[str, Any]]:
    """Heat maps of accuracy per ordered pair, one per setup, then the two gaps per pair.

    The setups share one colour scale spanning their values (they differ in
    the third decimal; a 0..1 scale would shade them alike), and the gaps get
    a diverging scale around zero. Each table carries its scale's legend.
    """
    classes = [_label(c) for c in details.classes]
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
    for (dataset, parameter), recs in _group(
        records, lambda r: (r["dataset"], r["parameter"])
    ).items():
        title = f"{_label(dataset)} · {parameter_title(parameter)}"
        encoders = encoder_order(recs, doc)
        svg = _fig8(recs, encoders, f"kNN accuracy per database setup: {title}")
        if svg is not None:
            # Up to three encoders fit half the page; more get the full width.
            figures.append({"title": title, "svg": svg, "wide": len(encoders) > 3})
    triples = []
    for (encoder, dataset, parameter), recs in _group(
        records, lambda r: (r["encoder"], r["dataset"], r["parameter"])
    ).items():
        by_metric = {r["metric"]: r for r in recs}
        knn = by_metric.get("knn_accuracy")
        details = SemanticDetails.from_dict(knn["details"] if knn else {})
        title = f"{_label(encoder)} · {_label(dataset)} · {parameter_title(parameter)}"
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
                "seeds": ", ".join(_label(s) for s in details.seeds) or MISSING,
                "fig2": _fig2(details, f"Similarity distributions: {title}"),
                "gallery": _gallery(details),
                "per_pair": _per_pair(details),
            }
        )
    return {"figures": figures, "triples": triples, "setup_names": [n for n, _ in SETUPS.values()]}


register_section(
    "processing_drift",
    title="Processing drift",
    template="section_drift.html.j2",
    context=drift_context,
    order=10,
)
register_section(
    "processing_probe",
    title="Processing probes",
    template="section_probe.html.j2",
    context=probe_context,
    order=20,
)
register_section(
    "semantic_influence",
    title="Semantic influence (kNN)",
    template="section_semantic.html.j2",
    context=semantic_context,
    order=30,
)
from . import section_acquisition  # noqa: E402, F401  (registers the acquisition sections)
from . import section_retrieval as _section_retrieval  # noqa: E402, F401  (registers its section)
