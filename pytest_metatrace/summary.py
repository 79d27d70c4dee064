"""Short, readable forms of records: terminal summary lines and ``--junitxml`` properties.

The full, machine-readable form is the ``--metatrace-json`` document (its
schema: ``pytest_metatrace/schema/results.schema.json``). A JUnit file is read
by people and CI dashboards, so each record appears there as one readable
property (``metatrace.<audit>.<metric>[.<parameter>]``), and the JSON blobs
that carry records from xdist workers to the controller are kept out of it.

Imported at plugin load: stdlib only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_metatrace._format import format_measure as _fmt
from pytest_metatrace.results import Record, gate_status

__all__ = [
    "JUNIT_HIDDEN",
    "audit_summary_lines",
    "describe_record",
    "junit_property",
    "readable_properties",
]

#: ``user_properties`` names that carry JSON between processes, not for people.
JUNIT_HIDDEN = (
    "metatrace_record",
    "metatrace_encoder",
    "metatrace_dataset",
    "metatrace_extract",
    "metatrace_used",
)


def describe_record(rec: Mapping[str, Any]) -> str:
    """One line: value, interval, chance, gate and baseline outcome of a record dict."""
    unit = str(rec.get("unit") or "fraction")
    text = f"{rec.get('metric')} {_fmt(rec.get('value'), unit)}"
    interval = rec.get("interval")
    if interval:
        text += f" (95% CI {_fmt(interval.get('low'), unit)} to {_fmt(interval.get('high'), unit)})"
    if rec.get("chance") is not None:
        text += f", chance {_fmt(rec['chance'], unit)}"
    gate = rec.get("gate")
    if gate:
        status = gate_status(gate)
        shown = {"passed": "passed", "failed": "FAILED", "undecided": "UNDECIDED"}[status]
        text += f"; gate {gate['key']} {shown} (threshold {_fmt(gate['threshold'], unit)}"
        if status == "undecided":
            text += f", too few test images: need at least {gate.get('min_n') or 'more'}"
        text += ")"
    base = rec.get("baseline")
    if base:
        change = _fmt(base["difference"], unit, signed=True)
        text += f"; vs baseline {base['baseline_encoder']} {change}"
        if base.get("low") is not None:
            text += (
                f" (CI {_fmt(base['low'], unit, signed=True)} to "
                f"{_fmt(base['high'], unit, signed=True)})"
            )
        text += " passed" if base["passed"] else " GREW"
    return text


def junit_property(record: Record) -> tuple[str, str]:
    """``(name, text)`` of ``record`` for ``--junitxml`` (via ``item.user_properties``)."""
    name = f"metatrace.{record.audit}.{record.metric}"
    if record.parameter:
        name += f".{record.parameter}"
    return name, describe_record(record.to_dict())


def readable_properties(properties: Sequence[tuple[str, object]]) -> list[tuple[str, object]]:
    """``properties`` without the JSON carriers (:data:`JUNIT_HIDDEN`)."""
    return [(name, value) for name, value in properties if name not in JUNIT_HIDDEN]


def audit_summary_lines(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """One terminal line per audit: records, gates, failures, baseline comparisons."""
    by_audit: dict[str, list[Mapping[str, Any]]] = {}
    for rec in records:
        by_audit.setdefault(str(rec.get("audit")), []).append(rec)
    lines = []
    for audit, recs in by_audit.items():
        gated = [r for r in recs if r.get("gate")]
        failed = [r for r in gated if gate_status(r["gate"]) == "failed"]
        undecided = [r for r in gated if gate_status(r["gate"]) == "undecided"]
        compared = [r for r in recs if r.get("baseline")]
        grew = [r for r in compared if not r["baseline"]["passed"]]
        encoders = sorted({str(r.get("encoder")) for r in recs})
        line = (
            f"metatrace: {audit}: {len(recs)} records over {len(encoders)} encoder(s), "
            f"{len(gated)} gated, {len(failed)} above threshold"
        )
        if undecided:
            line += f", {len(undecided)} undecided (too few test images)"
        if compared:
            line += f", {len(compared)} vs baseline, {len(grew)} grew significantly"
        lines.append(line)
    return lines
