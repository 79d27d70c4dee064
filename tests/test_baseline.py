"""Baselines: the paired comparison on constructed scores, refusals, and end to end via pytester."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest
from baseline_helpers import GAIN_CONFTEST
from plugin_helpers import FAST, copy_audits, make_tiny_dataset, preimport

from pytest_metatrace.analysis.intervals import gate_interval
from pytest_metatrace.baseline import (
    PROTOCOL_VERSION,
    Baseline,
    BaselineError,
    check_settings,
    compare_record,
    load_baseline,
    parse_tolerances,
    save_baseline,
)
from pytest_metatrace.results import Record
from pytest_metatrace.schema import validate_document
from pytest_metatrace.settings import protocol_option_names

# pytester runs in-process; see plugin_helpers.preimport.
preimport()

SETTINGS = {name: i for i, name in enumerate(protocol_option_names())}
IDS = [f"img{i:03d}" for i in range(200)]


def _record(encoder: str, scores: np.ndarray, *, ids: list[str] = IDS, fp: str = "d1") -> Record:
    lo, hi = np.quantile(scores, [0.2, 0.8])  # any interval around the mean will do here
    value = float(scores.mean())
    return Record(
        audit="processing_drift",
        metric="mean_cosine_distance",
        value=value,
        encoder=encoder,
        dataset="set",
        parameter="jpeg75_420",
        unit="cosine distance",
        interval={"low": min(lo, value), "high": max(hi, value), "level": 0.95},
        scores=scores.tolist(),
        score_ids=list(ids),
        provenance={"dataset_fingerprint": fp},
    )


def _baseline(*records: Record, path: str = "base.json") -> Baseline:
    return Baseline(
        path=Path(path),
        protocol_version=PROTOCOL_VERSION,
        settings=dict(SETTINGS),
        records=[r.to_dict() for r in records],
        encoders=[],
    )


def test_a_known_shift_fails_with_the_paired_interval():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.1, 0.3, 200)
    cand = base + 0.05 + rng.normal(0, 0.01, 200)
    # the candidate's images are listed in another order: pairing is by id, not position
    order = rng.permutation(200)
    cand_rec = _record("new", cand[order], ids=[IDS[i] for i in order])
    out = compare_record(
        cand_rec,
        "drift.jpeg75_420",
        _baseline(_record("old", base)),
        what="JPEG",
        bounds=(0.0, 2.0),  # drift's score bounds: cosine distances
    )
    assert out is not None
    # same images, sorted ids = original order; differences of distances lie in (-2, 2)
    expected = gate_interval(cand - base, bounds=(-2.0, 2.0))
    assert expected.method == "betting"
    assert out.method == "paired betting" and out.n_paired == 200
    assert out.difference == pytest.approx(float(cand.mean() - base.mean()), abs=1e-12)
    assert out.low == pytest.approx(expected.low, abs=1e-12)
    assert out.high == pytest.approx(expected.high, abs=1e-12)
    # valid for any differences within (-2, 2): wider than a bootstrap, still above zero
    assert 0.0 < out.low < 0.05 < out.high < 0.1
    assert not out.passed
    assert "drift.jpeg75_420: the JPEG of new on set (processing_drift mean_cosine_distance)" in (
        out.message
    )
    assert "grew significantly against the baseline old (base.json)" in out.message
    assert f"change +{out.difference:.4g}" in out.message
    assert "95% paired betting interval over the same 200 test images" in out.message


def test_noise_without_a_shift_passes_and_a_tolerance_absorbs_a_shift():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.1, 0.3, 200)
    noisy = base + rng.normal(0, 0.01, 200)
    out = compare_record(_record("new", noisy), "k", _baseline(_record("old", base)))
    assert out is not None and out.passed
    assert out.low is not None and out.high is not None and out.low < 0 < out.high
    shifted = _record("new", base + 0.05)
    assert not compare_record(shifted, "k", _baseline(_record("old", base))).passed  # type: ignore[union-attr]
    tolerant = compare_record(shifted, "k", _baseline(_record("old", base)), tolerance=0.06)
    assert tolerant is not None and tolerant.passed


def test_a_shrunk_trace_passes_and_says_so():
    base = np.linspace(0.2, 0.4, 200)
    out = compare_record(_record("new", base - 0.1), "k", _baseline(_record("old", base)))
    assert out is not None and out.passed and out.high is not None and out.high < 0
    assert "shrank against the baseline old" in out.message


def test_without_scores_the_intervals_are_compared_conservatively():
    base = _record("old", np.linspace(0.2, 0.4, 200))
    cand = _record("new", np.linspace(0.2, 0.4, 200) + 0.5)
    base.scores = base.score_ids = None
    out = compare_record(cand, "k", _baseline(base))
    assert out is not None and out.method == "unpaired intervals"
    assert cand.interval is not None and base.interval is not None
    assert out.low == pytest.approx(cand.interval["low"] - base.interval["high"])
    assert not out.passed
    cand.interval = None
    out = compare_record(cand, "k", _baseline(base))
    assert out is not None and out.method == "not compared" and out.passed


def test_other_test_images_or_other_data_are_refused():
    base = _record("old", np.linspace(0, 1, 200))
    other_ids = _record("new", np.linspace(0, 1, 200), ids=[f"x{i}" for i in range(200)])
    with pytest.raises(BaselineError, match="scored on other test images"):
        compare_record(other_ids, "k", _baseline(base))
    other_data = _record("new", np.linspace(0, 1, 200), fp="d2")
    with pytest.raises(BaselineError, match="another version of dataset 'set'"):
        compare_record(other_data, "k", _baseline(base))


def test_settings_and_protocol_version_must_match():
    baseline = _baseline()
    check_settings(baseline, SETTINGS)
    with pytest.raises(BaselineError, match=rf"seed: baseline {SETTINGS['seed']}, this run 7"):
        check_settings(baseline, {**SETTINGS, "seed": 7})
    old = Baseline(Path("b.json"), PROTOCOL_VERSION - 1, dict(SETTINGS), [], [])
    with pytest.raises(BaselineError, match="protocol version 0"):
        check_settings(old, SETTINGS)


def test_save_then_load_round_trip_and_plain_json_is_refused(tmp_path: Path):
    doc = {"run": {"options": SETTINGS}, "records": [_record("old", np.ones(200)).to_dict()]}
    path = save_baseline(tmp_path / "b" / "base.json", doc)
    loaded = load_baseline(path)
    assert loaded.settings == SETTINGS and loaded.protocol_version == PROTOCOL_VERSION
    assert loaded.records[0]["score_ids"] == IDS
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(doc))
    with pytest.raises(BaselineError, match="not a pytest-metatrace baseline"):
        load_baseline(plain)
    with pytest.raises(BaselineError, match="cannot read baseline"):
        load_baseline(tmp_path / "missing.json")


def test_tolerances_parse_and_reject_chance():
    assert parse_tolerances(["0.01", "probe.*=2%"]) == [("*", 0.01), ("probe.*", 0.02)]
    with pytest.raises(BaselineError, match="KEY=VALUE"):
        parse_tolerances(["probe.*=chance+0.1"])


# --------------------------------------------------------------------------- end to end


@pytest.fixture
def gain_project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(GAIN_CONFTEST)
    # 96 images: a valid interval for differences in (-2, 2) needs about that many to
    # tell tiny_strong's drift change (+0.2) from none
    make_tiny_dataset(pytester.path / "tinyset", per_class=32)
    copy_audits(pytester.path, ("test_processing_drift.py",))
    return pytester


def _run(pytester: pytest.Pytester, encoder: str, *extra: str) -> pytest.RunResult:
    args = [a for a in FAST if a != "--metatrace-encoder=tiny"]
    return pytester.runpytest(
        *args,
        f"--metatrace-encoder={encoder}",
        "--metatrace-data=tinyset",
        "--metatrace-report=none",
        "audits",
        "-k",
        "jpeg75_420 or sharpen4",
        *extra,
    )


def test_baseline_round_trip_end_to_end(gain_project: pytest.Pytester):
    pytester = gain_project
    saved = _run(pytester, "tiny", "--metatrace-save-baseline=base.json", "--metatrace-json=a.json")
    saved.assert_outcomes(passed=2)
    saved.stdout.fnmatch_lines(["*metatrace: baseline saved to*base.json"])
    base = json.loads((pytester.path / "base.json").read_text())
    assert base["baseline"]["protocol_version"] == PROTOCOL_VERSION
    rec = next(r for r in base["records"] if r["parameter"] == "jpeg75_420")
    assert len(rec["scores"]) == len(rec["score_ids"]) == 96
    assert rec["value"] == pytest.approx(float(np.mean(rec["scores"])))

    # the same encoder under another id: difference exactly 0, passes
    same = _run(pytester, "tiny_same", "--metatrace-baseline=base.json", "--metatrace-json=s.json")
    same.assert_outcomes(passed=2)
    same.stdout.fnmatch_lines(["*processing_drift: 2 records*2 vs baseline, 0 grew*"])
    same_doc = json.loads((pytester.path / "s.json").read_text())
    assert any(c["topic"] == "Baseline comparison" for c in same_doc["choices"])
    for r in same_doc["records"]:
        assert r["baseline"]["difference"] == 0.0 and r["baseline"]["passed"]
        # identical scores: the interval of a zero change straddles zero
        assert r["baseline"]["low"] < 0.0 < r["baseline"]["high"]

    # a stronger trace fails, naming audit, change and interval
    strong = _run(
        pytester,
        "tiny_strong",
        "--metatrace-baseline=base.json",
        "--metatrace-json=b.json",
        "--junitxml=j.xml",
    )
    strong.assert_outcomes(failed=2)
    out = strong.stdout.str()
    cand = {
        r["parameter"]: r for r in json.loads((pytester.path / "b.json").read_text())["records"]
    }
    ref = {r["parameter"]: r for r in base["records"]}
    diff = cand["jpeg75_420"]["value"] - ref["jpeg75_420"]["value"]
    assert diff > 0
    comp = cand["jpeg75_420"]["baseline"]
    assert comp["difference"] == pytest.approx(diff, abs=1e-12) and comp["low"] > 0
    assert (
        "drift.jpeg75_420: the jpeg75_420 drift of tiny_strong on tinyset (processing_drift "
        "mean_cosine_distance) grew significantly against the baseline tiny" in out
    )
    assert f"change +{diff:.4g} (95% paired betting interval over the same 96 test images" in out
    assert "Traceback" not in out
    strong.stdout.fnmatch_lines(
        ["*GREW drift.jpeg75_420 [[]tiny_strong / tinyset / jpeg75_420[]]*"]
    )
    # JUnit: one readable property per record, no JSON carriers; the suite's counts
    junit = ElementTree.parse(pytester.path / "j.xml")
    props = {p.get("name"): p.get("value") for p in junit.iter("property")}
    assert set(props) == {
        "metatrace.processing_drift.mean_cosine_distance.jpeg75_420",
        "metatrace.processing_drift.mean_cosine_distance.sharpen4",
        "metatrace_failed",
        "metatrace_threshold_failures",
        "metatrace_baseline_failures",
        "metatrace_reported",
        "metatrace_undecided",
    }
    assert props["metatrace_baseline_failures"] == props["metatrace_failed"] != "0"
    assert props["metatrace.processing_drift.mean_cosine_distance.jpeg75_420"].startswith(
        f"mean_cosine_distance {cand['jpeg75_420']['value']:.4g} (95% CI "
    )
    assert f"vs baseline tiny +{diff:.4g} (CI +" in str(props.values())

    for name in ("a.json", "base.json", "s.json", "b.json"):
        assert validate_document(json.loads((pytester.path / name).read_text())) == [], name

    # a weaker trace passes: the baseline only fails growth
    weak = _run(pytester, "tiny_weak", "--metatrace-baseline=base.json")
    weak.assert_outcomes(passed=2)

    # two encoders in one run: the report's comparison page shows the baseline beside them
    two = _run(
        pytester,
        "tiny_same",
        "--metatrace-encoder=tiny_strong",
        "--metatrace-baseline=base.json",
        "--metatrace-report=two.html",
    )
    two.assert_outcomes(passed=2, failed=2)
    html = (pytester.path / "two.html").read_text()
    assert 'id="sec-comparison"' in html and "tiny_strong (unknown)" in html
    assert "↳ baseline tiny" in html

    # thresholds and baselines together: a threshold still fails the equal encoder
    both = _run(
        pytester, "tiny_same", "--metatrace-baseline=base.json", "--metatrace-threshold=drift.*=0"
    )
    both.assert_outcomes(failed=2)
    assert "is significantly above its threshold" in both.stdout.str()


def test_a_baseline_of_other_settings_or_data_is_refused(gain_project: pytest.Pytester):
    pytester = gain_project
    _run(pytester, "tiny", "--metatrace-save-baseline=base.json").assert_outcomes(passed=2)
    seed = _run(pytester, "tiny", "--metatrace-baseline=base.json", "--metatrace-seed=3")
    assert seed.ret == pytest.ExitCode.USAGE_ERROR
    seed.stderr.fnmatch_lines(
        ["*--metatrace-baseline: baseline*other protocol settings (seed: baseline 0, this run 3)*"]
    )
    # other images under the same dataset id
    make_tiny_dataset(pytester.path / "other" / "tinyset", per_class=6)
    data = pytester.runpytest(
        *[a for a in FAST if a != "--metatrace-encoder=tiny"],
        "--metatrace-encoder=tiny_strong",
        "--metatrace-data=other/tinyset",
        "--metatrace-report=none",
        "--metatrace-baseline=base.json",
        "audits",
        "-k",
        "jpeg75_420",
    )
    data.assert_outcomes(failed=1)
    assert "was measured on another version of dataset 'tinyset'" in data.stdout.str()


def test_a_pyproject_configuration_drives_the_run(gain_project: pytest.Pytester):
    pytester = gain_project
    _run(pytester, "tiny", "--metatrace-save-baseline=base.json").assert_outcomes(passed=2)
    pytester.makepyprojecttoml(
        """
        [tool.pytest.ini_options]
        metatrace_encoder = ["tiny_strong", "tiny_same"]
        metatrace_data = ["tinyset"]
        metatrace_threshold = ["drift.sharpen4 = 0.9", "drift.* = 1.0"]
        metatrace_baseline = "base.json"
        metatrace_baseline_tolerance = ["drift.sharpen4 = 0.5"]
        metatrace_report = "out/report.html"
        metatrace_json = "out/results.json"
        metatrace_cache_dir = "cache"
        # the baseline's protocol settings (FAST), or it is refused
        metatrace_probe_seeds = "2"
        metatrace_probe_trials = "4"
        metatrace_knn_k = "3"
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "audits", "-k", "jpeg75_420 or sharpen4")
    # tiny_strong grew on jpeg75_420 (tolerance 0) but not beyond 0.5 on sharpen4
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        ["*FAILED*test_processing_drift[[]tiny_strong-tinyset-jpeg75_420[]]*"]
    )
    doc = json.loads((pytester.path / "out" / "results.json").read_text())
    assert {r["encoder"] for r in doc["records"]} == {"tiny_strong", "tiny_same"}
    gates = {(r["encoder"], r["parameter"]): r["gate"] for r in doc["records"]}
    assert gates[("tiny_same", "sharpen4")]["spec"] == "0.9"
    assert gates[("tiny_same", "sharpen4")]["source"] == "ini"
    assert gates[("tiny_same", "jpeg75_420")]["spec"] == "1.0"
    tolerances = {
        (r["encoder"], r["parameter"]): r["baseline"]["tolerance"] for r in doc["records"]
    }
    assert tolerances[("tiny_strong", "sharpen4")] == 0.5
    assert tolerances[("tiny_strong", "jpeg75_420")] == 0.001  # drift.* family default
    assert (pytester.path / "out" / "report.html").is_file()
    assert any((pytester.path / "cache").iterdir())
