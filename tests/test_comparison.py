"""The encoder comparison page and the command that compares saved runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_metatrace.report import render_html
from pytest_metatrace.report.__main__ import main
from pytest_metatrace.report.comparison import (
    comparison_context,
    merge_documents,
    training_family,
)
from pytest_metatrace.report.render import normalize_document

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


def _doc(values: dict[str, dict[str, float]], baseline: dict[str, Any] | None = None) -> dict:
    records = []
    for enc, per_param in values.items():
        for param, value in per_param.items():
            records.append(
                {
                    "audit": "processing_probe",
                    "metric": "top1",
                    "value": value,
                    "encoder": enc,
                    "dataset": "demo",
                    "parameter": param,
                    "unit": "fraction",
                    "interval": {"low": value - 0.05, "high": value + 0.05},
                    "baseline": baseline,
                }
            )
    encoders = [{"id": e, **ENCODERS[e][0]} for e in values if e in ENCODERS]
    return {"schema_version": 1, "run": {}, "encoders": encoders, "records": records}


def test_training_family_from_spec_or_declaration():
    assert training_family(ENCODERS["clip"][0]) == "vision-language"
    assert training_family(ENCODERS["dino"][0]) == "self-supervised"
    assert training_family({"family": "timm", "architecture": "resnet50"}) == "supervised"
    assert training_family(ENCODERS["house"][0]) == "unknown"
    assert training_family({**ENCODERS["house"][0], "training": "supervised"}) == "supervised"


def test_encoders_are_ranked_per_parameter_strongest_first():
    values = {
        "dino": ENCODERS["dino"][1],
        "clip": ENCODERS["clip"][1],
        "house": {"jpeg": 0.7, "sharpening": 0.9},
    }
    context = comparison_context(normalize_document(_doc(values)))
    assert context is not None
    (block,) = context["blocks"]
    assert block["parameters"] == ["jpeg", "sharpening"]
    # ranks: jpeg clip 1, house 2, dino 3; sharpening house 1, clip 2, dino 3
    assert [(r["encoder"], r["mean_rank"], r["family"]) for r in block["table"]] == [
        ("clip", 1.5, "vision-language"),
        ("house", 1.5, "unknown"),
        ("dino", 3.0, "self-supervised"),
    ]
    assert [c["text"] for c in block["table"][0]["cells"]] == [
        "90.0% [85.0, 95.0]",
        "80.0% [75.0, 85.0]",
    ]
    assert comparison_context(normalize_document(_doc({"clip": ENCODERS["clip"][1]}))) is None


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


def test_compare_command_merges_releases(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    for name, value in (("v1", 0.6), ("v2", 0.8)):
        doc = _doc({"dino": {"jpeg": value}})
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
    out = tmp_path / "cmp.html"
    assert (
        main(["compare", str(tmp_path / "v1.json"), str(tmp_path / "v2.json"), "-o", str(out)]) == 0
    )
    html = out.read_text()
    assert "dino@v2 (self-supervised)" in html and "dino@v1 (self-supervised)" in html
    merged = merge_documents(
        [("a", _doc({"dino": {"jpeg": 0.6}})), ("b", _doc({"clip": {"jpeg": 0.9}}))]
    )
    assert sorted(r["encoder"] for r in merged["records"]) == ["clip", "dino"]  # no clash: kept
    with pytest.raises(SystemExit):
        main([str(tmp_path / "missing.json")])
    assert "cannot read" in capsys.readouterr().err


def test_a_single_encoder_report_has_no_comparison_section():
    html = render_html(normalize_document(_doc({"clip": ENCODERS["clip"][1]})))
    assert 'id="sec-comparison"' not in html
    assert "comparison page failed" not in html
    two = render_html(normalize_document(_doc({e: ENCODERS[e][1] for e in ("clip", "dino")})))
    assert 'id="sec-comparison"' in two and "comparison page failed" not in two
