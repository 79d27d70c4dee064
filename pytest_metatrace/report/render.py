"""Render a ``--metatrace-json`` document into one self-contained HTML file.

The page is built from a *normalized* copy of the document: every part may be
missing, empty, ``None`` or of the wrong type, and the report still renders
(a CI run that crashed half-way is exactly when someone reads it). Each
audit section renders on its own; a section that fails is replaced by the
generic records table and a note, instead of losing the whole report.

Self-contained means: inline CSS, charts as inline SVG, thumbnails as data
URIs, and no URL the browser would fetch. Jinja2 autoescaping is on.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from markupsafe import Markup

from .._files import atomic_write_text
from .._format import format_measure
from ..results import Record, jsonable
from ..settings import DEFAULT_REPORT_PATH
from ..summary import Failure, failure_counts, failures
from .formatting import (
    MISSING,
    as_float,
    display_scalar,
    format_count,
    format_duration,
    format_interval,
    format_number,
    format_percent,
    format_value,
)
from .sections import GENERIC_TEMPLATE, Section, generic_context

if TYPE_CHECKING:
    from ..spec import AuditRegistry

__all__ = [
    "DEFAULT_REPORT_PATH",
    "normalize_document",
    "normalize_record",
    "render_html",
    "render_report",
    "section_of",
]


#: Test outcomes shown as tiles, in this order.
OUTCOMES = ("passed", "failed", "skipped", "error")
_RECORD_KEYS = ("audit", "metric", "value", "encoder", "dataset", "parameter", "unit", "chance")
_GENERIC_ORDER = 1000  # unknown audit kinds go after every registered section


def _dict(value: Any) -> dict[str, Any]:
    return {str(k): v for k, v in value.items()} if isinstance(value, Mapping) else {}


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [_dict(v) for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _status(gate: dict[str, Any] | None) -> str | None:
    if gate is None:
        return None
    if gate.get("decided") is False:
        return "undecided"  # too few test images for the gate to be able to fail
    passed = gate.get("passed")
    if passed is False and gate.get("gating", True) is False:
        return "reported"  # above its threshold, but --metatrace-gate left it not gating
    # Only real booleans count: a hand-edited "false" string must not read as a pass.
    return "pass" if passed is True else "fail" if passed is False else "unknown"


def normalize_record(raw: Any, index: int) -> dict[str, Any] | None:
    """A record dict with every key present and display strings, or ``None`` if unusable.

    Adds ``index`` (position in the document), ``anchor`` (its HTML id in the
    records table), ``label`` and ``display`` (formatted ``value``,
    ``interval``, ``chance``, ``threshold`` and the gate ``status``:
    ``pass``, ``fail``, ``undecided``, ``reported`` (failed, not gating),
    ``unknown`` or ``None`` when not gated).
    """
    if not isinstance(raw, Mapping):
        return None
    record: dict[str, Any] = dict(_dict(raw))
    for key in _RECORD_KEYS:
        record.setdefault(key, None)
    if record["unit"] is None:
        record["unit"] = "fraction"
    for key in ("metric", "encoder", "dataset", "parameter", "unit"):
        # Sections group by these; a list or dict there must not make them unhashable.
        if record[key] is not None and not isinstance(record[key], str):
            record[key] = display_scalar(record[key])
    if not isinstance(record["audit"], str) or not record["audit"]:
        record["audit"] = "unknown"
    interval = raw.get("interval")
    gate = raw.get("gate")
    record["interval"] = _dict(interval) if isinstance(interval, Mapping) else None
    record["gate"] = _dict(gate) if isinstance(gate, Mapping) else None
    record["details"] = _dict(raw.get("details"))
    record["provenance"] = _dict(raw.get("provenance"))
    unit, metric, gate = record["unit"], record["metric"], record["gate"]
    record["index"] = index
    record["anchor"] = f"rec-{index}"
    record["label"] = (
        " · ".join(
            str(record[k]) for k in ("encoder", "dataset", "parameter") if record[k] is not None
        )
        or MISSING
    )
    record["display"] = {
        "value": format_value(record["value"], unit, metric),
        "interval": format_interval(record["value"], record["interval"], unit, metric),
        "chance": format_value(record["chance"], unit),
        "threshold": format_value(gate.get("threshold"), unit, metric) if gate else MISSING,
        "status": _status(gate),
    }
    return record


def normalize_document(data: Any) -> dict[str, Any]:
    """The document with every part present and of the expected type."""
    if isinstance(data, Mapping) and isinstance(data.get("records"), list):
        # The plugin may hand over Record objects rather than their dicts.
        records = [r.to_dict() if isinstance(r, Record) else r for r in data["records"]]
        data = {**data, "records": records}
    data = _dict(jsonable(data))
    run = _dict(data.get("run"))
    outcomes = _dict(run.get("outcomes"))
    run["outcomes"] = {k: outcomes.get(k, 0) for k in (*OUTCOMES, *outcomes)}
    run["tests"] = _dicts(run.get("tests"))
    for key in ("options", "versions", "host"):
        run[key] = _dict(run.get(key))
    raw = data.get("records")
    records = [normalize_record(r, i) for i, r in enumerate(raw)] if isinstance(raw, list) else []
    encoders = _dicts(data.get("encoders"))
    datasets = _dicts(data.get("datasets"))
    for items in (encoders, datasets):
        for i, item in enumerate(items):
            if item.get("id") is None:
                item["id"] = f"#{i}"
    return {
        "schema_version": data.get("schema_version"),
        "run": run,
        "choices": _dicts(data.get("choices")),
        "encoders": encoders,
        "datasets": datasets,
        "records": [r for r in records if r is not None],
    }


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pytest_metatrace.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        pct=format_percent,
        num=format_number,
        count=format_count,
        value=format_value,
        interval=format_interval,
        scalar=display_scalar,
        duration=format_duration,
    )
    return env


def _template(name: str) -> jinja2.Template:
    env = _environment()
    try:
        return env.get_template(name)
    except jinja2.TemplateNotFound:
        path = Path(name)
        if path.is_file():
            return env.from_string(path.read_text(encoding="utf-8"))
        raise FileNotFoundError(
            f"report template {name!r} not found: give a name from "
            f"pytest_metatrace/report/templates ({', '.join(env.list_templates())}) "
            "or the path of a template file"
        ) from None


def _render_section(section: Section, records: list[dict[str, Any]], doc: dict[str, Any]) -> Markup:
    try:
        context = section.context(records, doc)
        return Markup(_template(section.template).render(**context, section=section, error=None))
    except Exception as exc:
        # A broken figure must not cost the reader the whole report: show the
        # section's records as the generic table and say what went wrong.
        message = f"the {section.audit!r} section failed ({type(exc).__name__}: {exc})"
        warnings.warn(
            f"metatrace report: {message}; showing its records as a table",
            RuntimeWarning,
            stacklevel=2,
        )
        try:
            context = generic_context(records, doc)
            return Markup(
                _template(GENERIC_TEMPLATE).render(**context, section=section, error=message)
            )
        except Exception as inner:  # pragma: no cover - the generic section is the last resort
            return Markup("<p class='error'>{}</p>").format(f"{message}; then {inner!r}")


def section_of(audit: str, registry: AuditRegistry) -> Section:
    """The section that draws records of audit kind ``audit``: its spec's, else the generic."""
    from ..spec import resolve

    found = registry.section_for(audit)
    if found is None:
        return Section(
            audit,
            audit.replace("_", " ").capitalize(),
            GENERIC_TEMPLATE,
            generic_context,
            _GENERIC_ORDER,
        )
    spec, sec = found
    return Section(audit, sec.title, spec.template_path(sec), resolve(sec.context), sec.order)


