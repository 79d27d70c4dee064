"""The four parameter groups of docs/protocol.md §1 (number of classes = chance 1/M)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["PARAMETER_GROUPS", "ParameterGroup", "get_group"]


@dataclass(frozen=True)
class ParameterGroup:
    """A processing parameter whose value a probe tries to read back."""

    name: str  #: short id used in test ids, thresholds and the report
    title: str  #: human-readable name
    classes: tuple[str, ...]  #: processing class names; the first is the reference class

    @property
    def chance(self) -> float:
        """Chance-level accuracy, 1/M for M classes."""
        return 1.0 / len(self.classes)


PARAMETER_GROUPS: Mapping[str, ParameterGroup] = {
    g.name: g
    for g in (
        ParameterGroup(
            "jpeg",
            "JPEG compression",
            ("jpeg75_420", "jpeg75_444", "jpeg85_420", "jpeg85_444", "jpeg95_420", "jpeg95_444"),
        ),
        # jpeg95_444 is the "none" class of sharpening and resizing: every
        # non-JPEG operation ends with that re-encode.
        ParameterGroup("sharpening", "Sharpening", ("jpeg95_444", "sharpen2", "sharpen4")),
        ParameterGroup("resizing", "Resizing", ("jpeg95_444", "resize_half", "resize_double")),
        ParameterGroup(
            "interpolation",
            "Interpolation",
            ("interp_bilinear", "interp_bicubic", "interp_lanczos", "interp_box"),
        ),
    )
}


def get_group(name: str) -> ParameterGroup:
    """Look up a parameter group by name, naming the known ones on error."""
    try:
        return PARAMETER_GROUPS[name]
    except KeyError:
        raise KeyError(
            f"unknown parameter group {name!r}; known: {', '.join(PARAMETER_GROUPS)}"
        ) from None
