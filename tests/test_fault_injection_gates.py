"""Fault injection, gates: thresholds that would be ignored or could never fail (issue 8, 1-2).

A typo in a threshold key used to leave the default in force, and a
threshold of 1.5, ``inf`` or ``nan`` for an accuracy used to pass every
encoder. Both are usage errors at start now (exit status 4), named with the
source (command line, ini line, marker) and the fix, before any audit runs.
"""

from __future__ import annotations

import re

import pytest
from plugin_helpers import preimport

from pytest_metatrace.gate_keys import (
    check_threshold_keys,
    check_threshold_value,
    patterns_overlap,
)
from pytest_metatrace.gating import ThresholdError, parse_threshold, parse_threshold_lines
from pytest_metatrace.spec import default_registry

REGISTRY = default_registry()
FAMILIES = REGISTRY.gates()

# numpy's C parts cannot be imported twice in one process either: the runs (and
# later test modules) need these up front too.
preimport("numpy.fft", "sklearn.linear_model")

PLAIN = "def test_a():\n    pass\n"

USER_AUDIT = """
import pytest
from pytest_metatrace import Record

pytestmark = pytest.mark.metatrace_gates("mycheck.accuracy", "mycheck.gap.*")

def test_mine(metatrace_record):
    record = Record(audit="mine", encoder="e", dataset="d", metric="accuracy", value=0.5,
                    unit="fraction")
    metatrace_record.gate(record, "mycheck.accuracy", what="my check")
    metatrace_record.assert_gates()
"""

UNDECLARED_AUDIT = USER_AUDIT.replace(
    'pytestmark = pytest.mark.metatrace_gates("mycheck.accuracy", "mycheck.gap.*")\n', ""
)


def _usage_error(result: pytest.RunResult) -> str:
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    err = result.stderr.str()
    assert "Traceback" not in err
    return err


def _check_line(item: str) -> None:
    for key, spec in parse_threshold_lines([item], "--metatrace-threshold").items():
        check_threshold_value(key, spec, "command line", FAMILIES)


# ---------------------------------------------------------------- unknown keys


def test_typo_on_the_command_line_is_a_usage_error_with_did_you_mean(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(PLAIN)
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--metatrace-threshold", "prob.sharpening=0.1"
    )
    err = _usage_error(result)
    assert "--metatrace-threshold prob.sharpening=0.1: 'prob.sharpening' matches no gate key" in err
    assert "Did you mean 'probe.sharpening'" in err
    assert "probe.interpolation" in err and "retrieval.margin_gap" in err  # the known keys


def test_typo_in_an_ini_line_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\nmetatrace_threshold =\n    probe.jpeg = 0.5\n    knn.*.pos_same_gp = 0.1\n"
    )
    pytester.makepyfile(PLAIN)
    err = _usage_error(pytester.runpytest("-p", "no:cacheprovider"))
    assert "ini line `knn.*.pos_same_gp = 0.1` under metatrace_threshold" in err
    assert "matches no gate key" in err


def test_typo_in_a_marker_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        "import pytest\n"
        "@pytest.mark.metatrace_threshold({'probe.jpg': 0.5})\n"
        "def test_a():\n    pass\n"
    )
    err = _usage_error(pytester.runpytest("-p", "no:cacheprovider"))
    assert "'probe.jpg' matches no gate key" in err and "Did you mean 'probe.jpeg'" in err


def test_typo_in_a_baseline_tolerance_key_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PLAIN)
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--metatrace-baseline-tolerance", "prob.*=0.01"
    )
    err = _usage_error(result)
    assert "--metatrace-baseline-tolerance" in err and "'prob.*' matches no gate key" in err


@pytest.mark.parametrize(
    "key",
    [
        "probe.*",
        "knn.*.pos_same_gap",
        "drift.jpeg75_420",
        "retrieval.recall_gap",
        "probe.model_smartphone",
        "agreement.iso",
        "*",
    ],
)
def test_known_keys_and_wildcards_are_accepted(key: str) -> None:
    check_threshold_keys([("ini", {key: parse_threshold("0.5")})], REGISTRY.gate_keys())


def test_a_known_wildcard_runs(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PLAIN)
    result = pytester.runpytest("-p", "no:cacheprovider", "--metatrace-threshold", "knn.*=0.1")
    result.assert_outcomes(passed=1)


def test_a_wildcard_matching_no_key_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PLAIN)
    err = _usage_error(
        pytester.runpytest("-p", "no:cacheprovider", "--metatrace-threshold", "probes.*=0.5")
    )
    assert "'probes.*' matches no gate key" in err


