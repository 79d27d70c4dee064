"""pytest-metatrace: audit visual encoders for processing and acquisition traces.

The names below are what audits and in-house encoder code need (the
analyses, their typed results, the recorder and settings the fixtures hand
out, encoders, data and processing); they are
imported on first use, so that ``import pytest_metatrace`` (and the pytest
plugin, which lives in this package) never loads torch, timm or open_clip.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    # results and gates
    "Record": "pytest_metatrace.results",
    "GateOutcome": "pytest_metatrace.results",
    "Interval": "pytest_metatrace.analysis.stats",
    "bootstrap_mean": "pytest_metatrace.analysis.stats",
    "bootstrap_mean_diff": "pytest_metatrace.analysis.stats",
    "gate_interval": "pytest_metatrace.analysis.intervals",
    "IntervalError": "pytest_metatrace.analysis.intervals",
    # analyses and their typed results
    "processing_drift": "pytest_metatrace.analysis.drift",
    "DriftResult": "pytest_metatrace.analysis.drift",
    "processing_probe": "pytest_metatrace.analysis.processing_probe",
    "run_processing_probe": "pytest_metatrace.analysis.processing_probe",
    "ProcessingProbe": "pytest_metatrace.analysis.processing_probe",
    "ProcessingProbeResult": "pytest_metatrace.analysis.processing_probe",
    "LinearProbe": "pytest_metatrace.analysis.probe",
    "ProbeInputError": "pytest_metatrace.analysis.probe",
    "semantic_influence": "pytest_metatrace.analysis.semantic",
    "SemanticInfluenceResult": "pytest_metatrace.analysis.semantic",
    "KnnInfluence": "pytest_metatrace.analysis.knn",
    "KnnInfluenceResult": "pytest_metatrace.analysis.knn",
    "ProbeDetails": "pytest_metatrace.analysis.schema",
    "SemanticDetails": "pytest_metatrace.analysis.schema",
    # the audit fixtures' types
    "Recorder": "pytest_metatrace.fixtures",
    "Settings": "pytest_metatrace.settings",
    # encoders
    "Encoder": "pytest_metatrace.encoders",
    "PreprocessCfg": "pytest_metatrace.encoders",
    "create_encoder": "pytest_metatrace.encoders",
    "list_encoders": "pytest_metatrace.encoders",
    "register_encoder": "pytest_metatrace.encoders",
    # processing
    "PARAMETER_GROUPS": "pytest_metatrace.processing",
    "PROCESSING_CLASSES": "pytest_metatrace.processing",
    "get_processing": "pytest_metatrace.processing",
    # data
    "Dataset": "pytest_metatrace.data",
    "load_dataset": "pytest_metatrace.data",
    "register_dataset": "pytest_metatrace.data",
    # embeddings
    "Embeddings": "pytest_metatrace.embeddings",
}

__all__ = [
    "PARAMETER_GROUPS",
    "PROCESSING_CLASSES",
    "Dataset",
    "DriftResult",
    "Embeddings",
    "Encoder",
    "GateOutcome",
    "Interval",
    "IntervalError",
    "KnnInfluence",
    "KnnInfluenceResult",
    "LinearProbe",
    "PreprocessCfg",
    "ProbeDetails",
    "ProbeInputError",
    "ProcessingProbe",
    "ProcessingProbeResult",
    "Record",
    "Recorder",
    "SemanticDetails",
    "SemanticInfluenceResult",
    "Settings",
    "__version__",
    "bootstrap_mean",
    "bootstrap_mean_diff",
    "create_encoder",
    "gate_interval",
    "get_processing",
    "list_encoders",
    "load_dataset",
    "processing_drift",
    "processing_probe",
    "register_dataset",
    "register_encoder",
    "run_processing_probe",
    "semantic_influence",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from pytest_metatrace.analysis.drift import DriftResult, processing_drift
    from pytest_metatrace.analysis.intervals import IntervalError, gate_interval
    from pytest_metatrace.analysis.knn import KnnInfluence, KnnInfluenceResult
    from pytest_metatrace.analysis.probe import LinearProbe, ProbeInputError
    from pytest_metatrace.analysis.processing_probe import (
        ProcessingProbe,
        ProcessingProbeResult,
        processing_probe,
        run_processing_probe,
    )
    from pytest_metatrace.analysis.schema import ProbeDetails, SemanticDetails
    from pytest_metatrace.analysis.semantic import SemanticInfluenceResult, semantic_influence
    from pytest_metatrace.analysis.stats import Interval, bootstrap_mean, bootstrap_mean_diff
    from pytest_metatrace.data import Dataset, load_dataset, register_dataset
    from pytest_metatrace.embeddings import Embeddings
    from pytest_metatrace.encoders import (
        Encoder,
        PreprocessCfg,
        create_encoder,
        list_encoders,
        register_encoder,
    )
    from pytest_metatrace.fixtures import Recorder
    from pytest_metatrace.processing import PARAMETER_GROUPS, PROCESSING_CLASSES, get_processing
    from pytest_metatrace.results import GateOutcome, Record
    from pytest_metatrace.settings import Settings


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_metatrace' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
