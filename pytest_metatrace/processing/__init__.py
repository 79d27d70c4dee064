"""Processing operations, parameter groups and center masking (docs/protocol.md §1 and §3).

The names are imported on first use: the parameter groups (stdlib only) are
read at plugin load by the audit specs, the operations (Pillow) only when
pixels are processed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "PARAMETER_GROUPS": "pytest_metatrace.processing.groups",
    "ParameterGroup": "pytest_metatrace.processing.groups",
    "get_group": "pytest_metatrace.processing.groups",
    "DEFAULT_MASK_RATIO": "pytest_metatrace.processing.masking",
    "apply_center_mask": "pytest_metatrace.processing.masking",
    "mask_box": "pytest_metatrace.processing.masking",
    "PROCESSING_CLASSES": "pytest_metatrace.processing.ops",
    "PROCESSING_VERSION": "pytest_metatrace.processing.ops",
    "ProcessingOp": "pytest_metatrace.processing.ops",
    "get_processing": "pytest_metatrace.processing.ops",
    "interp_scale": "pytest_metatrace.processing.ops",
    "jpeg_roundtrip": "pytest_metatrace.processing.ops",
    "list_processing": "pytest_metatrace.processing.ops",
    "ProcessingNameError": "pytest_metatrace.processing.parametric",
    "parametric_name": "pytest_metatrace.processing.parametric",
}

__all__ = [
    "DEFAULT_MASK_RATIO",
    "PARAMETER_GROUPS",
    "PROCESSING_CLASSES",
    "PROCESSING_VERSION",
    "ParameterGroup",
    "ProcessingNameError",
    "ProcessingOp",
    "apply_center_mask",
    "get_group",
    "get_processing",
    "interp_scale",
    "jpeg_roundtrip",
    "list_processing",
    "mask_box",
    "parametric_name",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from pytest_metatrace.processing.groups import PARAMETER_GROUPS, ParameterGroup, get_group
    from pytest_metatrace.processing.masking import (
        DEFAULT_MASK_RATIO,
        apply_center_mask,
        mask_box,
    )
    from pytest_metatrace.processing.ops import (
        PROCESSING_CLASSES,
        PROCESSING_VERSION,
        ProcessingOp,
        get_processing,
        interp_scale,
        jpeg_roundtrip,
        list_processing,
    )
    from pytest_metatrace.processing.parametric import ProcessingNameError, parametric_name


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_metatrace.processing' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
