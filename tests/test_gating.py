"""Threshold parsing, resolution order and the lower-end-of-interval rule."""

from __future__ import annotations

import pytest

from pytest_metatrace.gating import (
    ThresholdError,
    evaluate_gate,
    parse_threshold,
    parse_threshold_lines,
    resolve_threshold,
)
from pytest_metatrace.results import Record
from pytest_metatrace.spec import default_registry


def rec(value=0.7, low=0.65, high=0.75, chance=1 / 6, interval=True):
    return Record(
        audit="processing_probe",
        metric="top1",
        value=value,
        encoder="enc",
        dataset="ds",
        parameter="jpeg",
        interval={"low": low, "high": high, "level": 0.95} if interval else None,
        chance=chance,
    )


@pytest.mark.parametrize(
    ("text", "value", "relative"),
    [
        ("0.6", 0.6, False),
        ("60%", 0.6, False),
        (" 0.25 ", 0.25, False),
        ("chance+0.3", 0.3, True),
        ("chance + 30%", 0.3, True),
        (0.5, 0.5, False),
    ],
)
def test_parse_threshold_forms(text, value, relative):
    spec = parse_threshold(text)
    assert spec.value == pytest.approx(value)
    assert spec.relative_to_chance is relative


@pytest.mark.parametrize("bad", ["", "abc", "chance+", "chance*2", "60 percent"])
def test_parse_threshold_rejects_with_accepted_forms(bad):
    with pytest.raises(ThresholdError, match=r"chance\+0\.3"):
        parse_threshold(bad)


def test_relative_threshold_needs_chance():
    with pytest.raises(ThresholdError, match="no chance level"):
        parse_threshold("chance+0.2").resolve(None)
    assert parse_threshold("chance+0.2").resolve(0.25) == pytest.approx(0.45)


def test_lines_need_key_value():
    assert parse_threshold_lines(["probe.jpeg = 0.5", "", "# note"], "ini") == {
        "probe.jpeg": parse_threshold("0.5")
    }
    with pytest.raises(ThresholdError, match="KEY=VALUE"):
        parse_threshold_lines(["probe.jpeg 0.5"], "--metatrace-threshold")


def test_priority_then_specificity():
    cli = {"probe.*": parse_threshold("0.9")}
    marker = {"probe.jpeg": parse_threshold("0.8")}
    ini = {"probe.jpeg": parse_threshold("0.7"), "*": parse_threshold("0.1")}
    defaults = {k: parse_threshold(v) for k, v in default_registry().default_thresholds().items()}
    sources = [("command line", cli), ("marker", marker), ("ini", ini), ("default", defaults)]
    # command line wins over a more specific marker: it is the user's explicit override
    spec, source, pattern = resolve_threshold("probe.jpeg", sources)
    assert (spec.value, source, pattern) == (0.9, "command line", "probe.*")
    # within a source, an exact key beats a wildcard
    spec, source, pattern = resolve_threshold("probe.jpeg", sources[2:])
    assert (spec.value, source, pattern) == (0.7, "ini", "probe.jpeg")
    spec, source, _ = resolve_threshold("knn.jpeg.pos_same_gap", sources[3:])
    assert (spec.value, source) == (0.05, "default")
    assert resolve_threshold("drift.sharpen2", sources[3:]) is None


def test_gate_compares_interval_low_end():
    resolved = (parse_threshold("0.6"), "default", "probe.jpeg")
    # value 0.7 above the threshold, but the interval reaches below it: not significant
    out = evaluate_gate(rec(0.7, 0.58, 0.8), "probe.jpeg", resolved, what="JPEG trace")
    assert out is not None and out.passed and out.compared == "interval low"
    out = evaluate_gate(rec(0.7, 0.61, 0.8), "probe.jpeg", resolved, what="JPEG trace")
    assert out is not None and not out.passed
    # equality is not "above"
    out = evaluate_gate(rec(0.7, 0.6, 0.8), "probe.jpeg", resolved, what="JPEG trace")
    assert out is not None and out.passed


def test_gate_without_interval_uses_value_and_chance_relative():
    resolved = (parse_threshold("chance+0.4"), "ini", "probe.*")
    out = evaluate_gate(rec(0.6, interval=False), "probe.jpeg", resolved, what="t")
    assert out is not None
    assert out.threshold == pytest.approx(1 / 6 + 0.4)
    assert out.compared == "value" and not out.passed


