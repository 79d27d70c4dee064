"""The encoder comparison page and the command that compares saved runs."""

from __future__ import annotations

import copy
import json
import re
from html import unescape
from pathlib import Path
from typing import Any

import pytest

from pytest_metatrace.report import render_html
from pytest_metatrace.report.__main__ import main
from pytest_metatrace.report.comparison import (
    comparison_context,
    merge_documents,
    rank_by_strength,
    training_family,
)
from pytest_metatrace.report.render import normalize_document
from pytest_metatrace.spec import AuditRegistry, AuditSpec, MetricSpec, builtin_specs

#: encoder -> (spec description, probe accuracy per parameter)
ENCODERS: dict[str, tuple[dict[str, Any], dict[str, float]]] = {
    "clip": (
        {"family": "open_clip", "architecture": "ViT-B-32", "spec": "open_clip:ViT-B-32@openai"},
        {"jpeg": 0.9, "sharpening": 0.8},
    ),
    "dino": (
        {"family": "timm", "architecture": "vit_small_patch14_dinov2", "spec": "timm:x"},
        {"jpeg": 0.5, "sharpening": 0.6},
    ),
    "house": ({"family": "py", "architecture": "Net", "spec": "py:team.models:make"}, {}),
}


def _record(
    audit: str, metric: str, enc: str, param: Any, value: float | None, **extra: Any
) -> dict:
    return {
        "audit": audit,
        "metric": metric,
        "value": value,
        "encoder": enc,
        "dataset": "demo",
        "parameter": param,
        "unit": "fraction",
        **extra,
    }


def _doc(values: dict[str, dict[str, float]], baseline: dict[str, Any] | None = None) -> dict:
    records = [
        _record(
            "processing_probe",
            "top1",
            enc,
            param,
            value,
            interval={"low": value - 0.05, "high": value + 0.05},
            chance=0.25,
            baseline=baseline,
        )
        for enc, per_param in values.items()
        for param, value in per_param.items()
    ]
    encoders = [{"id": e, **ENCODERS[e][0]} for e in values if e in ENCODERS]
    return {"schema_version": 1, "run": {}, "encoders": encoders, "records": records}


# --------------------------------------------------------------------------- ranks


def test_equal_values_and_overlapping_intervals_share_a_rank():
    assert rank_by_strength({"a": (0.9, None, None), "b": (0.5, None, None)}, "higher") == {
        "a": 1,
        "b": 2,
    }
    # exact ties, and float noise (0.1 + 0.2 is 0.30000000000000004), share rank 1
    tie = {"a": (0.3, None, None), "b": (0.1 + 0.2, None, None), "c": (0.1, None, None)}
    assert rank_by_strength(tie, "higher") == {"a": 1, "b": 1, "c": 3}
    # a's interval overlaps b's: not separated; both lie wholly above c's
    overlap = {"a": (0.8, 0.7, 0.9), "b": (0.72, 0.6, 0.75), "c": (0.4, 0.3, 0.5)}
    assert rank_by_strength(overlap, "higher") == {"a": 1, "b": 1, "c": 3}
    # "lower": the smallest value is the strongest trace
    assert rank_by_strength(overlap, "lower") == {"c": 1, "a": 2, "b": 2}
    with pytest.raises(ValueError, match="not ranked"):
        rank_by_strength(overlap, "none")


def test_training_family_from_spec_or_declaration():
    assert training_family(ENCODERS["clip"][0]) == "vision-language"
    assert training_family(ENCODERS["dino"][0]) == "self-supervised"
    assert training_family({"family": "timm", "architecture": "resnet50"}) == "supervised"
    assert training_family({"id": "lite1", "family": "builtin"}) == "supervised"
    assert training_family(ENCODERS["house"][0]) == "unknown"
    assert training_family({**ENCODERS["house"][0], "training": "supervised"}) == "supervised"


# --------------------------------------------------------------------------- page

