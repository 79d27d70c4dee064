"""Thresholds that do not flake: resolve, compare the interval's lower end, explain.

A threshold has a *key* (``probe.jpeg``, ``knn.sharpening.pos_same_gap``,
``drift.jpeg75_420``) and a *value*:

- ``0.6`` or ``60%``: an absolute level (accuracy, gap, distance);
- ``chance+0.3`` or ``chance+30%``: a gain over the record's chance level.

Sources, highest priority first: ``--metatrace-threshold KEY=VALUE`` on the
command line, a ``metatrace_threshold`` marker on the test, the
``metatrace_threshold`` ini lines, then the defaults the audits declare in
their specs (:class:`~pytest_metatrace.spec.GateFamily`, each with its reason). Keys may
use shell wildcards (``probe.*``); the most specific matching pattern of the
highest-priority source wins (an exact key beats any wildcard).

A gate fails only when the trace is *significantly* above its threshold: the
lower end of the record's 95% gate interval
(:func:`~pytest_metatrace.analysis.intervals.gate_interval`, valid at every
number of test images) exceeds it, a one-sided test at 97.5%. A trace whose
interval straddles the threshold passes, so a gate does not fail at random on
a borderline encoder; the report shows the interval so that a person sees how
close it was. With too few test images for any result to exceed the
threshold the gate is *undecided*: neither passed nor failed, and its test is
skipped with the number of images it needs.

This module is imported at plugin load: stdlib only.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from pytest_metatrace._format import format_apart
from pytest_metatrace._format import format_measure as _fmt
from pytest_metatrace.results import GateOutcome, Record

__all__ = [
    "ThresholdError",
    "ThresholdSpec",
    "evaluate_gate",
    "parse_threshold",
    "parse_threshold_lines",
    "resolve_threshold",
]


class ThresholdError(ValueError):
    """A threshold that cannot be parsed; the message shows the accepted forms."""


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


def _value_forms(record: Record) -> str:
    """The threshold forms that make sense for ``record``'s unit and chance level."""
    if record.unit != "fraction":
        return f"a number in {record.unit}, e.g. 0.05"
    if record.chance is None:
        return "0.1 or 10%, in the record's unit"
    return "0.6, 60%, or chance+0.3"


def evaluate_gate(
    record: Record,
    key: str,
    resolved: tuple[ThresholdSpec, str, str] | None,
    *,
    what: str,
    min_n: Callable[[float], int | None] | None = None,
    direction: str = "above",
) -> GateOutcome | None:
    """Compare ``record`` with its threshold; None when no threshold applies.

    ``what`` names the trace for the message, e.g. "JPEG compression trace".
    ``min_n(threshold)`` gives the fewest test images at which the gate can fail
    (None: no number can, the threshold is at or above the highest possible
    score, so the gate passes whatever the data); with fewer than that in
    ``record.scores`` the outcome is *undecided* ("too few test images to
    decide"), neither passed nor failed. ``direction="below"`` (a gate
    family whose smaller values are the stronger trace, e.g. the smallest
    detectable step) fails when the interval's upper end, or the value, is
    below the threshold; a missing value (nothing detected) passes.
    """
    if direction == "below":
        return _evaluate_below(record, key, resolved, what=what)
    if resolved is None:
        return None
    spec, source, pattern = resolved
    threshold = spec.resolve(record.chance)
    n = len(record.scores) if record.scores is not None else None
    need = min_n(threshold) if min_n is not None and n is not None else None
    if n is not None and need is not None and n < need:
        return _undecided(record, key, spec, source, pattern, threshold, what=what, n=n, need=need)
    unit = record.unit
    if record.interval is not None:
        compared_value = float(record.interval["low"])
        compared = "interval low"
        level = float(record.interval.get("level", 0.95))
        low, high = (_fmt(record.interval[k], unit) for k in ("low", "high"))
        measured = f"{_fmt(record.value, unit)} ({100 * level:.0f}% CI {low} to {high}"
    else:
        compared_value = float(record.value)
        compared = "value"
        measured = f"{_fmt(record.value, unit)} (no interval"
    if record.chance is not None:
        measured += f", chance {_fmt(record.chance, unit)}"
    measured += ")"
    passed = not compared_value > threshold
    # enough digits that the printed comparison reads as the verdict does
    compared_text, shown = format_apart(compared_value, threshold, unit)
    if spec.relative_to_chance:
        shown += f" (= {spec.text})"
    verdict = "is not significantly above" if passed else "is significantly above"
    where = _where(source, pattern, spec)
    message = (
        f"{key}: the {what} of {record.encoder} on {record.dataset} {verdict} its threshold.\n"
        f"  measured {record.metric} {measured}\n"
        f"  threshold {shown}, from the {where}\n"
        f"  the gate fails only when the {'interval lower end' if record.interval else 'value'} "
        f"({compared_text}) exceeds the threshold.\n" + _how_to_change(key, record)
    )
    return GateOutcome(
        key=key,
        threshold=threshold,
        spec=spec.text,
        source=source,
        compared=compared,
        passed=passed,
        message=message,
        min_n=need,
    )