def _sections(doc: dict[str, Any], registry: AuditRegistry) -> list[dict[str, Any]]:
    by_audit: dict[str, list[dict[str, Any]]] = {}
    for record in doc["records"]:
        by_audit.setdefault(record["audit"], []).append(record)
    sections = [(section_of(audit, registry), records) for audit, records in by_audit.items()]
    sections.sort(key=lambda item: (item[0].order, item[0].audit))
    return _comparison(doc, registry) + [
        {
            "title": section.title,
            "anchor": section.anchor,
            "audit": section.audit,
            "count": len(records),
            "failed": len(failures(records)),
            "html": _render_section(section, records, doc),
        }
        for section, records in sections
    ]


def _comparison(doc: dict[str, Any], registry: AuditRegistry) -> list[dict[str, Any]]:
    """The encoder comparison page, first, when the document holds two or more encoders.

    The registry's metric specs say which metrics are traces and which way they run.
    """
    from .comparison import comparison_context

    try:
        context = comparison_context(doc, registry)
        if context is None:  # fewer than two encoders: nothing to compare
            return []
        html = Markup(_template("section_comparison.html.j2").render(**context))
    except Exception as exc:  # the audit sections must still be drawn
        html = Markup("<p class='error'>{}</p>").format(
            f"the comparison page failed ({type(exc).__name__}: {exc})"
        )
    return [
        {
            "title": "Encoder comparison",
            "anchor": "sec-comparison",
            "audit": "all audits",
            "count": len(doc["records"]),
            "failed": len(failures(doc["records"])),
            "html": html,
        }
    ]


