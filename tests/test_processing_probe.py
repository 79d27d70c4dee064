"""Processing probes: the per-seed draw, test-under-every-class scoring and averaging."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pytest_metatrace.analysis.probe import LinearProbe, ProbeInputError, l2_normalize
from pytest_metatrace.analysis.stats import bootstrap_mean
from pytest_metatrace.audits.processing_probe.analysis import (
    ProcessingProbe,
    draw_classes,
    run_processing_probe,
)
from pytest_metatrace.processing.groups import PARAMETER_GROUPS

FIXED = LinearProbe(lr=1.0, weight_decay=0.0, epochs=50)


def _group_embeddings(
    classes: tuple[str, ...], n_train: int, n_test: int, dim: int, signal: float, seed: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per-image semantic vectors plus ``signal`` times a per-class offset."""
    rng = np.random.default_rng(seed)
    semantic = rng.normal(size=(n_train + n_test, dim))
    offsets = rng.normal(size=(len(classes), dim))
    views = {c: semantic + signal * offsets[k] for k, c in enumerate(classes)}
    return (
        {c: v[:n_train] for c, v in views.items()},
        {c: v[n_train:] for c, v in views.items()},
    )


def test_draw_is_the_documented_rule() -> None:
    for seed in (0, 3, 17):
        expected = np.random.default_rng(seed).integers(0, 6, 50)
        np.testing.assert_array_equal(draw_classes(seed, 6, 50), expected)


# --------------------------------------------------------------- the hand-computed case

# Two classes, 3-d features sharing a large third coordinate. Every training
# image looks the same under a class: A under "a", B under "b". Test image 1
# is "swapped" (it shows B under "a" and A under "b"); images 0 and 2 are not.
#  - A draw holding both classes gives a probe that maps A -> a, B -> b: images
#    0 and 2 are right under both classes, image 1 wrong under both.
#  - A draw holding one class m only gives a probe that predicts m for both
#    features (they overlap strongly): every image is right under m only.
A = np.array([1.0, 0.0, 2.0])
B = np.array([0.0, 1.0, 2.0])
HAND_TRAIN = {"a": np.tile(A, (4, 1)), "b": np.tile(B, (4, 1))}
HAND_TEST = {"a": np.stack([A, B, A]), "b": np.stack([B, A, B])}
SWAPPED = np.array([False, True, False])


def _expected_correct(seeds: list[int]) -> np.ndarray:
    """correct[s, k, i] from the reasoning above, using only the draw rule."""
    out = np.empty((len(seeds), 2, 3), dtype=bool)
    for s, seed in enumerate(seeds):
        draw = np.random.default_rng(seed).integers(0, 2, 4)
        for k in range(2):
            if np.unique(draw).size == 2:
                out[s, k] = ~SWAPPED
            else:
                out[s, k] = k == draw[0]
    return out


def test_hand_computed_sampling_and_averaging() -> None:
    seeds = [4, 5, 6, 7]  # base_seed 4, seeds=4
    draws = [np.random.default_rng(s).integers(0, 2, 4) for s in seeds]
    # The case is only informative if both kinds of draw occur.
    assert {np.unique(d).size for d in draws} == {1, 2}
    result = run_processing_probe(
        HAND_TRAIN, HAND_TEST, ["a", "b"], probe=FIXED, seeds=4, base_seed=4, n_boot=200
    )
    correct = _expected_correct(seeds)
    top1 = correct.mean(axis=(1, 2))
    assert result.seeds == seeds
    assert result.top1_per_seed == pytest.approx(top1.tolist())
    assert result.top1_mean == pytest.approx(top1.mean())
    # Population std over the seeds (ddof=0).
    assert result.top1_std == pytest.approx(np.sqrt(((top1 - top1.mean()) ** 2).mean()))
    assert result.std_ddof == 0
    # Balanced test set: mean per-class accuracy equals top-1 for every seed.
    assert result.mean_per_class_per_seed == pytest.approx(top1.tolist())
    assert result.per_class_accuracy == pytest.approx(correct.mean(axis=(0, 2)).tolist())
    np.testing.assert_allclose(result.per_image_correct, correct.mean(axis=(0, 1)))
    # Confusion summed over seeds: predictions follow from correctness with 2 classes.
    truth = np.arange(2)[None, :, None]
    preds = np.where(correct, truth, 1 - truth)
    expected_conf = np.zeros((2, 2), dtype=int)
    for k in range(2):
        expected_conf[k] = np.bincount(preds[:, k].ravel(), minlength=2)
    assert result.confusion.tolist() == expected_conf.tolist()
    assert result.train_class_counts.tolist() == [
        np.bincount(d, minlength=2).tolist() for d in draws
    ]
    assert (result.n_train, result.n_test_images, result.n_test_samples) == (4, 3, 6)
    assert result.chance == 0.5
    assert result.search is None
    assert result.hyperparameters == {"lr": 1.0, "weight_decay": 0.0}