#: A team's own audit: one trace where higher is more, one where lower is, one that is none.
TEAM = AuditSpec(
    "team",
    "Team audit",
    "constructed metrics with known rankings",
    metrics=(
        MetricSpec("team_probe", "top1", "higher", "team probe top-1"),
        MetricSpec("team_recall", "recall", "lower", "kept recall", chance="none"),
        MetricSpec("team_count", "*", "none", "images"),
    ),
)


def three_encoder_document() -> dict[str, Any]:
    """Three encoders on metrics whose ranks are known by construction.

    - ``team_probe/top1`` (higher = trace, chance 1/3): jpeg A 0.90 [0.85, 0.95],
      B 0.50 [0.45, 0.55], C 0.50 [0.46, 0.54] -> A 1, B and C tied at 2;
      sharpening A 0.33, B 0.60, C 0.80 (no intervals) -> C 1, B 2, A 3
      (A at chance);
    - ``team_recall/recall`` (lower = trace): A 0.95, B 0.60, C 0.80 -> B 1, C 2, A 3;
    - ``team_count/points`` (not a trace): 200 each; ``other/mystery``: no spec says.
    """
    third = 1 / 3
    records = []
    for enc, jpeg, sharp, recall in (
        ("A", (0.90, 0.85, 0.95), 0.33, 0.95),
        ("B", (0.50, 0.45, 0.55), 0.60, 0.60),
        ("C", (0.50, 0.46, 0.54), 0.80, 0.80),
    ):
        iv = {"low": jpeg[1], "high": jpeg[2]}
        records += [
            _record("team_probe", "top1", enc, "jpeg", jpeg[0], interval=iv, chance=third),
            _record("team_probe", "top1", enc, "sharpening", sharp, chance=third),
            _record("team_recall", "recall", enc, None, recall),
            _record("team_count", "points", enc, None, 200.0, unit="images"),
            _record("other", "mystery", enc, None, 0.5),
        ]
    encoders = [{"id": e, "family": "timm", "architecture": "resnet50"} for e in "ABC"]
    return {"schema_version": 1, "run": {}, "encoders": encoders, "records": records}


def test_only_trace_metrics_are_ranked_each_in_its_direction():
    context = comparison_context(
        normalize_document(three_encoder_document()), AuditRegistry([TEAM])
    )
    assert context is not None
    blocks = {b["metric"]: b for b in context["blocks"]}
    assert sorted(blocks) == ["recall", "top1"]  # points and mystery are not ranked

    probe = blocks["top1"]
    ranks = {row["encoder"]: [c["rank"] for c in row["cells"]] for row in probe["table"]}
    assert ranks == {"A": [1, 3], "B": [2, 2], "C": [2, 1]}
    # mean ranks A 2.0, C 1.5, B 2.0: C first, then A and B in the document's order
    assert [(r["encoder"], r["mean_rank"]) for r in probe["table"]] == [
        ("C", 1.5),
        ("A", 2.0),
        ("B", 2.0),
    ]
    assert probe["strongest"] == "a higher value is a stronger trace"
    assert [p["chance"] for p in probe["parameters"]] == ["33.3%", "33.3%"]
    at_chance = {row["encoder"]: [c["at_chance"] for c in row["cells"]] for row in probe["table"]}
    assert at_chance == {"A": [False, True], "B": [False, False], "C": [False, False]}

    recall = blocks["recall"]
    assert recall["strongest"] == "a lower value is a stronger trace"
    assert [(r["encoder"], r["cells"][0]["rank"]) for r in recall["table"]] == [
        ("B", 1),
        ("C", 2),
        ("A", 3),
    ]
    assert not recall["has_chance"]

    context_metrics = {c["metric"]: c for c in context["context"]}
    assert sorted(context_metrics) == ["mystery", "points"]
    assert context_metrics["points"]["why"] == "declared not a trace by its audit"
    assert context_metrics["mystery"]["why"] == "no audit's spec says whether it is a trace"
    assert context_metrics["points"]["rows"] == [{"parameter": "—", "cells": ["200"] * 3}]

    overview = context["overview"]
    # by the mean of their mean ranks: B 1.5, C 1.75, A 2.5
    means = {
        e: [row["cells"][i]["mean"] for row in overview["rows"]]
        for i, e in enumerate(overview["encoders"])
    }
    assert means == {"B": [2.0, 1.0], "C": [1.5, 2.0], "A": [2.0, 3.0]}
    assert overview["encoders"] == ["B", "C", "A"]
    assert overview["firsts"] == [1, 1, 0]


