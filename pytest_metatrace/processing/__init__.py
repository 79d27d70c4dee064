"""Processing operations, parameter groups and center masking (docs/protocol.md §1 and §3)."""

from pytest_metatrace.processing.groups import PARAMETER_GROUPS, ParameterGroup, get_group
from pytest_metatrace.processing.masking import DEFAULT_MASK_RATIO, apply_center_mask, mask_box
from pytest_metatrace.processing.ops import (
    PROCESSING_CLASSES,
    PROCESSING_VERSION,
    ProcessingOp,
    get_processing,
    interp_scale,
    jpeg_roundtrip,
    list_processing,
)

__all__ = [
    "DEFAULT_MASK_RATIO",
    "PARAMETER_GROUPS",
    "PROCESSING_CLASSES",
    "PROCESSING_VERSION",
    "ParameterGroup",
    "ProcessingOp",
    "apply_center_mask",
    "get_group",
    "get_processing",
    "interp_scale",
    "jpeg_roundtrip",
    "list_processing",
    "mask_box",
]