def test_hand_case_literal_values_for_base_seed_4() -> None:
    # Seeds 4..7 draw [1,1,1,1], [1,1,0,1], [0,1,1,0], [1,1,1,1]: single, both,
    # both, single. Per seed 4, 6, 6, 4 of 6 samples right -> top-1
    # [1/2, 2/3, 2/3, 1/2], mean 7/12, population std 1/12. Image 0 is right in
    # 2 + 2 + 1 + 1 = 6 of 8 scores, image 1 in 0 + 0 + 1 + 1 = 2 of 8.
    result = run_processing_probe(
        HAND_TRAIN, HAND_TEST, ["a", "b"], probe=FIXED, seeds=4, base_seed=4, n_boot=200
    )
    assert result.top1_per_seed == pytest.approx([1 / 2, 2 / 3, 2 / 3, 1 / 2])
    assert result.top1_mean == pytest.approx(7 / 12)
    assert result.top1_std == pytest.approx(1 / 12)
    assert result.per_image_correct.tolist() == pytest.approx([0.75, 0.25, 0.75])
    # Class "a": right on images 0, 2 in both-class seeds; never in the all-"b" ones.
    assert result.per_class_accuracy == pytest.approx([1 / 3, 5 / 6])
    sample = run_processing_probe(
        HAND_TRAIN, HAND_TEST, ["a", "b"], probe=FIXED, seeds=4, base_seed=4, std_ddof=1,
        n_boot=200,
    )  # fmt: skip
    assert sample.top1_std == pytest.approx(np.sqrt(4 / 3) / 12)


def test_interval_is_the_bootstrap_of_per_image_correctness() -> None:
    train, test = _group_embeddings(("x", "y", "z"), 90, 40, 8, 0.3, seed=1)
    result = run_processing_probe(
        train, test, ["x", "y", "z"], probe=LinearProbe(lr=2.0, weight_decay=0.0, epochs=10),
        seeds=3, base_seed=2, n_boot=500,
    )  # fmt: skip
    expected = bootstrap_mean(result.per_image_correct, n_boot=500, seed=2)
    assert result.interval == expected
    assert result.interval.estimate == pytest.approx(result.top1_mean)


# ------------------------------------------------------------------ traces and no traces


def test_absent_trace_gives_exactly_chance() -> None:
    # Every class has the very same embeddings: whatever a probe predicts for
    # an image, it is right under exactly one of the K classes.
    classes = PARAMETER_GROUPS["jpeg"].classes
    rng = np.random.default_rng(2)
    same_train, same_test = rng.normal(size=(120, 16)), rng.normal(size=(50, 16))
    result = run_processing_probe(
        {c: same_train for c in classes}, {c: same_test for c in classes}, classes,
        probe=LinearProbe(epochs=10, n_trials=4), seeds=3,
    )  # fmt: skip
    assert result.chance == pytest.approx(1 / 6)
    assert result.top1_per_seed == pytest.approx([1 / 6] * 3)
    np.testing.assert_allclose(result.per_image_correct, 1 / 6)
    assert result.top1_std == pytest.approx(0.0, abs=1e-12)
    assert result.interval.low == pytest.approx(1 / 6)


def test_linearly_encoded_trace_is_read_back_almost_perfectly() -> None:
    classes = PARAMETER_GROUPS["sharpening"].classes
    train, test = _group_embeddings(classes, 300, 100, 32, 1.5, seed=3)
    result = run_processing_probe(
        train, test, classes, probe=LinearProbe(epochs=20, n_trials=6), seeds=3
    )
    assert result.top1_mean >= 0.99
    assert min(result.per_class_accuracy) >= 0.98
    assert result.interval.low >= 0.97
    assert result.n_test_samples == 300