def _failure_row(failure: Failure) -> dict[str, Any]:
    """One row of the failing-checks table: a threshold gate or a baseline regression."""
    r, check = failure.record, failure.check
    unit = str(r.get("unit") or "fraction")
    if failure.kind == "threshold":
        return {
            "kind": "threshold",
            "key": failure.key,
            "r": r,
            "measured": r["display"]["interval"],
            "bound": r["display"]["threshold"],
            "bound_note": " · ".join(
                (
                    display_scalar(check.get("spec")),
                    display_scalar(check.get("source")),
                    f"vs {display_scalar(check.get('compared'))}",
                )
            ),
            "message": failure.message,
        }
    change = format_measure(check.get("difference"), unit, signed=True)
    low = format_measure(check.get("low"), unit, signed=True)
    high = format_measure(check.get("high"), unit, signed=True)
    return {
        "kind": "baseline",
        "key": failure.key,
        "r": r,
        "measured": f"change {change} [{low}, {high}]",
        "bound": f"tolerance {format_measure(check.get('tolerance'), unit, signed=True)}",
        "bound_note": f"vs baseline {display_scalar(check.get('baseline_encoder'))}",
        "message": failure.message,
    }


def _failed_test(test: dict[str, Any], failing: list[dict[str, Any]]) -> dict[str, Any]:
    """A failed test with the messages of checks already listed above taken out of its text.

    ``listed`` names those checks (each shown once, in the failing-checks table);
    ``rest`` is what the test said beyond them (e.g. a forgotten
    ``assert_gates``, an error), empty when nothing.
    """
    message = str(test.get("message") or "")
    listed = []
    for row in failing:
        text = str(row["message"] or "").strip()
        if text and text in message:
            message = message.replace(text, "", 1)
            listed.append(row)
    return {**test, "listed": listed, "rest": message.strip()}


def _summary(doc: dict[str, Any]) -> dict[str, Any]:
    run, records = doc["run"], doc["records"]
    statuses = [r["display"]["status"] for r in records if r["display"]["status"]]
    outcomes = run["outcomes"]
    failing = [_failure_row(f) for f in failures(records)]
    failed_tests = [
        _failed_test(t, failing) for t in run["tests"] if t.get("outcome") in ("failed", "error")
    ]
    n_failed = sum(as_float(outcomes.get(k)) or 0 for k in ("failed", "error"))
    if n_failed or failing or failed_tests:
        status = "failed"
    elif statuses or any(as_float(v) for v in outcomes.values()):
        status = "passed"
    else:
        status = "empty"
    host, versions = run["host"], run["versions"]
    return {
        "status": status,
        "outcomes": [
            (k, format_count(v) if as_float(v) is not None else display_scalar(v))
            for k, v in outcomes.items()
        ],
        "gates": {
            s: statuses.count(s) for s in ("pass", "fail", "undecided", "reported", "unknown")
        },
        "compared": sum(1 for r in records if isinstance(r.get("baseline"), Mapping)),
        "counts": failure_counts(records),
        "undecided": [r for r in records if r["display"]["status"] == "undecided"],
        "failing": failing,
        "failed_tests": failed_tests,
        "info": [
            ("started", display_scalar(run.get("started"))),
            ("finished", display_scalar(run.get("finished"))),
            ("duration", format_duration(run.get("duration_s"))),
            ("device", display_scalar(host.get("device"))),
            ("platform", display_scalar(host.get("platform"))),
            ("CPUs", display_scalar(host.get("cpus"))),
            ("root directory", display_scalar(run.get("rootdir"))),
            ("schema version", display_scalar(doc["schema_version"])),
        ]
        + [
            (str(k), display_scalar(v))
            for k, v in host.items()
            if k not in ("device", "platform", "cpus")
        ],
        "invocation": run.get("invocation"),
        "versions": versions,
    }


