"""End-to-end runs of the sensitivity audit through pytester, with the tiny encoder.

The audit is opt-in: ``pytest audits`` deselects it, naming its module runs
it; a warm rerun embeds nothing and fits no probe (the step memo).
"""

from __future__ import annotations

import json

import pytest
from plugin_helpers import FAST, TINY_CONFTEST, copy_audits, make_tiny_dataset, preimport

# pytester runs in-process; see plugin_helpers.preimport.
preimport("pytest_metatrace.audits.sensitivity.analysis")


@pytest.fixture
def sens_project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(TINY_CONFTEST)
    make_tiny_dataset(pytester.path / "tiny60", per_class=20)
    copy_audits(pytester.path, ("test_sensitivity.py", "test_processing_drift.py"))
    return pytester


def _sensitivity_records(path) -> dict[str, dict]:
    doc = json.loads(path.read_text())
    return {r["parameter"]: r for r in doc["records"] if r["audit"] == "sensitivity"}


def test_sensitivity_is_opt_in_then_searches_and_reruns_from_cache(
    sens_project: pytest.Pytester,
) -> None:
    pytester = sens_project
    base = (*FAST, "--metatrace-data=tiny60", "--metatrace-json=s.json")
    # Not named: deselected, README command 1 does not pay for it.
    plain = pytester.runpytest(*base, "audits", "-k", "jpeg75_420 or test_sensitivity")
    plain.assert_outcomes(passed=1, deselected=15)  # 12 by -k, 3 by the opt-in
    assert _sensitivity_records(pytester.path / "s.json") == {}

    named = pytester.runpytest(*base, "audits/test_sensitivity.py")
    named.assert_outcomes(passed=3)
    recs = _sensitivity_records(pytester.path / "s.json")
    assert sorted(recs) == ["jpeg", "resize", "sharpen"]
    for rec in recs.values():
        details = rec["details"]
        assert rec["metric"] == "smallest_step" and rec["gate"] is None  # informational
        assert details["method"] == "bisect" and details["n_test_images"] == 30
        assert 1 <= details["evaluations"] <= 7 and details["computed"] == details["evaluations"]
        steps = details["steps"]
        assert [s["size"] for s in steps] == sorted(s["size"] for s in steps)
        for step in steps:
            assert step["interval"]["method"] == "clopper-pearson"
            assert step["interval"]["low"] <= step["accuracy"] <= step["interval"]["high"]
            assert (step["verdict"] == "detected") == (step["interval"]["low"] > 0.55)
        if details["verdict"] == "detected":
            smallest = next(s for s in steps if s["name"] == details["smallest"])
            assert rec["value"] == smallest["size"] and smallest["verdict"] == "detected"
            # bisection's invariant: the next smaller step tried, if any, was not detected
            smaller = [s for s in steps if s["size"] < smallest["size"]]
            assert all(s["verdict"] == "not detected" for s in smaller)
        else:
            assert rec["value"] is None and details["verdict"] == "none detected"
    # the tiny net reads JPEG strongly: the coarse end of the grid is detected
    assert recs["jpeg"]["details"]["verdict"] == "detected"
    html = (pytester.path / "reports" / "metatrace.html").read_text()
    assert "Detection curve" in html and "sensitivity-" in html

    again = pytester.runpytest(*base, "audits/test_sensitivity.py")
    again.assert_outcomes(passed=3)
    again.stdout.fnmatch_lines(["*embeddings computed 0*"])
    recs2 = _sensitivity_records(pytester.path / "s.json")
    for parameter, rec in recs.items():
        assert recs2[parameter]["details"]["computed"] == 0, "no probe fitted, no step tried anew"
        assert recs2[parameter]["value"] == rec["value"]
        assert recs2[parameter]["details"]["steps"] == rec["details"]["steps"]


def test_always_runs_it_without_naming_and_options_are_checked(
    sens_project: pytest.Pytester,
) -> None:
    pytester = sens_project
    base = (*FAST, "--metatrace-data=tiny60", "--metatrace-report=none")
    result = pytester.runpytest(
        *base, "audits", "--metatrace-sensitivity=always", "-k", "test_sensitivity and resize"
    )
    result.assert_outcomes(passed=1, deselected=15)
    hyp = pytester.runpytest(
        *base,
        "audits/test_sensitivity.py",
        "-k",
        "resize",
        "--metatrace-sensitivity-search=hypothesis",
        "--metatrace-json=h.json",
    )
    hyp.assert_outcomes(passed=1, deselected=2)
    (rec,) = json.loads((pytester.path / "h.json").read_text())["records"]
    assert rec["details"]["method"] == "hypothesis"
    assert (pytester.path / ".metatrace_cache" / "sensitivity" / "hypothesis").is_dir()
    bad = pytester.runpytest(
        *base, "audits/test_sensitivity.py", "--metatrace-sensitivity-margin=0.5"
    )
    assert bad.ret != 0
    bad.stderr.fnmatch_lines(["*sensitivity-margin*0.5*"])


def test_the_installed_audit_runs_when_its_module_is_named_with_pyargs(
    sens_project: pytest.Pytester,
) -> None:
    pytester = sens_project
    base = (*FAST, "--metatrace-data=tiny60", "--metatrace-report=none", "--pyargs")
    package = pytester.runpytest(*base, "pytest_metatrace.audits", "-k", "sensitivity")
    # the package is not the module: its three sensitivity tests are deselected too
    assert package.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert not {"passed", "failed", "skipped"} & set(package.parseoutcomes())
    module = pytester.runpytest(
        *base, "pytest_metatrace.audits.sensitivity.test_sensitivity", "-k", "resize"
    )
    module.assert_outcomes(passed=1, deselected=2)
