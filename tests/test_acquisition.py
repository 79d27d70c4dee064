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
    AgreementUnavailable,
    NeighbourAgreement,
    group_codes,
    neighbour_agreement,
    neighbour_shares,
    own_group_shares,
)
from pytest_metatrace.audits.acquisition_traces.mask_sweep import (
    EmbeddingMap,
    MaskSweep,
    SemanticCurve,
    choose_sweep_source,
    embedding_map,
    knn_accuracy,
    knn_curve,
    pair_curve,
    run_mask_sweep,
    sweep_pairs,
    twin_recall_at_1,
)
from pytest_metatrace.audits.acquisition_traces.targets import (
    AcquisitionProbeResult,
    Confound,
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


def test_knn_accuracy_follows_the_semantic_audits_tie_rule():
    train = np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1]], dtype=np.float32)
    ytr = np.array([0, 0, 1, 1])
    test = np.array([[1, 0.05], [0.05, 1]], dtype=np.float32)
    assert knn_accuracy(train, ytr, test, np.array([0, 1]), k=1) == 1.0
    # k = 4: both queries see a 2-2 vote. The best-ranked neighbour's label wins (the
    # semantic audit's rule), so both are right; the old lowest-label rule gave label 0 to
    # both and scored 0.5.
    assert knn_accuracy(train, ytr, test, np.array([0, 1]), k=4) == 1.0


def test_knn_tie_rule_on_a_constructed_tie_where_the_rules_differ():
    # Query at angle 0. Neighbours by similarity: label 2 (5 deg), label 1 (10 deg),
    # label 1 (15 deg), label 2 (20 deg), label 0 (90 deg). At k = 4 labels 1 and 2 tie
    # with two votes each: the best-ranked neighbour (5 deg) is a 2, the lowest label a 1.
    angles = np.radians([10, 20, 5, 15, 90])
    train = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    ytr = np.array([1, 2, 2, 1, 0])
    query = np.array([[1.0, 0.0]])
    assert knn_accuracy(train, ytr, query, np.array([2]), k=4) == 1.0
    assert knn_accuracy(train, ytr, query, np.array([1]), k=4) == 0.0
    # k = 3: 1 has two votes, no tie, both rules agree
    assert knn_accuracy(train, ytr, query, np.array([1]), k=3) == 1.0
    # equal similarities: the lower training index ranks first (one neighbour, label 1)
    twins = np.array([[1.0, 0.0], [1.0, 0.0]])
    assert knn_accuracy(twins, np.array([1, 0]), query, np.array([1]), k=1) == 1.0


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


def _circle(degrees: list[float]) -> np.ndarray:
    angles = np.radians(degrees)
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


#: Three postcards (groups), each a camera and a phone photo; the twin is always nearest.
POSTCARDS = {
    "x": _circle([0, 10, 30, 45, 100, 120]),
    "labels": ["camera", "phone"] * 3,
    "groups": ["g1", "g1", "g2", "g2", "g3", "g3"],
}


def test_agreement_leaves_own_group_neighbours_out_on_a_hand_built_set():
    x, labels, groups = POSTCARDS["x"], POSTCARDS["labels"], POSTCARDS["groups"]
    ids = [f"i{i}" for i in range(6)]
    result = neighbour_agreement(
        x, labels, target="smartphone", ids=ids, groups=groups, group_column="scene", ks=(1, 2)
    )
    # Unrestricted, each photo's nearest neighbour is its twin (other label): 0 at k = 1;
    # at k = 2 the second neighbours of g1-camera, g2-phone and g3-phone share the label.
    assert result.agreement_with_own_group == [0.0, 0.25]
    assert result.own_group_share == [1.0, 0.5]
    assert result.chance_with_own_group == pytest.approx(2 / 5)
    # Twins left out: g1-camera's nearest is g2-camera (30 deg), g1-phone's g2-camera,
    # g2-camera's g1-phone, g2-phone's g1-phone, g3-camera's g2-phone, g3-phone's g2-phone.
    assert result.agreement == result.agreement_without_own_group == [0.5, 0.5]
    assert result.chance == result.chance_without_own_group == pytest.approx(2 / 4)
    assert (result.own_group, result.group_column, result.n_groups) == ("excluded", "scene", 3)
    assert result.query_shares == [1.0, 0.0, 0.0, 1.0, 0.0, 1.0]
    assert "100.0% of each photo's top-1 came from its own scene" in result.grouping_note
    assert "would be 0.0% (chance 40.0%); left out, 50.0%" in result.grouping_note
    (record,) = result.to_records(encoder="e", dataset="d")
    assert (record.value, record.chance) == (0.5, pytest.approx(0.5))
    assert record.provenance["own_group"] == "excluded"
    assert record.details["grouping_note"] == result.grouping_note
    assert NeighbourAgreement.from_dict(result.to_dict()) == result
    # The option off: the unrestricted figure is the record's, the other stays beside it.
    counted = neighbour_agreement(
        x, labels, target="smartphone", ids=ids, groups=groups, own_group="include", ks=(1, 2)
    )
    assert (counted.agreement, counted.chance) == ([0.0, 0.25], pytest.approx(0.4))
    assert counted.agreement_without_own_group == [0.5, 0.5]
    assert "--metatrace-agreement-own-group=include" in counted.grouping_note
    # Without groups only the query is left out, and the report says so.
    plain = neighbour_agreement(x, labels, target="smartphone", ids=ids, ks=(1, 2))
    assert (plain.agreement, plain.own_group, plain.own_group_share) == (
        [0.0, 0.25],
        "no groups",
        [],
    )
    assert "carry no groups" in plain.grouping_note


