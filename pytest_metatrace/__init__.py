"""pytest-metatrace: audit visual encoders for processing and acquisition traces.

The names below are what audits and in-house encoder code need; they are
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
    "Embeddings",
    "Encoder",
    "GateOutcome",
    "Interval",
    "PreprocessCfg",
    "Record",
    "__version__",
    "bootstrap_mean",
    "bootstrap_mean_diff",
    "create_encoder",
    "get_processing",
    "list_encoders",
    "load_dataset",
    "register_dataset",
    "register_encoder",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
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
    from pytest_metatrace.processing import PARAMETER_GROUPS, PROCESSING_CLASSES, get_processing
    from pytest_metatrace.results import GateOutcome, Record


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_metatrace' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
