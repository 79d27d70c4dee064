"""Test ids for encoder and dataset specs: short, readable, and unique within a run.

Two specs can shorten to the same id (``timm:resnet50@/a/w.pth`` and
``timm:resnet50@/b/w.pth`` are both ``timm:resnet50@w.pth``); records carry
the id, so a clash would mix two encoders' numbers. Later duplicates get
``#2``, ``#3``... The mapping depends only on the option values, so every
xdist worker computes the same one. Stdlib only (plugin load).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["dataset_ids", "encoder_ids", "unique_ids", "unique_specs"]


def unique_specs(specs: Sequence[str]) -> list[str]:
    """The specs in order, each once (a repeated option is not a second encoder)."""
    return list(dict.fromkeys(specs))


def unique_ids(specs: Sequence[str], short: Callable[[str], str]) -> dict[str, str]:
    """Spec -> id, with ``#N`` appended to the N-th spec sharing a short id."""
    seen: dict[str, int] = {}
    out: dict[str, str] = {}
    for spec in unique_specs(specs):
        base = short(spec)
        seen[base] = seen.get(base, 0) + 1
        out[spec] = base if seen[base] == 1 else f"{base}#{seen[base]}"
    return out


def _encoder_short(spec: str) -> str:
    from pytest_metatrace.encoders import EncoderSpecError, parse_spec

    try:
        return parse_spec(spec).short_id
    except EncoderSpecError:
        return spec  # reported properly at the end of collection


def encoder_ids(specs: Sequence[str]) -> dict[str, str]:
    """Spec -> unique test id for ``--metatrace-encoder`` values."""
    return unique_ids(specs, _encoder_short)


def dataset_ids(specs: Sequence[str]) -> dict[str, str]:
    """Spec -> unique test id for ``--metatrace-data`` values."""
    from pytest_metatrace.data.sources import dataset_id

    return unique_ids(specs, dataset_id)
