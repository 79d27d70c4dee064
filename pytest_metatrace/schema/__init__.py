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
from typing import Any

__all__ = ["results_schema", "validate_document"]


def results_schema() -> dict[str, Any]:
    """The results document's JSON Schema, as a dict."""
    text = resources.files(__name__).joinpath("results.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def validate_document(doc: Mapping[str, Any]) -> list[str]:
    """Every schema violation of ``doc`` as ``path: message`` (empty when valid).

    Needs ``jsonschema`` (in the ``test`` extra).
    """
    try:
        import jsonschema
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "validating needs the jsonschema package: pip install 'pytest-metatrace[test]'"
        ) from exc
    validator = jsonschema.Draft202012Validator(results_schema())
    return [
        f"{'/'.join(map(str, err.absolute_path)) or '(document)'}: {err.message}"
        for err in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.path)))
    ]
