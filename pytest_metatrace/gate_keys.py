"""Which gate keys exist, and which threshold values make sense for them.

A threshold whose key matches no gate would be ignored silently, and one
whose value can never be exceeded (``1.5`` for an accuracy, ``inf``, ``nan``)
would pass every encoder: both are usage errors at start.

*Known keys.* A test module says which registered audit it is with the
``metatrace_audit`` marker (the audit's spec lists its gate keys), or
declares the gate keys it can produce with the ``metatrace_gates`` marker,
one shell pattern per key or family of keys::

    pytestmark = pytest.mark.metatrace_audit("processing_probe")
    pytestmark = pytest.mark.metatrace_gates("mycheck.accuracy", "mycheck.gap.*")

The keys of every registered audit are always known, so an ini file that
sets thresholds for every audit still works when one audit file runs alone.
A collected test that uses ``metatrace_record`` but declares neither could
gate anything: then unknown keys are not checked (values still are); a
marker brings the check back.

*Value ranges* come from the audits' gate families
(:class:`~pytest_metatrace.spec.GateFamily`): e.g. accuracies and agreements
are fractions in [0, 1] and take ``chance+X`` with X in [-1, 1]; gaps of
fractions lie in [-1, 1]; a pattern spanning several families gets the
widest range. Keys of user audits without a spec only need a finite value.

This module is imported at plugin load: pytest and the stdlib only.
"""

from __future__ import annotations

import difflib
import fnmatch
import math
from collections.abc import Iterable, Mapping, Sequence

import pytest

from pytest_metatrace.gating import (
    ThresholdError,
    ThresholdSpec,
    parse_threshold,
    parse_threshold_lines,
)
from pytest_metatrace.spec import GateFamily

__all__ = [
    "AUDIT_MARKER",
    "GATE_MARKER",
    "SESSION_THRESHOLDS",
    "check_collected_thresholds",
    "check_threshold_keys",
    "check_threshold_value",
    "marker_thresholds",
    "patterns_overlap",
    "session_thresholds",
]

#: The marker with which an audit declares the gate keys it produces.
GATE_MARKER = "metatrace_gates"
#: The marker with which a test module says which registered audit it is.
AUDIT_MARKER = "metatrace_audit"

_WILD = "*?["


def _literal_prefix(pattern: str) -> str:
    cut = min((pattern.index(c) for c in _WILD if c in pattern), default=len(pattern))
    return pattern[:cut]


def patterns_overlap(a: str, b: str) -> bool:
    """Whether some key could match both shell patterns (exact for literals, by prefix else)."""
    if fnmatch.fnmatchcase(a, b) or fnmatch.fnmatchcase(b, a):
        return True
    if any(c in a for c in _WILD) and any(c in b for c in _WILD):
        pa, pb = _literal_prefix(a), _literal_prefix(b)
        return pa.startswith(pb) or pb.startswith(pa)
    return False


def _where(source: str, pattern: str, spec: ThresholdSpec) -> str:
    return {
        "command line": f"--metatrace-threshold {pattern}={spec.text}",
        "ini": f"ini line `{pattern} = {spec.text}` under metatrace_threshold",
        "marker": f"@pytest.mark.metatrace_threshold({{{pattern!r}: {spec.text!r}}})",
    }.get(source, f"{source}: {pattern}={spec.text}")


def check_threshold_value(
    pattern: str, spec: ThresholdSpec, source: str, families: Sequence[GateFamily]
) -> None:
    """Raise :class:`ThresholdError` for a non-finite or out-of-range threshold of ``pattern``.

    ``families`` are the registered audits' gate families (their ranges).
    """
    where = _where(source, pattern, spec)
    if not math.isfinite(spec.value):
        raise ThresholdError(
            f"{where}: the threshold must be a finite number, got {spec.text!r}; a gate with "
            "an infinite or NaN threshold can never fail"
        )
    kinds = [k for k in families if patterns_overlap(pattern, k.pattern)]
    if not kinds:
        return  # a user audit's key: any finite value
    if spec.relative_to_chance:
        # A pattern spanning several kinds (``*``, e.g. a bare marker value on
        # a probe test) is fine when any of them has a chance level.
        if not any(k.chance for k in kinds):
            names = ", ".join(k.pattern for k in kinds)
            with_chance = ", ".join(
                sorted({k.pattern.split(".")[0] + ".*" for k in families if k.chance})
            )
            raise ThresholdError(
                f"{where}: chance+X applies to keys with a chance level ({with_chance}) only, "
                f"but this key matches {names}, which has none; give an absolute value"
            )
        if not -1.0 <= spec.value <= 1.0:
            raise ThresholdError(
                f"{where}: a gain over chance must lie between -1 and 1 (-100% to 100%), got "
                f"{spec.value:g}"
            )
        return
    low, high = min(k.low for k in kinds), max(k.high for k in kinds)
    if not low <= spec.value <= high:
        measures = "; ".join(f"{k.pattern} is {k.measures}" for k in kinds)
        raise ThresholdError(
            f"{where}: {spec.value:g} is outside the range of this key ({measures}: thresholds "
            f"from {low:g} to {high:g}, e.g. 0.6 or 60% for an accuracy); such a gate could "
            "never fail"
        )


