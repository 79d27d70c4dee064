"""The results document's JSON Schema matches the code that writes the document."""

from __future__ import annotations

import dataclasses
import json

import pytest

from pytest_metatrace.baseline import BaselineComparison, baseline_document
from pytest_metatrace.results import SCHEMA_VERSION, GateOutcome, Record
from pytest_metatrace.schema import results_schema, validate_document

pytest.importorskip("jsonschema")


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_schema_names_every_field_of_the_dataclasses():
    schema = results_schema()
    defs = schema["$defs"]
    assert schema["properties"]["schema_version"] == {"const": SCHEMA_VERSION}
    assert set(defs["record"]["properties"]) == _fields(Record)
    assert set(defs["gate"]["properties"]) == _fields(GateOutcome)
    assert set(defs["baseline_comparison"]["properties"]) == _fields(BaselineComparison)


def _document() -> dict:
    record = Record(
        audit="processing_probe",
        metric="top1",
        value=0.8,
        encoder="e",
        dataset="d",
        parameter="jpeg",
        interval={"low": 0.7, "high": 0.9, "level": 0.95, "n": 10, "method": "m", "estimate": 0.8},
        chance=1 / 6,
        gate=GateOutcome("probe.jpeg", 0.6, "0.6", "default", "interval low", False, "msg"),
        scores=[0.8] * 10,
        score_ids=[f"i{k}" for k in range(10)],
    )
    return {
        "schema_version": SCHEMA_VERSION,
        "run": {
            "started": "2026-01-01T00:00:00+00:00",
            "finished": "2026-01-01T00:01:00+00:00",
            "invocation": "pytest",
            "outcomes": {"passed": 1},
            "tests": [{"nodeid": "a::b", "outcome": "failed"}],
            "options": {"seed": 0},
            "versions": {"python": "3.11"},
        },
        "choices": [],
        "encoders": [{"id": "e", "fingerprint": "f"}],
        "datasets": [{"id": "d", "fingerprint": "g"}],
        "records": [record.to_dict()],
    }


def test_a_document_and_a_baseline_validate():
    doc = json.loads(json.dumps(_document()))
    assert validate_document(doc) == []
    assert validate_document(baseline_document(doc)) == []


def test_violations_name_the_path():
    doc = _document()
    doc["records"][0]["gate"]["source"] = "somewhere"
    doc["records"][0]["extra"] = 1
    del doc["run"]
    problems = validate_document(doc)
    assert "(document): 'run' is a required property" in problems
    assert any(
        p.startswith("records/0: Additional properties") and "'extra'" in p for p in problems
    )
    assert any(p.startswith("records/0/gate") for p in problems)


def test_the_schema_describes_every_registered_audit() -> None:
    from pytest_metatrace.spec import AuditRegistry, AuditSpec, GateFamily, builtin_specs

    schema = results_schema()
    audits = schema["x-metatrace-audits"]
    for spec in builtin_specs():
        assert audits[spec.name]["gate_keys"] == list(spec.gate_keys)
        for sec in spec.sections:
            assert sec.audit in audits[spec.name]["record_audits"]
            assert sec.audit in schema["$defs"]["record"]["properties"]["audit"]["examples"]
    assert "probe.jpeg" in schema["$defs"]["gate"]["properties"]["key"]["examples"]
    mine = AuditSpec(
        "mine",
        "Mine",
        "a user audit",
        gates=(GateFamily("mine.*", "a score", 0.0, 1.0),),
        gate_keys=("mine.a",),
    )
    custom = results_schema(AuditRegistry([mine]))
    assert list(custom["x-metatrace-audits"]) == ["mine"]
    assert custom["$defs"]["gate"]["properties"]["key"]["examples"] == ["mine.a"]