def test_the_page_draws_ranks_chance_marks_and_no_rank_for_non_traces():
    html = render_html(three_encoder_document(), registry=AuditRegistry([TEAM]))
    start = html.index('id="sec-comparison"')
    section = html[start : html.index("</section>", start)]
    text = unescape(re.sub(r"<[^>]+>", " ", section))
    assert "rank 1 = strongest trace: a higher value is a stronger trace" in text
    assert "rank 1 = strongest trace: a lower value is a stronger trace" in text
    # the tie on jpeg: B and C both second, in the panel's bar labels
    labels = re.findall(r">(\d\. [ABC]) \(supervised\)</text>", section)
    assert labels == ["1. A", "2. B", "2. C", "1. C", "2. B", "3. A", "1. B", "2. C", "3. A"]
    assert "rank 3 · at chance" in text
    # one dashed chance mark per probe bar (3 encoders x 2 parameters), none on recall
    assert section.count("<title>chance 0.333</title>") == 6
    # the non-traces are listed as context, under their own heading, never ranked
    context = text[text.index("Context, not ranked") :]
    assert "team_count · images" in context and "other · mystery" in context
    assert not re.search(r"rank \d", context)
    assert "team_count" not in text[: text.index("Context, not ranked")]


def test_builtin_non_traces_are_not_ranked_and_probe_panels_show_chance():
    """The records the issue named: counts, content accuracy, recall (more is less trace)."""
    records = []
    for enc, top1 in (("lite0", 0.254), ("lite1", 0.25)):
        records += [
            _record("acquisition_targets", "runnable_targets", enc, None, 1.0, unit="targets"),
            _record("embedding_map", "points", enc, "smartphone", 200.0, unit="images"),
            _record("semantic_influence", "knn_accuracy", enc, "jpeg", 0.97),
            _record("mask_sweep", "semantic_knn_top1_at_mask", enc, "smartphone", 0.85),
            _record("cross_camera_retrieval", "recall_at_1_same", enc, "crop/camera", 0.83),
            _record(
                "processing_probe",
                "top1",
                enc,
                "jpeg",
                top1,
                interval={"low": top1 - 0.012, "high": top1 + 0.012},
                chance=1 / 6,
            ),
        ]
    doc = {"run": {}, "records": records, "encoders": [{"id": "lite0"}, {"id": "lite1"}]}
    context = comparison_context(normalize_document(doc))
    assert context is not None
    assert [(b["audit"], b["metric"]) for b in context["blocks"]] == [("processing_probe", "top1")]
    assert len(context["context"]) == 5
    (probe,) = context["blocks"]
    # 25.4% [24.2, 26.6] and 25.0% [23.8, 26.2] overlap: both rank 1, a tie
    assert [c["rank"] for row in probe["table"] for c in row["cells"]] == [1, 1]
    # The built-in metric specs alone (no sections: the records above have no details).
    metrics_only = AuditRegistry(
        [AuditSpec(s.name, s.title, s.summary, metrics=s.metrics) for s in builtin_specs()]
    )
    html = render_html(doc, registry=metrics_only)
    assert html.count("<title>chance 0.167</title>") == 2


def test_the_page_shows_the_baseline_beside_the_candidate():
    base = {
        "baseline_encoder": "clip-v1",
        "baseline_value": 0.8,
        "baseline_interval": {"low": 0.75, "high": 0.85},
        "difference": 0.1,
        "low": 0.04,
        "high": 0.16,
        "passed": False,
    }
    doc = _doc({"clip": ENCODERS["clip"][1], "dino": ENCODERS["dino"][1]}, baseline=base)
    html = render_html(doc)
    assert 'id="sec-comparison"' in html and "Encoder comparison" in html
    assert "baseline clip-v1: 80.0% [75.0, 85.0]; change +10 [+4, +16] (grew)" in html
    assert "↳ baseline clip-v1" in html
    assert '<span class="badge fail">grew</span>' in html


