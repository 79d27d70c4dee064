"""The JSON Schema of the results document (``--metatrace-json``, baselines).

``results.schema.json`` (JSON Schema 2020-12) documents every field of
schema version :data:`~pytest_metatrace.results.SCHEMA_VERSION`; tests
validate the plugin's real output against it, so the two cannot drift apart.
Validate your own files with ``jsonschema`` (``pip install jsonschema``)::

    from pytest_metatrace.schema import validate_document
    problems = validate_document(json.load(open("results.json")))
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_metatrace.spec import AuditRegistry

__all__ = ["results_schema", "validate_document"]


def results_schema(registry: AuditRegistry | None = None) -> dict[str, Any]:
    """The results document's JSON Schema, as a dict, with the registered audits described.

    ``results.schema.json`` holds the layout; the audits come from the registry
    (default: the built-in and installed ones): ``x-metatrace-audits`` lists each
    audit's record kinds, metrics with their trace direction, gate keys and
    result types, and the record's ``audit`` and the gate's ``key`` carry them as
    ``examples``. Documents of audits not registered here still validate.
    """
    from pytest_metatrace.spec import default_registry

    text = resources.files(__name__).joinpath("results.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    registry = registry if registry is not None else default_registry()
    audits: dict[str, Any] = {}
    for spec in registry.specs():
        kinds = sorted({*spec.results, *(sec.audit for sec in spec.sections)})
        audits[spec.name] = {
            "title": spec.title,
            "record_audits": kinds,
            "metrics": [
                {"audit": m.audit, "metric": m.metric, "direction": m.direction}
                for m in spec.metrics
            ],
            "gate_keys": list(spec.gate_keys),
            "result_types": dict(spec.results),
        }
    schema["x-metatrace-audits"] = audits
    record = schema["$defs"]["record"]["properties"]
    record["audit"]["examples"] = sorted({k for a in audits.values() for k in a["record_audits"]})
    gate = schema["$defs"]["gate"]["properties"]
    gate["key"]["examples"] = sorted({k for a in audits.values() for k in a["gate_keys"]})
    return schema


def validate_document(doc: Mapping[str, Any], registry: AuditRegistry | None = None) -> list[str]:
    """Every schema violation of ``doc`` as ``path: message`` (empty when valid).

    Needs ``jsonschema`` (in the ``test`` extra).
    """
    try:
        import jsonschema
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "validating needs the jsonschema package: pip install 'pytest-metatrace[test]'"
        ) from exc
    validator = jsonschema.Draft202012Validator(results_schema(registry))
    return [
        f"{'/'.join(map(str, err.absolute_path)) or '(document)'}: {err.message}"
        for err in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.path)))
    ]