def test_own_group_shares_and_grouped_chance():
    x, groups = POSTCARDS["x"], group_codes(POSTCARDS["groups"])
    assert own_group_shares(x, groups, [1, 2]).tolist() == [[1.0] * 6, [0.5] * 6]
    y = np.array([0, 1] * 3)
    grouped = neighbour_shares(x, y, [1, 4], groups=groups)
    assert grouped[1].tolist() == [0.5] * 6  # k = 4: every candidate, two of each label
    with pytest.raises(ValueError, match=r"every k must lie in \[1, 4\]"):
        neighbour_shares(x, y, [5], groups=groups)
    # Unequal groups: a camera in a group of three (two cameras) sees 4 - 2 cameras among
    # 7 - 3 candidates; chance is the mean of these per-query shares.
    labels = ["c", "c", "p", "c", "p", "c", "p"]
    big = ["a", "a", "a", "b", "b", None, None]
    result = neighbour_agreement(
        np.random.default_rng(0).normal(size=(7, 3)), labels, target="t",
        ids=[str(i) for i in range(7)], groups=big, ks=(1, 3),
    )  # fmt: skip
    per_query = [2 / 4, 2 / 4, 2 / 4, 3 / 5, 2 / 5, 3 / 6, 2 / 6]
    assert result.chance == pytest.approx(np.mean(per_query))
    assert result.ks == [1, 3]  # the group of 3 leaves its photos 4 candidates
    assert result.n_groups == 4  # a, b and two photos without a group


def test_agreement_refuses_groups_that_leave_too_few_candidates():
    x = np.random.default_rng(0).normal(size=(30, 4))
    with pytest.raises(AgreementUnavailable, match="largest owner holds 25 of the 30 images"):
        neighbour_agreement(
            x, ["a", "b"] * 15, target="make", ids=[str(i) for i in range(30)],
            groups=["big"] * 25 + ["s"] * 5, group_column="owner",
        )  # fmt: skip
    with pytest.raises(AgreementUnavailable, match="agreement-own-group=include"):
        neighbour_agreement(
            x, ["a", "b"] * 15, target="make", ids=[str(i) for i in range(30)],
            groups=["big"] * 25 + ["s"] * 5,
        )  # fmt: skip


def _grouped(spec: dict[str, tuple[int, int]]) -> tuple[list[str], list[str]]:
    labels: list[str] = []
    groups: list[str] = []
    for group, (phones, cameras) in spec.items():
        labels += ["smartphone"] * phones + ["camera"] * cameras
        groups += [group] * (phones + cameras)
    return labels, groups


#: 43 of the 48 training phones from alice; the test side is dave and erin.
CONFOUNDED = {"alice": (43, 16), "bob": (5, 16), "carol": (0, 16), "dave": (3, 3), "erin": (3, 3)}


