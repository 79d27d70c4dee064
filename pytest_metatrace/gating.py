"""Thresholds that do not flake: resolve, compare the interval's lower end, explain.

A threshold has a *key* (``probe.jpeg``, ``knn.sharpening.pos_same_gap``,
``drift.jpeg75_420``) and a *value*:

- ``0.6`` or ``60%``: an absolute level (accuracy, gap, distance);
- ``chance+0.3`` or ``chance+30%``: a gain over the record's chance level.

Sources, highest priority first: ``--metatrace-threshold KEY=VALUE`` on the
command line, a ``metatrace_threshold`` marker on the test, the
``metatrace_threshold`` ini lines, then the built-in defaults below. Keys may
use shell wildcards (``probe.*``); the most specific matching pattern of the
highest-priority source wins (an exact key beats any wildcard).

A gate fails only when the trace is *significantly* above its threshold: the
lower end of the record's 95% confidence interval exceeds it (a one-sided
test at 97.5%). A trace whose interval straddles the threshold passes, so a
gate does not fail at random on a borderline encoder; the report shows the
interval so that a person sees how close it was.

This module is imported at plugin load: stdlib only.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pytest_metatrace.results import GateOutcome, Record
from pytest_metatrace.results import format_measure as _fmt

__all__ = [
    "DEFAULT_THRESHOLDS",
    "ThresholdError",
    "ThresholdSpec",
    "evaluate_gate",
    "parse_threshold",
    "parse_threshold_lines",
    "resolve_threshold",
]


class ThresholdError(ValueError):
    """A threshold that cannot be parsed; the message shows the accepted forms."""


#: Built-in thresholds and why (README "Thresholds" repeats this table).
#: Probes - the paper (Sec. 3.1, Fig. 4) finds CLIP-type encoders above 80% on
#: JPEG, sharpening and resizing, and self-supervised DINO/DINOv2 the weakest;
#: the defaults sit between, so CLIP-level traces fail and weak ones pass.
#: Interpolation is the hardest parameter everywhere, hence the lower bar.
#: kNN gaps - a processing change should not move semantic kNN accuracy by
#: more than 5 points in either direction (paper Sec. 4.1, Fig. 8).
#: Retrieval gaps (different - same databases, docs/protocol.md §6) - the paper
#: (Sec. 4.2, Fig. 10) sees CLIP-type encoders fall from near-perfect recall@1
#: to below 0.85, a gap above 0.15; a gap of 0.10 is a trace a near-duplicate
#: search feels (one query in ten lost to a same-camera photo). The margin gap
#: is in cosine similarity: 0.05 is a sixth of lite0's mean whole-frame City100
#: margin (0.30); lite0's gaps are 0.004-0.009 on whole frames and 0.04-0.08 on
#: the 2% centre crops of the harder protocol (bench/README.md).
#: Acquisition probes - on centre-masked photos CLIP-type encoders tell a phone
#: from a camera at >70% against 50% chance (paper Sec. 3.2, Fig. 6); 0.65
#: fails that level and passes encoders near chance. The other targets get the
#: same gain over their own chance (chance+0.15).
#: Neighbour agreement at k = 10 - Table 2: CLIP ViT-L/14@336 70.1% (about 20
#: points over chance), SigLIP 58.6%, DINO 58.0%, ConvNeXt-L 56.8%, DINOv2
#: 54.0%; chance+0.10 fails CLIP-level agreement and passes the others.
DEFAULT_THRESHOLDS: Mapping[str, str] = {
    "probe.jpeg": "0.60",
    "probe.sharpening": "0.70",
    "probe.resizing": "0.70",
    "probe.interpolation": "0.50",
    "knn.*.pos_same_gap": "0.05",
    "knn.*.neg_same_gap": "0.05",
    "retrieval.recall_gap": "0.10",
    "retrieval.margin_gap": "0.05",
    "probe.smartphone": "0.65",
    "probe.make": "chance+0.15",
    "probe.model": "chance+0.15",
    "probe.model_smartphone": "chance+0.15",
    "probe.exposure": "chance+0.15",
    "probe.aperture": "chance+0.15",
    "probe.iso": "chance+0.15",
    "probe.focal_length": "chance+0.15",
    "agreement.*": "chance+0.10",
}

_SOURCE_ORDER = ("command line", "marker", "ini", "default")


@dataclass(frozen=True)
class ThresholdSpec:
    """A parsed threshold value."""

    text: str  #: as written
    value: float  #: the number
    relative_to_chance: bool  #: True for ``chance+X``

    def resolve(self, chance: float | None) -> float:
        """The absolute threshold for a record with this chance level."""
        if not self.relative_to_chance:
            return self.value
        if chance is None:
            raise ThresholdError(
                f"threshold {self.text!r} is relative to chance, but this record has no "
                "chance level; give an absolute value"
            )
        return chance + self.value


def _number(text: str, whole: str) -> float:
    text = text.strip()
    try:
        if text.endswith("%"):
            return float(text[:-1]) / 100.0
        return float(text)
    except ValueError:
        raise ThresholdError(
            f"cannot read threshold {whole!r}; use a number (0.6), a percentage (60%), "
            "or a gain over chance (chance+0.3, chance+30%)"
        ) from None


def parse_threshold(text: str | float) -> ThresholdSpec:
    """Parse ``0.6``, ``60%``, ``chance+0.3`` or ``chance+30%``."""
    if isinstance(text, (int, float)):
        return ThresholdSpec(str(text), float(text), False)
    raw = str(text).strip()
    compact = raw.replace(" ", "")
    if compact.lower().startswith("chance+"):
        return ThresholdSpec(raw, _number(compact[len("chance+") :], raw), True)
    return ThresholdSpec(raw, _number(compact, raw), False)


def parse_threshold_lines(lines: Iterable[str], source: str) -> dict[str, ThresholdSpec]:
    """Parse ``KEY=VALUE`` lines (command line or ini); errors name the source."""
    out: dict[str, ThresholdSpec] = {}
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise ThresholdError(
                f"{source}: threshold {line!r} must be KEY=VALUE, e.g. probe.jpeg=0.6"
            )
        key, value = line.split("=", 1)
        out[key.strip()] = parse_threshold(value)
    return out


def _specificity(pattern: str) -> tuple[int, int]:
    wild = sum(pattern.count(c) for c in "*?[")
    return (0 if wild else 1, len(pattern) - wild)


def _best_match(key: str, table: Mapping[str, ThresholdSpec]) -> tuple[str, ThresholdSpec] | None:
    matches = [p for p in table if fnmatch.fnmatchcase(key, p)]
    if not matches:
        return None
    best = max(matches, key=_specificity)
    return best, table[best]


def resolve_threshold(
    key: str, sources: Sequence[tuple[str, Mapping[str, ThresholdSpec]]]
) -> tuple[ThresholdSpec, str, str] | None:
    """Find the threshold for ``key``: ``(spec, source, pattern)`` or None if none applies.

    ``sources`` are ``(name, table)`` pairs in priority order.
    """
    for name, table in sources:
        hit = _best_match(key, table)
        if hit is not None:
            return hit[1], name, hit[0]
    return None


def evaluate_gate(
    record: Record,
    key: str,
    resolved: tuple[ThresholdSpec, str, str] | None,
    *,
    what: str,
) -> GateOutcome | None:
    """Compare ``record`` with its threshold; None when no threshold applies.

    ``what`` names the trace for the message, e.g. "JPEG compression trace".
    """
    if resolved is None:
        return None
    spec, source, pattern = resolved
    threshold = spec.resolve(record.chance)
    unit = record.unit
    if record.interval is not None:
        compared_value = float(record.interval["low"])
        compared = "interval low"
        level = float(record.interval.get("level", 0.95))
        measured = (
            f"{_fmt(record.value, unit)} ({100 * level:.0f}% CI "
            f"{_fmt(record.interval['low'], unit)} to {_fmt(record.interval['high'], unit)}"
        )
    else:
        compared_value = float(record.value)
        compared = "value"
        measured = f"{_fmt(record.value, unit)} (no interval"
    if record.chance is not None:
        measured += f", chance {_fmt(record.chance, unit)}"
    measured += ")"
    passed = not compared_value > threshold
    shown = _fmt(threshold, unit)
    if spec.relative_to_chance:
        shown += f" (= {spec.text})"
    verdict = "is not significantly above" if passed else "is significantly above"
    where = {
        "command line": f"--metatrace-threshold {pattern}={spec.text}",
        "marker": f"@pytest.mark.metatrace_threshold on the test ({pattern}={spec.text})",
        "ini": f"ini line `{pattern} = {spec.text}` under metatrace_threshold",
        "default": f"built-in default {pattern}={spec.text}",
    }[source]
    message = (
        f"{key}: the {what} of {record.encoder} on {record.dataset} {verdict} its threshold.\n"
        f"  measured {record.metric} {measured}\n"
        f"  threshold {shown}, from the {where}\n"
        f"  the gate fails only when the {'interval lower end' if record.interval else 'value'} "
        f"({_fmt(compared_value, unit)}) exceeds the threshold.\n"
        f"  To change it: --metatrace-threshold {key}=VALUE on the command line, a line "
        f"`{key} = VALUE` under `metatrace_threshold` in your ini file, or "
        f'@pytest.mark.metatrace_threshold({{"{key}": VALUE}}) on the test '
        "(VALUE: 0.6, 60%, or chance+0.3)."
    )
    return GateOutcome(
        key=key,
        threshold=threshold,
        spec=spec.text,
        source=source,
        compared=compared,
        passed=passed,
        message=message,
    )
