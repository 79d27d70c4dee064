"""The pull-request summary: the run's verdict and records as GitHub-flavoured Markdown.

``--metatrace-markdown=PATH`` writes it at the end of the session; when
``$GITHUB_STEP_SUMMARY`` is set it is appended there too, so a GitHub Actions
job shows it on its summary page. Plain Markdown only (headings, tables,
links; no raw HTML), in this order:

1. a heading with the verdict (the same counts as the terminal and the HTML
   report, from :func:`pytest_metatrace.summary.failure_counts`) and the
   numbers of records, encoders and datasets;
2. the failing gates and baseline regressions, then the undecided gates,
   then the checks reported but not gating (``--metatrace-gate``);
3. one compact table per audit;
4. where the HTML report and the JSON document were written.

Stdlib only; every number goes through :func:`pytest_metatrace._format.format_measure`.
"""

from __future__ import annotations

import errno
import os
import stat
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_metatrace._files import atomic_write_text, shown
from pytest_metatrace._format import format_measure
from pytest_metatrace.results import gate_status
from pytest_metatrace.summary import (
    Failure,
    failure_counts,
    failures,
    record_label,
    undecided_gates,
)

__all__ = [
    "AUDIT_HEADER",
    "FAILURE_HEADER",
    "UNDECIDED_HEADER",
    "Written",
    "append_step_summary",
    "escape_cell",
    "render_markdown",
    "table",
    "write_markdown",
    "write_summaries",
]

#: Columns of the failing-gates and the reported-not-gating tables.
FAILURE_HEADER = ("check", "gate key", "encoder / dataset / parameter", "what failed")
#: Columns of the undecided-gates table.
UNDECIDED_HEADER = ("gate key", "encoder / dataset / parameter", "why")
#: Columns of each audit's table.
AUDIT_HEADER = (
    "encoder / dataset",
    "parameter",
    "metric",
    "value",
    "interval",
    "threshold",
    "status",
    "baseline change",
)

#: What a table cell shows for a value that does not apply (no gate, no interval).
NONE = "—"

_KIND = {"threshold": "above threshold", "baseline": "grew against the baseline"}
# Characters that would end a cell or start a link, a code span, emphasis or raw HTML.
_ESCAPED = "\\|`*[]<"