def test_a_split_that_leans_on_one_group_is_flagged():
    labels, groups = _grouped(CONFOUNDED)
    split = acquisition_split(
        labels, groups, target="smartphone", min_per_class=5, test_per_class=6, seed=3
    )
    assert {groups[i] for i in split.test} == {"dave", "erin"}
    assert split.train_per_class == 48
    (confound,) = split.confounds
    assert confound == Confound("train_class", "alice", 43, 48, "smartphone")
    assert confound.share == pytest.approx(43 / 48)
    assert confound.describe("owner") == (
        "43 of 48 training images of 'smartphone' (90%) come from owner 'alice'"
    )
    assert split.to_dict()["confounds"] == [
        {"kind": "train_class", "group": "alice", "count": 43, "total": 48,
         "label": "smartphone", "share": 43 / 48}
    ]  # fmt: skip
    assert Confound.from_dict(split.to_dict()["confounds"][0]) == confound
    items = _items([{"smartphone": lab} for lab in labels], groups)
    plan = plan_targets(items, group_column="owner", min_per_class=5, test_per_class=6, seed=3)
    assert plan.confound_warnings == {
        "smartphone": "smartphone: confounded split: 43 of 48 training images of 'smartphone' "
        "(90%) come from owner 'alice'; the probe may learn that group instead of the camera. "
        "Add photos from other groups"
    }
    (record,) = plan.to_records(encoder="e", dataset="d")
    assert record.details["confound_warnings"] == plan.confound_warnings


def test_a_test_side_from_one_group_is_flagged_and_balanced_groups_are_not():
    labels, groups = _grouped({"a": (6, 6), "b": (6, 6), "c": (6, 6), "d": (6, 6)})
    split = acquisition_split(labels, groups, min_per_class=5, test_per_class=6, seed=0)
    (only,) = {groups[i] for i in split.test}
    assert split.confounds == (Confound("test_group", only, 12, 12),)
    assert split.confounds[0].describe() == f"all 12 test images come from one group, {only!r}"
    labels, groups = ["phone", "camera"] * 20, [f"s{i // 2}" for i in range(40)]
    assert acquisition_split(labels, groups, min_per_class=5, seed=0).confounds == ()
    # without groups nothing can be confounded by a group
    assert acquisition_split(labels, [None] * 40, min_per_class=5, seed=0).confounds == ()


def test_twin_recall_on_constructed_pairs():
    # Pair i: camera photo at angle 40 i, phone photo 3 deg further; but pair 2's phone
    # photo sits at pair 3's camera photo (120 deg). Misses: camera 2 (phone 1 at 43 is
    # nearer than its twin), camera 3 (phone 2 sits on it), phone 2 (camera 3 sits on it).
    cams = _circle([0, 40, 80, 120])
    phones = _circle([3, 43, 120, 123])
    assert twin_recall_at_1(cams, phones) == pytest.approx(5 / 8)
    # all-black masks: identical embeddings, every query retrieves candidate 0 = chance
    same = np.ones((4, 3))
    assert twin_recall_at_1(same, same) == pytest.approx(1 / 4)


def _pair_items(n: int) -> list[ImageItem]:
    meta = [{"smartphone": s} for _ in range(n) for s in ("camera", "smartphone")]
    return _items(meta, [f"{i // 2:03d}" for i in range(2 * n)])


def test_sweep_pairs_and_the_auto_choice():
    items = _pair_items(12)
    plan = plan_targets(items, group_column="scene", min_per_class=5, seed=0)
    labels = [it.meta["smartphone"] for it in items]
    pairs = sweep_pairs(labels, [it.group for it in items], target="smartphone")
    assert (pairs.n, pairs.sides, pairs.coverage) == (12, ("camera", "smartphone"), 1.0)
    assert pairs.first.tolist() == list(range(0, 24, 2))
    assert pairs.second.tolist() == list(range(1, 24, 2))
    auto = choose_sweep_source("auto", items, plan, dataset="cards")
    assert auto.source == "pairs" and auto.pairs is not None and auto.pairs.n == 12
    assert auto.reason.startswith("cards holds 12 group(s) of exactly one 'camera' and one")
    assert choose_sweep_source("none", items, plan, dataset="cards").source == "off"
    named = choose_sweep_source("demo", items, plan, dataset="cards")
    assert (named.source, named.spec) == ("labelled", "demo")
    # Owners with many photos each: no pairs, so auto falls back to the demo set ...
    owners = _items([{"smartphone": lab} for lab in ["camera", "smartphone"] * 20],
                    [f"o{i % 4}" for i in range(40)])  # fmt: skip
    owner_plan = plan_targets(owners, group_column="owner", min_per_class=5, seed=0)
    fallback = choose_sweep_source("auto", owners, owner_plan, dataset="mine")
    assert (fallback.source, fallback.spec) == ("labelled", "demo")
    assert "mine holds no group of exactly two photos of two smartphone classes" in fallback.reason
    # ... and asking for pairs names why there are none
    with pytest.raises(ValueError, match="--metatrace-sweep-data=pairs: mine holds no group"):
        choose_sweep_source("pairs", owners, owner_plan, dataset="mine")
    # 9 pairs are too few for auto and for pairs
    few = _pair_items(9)
    few_plan = plan_targets(few, group_column="scene", min_per_class=5, seed=0)
    assert choose_sweep_source("auto", few, few_plan, dataset="f").source == "labelled"
    with pytest.raises(ValueError, match="needs at least 10"):
        choose_sweep_source("pairs", few, few_plan, dataset="f")


