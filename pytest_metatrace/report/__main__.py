"""Re-render a report, or compare several runs.

``python -m pytest_metatrace.report results.json -o report.html`` re-renders
one ``--metatrace-json`` document; ``python -m pytest_metatrace.report compare
v1.json v2.json v3.json -o cmp.html`` (or several files without ``compare``)
merges them into one report: its header counts each run on its own, one
column per run (records, gated, failed gates, regressions, tests, encoders),
and its first page ranks their encoders by each trace, so a team keeps a
history of its releases (one encoder released three times is three columns).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._files import TextFileError, read_text_file, shown
from ..results import SCHEMA_VERSION
from .merge import merge_documents
from .render import DEFAULT_REPORT_PATH, render_report

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m pytest_metatrace.report",
        description="Render the HTML audit report from --metatrace-json documents; with several "
        "documents (optionally after the word 'compare'), one report counts each run in its own "
        "column and ranks all their encoders by each trace.",
    )
    parser.add_argument(
        "results",
        type=Path,
        nargs="+",
        help="JSON documents written by --metatrace-json or --metatrace-save-baseline",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path(DEFAULT_REPORT_PATH),
        help=f"where to write the report (default: {DEFAULT_REPORT_PATH})",
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["compare"]:
        argv = argv[1:]
    args = parser.parse_args(argv)
    docs = [(_label(path, args.results), _read(parser, path)) for path in args.results]
    data = docs[0][1] if len(docs) == 1 else merge_documents(docs)
    try:
        path = render_report(args.output, data)
    except OSError as exc:
        # Under a regular file, in a read-only folder, onto a folder: one line, no traceback.
        parser.exit(
            1,
            f"error: cannot write the report {shown(args.output)}: {exc.strerror or exc}; "
            "choose another path with -o\n",
        )
    print(f"metatrace report written to {path}")
    return 0


def _label(path: Path, paths: Sequence[Path]) -> str:
    """The file's stem, or its path when two files share a stem."""
    stems = [p.stem for p in paths]
    return path.stem if stems.count(path.stem) == 1 else str(path)


def _read(parser: argparse.ArgumentParser, path: Path) -> dict[str, Any]:
    """One results document, or exit with a message naming the file and the fix."""
    written_by = "pass the file written by `pytest --metatrace-json=PATH`"
    try:
        data = json.loads(read_text_file(path, what="results file", fix=written_by))
    except TextFileError as exc:
        parser.exit(2, f"error: {exc}\n")
    except json.JSONDecodeError as exc:
        parser.exit(2, f"error: {shown(path)} is not JSON ({exc}); {written_by}\n")
    except RecursionError:
        parser.exit(2, f"error: {shown(path)} is not JSON (nested too deeply); {written_by}\n")
    if not isinstance(data, dict):
        parser.exit(
            2,
            f"error: {path} holds a JSON {type(data).__name__}, not the "
            "results object written by `pytest --metatrace-json=PATH`\n",
        )
    version = data.get("schema_version")
    if isinstance(version, int) and version > SCHEMA_VERSION:
        print(
            f"warning: {path} has schema version {version}; this pytest-metatrace "
            f"reads version {SCHEMA_VERSION}; unknown parts are shown as raw records",
            file=sys.stderr,
        )
    return data


if __name__ == "__main__":
    sys.exit(main())
