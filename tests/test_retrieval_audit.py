"""The cross-camera retrieval audit as users run it, on a pairs folder and a manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from plugin_helpers import FAST, TINY_CONFTEST, copy_audits, preimport

# pytester runs in-process; see plugin_helpers.preimport.
preimport("pytest_metatrace.audits.cross_camera_retrieval.analysis")

SUBJECTS = 8


def make_pairs(root: Path) -> list[tuple[str, str, str]]:
    """Subject = colour and stripes; the 'phone' adds fine noise (a trace the tiny net reads)."""
    rng = np.random.default_rng(7)
    _, xx = np.mgrid[0:48, 0:48]
    rows = []
    for s in range(SUBJECTS):
        base = rng.uniform(40, 200, size=3)
        stripes = 30 * np.sin(xx * (0.2 + 0.05 * s))[..., None]
        scene = base + stripes
        for camera, noise in (("camera", 2.0), ("phone", 30.0)):
            img = np.clip(scene + rng.normal(0, noise, scene.shape), 0, 255).astype(np.uint8)
            path = root / f"s{s}" / f"{camera}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(path)
            rows.append((f"s{s}/{camera}.png", f"s{s}", camera))
    # A subject without its phone photo: reported and left out.
    lone = root / "s_lone" / "camera.png"
    lone.parent.mkdir()
    Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(lone)
    rows.append(("s_lone/camera.png", "s_lone", "camera"))
    return rows


@pytest.fixture
def pairs_project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(TINY_CONFTEST)
    rows = make_pairs(pytester.path / "mypairs")
    manifest = pytester.path / "mypairs.csv"
    manifest.write_text(
        "path,subject,camera\n" + "".join(f"mypairs/{p},{s},{c}\n" for p, s, c in rows)
    )
    copy_audits(pytester.path, ("test_cross_camera_retrieval.py",))
    return pytester


def _records(path: Path) -> dict[tuple[str, str], dict]:
    doc = json.loads(path.read_text())
    return {(r["parameter"], r["metric"]): r for r in doc["records"]}


def test_folder_and_manifest_runs_detect_the_trace_gate_and_agree(pairs_project):
    pytester = pairs_project
    common = (*FAST, "--metatrace-pairs-crop=0.25", "audits")
    result = pytester.runpytest(
        *common, "--metatrace-pairs=mypairs", "--metatrace-json=folder.json"
    )
    # The phone noise is a camera trace the tiny net reads: on whole frames the default
    # margin gate catches it; on 0.25 crops the gap is smaller and its gate interval over
    # 8 subjects still reaches the threshold, so that gate does not fail.
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*pairs mypairs: left out 1 subject*s_lone: no phone photo*",
            "*retrieval.margin_gap: the camera queries, whole frames: margin_gap*",
            "*metatrace: 20 records, 8 gated*",
        ]
    )
    recs = _records(pytester.path / "folder.json")
    assert len(recs) == 2 * 2 * 5
    for protocol in ("whole", "crop"):
        for camera in ("camera", "phone"):
            gap = recs[(f"{protocol}/{camera}", "recall_gap")]
            same = recs[(f"{protocol}/{camera}", "recall_at_1_same")]["value"]
            diff = recs[(f"{protocol}/{camera}", "recall_at_1_different")]["value"]
            assert gap["value"] == pytest.approx(diff - same)
            # every miss is counted, whether or not its thumbnail is shown
            missed = gap["details"]["failures"]["missed"]
            assert missed == {
                "same": round((1 - same) * SUBJECTS),
                "different": round((1 - diff) * SUBJECTS),
            }
            assert gap["gate"]["key"] == "retrieval.recall_gap"
            margin = recs[(f"{protocol}/{camera}", "margin_gap")]
            assert margin["gate"]["threshold"] == 0.05 and margin["value"] > 0.05
            assert margin["gate"]["compared"] == "interval low" and margin["gate"]["decided"]
            low = margin["interval"]["low"]
            assert margin["gate"]["passed"] is (low <= 0.05)
            assert margin["gate"]["passed"] is (protocol == "crop")
            result_dict = gap["details"]["result"]
            assert result_dict["subjects"] == [f"s{s}" for s in range(SUBJECTS)]
            assert gap["dataset"] == (
                "mypairs-pairs" if protocol == "whole" else "mypairs-pairs-crop0.25"
            )
    html = (pytester.path / "reports" / "metatrace.html").read_text()
    assert "Cross-camera retrieval" in html
    assert "s_lone" in html  # the left-out subject is named in the report's dataset section
    doc = json.loads((pytester.path / "folder.json").read_text())
    described = {d["id"]: d for d in doc["datasets"]}["mypairs-pairs"]
    assert described["pairs"]["incomplete"] == [{"subject": "s_lone", "reason": "no phone photo"}]
    assert described["n_images"] == 2 * SUBJECTS

    again = pytester.runpytest(
        *common, "--metatrace-pairs=mypairs.csv", "--metatrace-json=manifest.json"
    )
    again.assert_outcomes(failed=1, passed=1)
    again.stdout.fnmatch_lines(["*embeddings computed 0*"])  # same photos: the cache serves them
    recs2 = _records(pytester.path / "manifest.json")
    for (parameter, metric), rec in recs.items():
        assert recs2[(parameter, metric)]["value"] == rec["value"]


def test_thresholds_above_the_gaps_pass_and_crop_1_skips(pairs_project):
    result = pairs_project.runpytest(
        *FAST,
        "--metatrace-pairs=mypairs",
        "--metatrace-pairs-crop=1",
        "--metatrace-threshold=retrieval.margin_gap=2",
        "--metatrace-threshold=retrieval.recall_gap=1",
        "audits",
    )
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*metatrace: 10 records, 4 gated*"])


def test_bad_pairs_spec_fails_with_the_fix(pairs_project):
    result = pairs_project.runpytest(*FAST, "--metatrace-pairs=nowhere", "audits")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        ["*cannot load the paired photos of --metatrace-pairs: pairs 'nowhere'*CSV*"]
    )