def _with_params(encoder: dict[str, Any]) -> dict[str, Any]:
    """Encoder rows in a fixed order, then every other key, verbatim."""
    first = (
        "spec",
        "family",
        "fingerprint",
        "weights",
        "device",
        "precision",
        "embed_dim",
        "n_params",
        "output",
    )
    rows: list[tuple[str, Any]] = [(k, encoder[k]) for k in first if k in encoder]
    rows += [(k, v) for k, v in encoder.items() if k not in (*first, "id", "preprocess")]
    params = as_float(encoder.get("n_params"))
    if params is not None:
        rows = [
            (k, f"{format_count(v)} ({params / 1e6:.2f} M)" if k == "n_params" else v)
            for k, v in rows
        ]
    return {"id": encoder["id"], "rows": rows, "preprocess": encoder.get("preprocess")}


def _dataset(dataset: dict[str, Any]) -> dict[str, Any]:
    first = (
        "name",
        "kind",
        "root",
        "fingerprint",
        "n_images",
        "n_classes",
        "metadata_columns",
        "group_column",
    )
    special = ("id", "class_counts", "split", "skipped", "conversions", "credits")
    rows: list[tuple[str, Any]] = [(k, dataset[k]) for k in first if k in dataset]
    rows += [(k, v) for k, v in dataset.items() if k not in (*first, *special)]
    counts = _dict(dataset.get("class_counts"))
    total = sum(as_float(v) or 0 for v in counts.values())
    credits = []
    for credit in _dicts(dataset.get("credits")):
        url = credit.get("url")
        # Only plain web links become hyperlinks; anything else (javascript:,
        # data:, relative paths) is shown as text.
        safe = isinstance(url, str) and url.lower().startswith(("https://", "http://"))
        credits.append({**credit, "href": url if safe else None})
    return {
        "id": dataset["id"],
        "title": dataset.get("name") or dataset["id"],
        "rows": rows,
        "class_counts": [
            (
                str(k),
                format_count(v),
                format_percent((as_float(v) or 0) / total) if total else MISSING,
            )
            for k, v in counts.items()
        ],
        "split": _dict(dataset.get("split")),
        "skipped": _dicts(dataset.get("skipped")),
        "conversions": _dict(dataset.get("conversions")),
        "credits": credits,
    }


def render_html(data: Any, *, registry: AuditRegistry | None = None) -> str:
    """The report page for document ``data``, as a string.

    Each audit's records are drawn by the section its spec declares
    (``registry``: the session's; default: the built-in and installed audits).
    """
    from ..spec import default_registry

    doc = normalize_document(data)
    page = _template("report.html.j2")
    return page.render(
        doc=doc,
        summary=_summary(doc),
        sections=_sections(doc, registry if registry is not None else default_registry()),
        encoders=[_with_params(e) for e in doc["encoders"]],
        datasets=[_dataset(d) for d in doc["datasets"]],
    )


def render_report(
    path: str | os.PathLike[str], data: dict[str, Any], *, registry: AuditRegistry | None = None
) -> Path:
    """Write the HTML report of ``data`` to ``path`` atomically; returns the path written.

    Parent folders are created. A reader never sees a half-written file: the
    page goes to a temporary file in the same folder, then replaces ``path``.
    """
    target = Path(path)
    atomic_write_text(target, render_html(data, registry=registry))
    return target