def test_noise_trace_is_near_chance() -> None:
    # Independent noise per class: nothing generalizes from train to test.
    rng = np.random.default_rng(4)
    classes = ("p", "q", "r", "s")
    train = {c: rng.normal(size=(200, 16)) for c in classes}
    test = {c: rng.normal(size=(300, 16)) for c in classes}
    result = run_processing_probe(
        train, test, classes, probe=LinearProbe(epochs=10, n_trials=4), seeds=2
    )
    binomial_sd = np.sqrt(0.25 * 0.75 / (2 * 1200))
    assert abs(result.top1_mean - 0.25) < 4 * binomial_sd


# ----------------------------------------------------------------- search and batching


def test_hyperparameters_are_searched_on_the_first_seeds_draw_only() -> None:
    classes = ("u", "v", "w")
    train, test = _group_embeddings(classes, 150, 30, 12, 0.4, seed=5)
    probe = LinearProbe(epochs=6, n_trials=5)
    result = run_processing_probe(train, test, classes, probe=probe, seeds=3, base_seed=10)
    assert result.search is not None
    # The same search, run by hand on seed 10's draw.
    draw = np.random.default_rng(10).integers(0, 3, 150)
    x0 = np.stack([train[classes[k]][i] for i, k in enumerate(draw)])
    by_hand = LinearProbe(epochs=6, n_trials=5, seed=10).fit(x0, draw, n_classes=3).search_
    assert by_hand is not None
    assert [t.params for t in result.search.trials] == [t.params for t in by_hand.trials]
    assert [t.val_correct for t in result.search.trials] == [t.val_correct for t in by_hand.trials]
    assert result.hyperparameters == by_hand.best_params


def test_batched_seeds_equal_separate_runs() -> None:
    classes = ("u", "v", "w")
    train, test = _group_embeddings(classes, 150, 40, 12, 0.3, seed=6)
    probe = LinearProbe(lr=3.0, weight_decay=1e-6, epochs=10)
    together = ProcessingProbe(probe=probe, seeds=[0, 1, 2]).fit(train, classes)
    alone = ProcessingProbe(probe=probe, seeds=[1]).fit(train, classes)
    np.testing.assert_allclose(
        together.weight_[1].cpu().numpy(), alone.weight_[0].cpu().numpy(), rtol=0, atol=1e-5
    )
    # Seed 1's probe, trained on its own draw the plain way.
    draw = np.random.default_rng(1).integers(0, 3, 150)
    x1 = np.stack([train[classes[k]][i] for i, k in enumerate(draw)])
    plain = LinearProbe(lr=3.0, weight_decay=1e-6, epochs=10, seed=1).fit(x1, draw, n_classes=3)
    np.testing.assert_allclose(alone.weight_[0].cpu().numpy(), plain.weight_, rtol=0, atol=1e-5)
    preds = together.predict(test)
    for k, c in enumerate(classes):
        np.testing.assert_array_equal(preds[1, k], plain.predict(test[c]))


def test_same_settings_give_identical_results_and_json() -> None:
    classes = ("u", "v")
    train, test = _group_embeddings(classes, 80, 20, 8, 0.3, seed=7)

    def run() -> dict[str, object]:
        result = run_processing_probe(
            train, test, classes, probe=LinearProbe(epochs=5, n_trials=3), seeds=2, n_boot=100
        )
        d = result.to_dict()
        d.pop("wall_time_s")
        assert isinstance(d["search"], dict)
        d["search"].pop("wall_time_s")
        return d

    first = run()
    assert first == run()
    json.dumps(first, allow_nan=False)
    assert first["settings"]["draw"] == "np.random.default_rng(seed).integers(0, K, n_train)"  # type: ignore[index]


def test_lbfgs_mode_runs_per_seed() -> None:
    classes = ("u", "v", "w")
    train, test = _group_embeddings(classes, 120, 30, 8, 1.5, seed=8)
    result = run_processing_probe(
        train, test, classes, probe=LinearProbe(mode="lbfgs", lbfgs_c_grid=(1.0, 100.0)), seeds=2
    )
    assert result.mode == "lbfgs"
    assert result.top1_mean >= 0.95