def test_user_audit_declares_its_keys(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(USER_AUDIT)
    ok = pytester.runpytest(
        "-p", "no:cacheprovider", "--metatrace-threshold", "mycheck.accuracy=0.4"
    )
    ok.assert_outcomes(failed=1)  # 0.5 above 0.4, no interval: the gate applies
    assert "mycheck.accuracy: the my check of e on d is significantly above" in ok.stdout.str()
    wild = pytester.runpytest("-p", "no:cacheprovider", "--metatrace-threshold", "mycheck.*=0.6")
    wild.assert_outcomes(passed=1)
    err = _usage_error(
        pytester.runpytest("-p", "no:cacheprovider", "--metatrace-threshold", "mychek.accuracy=0.4")
    )
    assert "Did you mean 'mycheck.accuracy'" in err


def test_keys_of_a_test_deselected_by_k_stay_known(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(USER_AUDIT + "\ndef test_other():\n    pass\n")
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "-k", "other", "--metatrace-threshold", "mycheck.gap.x=0.1"
    )
    result.assert_outcomes(passed=1, deselected=1)


def test_an_audit_without_declared_keys_keeps_every_key_usable(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(UNDECLARED_AUDIT)
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--metatrace-threshold", "mycheck.accuracy=0.6"
    )
    result.assert_outcomes(passed=1)  # the key was used, not refused
    bad_value = pytester.runpytest(
        "-p", "no:cacheprovider", "--metatrace-threshold", "mycheck.accuracy=nan"
    )
    assert "must be a finite number" in _usage_error(bad_value)  # values are still checked


def test_an_audit_module_is_known_by_its_spec_alone(pytester: pytest.Pytester) -> None:
    """Only the semantic-influence module is collected: its spec's keys are known, typos not."""
    from plugin_helpers import copy_audits

    copy_audits(pytester.path, ("test_semantic_influence.py",))
    ok = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "--co",
        "audits",
        "--metatrace-threshold",
        "knn.interpolation.neg_same_gap=0.1",
    )
    assert ok.ret == pytest.ExitCode.OK, ok.stdout.str() + ok.stderr.str()
    err = _usage_error(
        pytester.runpytest(
            "-p",
            "no:cacheprovider",
            "--co",
            "audits",
            "--metatrace-threshold",
            "knn.interpolation.neg_same_gp=0.1",
        )
    )
    assert "Did you mean 'knn.interpolation.neg_same_gap'" in err