def test_a_single_encoder_report_has_no_comparison_section():
    html = render_html(normalize_document(_doc({"clip": ENCODERS["clip"][1]})))
    assert 'id="sec-comparison"' not in html
    assert "comparison page failed" not in html
    two = render_html(normalize_document(_doc({e: ENCODERS[e][1] for e in ("clip", "dino")})))
    assert 'id="sec-comparison"' in two and "comparison page failed" not in two


# --------------------------------------------------------------------------- compare command


def _release(value: float, gates: tuple[bool, ...], outcomes: dict[str, int]) -> dict:
    """One run of encoder ``dino``: a probe per gate outcome, plus two ungated records."""
    records = [
        _record(
            "processing_probe",
            "top1",
            "dino",
            f"p{i}",
            value,
            interval={"low": value - 0.02, "high": value + 0.02},
            chance=0.5,
            gate={"passed": passed, "key": f"probe.p{i}", "threshold": 0.6},
        )
        for i, passed in enumerate(gates)
    ]
    records += [_record("notes", "points", "dino", "smartphone", 200.0, unit="images")] * 2
    tests = [
        {
            "nodeid": "audits/test_probe.py::test_probe",
            "outcome": "failed" if not all(gates) else "passed",
        }
    ]
    return {
        "schema_version": 1,
        "run": {
            "outcomes": outcomes,
            "tests": tests,
            "duration_s": 60.0,
            "versions": {"torch": "2"},
        },
        "encoders": [{"id": "dino", **ENCODERS["dino"][0]}],
        "datasets": [{"id": "demo", "name": "Demo photos", "fingerprint": "f1"}],
        "records": records,
    }


def _header_rows(html: str) -> dict[str, list[str]]:
    """The merged header's table: row title -> one text per run."""
    table = html[html.index('<table class="data comparison runs">') :]
    table = table[: table.index("</table>")]
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", table, flags=re.S):
        cells = [
            " ".join(unescape(re.sub(r"<[^>]+>", " ", c)).split())
            for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, flags=re.S)
        ]
        rows[cells[0]] = cells[1:]
    return rows


def test_compare_command_counts_each_run_side_by_side(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    runs = {
        "v1": _release(0.60, (True,), {"passed": 3, "failed": 0}),
        "v2": _release(0.70, (True, False), {"passed": 2, "failed": 1}),
        "v3": _release(0.90, (False, False, True), {"passed": 1, "failed": 2, "skipped": 4}),
    }
    paths = []
    for name, doc in runs.items():
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(doc))
    out = tmp_path / "cmp.html"
    assert main(["compare", *map(str, paths), "-o", str(out)]) == 0
    assert f"metatrace report written to {out}" in capsys.readouterr().out
    html = out.read_text()
    header = _header_rows(html[: html.index("</header>")])
    assert header["run"] == ["v1", "v2", "v3"]
    assert header["encoders"] == ["dino@v1", "dino@v2", "dino@v3"]  # three releases, 3 columns
    assert header["datasets"] == ["Demo photos"] * 3
    assert header["records"] == ["3", "4", "5"]
    assert header["gated"] == ["1", "2", "3"]
    assert header["gates failed"] == ["0", "1", "2"]
    assert header["tests passed"] == ["3", "2", "1"]
    assert header["tests failed"] == ["0", "1", "2"]
    assert header["tests skipped"] == ["—", "—", "4"]
    assert header["duration"] == ["1 min 00 s"] * 3
    assert "3 runs compared · 3 encoders · 12 records in all" in html
    # the release history is one comparison column per release, ranked by its trace
    section = html[html.index('id="sec-comparison"') :]
    assert ">1. dino@v3 (self-supervised)</text>" in section
    assert ">2. dino@v2 (self-supervised)</text>" in section
    assert "dino@v1</strong> self-supervised" in section  # the family, in the lead
    assert "[v2] audits/test_probe.py::test_probe" in html
    # the summary's tiles add the runs up instead of showing the first run's
    merged = merge_documents(list(zip(("v1", "v2", "v3"), runs.values(), strict=True)))
    assert merged["run"]["outcomes"] == {"passed": 6, "failed": 3, "skipped": 4}
    assert merged["run"]["duration_s"] == 180.0
    assert merged["run"]["versions"] == {"torch": "2"}  # the same in every run: one value


