"""Acquisition analyses: splits, probe, neighbour agreement, kNN, map, datasets."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pytest_metatrace.analysis.probe import LinearProbe
from pytest_metatrace.audits.acquisition_traces.agreement import (
    NeighbourAgreement,
    neighbour_agreement,
    neighbour_shares,
)
from pytest_metatrace.audits.acquisition_traces.mask_sweep import (
    EmbeddingMap,
    embedding_map,
    knn_accuracy,
)
from pytest_metatrace.audits.acquisition_traces.targets import (
    AcquisitionProbeResult,
    TargetUnavailable,
    acquisition_split,
    plan_targets,
    run_acquisition_probe,
)
from pytest_metatrace.data.city100 import city100_dataset
from pytest_metatrace.data.dataset import ImageItem


@st.composite
def labelled_groups(draw):
    n_groups = draw(st.integers(4, 30))
    labels, groups = [], []
    for g in range(n_groups):
        size = draw(st.integers(1, 6))
        for _ in range(size):
            labels.append(draw(st.sampled_from(["a", "b", "c", None])))
            groups.append(f"g{g}" if draw(st.booleans()) or g % 2 else None)
    return labels, groups


@settings(max_examples=150, deadline=None)
@given(data=labelled_groups(), min_per_class=st.integers(1, 6), seed=st.integers(0, 3))
def test_split_is_group_disjoint_and_balanced(data, min_per_class, seed):
    labels, groups = data
    try:
        split = acquisition_split(labels, groups, min_per_class=min_per_class, seed=seed)
    except TargetUnavailable:
        return
    train_groups = {groups[i] for i in split.train if groups[i] is not None}
    test_groups = {groups[i] for i in split.test if groups[i] is not None}
    assert not train_groups & test_groups
    assert not set(split.train.tolist()) & set(split.test.tolist())
    train_counts = Counter(split.y_train.tolist())
    test_counts = Counter(split.y_test.tolist())
    assert set(train_counts.values()) == {split.train_per_class}
    assert set(test_counts.values()) == {split.test_per_class}
    assert len(train_counts) == len(test_counts) == len(split.classes) >= 2
    assert all(Counter(lab for lab in labels if lab)[c] >= min_per_class for c in split.classes)
    assert [labels[i] for i in split.test] == [split.classes[k] for k in split.y_test]


def test_split_keeps_scene_pairs_together_and_drops_small_classes():
    labels = ["phone", "camera"] * 20 + ["drone"] * 3
    groups = [f"s{i // 2}" for i in range(40)] + ["x", "y", "z"]
    split = acquisition_split(labels, groups, min_per_class=5, test_per_class=6, seed=1)
    assert split.classes == ("camera", "phone")
    assert split.dropped == {"drone": 3}
    assert (split.test_per_class, split.train_per_class) == (6, 14)
    test_scenes = {groups[i] for i in split.test}
    assert len(test_scenes) == 6 and test_scenes.isdisjoint(groups[i] for i in split.train)


def test_split_names_why_a_target_cannot_run():
    with pytest.raises(TargetUnavailable, match=r"1 class\(es\) with at least 10 images"):
        acquisition_split(["a"] * 20 + ["b"] * 3, [None] * 23, min_per_class=10)
    # every "b" image comes from one group: it cannot be on both sides
    with pytest.raises(TargetUnavailable, match="cannot fill"):
        acquisition_split(["a"] * 10 + ["b"] * 10, [f"g{i}" for i in range(10)] + ["one"] * 10)


def _items(labels: list[dict[str, str]], groups: list[str | None]) -> list[ImageItem]:
    return [
        ImageItem(f"i{k}", "photo", f"{k:064x}", None, g, meta)  # type: ignore[arg-type]
        for k, (meta, g) in enumerate(zip(labels, groups, strict=True))
    ]


def test_plan_lists_every_target_and_says_when_splits_are_not_group_disjoint():
    pairs = [("Apple", "smartphone"), ("Nikon", "camera"), ("Canon", "camera")]
    meta = [{"make": m, "smartphone": s, "model": m} for m, s in pairs]
    items = _items(meta * 12, [None] * 36)
    plan = plan_targets(items, group_column=None, min_per_class=5)
    assert sorted(plan.splits) == ["make", "smartphone"]
    assert set(plan.unavailable) == {
        "model", "model_smartphone", "exposure", "aperture", "iso", "focal_length",
    }  # fmt: skip
    assert plan.unavailable["model"].startswith("its classes split these images exactly as 'make'")
    assert plan.unavailable["iso"] == "no image has a value for it"
    assert "NOT group-disjoint" in plan.grouping_note
    (record,) = plan.to_records(encoder="e", dataset="d")
    assert record.value == 2.0 and record.details["unavailable"] == plan.unavailable


def test_probe_reads_a_planted_trace_and_not_noise():
    rng = np.random.default_rng(0)
    n = 120
    labels = ["phone", "camera"] * (n // 2)
    groups = [f"s{i // 2}" for i in range(n)]
    feats = rng.normal(size=(n, 16)).astype(np.float32)
    split = acquisition_split(labels, groups, target="smartphone", min_per_class=5, seed=0)
    ids = [f"i{i}" for i in range(n)]
    planted = feats.copy()
    planted[:, 0] += np.where(np.array(labels) == "phone", 3.0, -3.0)
    probe = LinearProbe(mode="lbfgs", seed=0, device="cpu")
    strong = run_acquisition_probe(planted, split, probe, ids=ids, mask_ratio=0.9)
    weak = run_acquisition_probe(feats, split, probe, ids=ids, mask_ratio=0.9)
    assert strong.top1 == 1.0 and strong.interval.low == 1.0 and strong.chance == 0.5
    assert weak.interval.low < 0.5 < weak.interval.high
    assert len(strong.test_ids) == split.test.size == 2 * split.test_per_class
    again = AcquisitionProbeResult.from_dict(strong.to_dict())
    assert again == strong
    (record,) = strong.to_records(encoder="e", dataset="d")
    assert (record.audit, record.parameter, record.value) == (
        "acquisition_probe",
        "smartphone",
        1.0,
    )


def test_neighbour_shares_on_a_constructed_circle():
    # unit vectors at these angles (degrees): cosine neighbours are the nearest angles
    angles = np.radians([0, 1, 3, 7, 12, 18])
    x = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    y = np.array([0, 0, 0, 1, 1, 1])
    shares = neighbour_shares(x, y, [1, 2])
    # the query at 7 degrees has the one at 3 (other class) nearest, then 12
    assert shares[0].tolist() == [1.0, 1.0, 1.0, 0.0, 1.0, 1.0]
    assert shares[1].tolist() == [1.0, 1.0, 1.0, 0.5, 1.0, 1.0]


def test_neighbour_agreement_against_chance():
    rng = np.random.default_rng(0)
    centers = np.eye(8, dtype=np.float32)[:2] * 10
    labels = ["phone"] * 60 + ["camera"] * 40
    x = np.concatenate(
        [centers[0] + rng.normal(size=(60, 8)), centers[1] + rng.normal(size=(40, 8))]
    )
    result = neighbour_agreement(x, labels, target="smartphone", ids=[str(i) for i in range(100)])
    # chance: (60 * 59/99 + 40 * 39/99) / 100
    assert result.chance == pytest.approx((60 * 59 + 40 * 39) / 99 / 100)
    # at k = 50 a camera query has only 39 other cameras: (60 * 1 + 40 * 39/50) / 100
    assert result.ks == [10, 25, 50]
    assert result.agreement == [1.0, 1.0, pytest.approx(0.912)]
    # pure noise: the interval covers chance (it misses in 1 of 40 draws; this is not one)
    noise = neighbour_agreement(
        np.random.default_rng(1).normal(size=(100, 8)),
        labels,
        target="smartphone",
        ids=[str(i) for i in range(100)],
    )
    assert noise.intervals[0].low < noise.chance < noise.intervals[0].high
    assert NeighbourAgreement.from_dict(result.to_dict()) == result
    (record,) = result.to_records(encoder="e", dataset="d")
    assert record.metric == "agreement@10" and record.chance == result.chance


def test_neighbour_agreement_leaves_out_k_beyond_the_set():
    x = np.random.default_rng(0).normal(size=(30, 4))
    result = neighbour_agreement(x, ["a", "b"] * 15, target="make", ids=[str(i) for i in range(30)])
    assert result.ks == [10, 25]


def test_knn_accuracy_and_tie_rule():
    train = np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1]], dtype=np.float32)
    ytr = np.array([0, 0, 1, 1])
    test = np.array([[1, 0.05], [0.05, 1]], dtype=np.float32)
    assert knn_accuracy(train, ytr, test, np.array([0, 1]), k=1) == 1.0
    # k = 4: a 2-2 tie goes to the lower label index, so the second query is wrong
    assert knn_accuracy(train, ytr, test, np.array([0, 1]), k=4) == 0.5


def test_embedding_map_is_seeded_and_round_trips():
    x = np.random.default_rng(0).normal(size=(20, 5))
    labels = ["a", "b"] * 10
    first = embedding_map(x, labels, [str(i) for i in range(20)], target="make", seed=3)
    second = embedding_map(x, labels, [str(i) for i in range(20)], target="make", seed=3)
    assert first == second and len(first.x) == 20
    assert EmbeddingMap.from_dict(first.to_dict()) == first


def test_city100_labels_groups_and_resize_control():
    native = city100_dataset("city100")
    same = city100_dataset("city100-samesize")
    assert len(native) == len(same) == 200
    assert Counter(it.meta["smartphone"] for it in native.items) == {
        "camera": 100,
        "smartphone": 100,
    }
    nikon = next(it for it in native.items if it.id == "nikon_d5500/007")
    assert (nikon.group, nikon.meta["model"], nikon.meta["make"]) == ("007", "Nikon D5500", "Nikon")
    img, _ = next(it for it in same.items if it.id == "nikon_d5500/007").source.load()
    assert img.size == (840, 600)
    phone = next(it for it in same.items if it.id == "iphone_x/007")
    assert phone.digest == next(it for it in native.items if it.id == "iphone_x/007").digest
    assert native.fingerprint != same.fingerprint
    assert "MIT" in native.credits[0].license


def test_exif_folder_dataset_counts_and_names(tmp_path: Path):
    from pytest_metatrace.data.exif_folder import exif_dataset

    def write_jpeg(path: Path, tags: dict[int, str]) -> None:
        exif = Image.Exif()
        for tag, value in tags.items():
            exif[tag] = value
        Image.new("RGB", (16, 12)).save(path, exif=exif)

    make, model, software = 0x010F, 0x0110, 0x0131
    (tmp_path / "data" / "alice").mkdir(parents=True)
    write_jpeg(tmp_path / "data" / "alice" / "a.jpg", {make: "Apple", model: "iPhone 12"})
    write_jpeg(tmp_path / "data" / "alice" / "b.jpg", {make: "Canon", software: "GIMP 2.10"})
    Image.new("RGB", (8, 8)).save(tmp_path / "data" / "plain.jpg")
    ds = exif_dataset(tmp_path / "data", cache_dir=tmp_path / "cache")
    assert [it.id for it in ds.items] == ["alice/a.jpg", "alice/b.jpg"]
    assert ds.items[0].meta["model"] == "Apple iPhone 12" and ds.items[0].group == "alice"
    assert ds.items[1].meta["edited"] == "yes"
    assert [(Path(s.path).name, s.reason) for s in ds.skipped] == [("plain.jpg", "no exif")]
    assert ds.notes["edited"] == 1 and ds.notes["no_exif"] == 1
    assert ds.group_column == "sub-folder"
