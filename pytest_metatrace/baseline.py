"""Baselines: fail a release when a trace grew *significantly* against the encoder you ship.

``--metatrace-save-baseline=PATH`` writes the run's JSON document (every
record with its interval, its per-test-image ``scores`` / ``score_ids``, the
encoder and dataset fingerprints) plus a ``baseline`` header holding the
protocol version and the protocol settings. ``--metatrace-baseline=PATH``
compares every gated record of a later run with the matching baseline record
(same audit, metric, parameter and dataset):

- **paired** (both records carry per-image scores): the 95% percentile
  bootstrap interval of mean(candidate - baseline) over the *same* test
  images, matched by ``score_ids``;
- **unpaired** (either lacks scores, both have intervals): the conservative
  interval ``[cand.low - base.high, cand.high - base.low]``;
- otherwise the record is *not compared* (a raw difference would flake).

The gate fails when the lower end of that interval exceeds the tolerance
(``--metatrace-baseline-tolerance``, default 0, in the record's unit): the
trace grew significantly. A trace that shrank, or whose change is within
noise, passes. Baselines and thresholds work together: a record can fail
either.

A baseline measured under another protocol version or other protocol
settings is refused before any work (:class:`BaselineError` -> usage error);
one measured on other data (dataset fingerprint or test images) is refused
when the record is compared. Another *encoder* fingerprint is the point of a
baseline and is allowed.

Imported at plugin load: stdlib only (numpy inside functions).
"""

from __future__ import annotations

import errno
import fnmatch
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from pytest_metatrace._files import TextFileError, atomic_write_text, read_text_file
from pytest_metatrace._format import format_apart
from pytest_metatrace._format import format_measure as _fmt
from pytest_metatrace.gating import ThresholdError, parse_threshold
from pytest_metatrace.results import Record, jsonable
from pytest_metatrace.settings import protocol_option_names
from pytest_metatrace.spec import GateFamily

__all__ = [
    "BASELINE_FORMAT",
    "BASELINE_KIND",
    "PROTOCOL_VERSION",
    "Baseline",
    "BaselineComparison",
    "BaselineError",
    "active_baseline",
    "baseline_choices",
    "baseline_document",
    "check_settings",
    "compare_record",
    "gate_against_baseline",
    "load_baseline",
    "parse_tolerances",
    "resolve_tolerance",
    "save_baseline",
    "save_session_baseline",
    "saved_baseline_path",
]

#: Version of the measurement protocol (docs/protocol.md); bump when numbers change meaning.
PROTOCOL_VERSION = 1
#: ``kind`` of the baseline header, and its format version.
BASELINE_KIND = "pytest-metatrace baseline"
BASELINE_FORMAT = 1


class BaselineError(ValueError):
    """A baseline that cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class Baseline:
    """A loaded baseline file."""

    path: Path  #: where it was read from
    protocol_version: int  #: :data:`PROTOCOL_VERSION` of the run that wrote it
    settings: dict[str, Any]  #: the :data:`PROTOCOL_SETTINGS` of that run
    records: list[dict[str, Any]]  #: its records (``Record.to_dict()``)
    encoders: list[dict[str, Any]]  #: its encoder descriptions

    def match(self, record: Record) -> dict[str, Any] | None:
        """The baseline record to compare ``record`` with, or None.

        Same audit, metric and parameter. Encoder and dataset are matched by
        id when the baseline has that id, else the baseline must hold exactly
        one of them: a baseline of one dataset is compared with a run on
        another (and refused by fingerprint), never silently skipped.
        """
        hits = [
            r
            for r in self.records
            if r.get("audit") == record.audit
            and r.get("metric") == record.metric
            and r.get("parameter") == record.parameter
        ]
        for field_name in ("dataset", "encoder"):
            wanted = getattr(record, field_name)
            same = [r for r in hits if r.get(field_name) == wanted]
            if same:
                hits = same
                continue
            present = sorted({str(r.get(field_name)) for r in hits})
            if len(present) > 1:
                raise BaselineError(
                    f"{self.path} holds {record.audit}/{record.metric} of several {field_name}s "
                    f"({', '.join(present)}) and none is {wanted!r}; save a baseline of one "
                    f"{field_name}, or give the candidate the baseline's {field_name} id"
                )
        return hits[0] if hits else None


@dataclass(frozen=True)
class BaselineComparison:
    """A record compared with its baseline record."""

    key: str  #: the gate key, e.g. ``drift.jpeg75_420``
    baseline_path: str  #: the baseline file
    baseline_encoder: str  #: encoder id in the baseline
    baseline_fingerprint: str | None  #: its fingerprint
    baseline_value: float | None  #: the baseline's point estimate (None: not measurable)
    baseline_interval: dict[str, Any] | None  #: the baseline's interval
    difference: float  #: candidate value - baseline value
    low: float | None  #: lower end of the interval on the difference (None: not compared)
    high: float | None  #: upper end
    level: float  #: confidence level of that interval
    #: ``paired betting`` (or ``paired clopper-pearson``): the gate interval of the paired
    #: differences; ``unpaired intervals`` or ``not compared``
    method: str
    n_paired: int  #: test images in the paired comparison (0 otherwise)
    tolerance: float  #: the gate fails when ``low`` exceeds it
    passed: bool  #: False when the trace grew significantly
    message: str  #: one-paragraph explanation, used as the assertion message
    #: False when ``--metatrace-gate=thresholds`` makes this check reported, not gating
    gating: bool = True
    tolerance_source: str = ""  #: where the tolerance came from (an option, a family default)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``Record.baseline``)."""
        out: dict[str, Any] = jsonable(asdict(self))
        return out


