"""``python -m pytest_metatrace.report results.json -o report.html``: re-render a report."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ..results import SCHEMA_VERSION
from .render import DEFAULT_REPORT_PATH, render_report

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m pytest_metatrace.report",
        description="Render the HTML audit report from a --metatrace-json results document.",
    )
    parser.add_argument("results", type=Path, help="the JSON document written by --metatrace-json")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path(DEFAULT_REPORT_PATH),
        help=f"where to write the report (default: {DEFAULT_REPORT_PATH})",
    )
    args = parser.parse_args(argv)
    try:
        data = json.loads(args.results.read_text(encoding="utf-8"))
    except OSError as exc:
        parser.exit(2, f"error: cannot read {args.results}: {exc.strerror or exc}\n")
    except json.JSONDecodeError as exc:
        parser.exit(
            2,
            f"error: {args.results} is not JSON ({exc}); pass the file written by "
            "`pytest --metatrace-json=PATH`\n",
        )
    if not isinstance(data, dict):
        parser.exit(
            2,
            f"error: {args.results} holds a JSON {type(data).__name__}, not the "
            "results object written by `pytest --metatrace-json=PATH`\n",
        )
    version = data.get("schema_version")
    if isinstance(version, int) and version > SCHEMA_VERSION:
        print(
            f"warning: {args.results} has schema version {version}; this pytest-metatrace "
            f"reads version {SCHEMA_VERSION}; unknown parts are shown as raw records",
            file=sys.stderr,
        )
    path = render_report(args.output, data)
    print(f"metatrace report written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