def _evaluate_below(
    record: Record, key: str, resolved: tuple[ThresholdSpec, str, str] | None, *, what: str
) -> GateOutcome | None:
    """:func:`evaluate_gate` for families where a smaller value is the stronger trace."""
    if resolved is None:
        return None
    spec, source, pattern = resolved
    threshold = spec.resolve(record.chance)
    unit = record.unit
    value = float(record.value)
    if record.interval is not None:
        compared_value, compared = float(record.interval["high"]), "interval high"
    else:
        compared_value, compared = value, "value"
    found = value == value  # NaN: nothing was detected
    passed = not (found and compared_value < threshold)
    measured = _fmt(value, unit) if found else "none (no step of the grid was detected)"
    compared_text, shown = format_apart(compared_value, threshold, unit)
    verdict = "is not below" if passed else "is below"
    message = (
        f"{key}: the {what} of {record.encoder} on {record.dataset} {verdict} its threshold "
        "(here a smaller value is the stronger trace).\n"
        f"  measured {record.metric} {measured}\n"
        f"  threshold {shown}, from the {_where(source, pattern, spec)}\n"
        f"  the gate fails only when the {compared} ({compared_text if found else 'none'}) "
        "is below the threshold.\n" + _how_to_change(key, record)
    )
    return GateOutcome(
        key=key,
        threshold=threshold,
        spec=spec.text,
        source=source,
        compared=compared,
        passed=passed,
        message=message,
        direction="below",
    )


def _how_to_change(key: str, record: Record) -> str:
    """The last sentence of a gate's message: the three places that set its threshold."""
    return (
        f"  To change it: --metatrace-threshold {key}=VALUE on the command line, a line "
        f"`{key} = VALUE` under `metatrace_threshold` in your ini file, or "
        f'@pytest.mark.metatrace_threshold({{"{key}": VALUE}}) on the test '
        f"(VALUE: {_value_forms(record)})."
    )


def _where(source: str, pattern: str, spec: ThresholdSpec) -> str:
    return {
        "command line": f"--metatrace-threshold {pattern}={spec.text}",
        "marker": f"@pytest.mark.metatrace_threshold on the test ({pattern}={spec.text})",
        "ini": f"ini line `{pattern} = {spec.text}` under metatrace_threshold",
        "default": f"built-in default {pattern}={spec.text}",
    }[source]


def _undecided(
    record: Record,
    key: str,
    spec: ThresholdSpec,
    source: str,
    pattern: str,
    threshold: float,
    *,
    what: str,
    n: int,
    need: int,
) -> GateOutcome:
    """The outcome of a gate that cannot fail at this number of test images."""
    unit = record.unit
    shown = _fmt(threshold, unit)
    if spec.relative_to_chance:
        shown += f" (= {spec.text})"
    head = f"too few test images to decide: {n}, need at least {need}"
    fix = (
        f"give at least {need} test images (a larger dataset, --metatrace-test-fraction or "
        "--metatrace-test-per-class) or a lower threshold"
    )
    message = (
        f"{key}: {head}.\n"
        f"  measured {record.metric} {_fmt(record.value, unit)} of {record.encoder} on "
        f"{record.dataset}, the {what}\n"
        f"  threshold {shown}, from the {_where(source, pattern, spec)}\n"
        f"  with {n} test image(s) even a perfect score keeps the interval's lower end at or "
        f"below the threshold, so the gate can neither fail nor vouch for the encoder; {fix}."
    )
    return GateOutcome(
        key=key,
        threshold=threshold,
        spec=spec.text,
        source=source,
        compared="interval low",
        passed=False,
        message=message,
        decided=False,
        min_n=need,
    )