def check_threshold_keys(
    tables: Sequence[tuple[str, Mapping[str, ThresholdSpec]]],
    known: Iterable[str],
) -> None:
    """Raise :class:`ThresholdError` for the first key matching none of the ``known`` patterns.

    ``tables`` are ``(source, {pattern: spec})`` pairs; ``known`` holds the
    declared gate keys and patterns of the collected audits.
    """
    known_list = sorted(set(known))
    for source, table in tables:
        for pattern, spec in table.items():
            if pattern == "*" or any(patterns_overlap(pattern, k) for k in known_list):
                continue
            close = difflib.get_close_matches(pattern, known_list, n=3, cutoff=0.6)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ThresholdError(
                f"{_where(source, pattern, spec)}: {pattern!r} matches no gate key of the "
                f"collected audits, so it would be ignored.{hint} Known keys: "
                f"{', '.join(known_list)}. A user audit declares its keys with "
                f"@pytest.mark.{GATE_MARKER}('KEY', ...) (README, Thresholds)."
            )


# --------------------------------------------------------------------------------------
# The checks at start: values at configure, keys at collection


_Table = dict[str, ThresholdSpec]
#: The session's (command line, ini, default) thresholds, parsed and checked at configure.
SESSION_THRESHOLDS = pytest.StashKey[tuple[_Table, _Table, _Table]]()


def session_thresholds(config: pytest.Config) -> tuple[_Table, _Table, _Table]:
    """The (command line, ini, default) thresholds, parsed and value-checked once per session.

    The defaults are the registered audits' (their specs' gate families).
    Raises :class:`pytest.UsageError` (exit status 4) on a bad line or value.
    """
    from pytest_metatrace.registry import session_registry

    cached = config.stash.get(SESSION_THRESHOLDS, None)
    if cached is not None:
        return cached
    registry = session_registry(config)
    families = registry.gates()
    try:
        cli = parse_threshold_lines(
            config.getoption("metatrace_threshold", default=None) or [], "--metatrace-threshold"
        )
        ini = parse_threshold_lines(config.getini("metatrace_threshold") or [], "ini")
        for source, table in (("command line", cli), ("ini", ini)):
            for pattern, spec in table.items():
                check_threshold_value(pattern, spec, source, families)
    except ThresholdError as exc:
        raise pytest.UsageError(str(exc)) from None
    defaults = {k: parse_threshold(v) for k, v in registry.default_thresholds().items()}
    config.stash[SESSION_THRESHOLDS] = (cli, ini, defaults)
    return cli, ini, defaults


def marker_thresholds(mark: pytest.Mark) -> dict[str, ThresholdSpec]:
    """The ``{pattern: spec}`` of one ``metatrace_threshold`` marker (a bare value is ``*``)."""
    out: dict[str, ThresholdSpec] = {}
    for arg in mark.args:
        if isinstance(arg, dict):
            out.update({str(k): parse_threshold(v) for k, v in arg.items()})
        else:
            out["*"] = parse_threshold(arg)
    out.update({str(k): parse_threshold(v) for k, v in mark.kwargs.items()})
    return out


def check_collected_thresholds(config: pytest.Config, items: Sequence[pytest.Item]) -> None:
    """Check every threshold against the gate keys the collected audits declare.

    Called at collection, before ``-k`` / ``-m`` deselect anything, so a key
    of an audit left out by ``-k`` is still known. Raises
    :class:`pytest.UsageError` on an unknown key, an unknown audit name or a
    bad marker value.
    """
    from pytest_metatrace.registry import session_registry
    from pytest_metatrace.spec import AuditSpecError

    registry = session_registry(config)
    families = registry.gates()
    cli, ini, _ = session_thresholds(config)
    known: set[str] = set(registry.gate_keys())
    undeclared: list[str] = []
    markers: list[tuple[str, _Table]] = []
    try:
        for item in items:
            for mark in item.iter_markers("metatrace_threshold"):
                table = marker_thresholds(mark)
                for pattern, spec in table.items():
                    check_threshold_value(pattern, spec, "marker", families)
                markers.append(("marker", table))
            declared = [str(p) for m in item.iter_markers(GATE_MARKER) for p in m.args]
            audits = [str(a) for m in item.iter_markers(AUDIT_MARKER) for a in m.args]
            for name in audits:
                declared.extend(registry.gate_keys(name))
            known.update(declared)
            if not (declared or audits) and "metatrace_record" in getattr(item, "fixturenames", ()):
                undeclared.append(item.nodeid)
    except (ThresholdError, AuditSpecError) as exc:
        raise pytest.UsageError(f"{exc}") from None
    tolerances = _tolerance_table(config)
    given = [cli, ini, *(t for _, t in markers), *(t for _, t in tolerances)]
    if undeclared or not any(given):
        # A test that records without declaring its keys could gate any key.
        return
    try:
        check_threshold_keys(
            [("command line", cli), ("ini", ini), *markers, *tolerances], sorted(known)
        )
    except ThresholdError as exc:
        raise pytest.UsageError(str(exc)) from None


def _tolerance_table(config: pytest.Config) -> list[tuple[str, _Table]]:
    from pytest_metatrace.baseline import BaselineError, parse_tolerances
    from pytest_metatrace.settings import get_settings

    try:
        pairs = parse_tolerances(get_settings(config).baseline_tolerance)
    except BaselineError:
        return []  # reported by the baseline's own check
    table = {p: ThresholdSpec(f"{v:g}", v, False) for p, v in pairs}
    return [("--metatrace-baseline-tolerance", table)]