# ---------------------------------------------------------------------------- errors


def test_missing_class_is_named() -> None:
    train, test = _group_embeddings(("a", "b"), 20, 5, 4, 1.0, seed=9)
    with pytest.raises(ProbeInputError, match=r"train has no embeddings for class\(es\) \['c'\]"):
        run_processing_probe(train, test, ["a", "b", "c"], probe=FIXED)


def test_classes_with_different_images_are_rejected() -> None:
    train, test = _group_embeddings(("a", "b"), 20, 5, 4, 1.0, seed=10)
    train["b"] = train["b"][:19]
    with pytest.raises(
        ProbeInputError, match=r"train\['b'\] has 19 images but train\['a'\] has 20"
    ):
        run_processing_probe(train, test, ["a", "b"], probe=FIXED)


def test_test_dimension_must_match_training() -> None:
    train, _ = _group_embeddings(("a", "b"), 20, 5, 4, 1.0, seed=11)
    _, test = _group_embeddings(("a", "b"), 20, 5, 6, 1.0, seed=11)
    with pytest.raises(
        ProbeInputError, match=r"test\['a'\] has dimension 6 but the probe expects 4"
    ):
        run_processing_probe(train, test, ["a", "b"], probe=FIXED, seeds=1)


def test_nan_in_one_class_view_is_named() -> None:
    train, test = _group_embeddings(("a", "b"), 20, 5, 4, 1.0, seed=12)
    train["b"][6, 2] = np.nan
    with pytest.raises(ProbeInputError, match=r"train\['b'\] has 1 row\(s\) with NaN .*row 6"):
        run_processing_probe(train, test, ["a", "b"], probe=FIXED)


@pytest.mark.parametrize(
    ("classes", "match"),
    [(["a"], "at least two classes"), (["a", "a"], "distinct"), ("ab", "not one string")],
)
def test_bad_class_lists(classes: list[str] | str, match: str) -> None:
    train, test = _group_embeddings(("a", "b"), 20, 5, 4, 1.0, seed=13)
    with pytest.raises(ProbeInputError, match=match):
        run_processing_probe(train, test, classes, probe=FIXED)


def test_too_few_training_images_for_the_search_names_the_seed() -> None:
    train = {"a": np.eye(3), "b": np.eye(3)[::-1]}
    with pytest.raises(ProbeInputError, match=r"search on seed 0's draw of 3 training images"):
        run_processing_probe(train, train, ["a", "b"], probe=LinearProbe(), seeds=2)


def test_bad_seed_settings() -> None:
    train, test = _group_embeddings(("a", "b"), 20, 5, 4, 1.0, seed=14)
    with pytest.raises(ProbeInputError, match="seeds must be >= 1"):
        run_processing_probe(train, test, ["a", "b"], probe=FIXED, seeds=0)
    with pytest.raises(ProbeInputError, match="distinct"):
        run_processing_probe(train, test, ["a", "b"], probe=FIXED, seeds=[1, 1])
    with pytest.raises(ProbeInputError, match="std_ddof"):
        run_processing_probe(train, test, ["a", "b"], probe=FIXED, std_ddof=2)


def test_normalization_makes_scale_irrelevant() -> None:
    # Embeddings are L2-normalized first: scaling a class's vectors changes nothing.
    train, test = _group_embeddings(("a", "b"), 60, 20, 6, 0.5, seed=15)
    scaled = {c: v * (10.0 if c == "a" else 0.1) for c, v in train.items()}
    probe = LinearProbe(lr=1.0, weight_decay=0.0, epochs=5)
    r1 = run_processing_probe(train, test, ["a", "b"], probe=probe, seeds=2, n_boot=50)
    r2 = run_processing_probe(scaled, test, ["a", "b"], probe=probe, seeds=2, n_boot=50)
    assert r1.top1_per_seed == pytest.approx(r2.top1_per_seed)
    np.testing.assert_allclose(l2_normalize(scaled["a"]), l2_normalize(train["a"]), atol=1e-6)
