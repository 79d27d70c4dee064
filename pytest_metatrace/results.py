"""Result records: what every audit stores, with its provenance.

A :class:`Record` is one measured number (with its interval, chance level and
gate outcome) plus free-form, JSON-ready ``details`` for the report's figures.
Records are plain data so that they cross process boundaries (pytest-xdist
workers send them to the controller as JSON in ``user_properties``) and land
verbatim in ``--metatrace-json``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["SCHEMA_VERSION", "GateOutcome", "Record", "gate_status", "jsonable"]

#: Version of the JSON layout written by ``--metatrace-json``.
SCHEMA_VERSION = 1


@dataclass
class GateOutcome:
    """How a record was gated against its threshold."""

    key: str  #: threshold key, e.g. ``probe.jpeg``
    threshold: float  #: the resolved threshold, in the record's unit
    spec: str  #: the threshold as written, e.g. ``chance+0.4``
    source: str  #: where it came from: ``default``, ``ini``, ``command line`` or ``marker``
    compared: str  #: which statistic was compared (``interval low`` or ``value``)
    passed: bool  #: True when the gate decided and the trace is not significantly above
    message: str  #: one-paragraph explanation, used as the assertion message
    #: False when ``--metatrace-gate=baseline`` makes this check reported, not gating
    gating: bool = True
    #: ``above``: fails when significantly above the threshold; ``below``: when below it
    direction: str = "above"
    #: False when too few test images were given for the gate to be able to fail at all
    #: (``passed`` is then False too, and the outcome is "undecided", not a failure)
    decided: bool = True
    #: the fewest test images at which this gate can fail (None: not computed or never)
    min_n: int | None = None

    @property
    def status(self) -> str:
        """``"passed"``, ``"failed"`` or ``"undecided"``."""
        return gate_status(asdict(self))


@dataclass
class Record:
    """One measured quantity of one audit, for one encoder and one dataset."""

    audit: str  #: audit kind, e.g. ``processing_probe``; selects the report section
    metric: str  #: what ``value`` measures, e.g. ``top1`` or ``pos_same_gap``
    value: float  #: the point estimate
    encoder: str  #: encoder id (its spec string)
    dataset: str  #: dataset id
    parameter: str | None = None  #: parameter group or metadata target, e.g. ``jpeg``
    unit: str = "fraction"  #: ``fraction`` (shown as %) or a free unit name
    interval: dict[str, Any] | None = None  #: :class:`~.analysis.stats.Interval` as a dict
    chance: float | None = None  #: chance level, where one exists
    gate: GateOutcome | None = None  #: threshold outcome, if the record was gated
    details: dict[str, Any] = field(default_factory=dict)  #: figure data for the report
    provenance: dict[str, Any] = field(default_factory=dict)  #: filled in by the recorder
    #: per-test-image values the interval was bootstrapped from (their mean is ``value``)
    scores: list[float] | None = None
    score_ids: list[str] | None = None  #: the test images' ids, aligned with ``scores``
    baseline: dict[str, Any] | None = None  #: comparison with ``--metatrace-baseline``, if any

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (no NaN, tuples as lists)."""
        out: dict[str, Any] = jsonable(asdict(self))
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        gate = data.pop("gate", None)
        return cls(**data, gate=GateOutcome(**gate) if gate else None)

    def to_json(self) -> str:
        """Compact JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)


def gate_status(gate: Any) -> str:
    """``"passed"``, ``"failed"`` or ``"undecided"`` of a gate outcome or its JSON dict.

    A gate dict written before the undecided outcome existed has no ``decided``
    key and is decided.
    """
    if not isinstance(gate, dict):
        gate = asdict(gate)
    if gate.get("decided", True) is False:
        return "undecided"
    return "passed" if gate.get("passed") else "failed"


def jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, tuples and NaN into strict-JSON values.

    NaN and infinities become ``None`` so that the output is valid JSON (they
    mark "not measurable", e.g. a class with no test images).
    """
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency
        np = None  # type: ignore[assignment]
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if np is not None:
        if isinstance(obj, np.ndarray):
            return jsonable(obj.tolist())
        if isinstance(obj, np.generic):
            return jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
