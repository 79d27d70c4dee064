"""Several runs' documents merged into one, for ``python -m pytest_metatrace.report compare``.

Each run keeps its own identity: an encoder id that occurs in more than one
run (releases v1, v2, v3 of one model) becomes ``id@label``, so the
comparison page shows one column per release; ``run.runs`` counts every run
on its own for the page's header (one column per run); what the runs share
is stated once and what differs is kept per run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .formatting import as_float

__all__ = ["merge_documents"]


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _mappings(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _run_counts(label: str, doc: Mapping[str, Any], rename: Any) -> dict[str, Any]:
    """What one run holds, counted on its own: a column of the merged page's header."""
    run = _map(doc.get("run"))
    records = _mappings(doc.get("records"))
    gates = [r.get("gate") for r in records if isinstance(r.get("gate"), Mapping)]
    bases = [r.get("baseline") for r in records if isinstance(r.get("baseline"), Mapping)]
    ids = [e.get("id") for e in _mappings(doc.get("encoders"))]
    ids += [r.get("encoder") for r in records]
    encoders = [str(rename(e)) for e in ids if e is not None]
    datasets = [str(d.get("name") or d.get("id")) for d in _mappings(doc.get("datasets"))]
    if not datasets:
        datasets = [str(d) for d in dict.fromkeys(r.get("dataset") for r in records) if d]
    outcomes = _map(run.get("outcomes"))
    return {
        "label": label,
        "finished": run.get("finished"),
        "duration_s": as_float(run.get("duration_s")),
        "invocation": run.get("invocation"),
        "encoders": list(dict.fromkeys(encoders)),
        "datasets": list(dict.fromkeys(datasets)),
        "records": len(records),
        "gated": len(gates),
        "gates_failed": sum(
            1
            for g in gates
            if isinstance(g, Mapping) and g.get("passed") is False and g.get("decided") is not False
        ),
        "gates_undecided": sum(
            1 for g in gates if isinstance(g, Mapping) and g.get("decided") is False
        ),
        "regressions": sum(1 for b in bases if isinstance(b, Mapping) and b.get("passed") is False),
        "outcomes": {str(k): v for k, v in outcomes.items()},
    }


def _merge_values(values: Sequence[tuple[str, Any]]) -> Any:
    """One value when every run agrees, else ``{label: value}`` (what differs, per run)."""
    present = [(label, v) for label, v in values if v is not None]
    if not present:
        return None
    first = present[0][1]
    return first if all(v == first for _, v in present) else dict(present)


def _merge_mapping(values: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """Mappings merged key by key with :func:`_merge_values`."""
    maps = [(label, v) for label, v in values if isinstance(v, Mapping)]
    keys = list(dict.fromkeys(k for _, m in maps for k in m))
    return {str(k): _merge_values([(label, m.get(k)) for label, m in maps]) for k in keys}


def _unique_labels(labels: Sequence[str]) -> list[str]:
    out: list[str] = []
    for label in labels:
        name, n = label, 2
        while name in out:
            name, n = f"{label}#{n}", n + 1
        out.append(name)
    return out


def merge_documents(docs: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """One document from several ``(label, document)`` pairs, for a comparison page.

    An encoder id present in more than one document (the same name, release
    after release) becomes ``id@label`` in its records and description, so a
    history of releases shows one column per release. ``run.runs`` holds each
    run's own counts (records, gated, failed gates, regressions, test
    outcomes, encoders, datasets), shown side by side in the page's header;
    ``run.outcomes`` sums the runs' outcomes, and options, versions and host
    facts that differ between runs are kept per run (``{label: value}``).
    Parts of a document that are missing or of the wrong type count as empty.
    """
    if not docs:
        raise ValueError("no documents to merge")
    labels = _unique_labels([str(label) for label, _ in docs])
    pairs = list(zip(labels, (doc for _, doc in docs), strict=True))
    seen: dict[str, int] = {}
    for _, doc in pairs:
        ids = {str(r.get("encoder")) for r in _mappings(doc.get("records"))}
        ids |= {str(e.get("id")) for e in _mappings(doc.get("encoders"))}
        for enc in ids:
            seen[enc] = seen.get(enc, 0) + 1
    records: list[dict[str, Any]] = []
    encoders: list[dict[str, Any]] = []
    datasets: dict[str, Mapping[str, Any]] = {}
    choices: dict[tuple[str, str], Mapping[str, Any]] = {}
    tests: list[Any] = []
    runs: list[dict[str, Any]] = []
    for label, doc in pairs:

        def rename(enc: Any, label: str = label) -> Any:
            return f"{enc}@{label}" if enc is not None and seen.get(str(enc), 0) > 1 else enc

        records += [
            {**r, "encoder": rename(r.get("encoder"))} for r in _mappings(doc.get("records"))
        ]
        encoders += [{**e, "id": rename(e.get("id"))} for e in _mappings(doc.get("encoders"))]
        for i, ds in enumerate(_mappings(doc.get("datasets"))):
            datasets.setdefault(str(ds.get("fingerprint") or ds.get("id") or f"{label}#{i}"), ds)
        for c in _mappings(doc.get("choices")):
            choices.setdefault((str(c.get("topic")), str(c.get("choice"))), c)
        for t in _mappings(_map(doc.get("run")).get("tests")):
            # Tests of several runs share node ids: say which run each belongs to.
            tests.append({**t, "nodeid": f"[{label}] {t.get('nodeid')}"})
        runs.append(_run_counts(label, doc, rename))
    run_of = [(label, _map(doc.get("run"))) for label, doc in pairs]
    outcomes: dict[str, float] = {}
    for counts in runs:
        for key, n in counts["outcomes"].items():
            number = as_float(n)
            if number is not None:
                outcomes[key] = outcomes.get(key, 0) + int(number)
    times = [(str(r.get("started") or ""), str(r.get("finished") or "")) for _, r in run_of]
    durations = [c["duration_s"] for c in runs if c["duration_s"] is not None]
    rootdir = _merge_values([(label, r.get("rootdir")) for label, r in run_of])
    merged_run: dict[str, Any] = {
        "started": min((s for s, _ in times if s), default=None),
        "finished": max((f for _, f in times if f), default=None),
        "duration_s": sum(durations) if durations else None,
        "invocation": "python -m pytest_metatrace.report compare " + " ".join(labels),
        "rootdir": "; ".join(f"{k}: {v}" for k, v in rootdir.items())
        if isinstance(rootdir, dict)
        else rootdir,
        "outcomes": outcomes,
        "tests": tests,
        "merged_from": labels,
        "runs": runs,
    }
    for key in ("options", "versions", "host", "embeddings"):
        merged_run[key] = _merge_mapping([(label, r.get(key)) for label, r in run_of])
    versions = [v for _, d in pairs if isinstance(v := d.get("schema_version"), int)]
    return {
        "schema_version": max(versions) if versions else None,
        "run": merged_run,
        "choices": list(choices.values()),
        "encoders": encoders,
        "datasets": list(datasets.values()),
        "records": records,
    }