def test_merge_keeps_different_encoders_and_says_what_differs_per_run():
    a = _doc({"dino": {"jpeg": 0.6}})
    b = _doc({"clip": {"jpeg": 0.9}})
    a["run"] = {"versions": {"torch": "2.1", "numpy": "2"}, "rootdir": "/a"}
    b["run"] = {"versions": {"torch": "2.4", "numpy": "2"}, "rootdir": "/b"}
    merged = merge_documents([("a", a), ("b", b)])
    assert sorted(r["encoder"] for r in merged["records"]) == ["clip", "dino"]  # no clash: kept
    assert merged["run"]["versions"] == {"torch": {"a": "2.1", "b": "2.4"}, "numpy": "2"}
    assert merged["run"]["rootdir"] == "a: /a; b: /b"
    assert [r["encoders"] for r in merged["run"]["runs"]] == [["dino"], ["clip"]]
    # the same label twice stays two runs
    twice = merge_documents([("x", a), ("x", copy.deepcopy(a))])
    assert [r["label"] for r in twice["run"]["runs"]] == ["x", "x#2"]
    assert sorted({r["encoder"] for r in twice["records"]}) == ["dino@x", "dino@x#2"]


def test_merge_survives_documents_with_parts_missing_or_of_the_wrong_type():
    broken = {"run": "crashed", "records": {"not": "a list"}, "encoders": None}
    half = {"records": ["junk", _record("processing_probe", "top1", "x", "jpeg", 0.5)]}
    merged = merge_documents(
        [("broken", broken), ("half", half), ("ok", _doc({"dino": {"jpeg": 0.6}}))]
    )
    counts = [(r["label"], r["records"], r["encoders"]) for r in merged["run"]["runs"]]
    assert counts == [("broken", 0, []), ("half", 1, ["x"]), ("ok", 1, ["dino"])]
    html = render_html(merged)
    assert "comparison page failed" not in html
    assert _header_rows(html)["records"] == ["0", "1", "1"]
    # hand-edited run entries do not break the header
    merged["run"]["runs"] = ["junk", {"label": "only", "outcomes": "x", "encoders": "e"}]
    assert _header_rows(render_html(merged))["encoders"] == ["e"]
    with pytest.raises(ValueError, match="no documents"):
        merge_documents([])


def test_compare_command_reports_an_unreadable_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    with pytest.raises(SystemExit):
        main([str(tmp_path / "missing.json")])
    assert "cannot read" in capsys.readouterr().err


def test_the_smallest_detected_step_ranks_the_more_sensitive_encoder_first():
    """Issue 19: a smaller detected step is the stronger trace; nothing detected is not ranked."""
    records = [
        _record("sensitivity", "smallest_step", "lite0", "jpeg", 5.0, unit="quality points"),
        _record("sensitivity", "smallest_step", "lite1", "jpeg", 10.0, unit="quality points"),
        _record("sensitivity", "smallest_step", "lite2", "jpeg", None, unit="quality points"),
    ]
    doc = {
        "run": {},
        "records": records,
        "encoders": [{"id": "lite0"}, {"id": "lite1"}, {"id": "lite2"}],
    }
    context = comparison_context(normalize_document(doc))
    assert context is not None
    (block,) = context["blocks"]
    assert (block["audit"], block["metric"]) == ("sensitivity", "smallest_step")
    assert block["strongest"] == "a lower value is a stronger trace"
    ranks = {row["encoder"]: row["cells"][0]["rank"] for row in block["table"]}
    assert ranks["lite0"] == 1 and ranks["lite1"] == 2
    assert ranks.get("lite2") is None  # no step detected: no value to rank