# --------------------------------------------------------------------------- files


def baseline_document(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The run's JSON document with the baseline header added."""
    options = doc.get("run", {}).get("options", {})
    return {
        **doc,
        "baseline": {
            "kind": BASELINE_KIND,
            "format": BASELINE_FORMAT,
            "protocol_version": PROTOCOL_VERSION,
            "settings": {name: options.get(name) for name in protocol_option_names()},
        },
    }


def save_baseline(path: Path, doc: Mapping[str, Any]) -> Path:
    """Write ``doc`` as a baseline file at ``path`` (atomically); returns the path.

    Raises :class:`OSError` (``IsADirectoryError`` for a folder); no temporary
    file is left behind.
    """
    if path.is_dir():
        raise IsADirectoryError(
            errno.EISDIR, f"it is a folder; give a file path, e.g. {path / 'baseline.json'}"
        )
    text = json.dumps(baseline_document(doc), indent=1, sort_keys=True, allow_nan=False)
    return atomic_write_text(path, text)


def _is_number(value: Any) -> bool:
    # bool is an int subclass; a True in a number slot is a hand edit, not a 1.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number_problem(value: Any, *, allow_null: bool) -> str | None:
    """Why ``value`` is not a finite number (None when it is, or is an allowed null)."""
    if value is None:
        return None if allow_null else "is missing (null)"
    if not _is_number(value):
        return f"is {type(value).__name__} {json.dumps(value)[:40]}, not a number"
    if not math.isfinite(value):
        return f"is {value!r}, not a finite number"
    return None


def _record_problem(record: Mapping[str, Any]) -> str | None:
    """The first value of a baseline record a comparison would read that is unusable."""
    problem = _number_problem(record.get("value"), allow_null=True)
    if problem:
        return f"its value {problem}"
    interval = record.get("interval")
    if interval is not None:
        if not isinstance(interval, Mapping):
            return f"its interval is {type(interval).__name__}, not an object with low and high"
        for end in ("low", "high"):
            problem = _number_problem(interval.get(end), allow_null=True)
            if problem:
                return f"its interval's {end} {problem}"
    scores, ids = record.get("scores"), record.get("score_ids")
    if scores is not None or ids is not None:
        if not isinstance(scores, list) or not isinstance(ids, list):
            return "its scores and score_ids are not two lists"
        if len(scores) != len(ids):
            return f"it has {len(scores)} scores but {len(ids)} score_ids"
        for k, score in enumerate(scores):
            problem = _number_problem(score, allow_null=False)
            if problem:
                return f"its score {k} (image {str(ids[k])[:40]!r}) {problem}"
        if not all(isinstance(i, str) for i in ids):
            return "its score_ids are not all text"
    return None


def _describe_record(index: int, record: Mapping[str, Any]) -> str:
    parts = [str(record.get(k)) for k in ("audit", "metric", "parameter") if record.get(k)]
    where = ", ".join(f"{k} {record.get(k)}" for k in ("encoder", "dataset") if record.get(k))
    return f"record {index} ({'/'.join(parts) or 'no audit'}{'; ' + where if where else ''})"


def load_baseline(path: Path) -> Baseline:
    """Read a file written by ``--metatrace-save-baseline``; :class:`BaselineError` if unusable.

    Every record's numbers are checked here, before any work: a NaN, an
    infinity or a string where a comparison reads a number would switch the
    comparison off (a NaN is never greater than the tolerance) or crash it.
    """
    fix = "save one with `pytest --metatrace-save-baseline=PATH ...` on the encoder you ship"
    try:
        text = read_text_file(path, what="baseline", fix=fix)
    except TextFileError as exc:
        message = str(exc)
        raise BaselineError(message if message.endswith(fix) else f"{message}; {fix}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BaselineError(f"baseline {path} is not JSON ({exc}); {fix}") from None
    except RecursionError:
        raise BaselineError(f"baseline {path} is not JSON (nested too deeply); {fix}") from None
    header = data.get("baseline") if isinstance(data, dict) else None
    if not isinstance(header, dict) or header.get("kind") != BASELINE_KIND:
        raise BaselineError(
            f"{path} is not a pytest-metatrace baseline (no 'baseline' header; a "
            f"--metatrace-json document is not enough: it lacks the protocol settings); {fix}"
        )
    if header.get("format") != BASELINE_FORMAT:
        raise BaselineError(
            f"baseline {path} has format {header.get('format')!r}; this pytest-metatrace reads "
            f"format {BASELINE_FORMAT}; {fix}"
        )
    version = header.get("protocol_version", -1)
    settings = header.get("settings") or {}
    records = data.get("records", [])
    encoders = data.get("encoders", [])
    if not isinstance(version, int) or isinstance(version, bool):
        raise BaselineError(
            f"baseline {path}: its protocol_version {version!r} is not a whole number; {fix}"
        )
    for name, value, kind in (
        ("settings", settings, dict),
        ("records", records, list),
        ("encoders", encoders, list),
    ):
        if not isinstance(value, kind):
            raise BaselineError(
                f"baseline {path}: its {name} is {type(value).__name__}, not "
                f"{'an object' if kind is dict else 'a list'}; {fix}"
            )
    for i, record in enumerate(records):
        problem = "is not an object" if not isinstance(record, dict) else _record_problem(record)
        if problem:
            shown = _describe_record(i, record if isinstance(record, dict) else {})
            raise BaselineError(
                f"baseline {path}: {shown}: {problem}; the comparison cannot use it. "
                f"Re-save the baseline (`pytest --metatrace-save-baseline=PATH ...`) instead of "
                "editing it"
            )
    return Baseline(
        path=path,
        protocol_version=version,
        settings=dict(settings),
        records=records,
        encoders=[e for e in encoders if isinstance(e, dict)],
    )


def check_settings(baseline: Baseline, options: Mapping[str, Any]) -> None:
    """Refuse a baseline of another protocol version or other protocol settings."""
    redo = (
        "re-save the baseline under this run's settings (`--metatrace-save-baseline`) "
        "or run with the baseline's settings"
    )
    if baseline.protocol_version != PROTOCOL_VERSION:
        raise BaselineError(
            f"baseline {baseline.path} was measured under protocol version "
            f"{baseline.protocol_version}; this pytest-metatrace measures version "
            f"{PROTOCOL_VERSION}, so the numbers are not comparable; {redo}"
        )
    diffs = [
        f"{name}: baseline {baseline.settings.get(name)!r}, this run {options.get(name)!r}"
        for name in protocol_option_names()
        if baseline.settings.get(name) != options.get(name)
    ]
    if diffs:
        raise BaselineError(
            f"baseline {baseline.path} was measured with other protocol settings "
            f"({'; '.join(diffs)}), so its numbers are not comparable; {redo}"
        )


def parse_tolerances(lines: Sequence[str]) -> list[tuple[str, float]]:
    """``VALUE`` (every key) or ``KEY_PATTERN=VALUE`` items; later items win ties."""
    out: list[tuple[str, float]] = []
    for line in lines:
        pattern, _, value = line.rpartition("=")
        try:
            spec = parse_threshold(value)
        except ThresholdError:
            spec = None
        if spec is not None and not math.isfinite(spec.value):
            raise BaselineError(
                f"--metatrace-baseline-tolerance {line!r}: an infinite or NaN tolerance can never "
                "fail, so it switches the comparison off; use a finite non-negative number in "
                "the record's unit (0.02, 2%), e.g. probe.*=0.02"
            )
        if spec is None or spec.relative_to_chance or spec.value < 0:
            raise BaselineError(
                f"--metatrace-baseline-tolerance {line!r}: use VALUE or KEY=VALUE with a "
                "non-negative number in the record's unit (0.02, 2%), e.g. probe.*=0.02"
            )
        out.append((pattern.strip() or "*", spec.value))
    return out


def resolve_tolerance(
    key: str, tolerances: Sequence[tuple[str, float]], families: Sequence[GateFamily]
) -> tuple[float, str]:
    """``(tolerance, where it came from)`` of ``key``: the user's, else its gate family's.

    A ``--metatrace-baseline-tolerance`` item that matches ``key`` wins (an
    exact key over a pattern, a later item over an earlier one); otherwise the
    most specific gate family whose pattern matches gives its default
    (:attr:`~pytest_metatrace.spec.GateFamily.tolerance`); a key of no family gets 0.
    """
    hits = [(p, v) for p, v in tolerances if fnmatch.fnmatchcase(key, p)]
    if hits:
        exact = [(p, v) for p, v in hits if p == key]
        pattern, value = exact[-1] if exact else hits[-1]
        return value, f"--metatrace-baseline-tolerance {pattern}={value:g}"
    matching = [f for f in families if fnmatch.fnmatchcase(key, f.pattern)]
    if not matching:
        return 0.0, "no gate family declares this key: tolerance 0"
    family = max(matching, key=lambda f: len(f.pattern) - sum(map(f.pattern.count, "*?[")))
    why = f": {family.tolerance_reason}" if family.tolerance_reason else ""
    return family.tolerance, f"built-in default for {family.pattern}{why}"


# --------------------------------------------------------------------------- comparing


def _digits_of(text: str, unit: str) -> int | None:
    """The digits :func:`format_apart` chose (decimals of a fraction), to print alike."""
    if unit != "fraction":
        return None
    number = text.split()[0].rstrip("%")
    return len(number.split(".", 1)[1]) if "." in number else 0


def _fmt_interval(interval: Mapping[str, Any] | None, unit: str) -> str:
    ends = _ends(interval)
    if ends is None:
        return "no interval"
    return f"CI {_fmt(ends[0], unit)} to {_fmt(ends[1], unit)}"


def _finite(value: Any) -> float | None:
    """``value`` as a finite float, or None (null, NaN or infinite)."""
    if not _is_number(value) or not math.isfinite(value):
        return None
    return float(value)


def _ends(interval: Mapping[str, Any] | None) -> tuple[float, float] | None:
    """An interval's (low, high) when both are finite numbers, else None."""
    if not interval:
        return None
    low, high = _finite(interval.get("low")), _finite(interval.get("high"))
    return None if low is None or high is None else (low, high)


def _paired(
    record: Record, base: Mapping[str, Any], *, bounds: tuple[float, float]
) -> tuple[float, float, int, str]:
    """Gate interval of mean(candidate - baseline) over images matched by id.

    The paired differences lie within ``(lo - hi, hi - lo)`` of the scores'
    ``bounds``; :func:`~pytest_metatrace.analysis.intervals.gate_interval` keeps
    its error rate at every number of images (returns low, high, n, method).
    """
    from pytest_metatrace.analysis.intervals import IntervalError, gate_interval

    assert record.scores is not None
    assert record.score_ids is not None
    cand = dict(zip(record.score_ids, record.scores, strict=True))
    ref = dict(zip(base["score_ids"], base["scores"], strict=True))
    if set(cand) != set(ref):
        only_c, only_b = sorted(set(cand) - set(ref)), sorted(set(ref) - set(cand))
        raise BaselineError(
            f"the baseline's {record.audit}/{record.metric} ({record.parameter}) was scored on "
            f"other test images ({len(only_c)} only in this run, e.g. {only_c[:3]}; "
            f"{len(only_b)} only in the baseline, e.g. {only_b[:3]}); compare on the same "
            "data, seed and test fraction, or re-save the baseline"
        )
    ids = sorted(cand)
    span = float(bounds[1]) - float(bounds[0])
    diffs = [float(cand[i]) - float(ref[i]) for i in ids]
    try:
        interval = gate_interval(diffs, bounds=(-span, span))
    except IntervalError as exc:
        raise BaselineError(
            f"cannot compare {record.audit}/{record.metric} ({record.parameter}) with the "
            f"baseline: {exc}"
        ) from None
    return interval.low, interval.high, len(ids), interval.method


def compare_record(
    record: Record,
    key: str,
    baseline: Baseline,
    *,
    tolerance: float = 0.0,
    tolerance_source: str = "",
    what: str = "trace",
    seed: int = 0,
    dataset_fingerprint: str | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> BaselineComparison | None:
    """Compare ``record`` with its baseline record; None when the baseline has none.

    ``dataset_fingerprint`` defaults to the record's provenance; ``bounds`` are
    the per-image scores' bounds (the gate family's). ``seed`` is kept for
    callers; the paired gate interval is deterministic. Raises
    :class:`BaselineError` when the two were measured on other data.
    """
    base = baseline.match(record)
    if base is None:
        return None
    cand_fp = dataset_fingerprint or record.provenance.get("dataset_fingerprint")
    base_fp = (base.get("provenance") or {}).get("dataset_fingerprint")
    if cand_fp and base_fp and cand_fp != base_fp:
        raise BaselineError(
            f"{key}: baseline {baseline.path} was measured on another version of dataset "
            f"{record.dataset!r} (fingerprint {str(base_fp)[:12]}, this run {str(cand_fp)[:12]}); "
            "a baseline only compares encoders on the same images: re-save it on this data"
        )
    unit = record.unit
    base_value = _finite(base.get("value"))
    value = _finite(record.value)
    diff = math.nan if base_value is None or value is None else value - base_value
    cand_ends, base_ends = _ends(record.interval), _ends(base.get("interval"))
    low: float | None
    high: float | None
    n_paired = 0
    if base_value is None or value is None:
        low = high = None
        method = "not compared"
        side = "the baseline holds" if base_value is None else "this run has"
        how = f"{side} no value for it (not measurable)"
    elif record.scores and record.score_ids and base.get("scores") and base.get("score_ids"):
        low, high, n_paired, how_paired = _paired(record, base, bounds=bounds)
        low, high = (
            min(low, diff),
            max(high, diff),
        )  # the value difference may differ in the last bit
        method = f"paired {how_paired}"
        how = f"95% paired {how_paired} interval over the same {n_paired} test images"
    elif cand_ends is not None and base_ends is not None:
        low = cand_ends[0] - base_ends[1]
        high = cand_ends[1] - base_ends[0]
        method = "unpaired intervals"
        how = "conservative interval from the two 95% CIs (no per-image scores to pair)"
    else:
        low = high = None
        method = "not compared"
        how = "no interval on either side: not compared, a raw difference would flake"
    passed = low is None or not low > tolerance
    base_enc = str(base.get("encoder"))
    # the lower end and the tolerance get the digits that show which is larger
    low_text, tol_text = format_apart(
        math.nan if low is None else low, tolerance, unit, signed=True, bound_signed=True
    )
    digits = _digits_of(tol_text, unit)
    if low is None or high is None:
        verdict, change = (
            "was not compared with",
            f"{_fmt(diff, unit, signed=True)} ({how})",
        )
    else:
        verdict = (
            "grew significantly against"
            if not passed
            else ("shrank against" if high < 0 else "did not grow significantly against")
        )
        change = (
            f"{_fmt(diff, unit, signed=True, digits=digits)} ({how}: "
            f"{low_text} to {_fmt(high, unit, signed=True, digits=digits)})"
        )
    source = f" ({tolerance_source})" if tolerance_source else ""
    message = (
        f"{key}: the {what} of {record.encoder} on {record.dataset} ({record.audit} "
        f"{record.metric}) {verdict} the baseline {base_enc} ({baseline.path}).\n"
        f"  change {change}\n"
        f"  now {_fmt(record.value, unit)} ({_fmt_interval(record.interval, unit)}), "
        f"baseline {_fmt(base_value, unit)} ({_fmt_interval(base.get('interval'), unit)})\n"
        f"  the gate fails only when the interval's lower end exceeds the tolerance "
        f"{tol_text}{source}; change it with --metatrace-baseline-tolerance {key}=VALUE, "
        "or adopt this encoder as the new baseline with --metatrace-save-baseline=PATH."
    )
    return BaselineComparison(
        key=key,
        baseline_path=str(baseline.path),
        baseline_encoder=base_enc,
        baseline_fingerprint=(base.get("provenance") or {}).get("encoder_fingerprint"),
        baseline_value=base_value,
        baseline_interval=base.get("interval"),
        difference=diff,
        low=low,
        high=high,
        level=0.95,
        method=method,
        n_paired=n_paired,
        tolerance=tolerance,
        passed=passed,
        message=message,
        tolerance_source=tolerance_source,
    )


# --------------------------------------------------------------------------- pytest glue

_BASELINE_KEY = pytest.StashKey[Baseline | None]()
_SAVED_KEY = pytest.StashKey[Path]()


def _resolve(config: pytest.Config, value: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = config.invocation_params.dir / path
    return path


def active_baseline(config: pytest.Config) -> Baseline | None:
    """The ``--metatrace-baseline`` of this run, loaded and checked once per process.

    Called from ``pytest_configure`` so that a wrong baseline is a usage error
    before any embedding is computed.
    """
    from pytest_metatrace.settings import get_settings

    if _BASELINE_KEY in config.stash:
        return config.stash[_BASELINE_KEY]
    settings = get_settings(config)
    value = settings.baseline
    baseline = None
    if value:
        try:
            baseline = load_baseline(_resolve(config, value))
            parse_tolerances(settings.baseline_tolerance)
            check_settings(baseline, settings.to_dict())
        except BaselineError as exc:
            raise pytest.UsageError(f"--metatrace-baseline: {exc}") from None
    config.stash[_BASELINE_KEY] = baseline
    return baseline


def gate_against_baseline(
    config: pytest.Config,
    record: Record,
    key: str,
    *,
    what: str,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> BaselineComparison | None:
    """The Recorder's hook: compare ``record`` with the run's baseline, if one is set.

    Stores the comparison in ``record.baseline``; fails the test (no traceback)
    when the baseline was measured on other data.
    """
    from pytest_metatrace.settings import get_settings
    from pytest_metatrace.state import STATE_KEY

    baseline = active_baseline(config)
    if baseline is None:
        return None
    from pytest_metatrace.registry import session_registry

    settings = get_settings(config)
    tolerance, tolerance_source = resolve_tolerance(
        key, parse_tolerances(settings.baseline_tolerance), session_registry(config).gates()
    )
    described = config.stash[STATE_KEY].datasets.get(record.dataset) or {}
    try:
        comparison = compare_record(
            record,
            key,
            baseline,
            tolerance=tolerance,
            tolerance_source=tolerance_source,
            what=what,
            seed=settings.seed,
            dataset_fingerprint=described.get("fingerprint"),
            bounds=bounds,
        )
    except BaselineError as exc:
        raise pytest.fail.Exception(f"--metatrace-baseline: {exc}", pytrace=False) from None
    if comparison is not None:
        if settings.gate == "thresholds":  # measured and reported, not gating
            comparison = replace(
                comparison,
                gating=False,
                message=comparison.message
                + "\n  (reported, not gating: --metatrace-gate=thresholds)",
            )
        record.baseline = comparison.to_dict()
    return comparison


def save_session_baseline(config: pytest.Config, doc: Mapping[str, Any]) -> str | None:
    """Write ``--metatrace-save-baseline`` at session end; returns an error text or None."""
    from pytest_metatrace.settings import get_settings

    value = get_settings(config).save_baseline
    if not value:
        return None
    path = _resolve(config, value)
    try:
        config.stash[_SAVED_KEY] = save_baseline(path, doc)
    except OSError as exc:
        return f"could not write the baseline {path}: {exc.strerror or exc}"
    return None


def saved_baseline_path(config: pytest.Config) -> Path | None:
    """Where this run saved its baseline, if it did."""
    return config.stash.get(_SAVED_KEY, None)


def baseline_choices(config: pytest.Config) -> list[dict[str, str]]:
    """The baseline comparison's choices, for the report's provenance section (if one is set)."""
    baseline = active_baseline(config)
    if baseline is None:
        return []
    return [
        {
            "topic": "Baseline comparison",
            "choice": f"against {baseline.path}: 95% percentile bootstrap of mean(candidate - "
            "baseline) over the same test images (matched by id, seed = --metatrace-seed); "
            "without per-image scores, candidate interval low minus baseline interval high; "
            "a gate fails when the lower end exceeds --metatrace-baseline-tolerance",
            "reason": "a raw difference of two noisy numbers fails at random; pairing the same "
            "images removes the between-image variance both runs share",
        }
    ]