def test_the_sweep_runs_its_pairs_curve_from_the_acquisition_features():
    rng = np.random.default_rng(0)
    items = _pair_items(12)
    plan = plan_targets(items, group_column="scene", min_per_class=5, seed=0)
    pairs = sweep_pairs(
        [it.meta["smartphone"] for it in items], [it.group for it in items], target="smartphone"
    )
    content = np.repeat(rng.normal(size=(12, 8)), 2, axis=0)
    device = np.tile([[2.0], [-2.0]], (12, 1)) * np.eye(8)[0]
    # ratio 0: content and device; 0.5: device only (content masked); 1.0: all black
    features = {0.0: 10 * content + device, 0.5: device + 0.01 * rng.normal(size=(24, 8)),
                1.0: np.ones((24, 8))}  # fmt: skip
    curve = pair_curve(features, pairs, ratios=(0.0, 0.5, 1.0), dataset="cards", note="n")
    assert curve.scores[0] == 1.0 and curve.scores[2] == pytest.approx(1 / 12)
    assert curve.scores[1] < 0.5
    assert (curve.chance, curve.candidates, curve.measure) == (1 / 12, 12, "recall@1")
    sweep = run_mask_sweep(
        curve, features, plan.splits["smartphone"],
        lambda: LinearProbe(mode="lbfgs", seed=0, device="cpu"), chosen_ratio=0.5,
    )  # fmt: skip
    assert sweep.probe_accuracy[1:] == [1.0, 0.5]  # device only: read; all black: chance
    (record,) = sweep.to_records(encoder="e", dataset="cards")
    assert record.metric == "semantic_recall_at_1_at_mask"
    assert (record.value, record.chance) == (curve.scores[1], 1 / 12)
    assert record.provenance["semantic_source"] == "pairs"
    assert MaskSweep.from_dict(sweep.to_dict()) == sweep


def test_knn_curve_and_records_written_before_the_pairs_curve():
    x = np.concatenate([np.eye(4)[[0]] + 0.1 * np.arange(6)[:, None] * np.eye(4)[[1]],
                        np.eye(4)[[2]] + 0.1 * np.arange(6)[:, None] * np.eye(4)[[3]]])  # fmt: skip
    y = np.array([0] * 6 + [1] * 6)
    split = (np.array([0, 1, 2, 6, 7, 8]), np.array([3, 4, 5, 9, 10, 11]))
    curve = knn_curve({0.0: x, 1.0: np.ones_like(x)}, y, split, k=3, ratios=(0.0, 1.0),
                      dataset="demo")  # fmt: skip
    # all black: every neighbour ties, the lowest training index (label 0) ranks first
    assert curve.scores == [1.0, 0.5] and curve.chance == 0.5 and curve.knn_k == 3
    old = {
        "ratios": [0.0, 1.0], "semantic_accuracy": [0.9, 0.1], "semantic_chance": 0.1,
        "semantic_dataset": "demo", "knn_k": 10, "probe_accuracy": [0.8, 0.5],
        "probe_chance": 0.5, "probe_target": "smartphone", "chosen_ratio": 0.9,
    }  # fmt: skip
    legacy = MaskSweep.from_dict(old)
    assert legacy.semantic == SemanticCurve(
        "labelled", "kNN top-1", "demo", [0.0, 1.0], [0.9, 0.1], 0.1, 0, 10,
        tie_rule="lowest label index (before the shared rule)",
    )  # fmt: skip
    assert legacy.metric == "semantic_knn_top1_at_mask"