def test_failure_message_names_measurement_interval_threshold_and_the_fix():
    resolved = (parse_threshold("0.6"), "ini", "probe.jpeg")
    out = evaluate_gate(rec(0.72, 0.68, 0.76), "probe.jpeg", resolved, what="JPEG trace")
    assert out is not None
    msg = out.message
    assert "72.0%" in msg and "68.0%" in msg and "76.0%" in msg and "60.0%" in msg
    assert "chance 16.7%" in msg
    assert "--metatrace-threshold probe.jpeg=VALUE" in msg
    assert "metatrace_threshold" in msg and "ini" in msg
    assert "significantly above" in msg


def test_no_threshold_no_gate():
    assert evaluate_gate(rec(), "drift.x", None, what="t") is None


def _need(n_min):
    return lambda threshold: n_min


def test_too_few_test_images_is_undecided_neither_passed_nor_failed():
    resolved = (parse_threshold("0.6"), "default", "probe.jpeg")
    record = rec(1.0, 0.3, 1.0)
    record.scores = [1.0, 1.0, 1.0]
    out = evaluate_gate(record, "probe.jpeg", resolved, what="JPEG trace", min_n=_need(9))
    assert out is not None
    assert (out.decided, out.passed, out.status, out.min_n) == (False, False, "undecided", 9)
    assert "too few test images to decide: 3, need at least 9" in out.message
    # as many as needed decides it, on the interval as usual
    record.scores = [1.0] * 9
    record.interval = {"low": 0.7, "high": 1.0, "level": 0.95}
    out = evaluate_gate(record, "probe.jpeg", resolved, what="JPEG trace", min_n=_need(9))
    assert out is not None and out.decided and not out.passed and out.status == "failed"


def test_a_threshold_no_score_can_exceed_decides_at_any_size():
    resolved = (parse_threshold("1.0"), "default", "probe.jpeg")
    record = rec(1.0, 0.3, 1.0)
    record.scores = [1.0]
    out = evaluate_gate(record, "probe.jpeg", resolved, what="t", min_n=_need(None))
    assert out is not None and out.decided and out.passed and out.status == "passed"


def test_records_without_per_image_scores_are_never_undecided():
    resolved = (parse_threshold("0.6"), "default", "probe.jpeg")
    out = evaluate_gate(rec(0.7, 0.61, 0.8), "probe.jpeg", resolved, what="t", min_n=_need(99))
    assert out is not None and out.decided and not out.passed


def _step(value, interval=None):
    return Record(
        audit="sensitivity",
        metric="smallest_step",
        value=value,
        encoder="enc",
        dataset="ds",
        parameter="jpeg",
        unit="quality points",
        interval=interval,
    )


def test_a_below_gate_fails_when_a_smaller_step_than_its_threshold_is_detected():
    resolved = (parse_threshold("5"), "command line", "sensitivity.jpeg")
    out = evaluate_gate(_step(3.0), "sensitivity.jpeg", resolved, what="t", direction="below")
    assert out is not None and not out.passed and out.direction == "below"
    assert (
        "is below its threshold" in out.message and "smaller value is the stronger" in out.message
    )
    out = evaluate_gate(_step(10.0), "sensitivity.jpeg", resolved, what="t", direction="below")
    assert out is not None and out.passed
    # equality is not "below"; nothing detected (no value) is no trace
    out = evaluate_gate(_step(5.0), "sensitivity.jpeg", resolved, what="t", direction="below")
    assert out is not None and out.passed
    out = evaluate_gate(
        _step(float("nan")), "sensitivity.jpeg", resolved, what="t", direction="below"
    )
    assert out is not None and out.passed and "no step of the grid was detected" in out.message
    # with an interval, its upper end must be below the threshold
    iv = {"low": 2.0, "high": 6.0, "level": 0.95}
    out = evaluate_gate(_step(3.0, iv), "sensitivity.jpeg", resolved, what="t", direction="below")
    assert out is not None and out.passed and out.compared == "interval high"


def test_the_sensitivity_family_gates_below() -> None:
    family = default_registry().gate_family("sensitivity.jpeg")
    assert family is not None and family.direction == "below"
    assert default_registry().gate_family("probe.jpeg").direction == "above"


def test_a_below_failure_reads_as_below_in_the_summaries() -> None:
    from pytest_metatrace.summary import failures

    resolved = (parse_threshold("5"), "command line", "sensitivity.jpeg")
    rec = _step(3.0)
    rec.gate = evaluate_gate(rec, "sensitivity.jpeg", resolved, what="t", direction="below")
    (failure,) = failures([rec.to_dict()])
    assert failure.headline() == "smallest_step 3 < threshold 5"