def test_an_unknown_audit_name_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        pytestmark = pytest.mark.metatrace_audit("semantic_influnce")

        def test_x(metatrace_record):
            pass
        """
    )
    err = _usage_error(
        pytester.runpytest("-p", "no:cacheprovider", "--co", "--metatrace-threshold", "knn.*=0.1")
    )
    assert "no audit named 'semantic_influnce'" in err
    assert "did you mean 'semantic_influence'" in err


# ---------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("probe.jpeg=1.5", "1.5 is outside the range of this key"),
        ("probe.jpeg=150%", "1.5 is outside the range of this key"),
        ("probe.jpeg=inf", "must be a finite number, got 'inf'"),
        ("probe.*=nan", "must be a finite number, got 'nan'"),
        ("probe.jpeg=chance+1.5", "a gain over chance must lie between -1 and 1"),
        ("drift.jpeg75_420=2.5", "drift.* is a cosine distance"),
        ("knn.jpeg.pos_same_gap=-1.5", "knn.*.pos_same_gap is a gap between two accuracies"),
        (
            "knn.*.pos_same_gap=chance+0.1",
            "chance+X applies to keys with a chance level (agreement.*, probe.*) only",
        ),
        ("probe.jpeg=abc", "cannot read threshold 'abc'"),
        ("probe.jpeg=chance+abc", "cannot read threshold 'chance+abc'"),
        ("probe.jpeg", "must be KEY=VALUE"),
    ],
)
def test_bad_threshold_values_are_refused(item: str, message: str) -> None:
    with pytest.raises(ThresholdError) as info:
        _check_line(item)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("probe.jpeg=150%", "--metatrace-threshold probe.jpeg=150%: 1.5 is outside the range"),
        ("probe.jpeg=nan", "must be a finite number, got 'nan'"),
        ("probe.jpeg=chance+abc", "cannot read threshold 'chance+abc'"),
        ("probe.jpeg", "must be KEY=VALUE"),
    ],
)
def test_bad_threshold_values_are_usage_errors_at_start(
    pytester: pytest.Pytester, item: str, message: str
) -> None:
    pytester.makepyfile(PLAIN)
    err = _usage_error(pytester.runpytest("-p", "no:cacheprovider", "--metatrace-threshold", item))
    assert message in err


def test_bad_marker_value_is_a_usage_error_before_any_test_runs(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        "import pytest\n"
        "@pytest.mark.metatrace_threshold({'probe.jpeg': 'inf'})\n"
        "def test_a():\n    pass\n"
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert "must be a finite number" in _usage_error(result)
    assert "test_a PASSED" not in result.stdout.str()


@pytest.mark.parametrize(
    "item",
    [
        "drift.jpeg75_420=1.5",
        "knn.jpeg.neg_same_gap=-0.2",
        "retrieval.margin_gap=1.5",
        "probe.*=chance+30%",
        "probe.jpeg=100%",
        "*=chance+0.3",  # e.g. a bare marker value on a probe test
        "agreement.*=chance+0.1",
    ],
)
def test_values_in_each_kinds_range_are_accepted(item: str) -> None:
    _check_line(item)


# ---------------------------------------------------------------- the pure functions


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("probe.jpeg", "probe.*", True),
        ("probe.*", "probe.jpeg", True),
        ("probe.*", "probe.j*", True),
        ("knn.*.pos_same_gap", "knn.jpeg.pos_same_gap", True),
        ("prob.*", "probe.jpeg", False),
        ("probe.jpg", "probe.jpeg", False),
        ("drift.*", "probe.*", False),
    ],
)
def test_patterns_overlap(a: str, b: str, overlap: bool) -> None:
    assert patterns_overlap(a, b) is overlap


def test_unknown_key_message_lists_close_matches_and_the_marker() -> None:
    with pytest.raises(ThresholdError) as info:
        check_threshold_keys(
            [("ini", {"probe.interpolaton": parse_threshold("0.4")})], REGISTRY.gate_keys()
        )
    msg = str(info.value)
    assert "Did you mean 'probe.interpolation'" in msg
    assert "@pytest.mark.metatrace_gates('KEY', ...)" in msg


def test_user_keys_need_only_a_finite_value() -> None:
    check_threshold_value("mycheck.score", parse_threshold("42"), "ini", FAMILIES)
    with pytest.raises(ThresholdError, match="finite"):
        check_threshold_value("mycheck.score", parse_threshold("-inf"), "ini", FAMILIES)


# ---------------------------------------------------------------- one semantic class (item 4)


def test_knn_refuses_a_single_class_training_set() -> None:
    import numpy as np

    from pytest_metatrace.audits.semantic_influence.influence import KnnInfluence, KnnInputError

    rng = np.random.default_rng(0)
    train = {c: rng.normal(size=(6, 4)) for c in ("a", "b")}
    test = {c: rng.normal(size=(3, 4)) for c in ("a", "b")}
    with pytest.raises(KnnInputError, match=r"one semantic class \('cat'\).*at least two"):
        KnnInfluence(k=3, device="cpu").evaluate(train, ["cat"] * 6, test, ["cat"] * 3, ["a", "b"])
    # two classes: measured (the same data, one label changed)
    result = KnnInfluence(k=3, device="cpu").evaluate(
        train, ["cat"] * 5 + ["dog"], test, ["cat"] * 3, ["a", "b"]
    )
    assert result.n_train == 6


def test_one_class_dataset_fails_the_knn_audit_never_passes(pytester: pytest.Pytester) -> None:
    from plugin_helpers import FAST, TINY_CONFTEST, copy_audits, make_tiny_dataset

    pytester.makeconftest(TINY_CONFTEST)
    make_tiny_dataset(pytester.path / "one", classes=1, per_class=8)
    copy_audits(pytester.path, ("test_semantic_influence.py",))
    result = pytester.runpytest(*FAST, "--metatrace-data=one", "audits", "-k", "jpeg")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "cannot run the kNN semantic-influence audit on one: the training set holds one " in out
    assert "semantic class ('class0')" in out and "at least two semantic classes" in out
    assert "Traceback" not in out and "During handling" not in out


# ---------------------------------------------------------------- no silent pass

FORGETFUL_AUDIT = """
import pytest
from pytest_metatrace import Record

pytestmark = pytest.mark.metatrace_gates("mine.m")

def test_forgets_to_assert(metatrace_record):
    record = Record(audit="mine", encoder="e", dataset="d", metric="m", value=0.5)
    metatrace_record.gate(record, "mine.m", what="my trace")
    metatrace_record.gate(record, "mine.m", what="my trace")  # twice: reported once

def test_gates_a_passing_record(metatrace_record):
    record = Record(audit="mine", encoder="e", dataset="d2", metric="m", value=0.1)
    metatrace_record.gate(record, "mine.m", what="my trace")

def test_asserts_then_fails_once(metatrace_record):
    record = Record(audit="mine", encoder="e", dataset="d3", metric="m", value=0.9)
    metatrace_record.gate(record, "mine.m", what="my trace")
    metatrace_record.assert_gates()