def escape_cell(text: object) -> str:
    """``text`` as the content of one table cell: one line, ``|`` and markup escaped."""
    out = " ".join(str(text).split())
    for char in _ESCAPED:
        out = out.replace(char, "\\" + char)
    return out or NONE


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """The lines of a GitHub table; every row has as many cells as ``header``."""
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"a row of {len(row)} cells under a header of {len(header)}: {row!r}")
    lines = ["| " + " | ".join(escape_cell(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(escape_cell(c) for c in row) + " |" for row in rows]
    return lines


def _unit(rec: Mapping[str, Any]) -> str:
    return str(rec.get("unit") or "fraction")


def _verdict(records: Sequence[Mapping[str, Any]]) -> str:
    counts = failure_counts(records)
    text = (
        f"metatrace: {counts['failed']} gate(s) failed ({counts['threshold']} above threshold, "
        f"{counts['baseline']} grew against the baseline)"
    )
    if counts["undecided"]:
        text += f", {counts['undecided']} undecided"
    if counts["reported"]:
        text += f", {counts['reported']} reported, not gating"
    return text


def _scope(records: Sequence[Mapping[str, Any]]) -> str:
    gated = sum(1 for r in records if r.get("gate") or r.get("baseline"))
    encoders = {str(r.get("encoder")) for r in records}
    datasets = {str(r.get("dataset")) for r in records}
    return (
        f"{len(records)} record(s), {gated} gated, over {len(encoders)} encoder(s) and "
        f"{len(datasets)} dataset(s)."
    )


def _failure_row(failure: Failure) -> tuple[str, str, str, str]:
    return (_KIND[failure.kind], failure.key, failure.label, failure.headline())


def _undecided_row(rec: Mapping[str, Any]) -> tuple[str, str, str]:
    gate = rec["gate"]
    need = gate.get("min_n") or "more"
    return (str(gate.get("key")), record_label(rec), f"too few test images: need at least {need}")


def _status(rec: Mapping[str, Any]) -> str:
    gate = rec.get("gate")
    if not isinstance(gate, Mapping):
        return NONE
    status = gate_status(dict(gate))
    if status == "failed":
        return "FAILED" if gate.get("gating", True) is not False else "failed, not gating"
    return status


def _baseline_change(rec: Mapping[str, Any]) -> str:
    base = rec.get("baseline")
    if not isinstance(base, Mapping) or "difference" not in base:
        return NONE
    text = format_measure(base.get("difference"), _unit(rec), signed=True)
    if base.get("passed") is False:
        text += " GREW" if base.get("gating", True) is not False else " grew, not gating"
    return text


def _audit_row(rec: Mapping[str, Any]) -> tuple[str, ...]:
    unit = _unit(rec)
    interval = rec.get("interval")
    span = NONE
    if isinstance(interval, Mapping):
        low, high = (format_measure(interval.get(end), unit) for end in ("low", "high"))
        span = f"{low}–{high}"
    gate = rec.get("gate")
    threshold = NONE
    if isinstance(gate, Mapping) and gate.get("threshold") is not None:
        threshold = format_measure(gate["threshold"], unit)
    where = " / ".join(
        str(rec.get(k)) for k in ("encoder", "dataset") if rec.get(k) not in (None, "")
    )
    return (
        where,
        str(rec.get("parameter") or NONE),
        str(rec.get("metric")),
        format_measure(rec.get("value"), unit),
        span,
        threshold,
        _status(rec),
        _baseline_change(rec),
    )


def _link_target(path: Path, relative_to: Path | None) -> str:
    """``path`` relative to ``relative_to`` where it can be (same drive), else absolute."""
    target = Path(os.path.abspath(path))
    if relative_to is not None:
        try:
            return Path(os.path.relpath(target, os.path.abspath(relative_to))).as_posix()
        except ValueError:  # another drive (Windows)
            pass
    return target.as_posix()


def _files_line(
    report_path: Path | None, json_path: Path | None, relative_to: Path | None, links: bool
) -> str:
    parts = []
    for what, path in (("HTML report", report_path), ("JSON", json_path)):
        if path is None:
            continue
        target = _link_target(path, relative_to)
        if links:
            parts.append(f"[{what}: {escape_cell(target)}]({urllib.parse.quote(target)})")
        else:
            parts.append(f"{what}: {escape_cell(target)}")
    if not parts:
        return "No HTML report or JSON document was written."
    return "Files: " + " · ".join(parts)


def render_markdown(
    records: Sequence[Mapping[str, Any]],
    *,
    report_path: Path | None,
    json_path: Path | None,
    relative_to: Path | None = None,
    links: bool = True,
) -> str:
    """The summary of ``records`` (record dicts, as in the JSON document) as Markdown.

    ``report_path`` and ``json_path`` are the HTML report and JSON document
    written (None: not written). They are shown relative to ``relative_to``
    (the Markdown file's folder) where possible, else absolute; ``links=False``
    names them as text instead of links (a job's summary page cannot open a
    runner's files).
    """
    lines = [f"## {escape_cell(_verdict(records))}", "", _scope(records)]
    failed = failures(records)
    if failed:
        lines += ["", "### Failing gates and regressions", ""]
        lines += table(FAILURE_HEADER, [_failure_row(f) for f in failed])
    undecided = undecided_gates(records)
    if undecided:
        lines += ["", "### Undecided gates (too few test images)", ""]
        lines += table(UNDECIDED_HEADER, [_undecided_row(r) for r in undecided])
    reported = failures(records, gating=False)
    if reported:
        lines += ["", "### Reported, not gating", ""]
        lines += table(FAILURE_HEADER, [_failure_row(f) for f in reported])
    by_audit: dict[str, list[Mapping[str, Any]]] = {}
    for rec in records:
        by_audit.setdefault(str(rec.get("audit")), []).append(rec)
    for audit, recs in by_audit.items():
        lines += ["", f"### {escape_cell(audit)}", ""]
        lines += table(AUDIT_HEADER, [_audit_row(r) for r in recs])
    lines += ["", _files_line(report_path, json_path, relative_to, links)]
    return "\n".join(lines) + "\n"


def write_markdown(
    path: Path,
    records: Sequence[Mapping[str, Any]],
    *,
    report_path: Path | None,
    json_path: Path | None,
) -> Path:
    """Write the summary to ``path`` atomically, files linked relative to its folder.

    Raises :class:`OSError` with a readable reason (e.g. "is a folder") when
    ``path`` cannot be written.
    """
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", shown(path))
    text = render_markdown(
        records, report_path=report_path, json_path=json_path, relative_to=path.parent
    )
    return atomic_write_text(path, text)


def append_step_summary(
    path: Path,
    records: Sequence[Mapping[str, Any]],
    *,
    report_path: Path | None,
    json_path: Path | None,
    relative_to: Path | None = None,
) -> Path:
    """Append the summary to a GitHub job summary file (``$GITHUB_STEP_SUMMARY``).

    GitHub collects what every step appends, so the file is appended to,
    never replaced; files are named as text relative to ``relative_to``
    (the folder pytest ran in, where an artifact upload finds them).
    """
    text = render_markdown(
        records, report_path=report_path, json_path=json_path, relative_to=relative_to, links=False
    )
    try:
        st = os.stat(path)
    except FileNotFoundError:
        pass
    else:  # a pipe without a reader would block the session's end forever
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            raise OSError(
                errno.EINVAL,
                "not a regular file (a pipe, device or socket); GitHub's job summary is a "
                "regular file",
            )
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(("\n" if handle.tell() else "") + text)
    return path


@dataclass
class Written:
    """What :func:`write_summaries` wrote, and one line per file it could not write."""

    markdown: Path | None = None  #: the ``--metatrace-markdown`` file, once written
    step_summary: Path | None = None  #: ``$GITHUB_STEP_SUMMARY``, once appended to
    errors: list[str] = field(default_factory=list)  #: e.g. "could not write ...: is a folder"


def _why(exc: BaseException) -> str:
    """An error as one line: the system's words for a file error, else its type and message."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}"


def write_summaries(
    path: Path | None,
    records: Sequence[Mapping[str, Any]],
    *,
    report_path: Path | None,
    json_path: Path | None,
    cwd: Path,
    step_summary: str | None,
) -> Written:
    """The session's end: write ``path`` and append the same summary to ``step_summary``.

    ``path`` is relative to ``cwd``; None writes no file.

    ``step_summary`` is ``$GITHUB_STEP_SUMMARY`` (None or empty: not under
    GitHub Actions). Never raises: a file that cannot be written, or a bug in
    the summary, becomes one line in :attr:`Written.errors`, and the other
    file is still written.
    """
    out = Written()
    if path is not None:
        target = path if path.is_absolute() else cwd / path
        try:
            out.markdown = write_markdown(
                target, records, report_path=report_path, json_path=json_path
            )
        except Exception as exc:
            out.errors.append(f"could not write the Markdown summary {shown(target)}: {_why(exc)}")
    if step_summary:
        try:
            out.step_summary = append_step_summary(
                Path(step_summary),
                records,
                report_path=report_path,
                json_path=json_path,
                relative_to=cwd,
            )
        except Exception as exc:
            out.errors.append(
                "could not append the Markdown summary to $GITHUB_STEP_SUMMARY "
                f"({shown(step_summary)}): {_why(exc)}"
            )
    return out
