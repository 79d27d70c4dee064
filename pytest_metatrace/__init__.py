"""pytest-metatrace: audit visual encoders for processing and acquisition traces.

The names below are what audits and in-house encoder code need (the
analyses, their typed results, the recorder and settings the fixtures hand
out, the audit spec, encoders, data and processing); they are imported on
first use, so that ``import pytest_metatrace`` (and the pytest plugin, which
lives in this package) never loads torch, timm or open_clip.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_AUDITS = "pytest_metatrace.audits"
#: public name -> "module" (same attribute name) or "module:attribute"
_EXPORTS = {
    # results and gates
    "Record": "pytest_metatrace.results",
    "GateOutcome": "pytest_metatrace.results",
    "Interval": "pytest_metatrace.analysis.stats",
    "bootstrap_mean": "pytest_metatrace.analysis.stats",
    "bootstrap_mean_diff": "pytest_metatrace.analysis.stats",
    "gate_interval": "pytest_metatrace.analysis.intervals",
    "IntervalError": "pytest_metatrace.analysis.intervals",
    # the audit spec
    "AuditSpec": "pytest_metatrace.spec",
    "AuditRegistry": "pytest_metatrace.spec",
    "DataContext": "pytest_metatrace.spec",
    "DataSpec": "pytest_metatrace.spec",
    "GateFamily": "pytest_metatrace.spec",
    "MetricSpec": "pytest_metatrace.spec",
    "SectionSpec": "pytest_metatrace.spec",
    "option": "pytest_metatrace.options",
    # shared engines
    "LinearProbe": "pytest_metatrace.analysis.probe",
    "ProbeInputError": "pytest_metatrace.analysis.probe",
    "probe_from_settings": "pytest_metatrace.analysis.probe",
    "KnnInputError": "pytest_metatrace.analysis.knn_engine",
    # processing drift
    "processing_drift": f"{_AUDITS}.processing_drift.analysis",
    "DriftResult": f"{_AUDITS}.processing_drift.analysis",
    "DRIFT_CLASSES": f"{_AUDITS}.processing_drift.spec:CLASSES",
    # processing probes
    "processing_probe": f"{_AUDITS}.processing_probe.analysis",
    "run_processing_probe": f"{_AUDITS}.processing_probe.analysis",
    "ProcessingProbe": f"{_AUDITS}.processing_probe.analysis",
    "ProcessingProbeResult": f"{_AUDITS}.processing_probe.analysis",
    "ProbeDetails": f"{_AUDITS}.processing_probe.results",
    # semantic influence
    "semantic_influence": f"{_AUDITS}.semantic_influence.analysis",
    "SemanticInfluenceResult": f"{_AUDITS}.semantic_influence.analysis",
    "SEMANTIC_GAPS": f"{_AUDITS}.semantic_influence.analysis:GAPS",
    "KnnInfluence": f"{_AUDITS}.semantic_influence.influence",
    "KnnInfluenceResult": f"{_AUDITS}.semantic_influence.influence",
    "SemanticDetails": f"{_AUDITS}.semantic_influence.results",
    # acquisition traces
    "ACQUISITION_TARGETS": f"{_AUDITS}.acquisition_traces.spec:TARGETS",
    "AcquisitionSettings": f"{_AUDITS}.acquisition_traces.spec",
    "plan_targets": f"{_AUDITS}.acquisition_traces.targets",
    "target_labels": f"{_AUDITS}.acquisition_traces.targets",
    "run_acquisition_probe": f"{_AUDITS}.acquisition_traces.targets",
    "TargetPlan": f"{_AUDITS}.acquisition_traces.targets",
    "AcquisitionProbeResult": f"{_AUDITS}.acquisition_traces.targets",
    "neighbour_agreement": f"{_AUDITS}.acquisition_traces.agreement",
    "NeighbourAgreement": f"{_AUDITS}.acquisition_traces.agreement",
    "AgreementUnavailable": f"{_AUDITS}.acquisition_traces.agreement",
    "SWEEP_RATIOS": f"{_AUDITS}.acquisition_traces.mask_sweep",
    "run_mask_sweep": f"{_AUDITS}.acquisition_traces.mask_sweep",
    "MaskSweep": f"{_AUDITS}.acquisition_traces.mask_sweep",
    "SemanticCurve": f"{_AUDITS}.acquisition_traces.mask_sweep",
    "choose_sweep_source": f"{_AUDITS}.acquisition_traces.mask_sweep",
    "pair_curve": f"{_AUDITS}.acquisition_traces.mask_sweep",
    "knn_curve": f"{_AUDITS}.acquisition_traces.mask_sweep",
    "embedding_map": f"{_AUDITS}.acquisition_traces.mask_sweep",
    "EmbeddingMap": f"{_AUDITS}.acquisition_traces.mask_sweep",
    "masked_features": f"{_AUDITS}.acquisition_traces.fixtures",
    # sensitivity
    "sensitivity": f"{_AUDITS}.sensitivity.analysis",
    "SensitivityResult": f"{_AUDITS}.sensitivity.analysis",
    "SENSITIVITY_PARAMETERS": f"{_AUDITS}.sensitivity.spec:PARAMETERS",
    # cross-camera retrieval
    "RetrievalSettings": f"{_AUDITS}.cross_camera_retrieval.spec",
    "CrossCameraRetrieval": f"{_AUDITS}.cross_camera_retrieval.analysis",
    "RetrievalResult": f"{_AUDITS}.cross_camera_retrieval.analysis",
    "failure_gallery": f"{_AUDITS}.cross_camera_retrieval.data",
    "PairedDataset": "pytest_metatrace.data.pairs",
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
    "View": "pytest_metatrace.embeddings",
}

__all__ = [
    "ACQUISITION_TARGETS",
    "DRIFT_CLASSES",
    "PARAMETER_GROUPS",
    "PROCESSING_CLASSES",
    "SEMANTIC_GAPS",
    "SENSITIVITY_PARAMETERS",
    "SWEEP_RATIOS",
    "AcquisitionProbeResult",
    "AcquisitionSettings",
    "AgreementUnavailable",
    "AuditRegistry",
    "AuditSpec",
    "CrossCameraRetrieval",
    "DataContext",
    "DataSpec",
    "Dataset",
    "DriftResult",
    "EmbeddingMap",
    "Embeddings",
    "Encoder",
    "GateFamily",
    "GateOutcome",
    "Interval",
    "IntervalError",
    "KnnInfluence",
    "KnnInfluenceResult",
    "KnnInputError",
    "LinearProbe",
    "MaskSweep",
    "MetricSpec",
    "NeighbourAgreement",
    "PairedDataset",
    "PreprocessCfg",
    "ProbeDetails",
    "ProbeInputError",
    "ProcessingProbe",
    "ProcessingProbeResult",
    "Record",
    "Recorder",
    "RetrievalResult",
    "RetrievalSettings",
    "SectionSpec",
    "SemanticCurve",
    "SemanticDetails",
    "SemanticInfluenceResult",
    "SensitivityResult",
    "Settings",
    "TargetPlan",
    "View",
    "__version__",
    "bootstrap_mean",
    "bootstrap_mean_diff",
    "choose_sweep_source",
    "create_encoder",
    "embedding_map",
    "failure_gallery",
    "gate_interval",
    "get_processing",
    "knn_curve",
    "list_encoders",
    "load_dataset",
    "masked_features",
    "neighbour_agreement",
    "option",
    "pair_curve",
    "plan_targets",
    "probe_from_settings",
    "processing_drift",
    "processing_probe",
    "register_dataset",
    "register_encoder",
    "run_acquisition_probe",
    "run_mask_sweep",
    "run_processing_probe",
    "semantic_influence",
    "sensitivity",
    "target_labels",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from pytest_metatrace.analysis.intervals import IntervalError, gate_interval
    from pytest_metatrace.analysis.knn_engine import KnnInputError
    from pytest_metatrace.analysis.probe import LinearProbe, ProbeInputError, probe_from_settings
    from pytest_metatrace.analysis.stats import Interval, bootstrap_mean, bootstrap_mean_diff
    from pytest_metatrace.audits.acquisition_traces.agreement import (
        AgreementUnavailable,
        NeighbourAgreement,
        neighbour_agreement,
    )
    from pytest_metatrace.audits.acquisition_traces.fixtures import masked_features
    from pytest_metatrace.audits.acquisition_traces.mask_sweep import (
        SWEEP_RATIOS,
        EmbeddingMap,
        MaskSweep,
        SemanticCurve,
        choose_sweep_source,
        embedding_map,
        knn_curve,
        pair_curve,
        run_mask_sweep,
    )
    from pytest_metatrace.audits.acquisition_traces.spec import TARGETS as ACQUISITION_TARGETS
    from pytest_metatrace.audits.acquisition_traces.spec import AcquisitionSettings
    from pytest_metatrace.audits.acquisition_traces.targets import (
        AcquisitionProbeResult,
        TargetPlan,
        plan_targets,
        run_acquisition_probe,
        target_labels,
    )
    from pytest_metatrace.audits.cross_camera_retrieval.analysis import (
        CrossCameraRetrieval,
        RetrievalResult,
    )
    from pytest_metatrace.audits.cross_camera_retrieval.data import failure_gallery
    from pytest_metatrace.audits.cross_camera_retrieval.spec import RetrievalSettings
    from pytest_metatrace.audits.processing_drift.analysis import DriftResult, processing_drift
    from pytest_metatrace.audits.processing_drift.spec import CLASSES as DRIFT_CLASSES
    from pytest_metatrace.audits.processing_probe.analysis import (
        ProcessingProbe,
        ProcessingProbeResult,
        processing_probe,
        run_processing_probe,
    )
    from pytest_metatrace.audits.processing_probe.results import ProbeDetails
    from pytest_metatrace.audits.semantic_influence.analysis import GAPS as SEMANTIC_GAPS
    from pytest_metatrace.audits.semantic_influence.analysis import (
        SemanticInfluenceResult,
        semantic_influence,
    )
    from pytest_metatrace.audits.semantic_influence.influence import (
        KnnInfluence,
        KnnInfluenceResult,
    )
    from pytest_metatrace.audits.semantic_influence.results import SemanticDetails
    from pytest_metatrace.audits.sensitivity.analysis import SensitivityResult, sensitivity
    from pytest_metatrace.audits.sensitivity.spec import PARAMETERS as SENSITIVITY_PARAMETERS
    from pytest_metatrace.data import Dataset, load_dataset, register_dataset
    from pytest_metatrace.data.pairs import PairedDataset
    from pytest_metatrace.embeddings import Embeddings, View
    from pytest_metatrace.encoders import (
        Encoder,
        PreprocessCfg,
        create_encoder,
        list_encoders,
        register_encoder,
    )
    from pytest_metatrace.fixtures import Recorder
    from pytest_metatrace.options import option
    from pytest_metatrace.processing import PARAMETER_GROUPS, PROCESSING_CLASSES, get_processing
    from pytest_metatrace.results import GateOutcome, Record
    from pytest_metatrace.settings import Settings
    from pytest_metatrace.spec import (
        AuditRegistry,
        AuditSpec,
        DataContext,
        DataSpec,
        GateFamily,
        MetricSpec,
        SectionSpec,
    )


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'pytest_metatrace' has no attribute {name!r}")
    module, _, attribute = target.partition(":")
    value = getattr(importlib.import_module(module), attribute or name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