"""


def test_a_failed_gate_fails_its_test_even_without_assert_gates(
    pytester: pytest.Pytester,
) -> None:
    """No silent pass: before the spec rework this ran "2 passed, 1 failed", exit 1 only by luck."""
    pytester.makepyfile(test_forgetful=FORGETFUL_AUDIT)
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--metatrace-threshold", "mine.m=0.3", "--metatrace-json=r.json"
    )
    result.assert_outcomes(passed=1, failed=2)
    out = result.stdout.str()

    def failure(name: str) -> str:
        pattern = rf"_{{3,}} {name} _{{3,}}\n(.*?)(?=\n_{{3,}} |\n-{{5,}} |\n={{5,}} )"
        match = re.search(pattern, out, re.S)
        assert match, out
        return match.group(1)

    forgot = failure("test_forgets_to_assert")
    assert "did not call metatrace_record.assert_gates()" in forgot
    # gated twice, reported once
    assert forgot.count("mine.m: the my trace of e on d is significantly above") == 1
    asserted = failure("test_asserts_then_fails_once")
    assert "mine.m: the my trace of e on d3 is significantly above" in asserted
    assert "did not call" not in asserted
    import json

    doc = json.loads((pytester.path / "r.json").read_text())
    assert sorted(r["dataset"] for r in doc["records"]) == ["d", "d2", "d3"]
    assert result.ret == pytest.ExitCode.TESTS_FAILED


SMALL_AUDIT = """
import pytest
from pytest_metatrace import Record

pytestmark = pytest.mark.metatrace_gates("mine.m")

def _record(dataset, n):
    scores = [1.0] * n
    return Record(audit="mine", encoder="e", dataset=dataset, metric="m", value=1.0,
                  scores=scores, score_ids=[f"img{i}" for i in range(n)])

def test_few_asserted(metatrace_record):
    metatrace_record.gate(_record("few", 3), "mine.m", what="my trace")
    metatrace_record.assert_gates()

def test_few_not_asserted(metatrace_record):
    metatrace_record.gate(_record("few2", 3), "mine.m", what="my trace")

def test_enough(metatrace_record):
    metatrace_record.gate(_record("many", 40), "mine.m", what="my trace")
    metatrace_record.assert_gates()
"""


def test_too_few_test_images_skip_as_undecided_and_never_pass(pytester: pytest.Pytester) -> None:
    """3 perfect scores cannot put a 95% interval's low end above 0.9: undecided, not passed."""
    pytester.makepyfile(test_small=SMALL_AUDIT)
    result = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "-rs",
        "--metatrace-threshold",
        "mine.m=0.9",
        "--metatrace-json=r.json",
    )
    result.assert_outcomes(failed=1, skipped=2)
    out = result.stdout.str()
    assert out.count("mine.m: too few test images to decide: 3, need at least") == 2, out
    assert "1 gate(s) failed (1 above threshold, 0 grew against the baseline), 2 undecided" in out
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    import json

    doc = json.loads((pytester.path / "r.json").read_text())
    assert doc["run"]["failures"] == {
        "failed": 1,
        "threshold": 1,
        "baseline": 0,
        "reported": 0,
        "undecided": 2,
    }
    gates = {r["dataset"]: r["gate"] for r in doc["records"]}
    assert gates["few"]["decided"] is False and gates["few"]["passed"] is False
    assert gates["few2"]["decided"] is False
    need = gates["few"]["min_n"]
    assert 3 < need <= 40
    assert gates["many"]["decided"] is True and gates["many"]["passed"] is False
    html = (pytester.path / "reports" / "metatrace.html").read_text()
    assert "undecided" in html


def test_undecided_alone_exits_zero_but_says_so(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_small=SMALL_AUDIT)
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--metatrace-threshold", "mine.m=0.9", "-k", "few"
    )
    result.assert_outcomes(skipped=2)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*2 undecided (too few test images)*"])


def test_junit_xml_counts_failed_and_undecided_gates_once(pytester: pytest.Pytester) -> None:
    import xml.etree.ElementTree as ET

    pytester.makepyfile(test_small=SMALL_AUDIT)
    pytester.runpytest(
        "-p", "no:cacheprovider", "--metatrace-threshold", "mine.m=0.9", "--junitxml=j.xml"
    )
    suite = ET.parse(pytester.path / "j.xml").getroot().find("testsuite")
    assert suite is not None
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["metatrace_failed"] == "1"
    assert props["metatrace_threshold_failures"] == "1"
    assert props["metatrace_baseline_failures"] == "0"
    assert props["metatrace_undecided"] == "2"
