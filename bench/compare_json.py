"""Compare two ``--metatrace-json`` documents: same numbers, timing and provenance aside.

    python bench/compare_json.py BEFORE.json AFTER.json

Records are matched by (audit, metric, encoder, dataset, parameter) and
compared field by field, recursively and exactly (no tolerance: the same
inputs must give the same bits). Ignored: timing fields, where and when the
run happened (``run``, the ``choices`` texts, per-record ``nodeid``,
``worker`` and ``versions``) and paths that depend on the cache folder.
Fields present only in AFTER (e.g. ``scores``) are listed, not failed; a field
missing from AFTER fails. Exit status 0 when the numbers are identical.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Key paths (``/``-joined, ``*`` wildcards) never compared.
IGNORED = (
    "run",
    "run/*",
    "choices",
    "choices/*",
    "records/*/provenance/nodeid",
    "records/*/provenance/worker",
    "records/*/provenance/versions",
    "records/*/provenance/versions/*",
    "*/wall_time_s",
    "*/wall_s",
    "*/seconds",
    "*/fit_time_s",
    "*/duration_s",
    "*/extraction_s",
    "encoders/*/converted_weights",
    "encoders/*/weights_source",
)


def _ignored(path: str) -> bool:
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in IGNORED)


def _key(record: dict[str, Any]) -> str:
    return "|".join(
        str(record.get(k)) for k in ("audit", "metric", "encoder", "dataset", "parameter")
    )


def _by_key(items: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {str(item.get(key)): item for item in items}


def diff(before: Any, after: Any, path: str, out: list[str], added: list[str]) -> None:
    """Append a line to ``out`` per difference (``added`` for AFTER-only keys)."""
    if _ignored(path):
        return
    if isinstance(before, dict) and isinstance(after, dict):
        for k in sorted(before.keys() | after.keys()):
            sub = f"{path}/{k}" if path else str(k)
            if _ignored(sub):
                continue
            if k not in after:
                out.append(f"{sub}: missing in after")
            elif k not in before:
                added.append(sub)
            else:
                diff(before[k], after[k], sub, out, added)
        return
    if isinstance(before, list) and isinstance(after, list):
        if len(before) != len(after):
            out.append(f"{path}: length {len(before)} != {len(after)}")
            return
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            diff(b, a, f"{path}/{i}", out, added)
        return
    if type(before) is not type(after) and not (
        isinstance(before, (int, float)) and isinstance(after, (int, float))
    ):
        out.append(f"{path}: {before!r} != {after!r} (type)")
    elif before != after:
        out.append(f"{path}: {before!r} != {after!r}")


def compare(before: dict[str, Any], after: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Differences and AFTER-only fields between two documents."""
    out: list[str] = []
    added: list[str] = []
    b_records = {_key(r): r for r in before.get("records", [])}
    a_records = {_key(r): r for r in after.get("records", [])}
    for key in sorted(b_records.keys() | a_records.keys()):
        if key not in a_records:
            out.append(f"record {key}: missing in after")
        elif key not in b_records:
            out.append(f"record {key}: only in after")
        else:
            diff(b_records[key], a_records[key], f"records/{key}", out, added)
    for section, id_key in (("encoders", "id"), ("datasets", "id")):
        diff(
            _by_key(before.get(section, []), id_key),
            _by_key(after.get(section, []), id_key),
            section,
            out,
            added,
        )
    options = ("cache-dir", "json", "report")
    b_opts = {k: v for k, v in before.get("run", {}).get("options", {}).items() if k not in options}
    a_opts = {k: v for k, v in after.get("run", {}).get("options", {}).items() if k not in options}
    diff(b_opts, a_opts, "options", out, added)
    diff(before.get("schema_version"), after.get("schema_version"), "schema_version", out, added)
    return out, added


def _summarize_added(added: list[str]) -> list[str]:
    """``records/<key>/scores`` x 29 -> one line per distinct field name."""
    counts: dict[str, int] = {}
    for path in added:
        parts = path.split("/")
        name = "/".join([parts[0], "*", *parts[2:]]) if parts[0] == "records" else path
        counts[name] = counts.get(name, 0) + 1
    return [f"{name} (x{n})" for name, n in sorted(counts.items())]


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; 0 when identical, 1 otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    before = json.loads(args.before.read_text())
    after = json.loads(args.after.read_text())
    out, added = compare(before, after)
    n = len(before.get("records", []))
    for line in _summarize_added(added):
        print(f"added: {line}")
    for line in out[:50]:
        print(f"DIFF {line}")
    if out:
        print(f"{len(out)} difference(s) over {n} records")
        return 1
    print(f"identical: {n} records, timing and provenance aside")
    return 0


if __name__ == "__main__":
    sys.exit(main())
