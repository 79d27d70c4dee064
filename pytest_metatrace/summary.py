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
from dataclasses import dataclass
from typing import Any

from pytest_metatrace._format import format_apart
from pytest_metatrace._format import format_measure as _fmt
from pytest_metatrace.results import Record, gate_status

__all__ = [
    "JUNIT_HIDDEN",
    "Failure",
    "audit_summary_lines",
    "describe_record",
    "failure_counts",
    "failure_lines",
    "failures",
    "junit_property",
    "readable_properties",
    "record_label",
    "undecided_gates",
]

#: ``user_properties`` names that carry JSON between processes, not for people.
JUNIT_HIDDEN = (
    "metatrace_record",
    "metatrace_encoder",
    "metatrace_dataset",
    "metatrace_extract",
    "metatrace_used",
)


def record_label(rec: Mapping[str, Any]) -> str:
    """``encoder / dataset / parameter``: what tells two records of one gate key apart."""
    parts = [rec.get("encoder"), rec.get("dataset"), rec.get("parameter")]
    return " / ".join(str(p) for p in parts if p not in (None, ""))


@dataclass(frozen=True)
class Failure:
    """One failed check of one record: its threshold gate or its baseline comparison.

    Every summary (terminal, report, JSON, JUnit, Markdown) lists and counts
    failures through :func:`failures`, so a threshold failure and a baseline
    regression count alike, once each.
    """

    kind: str  #: ``threshold`` or ``baseline``
    key: str  #: the gate key, e.g. ``retrieval.recall_gap``
    record: Mapping[str, Any]  #: the record dict
    index: int  #: the record's position in the document
    gating: bool  #: False: reported, not gating (``--metatrace-gate``)

    @property
    def label(self) -> str:
        """``encoder / dataset / parameter`` of the record."""
        return record_label(self.record)

    @property
    def check(self) -> Mapping[str, Any]:
        """The gate or baseline-comparison dict that failed."""
        return dict(self.record.get("gate" if self.kind == "threshold" else "baseline") or {})

    @property
    def message(self) -> str:
        """The check's explanation."""
        return str(self.check.get("message") or "")

    def headline(self) -> str:
        """One line: what was compared with what (``... > threshold 60.0%``)."""
        rec, check = self.record, self.check
        unit = str(rec.get("unit") or "fraction")
        metric = rec.get("metric")
        if self.kind == "threshold":
            interval = rec.get("interval") or {}
            end = {"interval low": "low", "interval high": "high"}.get(str(check.get("compared")))
            low = interval.get(end) if end else None
            compared = rec.get("value") if low is None else low
            shown, bound = format_apart(_num(compared), _num(check.get("threshold")), unit)
            sign = "<" if check.get("direction") == "below" else ">"
            if low is None:
                return f"{metric} {shown} {sign} threshold {bound}"
            value = _fmt(rec.get("value"), unit)
            return f"{metric} {value} (interval {end} {shown}) {sign} threshold {bound}"
        low_text, tol = format_apart(
            _num(check.get("low")),
            _num(check.get("tolerance")),
            unit,
            signed=True,
            bound_signed=True,
        )
        change = _fmt(check.get("difference"), unit, signed=True)
        return (
            f"{metric} changed {change} against {check.get('baseline_encoder')} "
            f"(CI low {low_text}) > tolerance {tol}"
        )


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def failures(records: Sequence[Mapping[str, Any]], *, gating: bool = True) -> list[Failure]:
    """The failed checks of ``records``, in record order, threshold before baseline.

    ``gating=True``: those that fail tests; ``False``: those measured and
    reported but not gating under ``--metatrace-gate`` (a missing ``gating``
    field, as in older documents, means gating).
    """
    out = []
    for index, rec in enumerate(records):
        for kind, field in (("threshold", "gate"), ("baseline", "baseline")):
            check = rec.get(field)
            if not isinstance(check, Mapping) or check.get("passed") is not False:
                continue
            if check.get("decided", True) is False:
                continue  # undecided: too few test images, neither passed nor failed
            if (check.get("gating", True) is not False) == gating:
                out.append(Failure(kind, str(check.get("key")), rec, index, gating))
    return out


def failure_counts(records: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """``failed`` (gating, both kinds), ``threshold``, ``baseline``, ``reported`` and ``undecided``.

    ``undecided`` counts gating threshold gates that had too few test images to
    be able to fail; they are neither passed nor failed.
    """
    failed = failures(records)
    return {
        "failed": len(failed),
        "threshold": sum(f.kind == "threshold" for f in failed),
        "baseline": sum(f.kind == "baseline" for f in failed),
        "reported": len(failures(records, gating=False)),
        "undecided": len(undecided_gates(records)),
    }


def undecided_gates(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The records whose gating threshold gate is undecided (too few test images)."""
    return [
        r
        for r in records
        if isinstance(r.get("gate"), Mapping)
        and gate_status(dict(r["gate"])) == "undecided"
        and r["gate"].get("gating", True) is not False
    ]


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
        shown = {"passed": "passed", "failed": _failed_word(gate), "undecided": "UNDECIDED"}
        text += f"; gate {gate['key']} {shown[status]} (threshold {_fmt(gate['threshold'], unit)}"
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
        text += " passed" if base["passed"] else f" GREW: {_failed_word(base)}"
    return text


def _failed_word(check: Mapping[str, Any]) -> str:
    return "FAILED" if check.get("gating", True) is not False else "reported, not gating"


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
        line += f"; {len(failures(recs))} failed"
        lines.append(line)
    return lines


def failure_lines(records: Sequence[Mapping[str, Any]], gate_mode: str = "both") -> list[str]:
    """The terminal's count of failed checks, then one line per failure, each once.

    ``FAILED`` lines are threshold gates, ``GREW`` lines baseline regressions;
    each names its record's encoder, dataset and parameter. Checks that
    ``--metatrace-gate`` left reported, not gating, follow under their own count.
    """
    gated = sum(1 for r in records if r.get("gate") or r.get("baseline"))
    counts = failure_counts(records)
    lines = [
        f"metatrace: {len(records)} records, {gated} gated, {counts['failed']} gate(s) failed "
        f"({counts['threshold']} above threshold, {counts['baseline']} grew against the "
        "baseline)"
        + (
            f", {counts['undecided']} undecided (too few test images)"
            if counts["undecided"]
            else ""
        )
    ]
    word = {"threshold": "FAILED", "baseline": "GREW"}
    for f in failures(records):
        lines.append(f"  {word[f.kind]} {f.key} [{f.label}]: {f.headline()}")
    reported = failures(records, gating=False)
    if reported:
        lines.append(
            f"metatrace: {len(reported)} check(s) reported, not gating "
            f"(--metatrace-gate={gate_mode}):"
        )
        for f in reported:
            what = "above threshold" if f.kind == "threshold" else "grew"
            lines.append(f"  {what} (not gating) {f.key} [{f.label}]: {f.headline()}")
    return lines
