"""The linear-probe engine: protocol semantics, batching, search, determinism, errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sgd_oracle import train_sgd_reference

from pytest_metatrace.analysis import probe_search as search_mod
from pytest_metatrace.analysis import sgd as sgd_mod
from pytest_metatrace.analysis.probe import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_MOMENTUM,
    DEFAULT_TRIALS,
    LR_RANGE,
    WD_RANGE,
    LinearProbe,
    ProbeInputError,
    SearchTrial,
    classification_metrics,
    l2_normalize,
    search_points,
    stratified_split,
    train_sgd_batched,
)


def _blobs(
    n: int, dim: int, n_classes: int, signal: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian noise plus ``signal`` times a per-class direction; labels balanced-ish."""
    rng = np.random.default_rng(seed)
    directions = np.random.default_rng(1234).normal(size=(n_classes, dim))
    y = np.arange(n) % n_classes
    rng.shuffle(y)
    x = rng.normal(size=(n, dim)) + signal * directions[y]
    return x, y


def _strip_times(d: dict[str, object]) -> dict[str, object]:
    out = {k: v for k, v in d.items() if k != "fit_time_s"}
    search = out.get("search")
    if isinstance(search, dict):
        out["search"] = {k: v for k, v in search.items() if k != "wall_time_s"}
    return out


# ---------------------------------------------------------------------------- features


def test_l2_normalize_is_float32_unit_rows_and_keeps_zero_rows() -> None:
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1e-3, 0.0]], dtype=np.float16)
    out = l2_normalize(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0], [1.0, 0.0]], rtol=1e-6)


def test_probe_accepts_torch_half_tensors() -> None:
    x, y = _blobs(120, 8, 3, 3.0, seed=0)
    probe = LinearProbe(lr=1.0, weight_decay=0.0, epochs=5)
    a = probe.fit(torch.from_numpy(x).half(), torch.from_numpy(y)).weight_
    b = LinearProbe(lr=1.0, weight_decay=0.0, epochs=5).fit(x.astype(np.float16), y).weight_
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- batched == reference


def test_batched_training_equals_sequential_reference() -> None:
    x, y = _blobs(300, 16, 3, 1.0, seed=1)
    x = l2_normalize(x)
    # 300 = 4 x 64 + 44: the last partial batch is kept and averaged over 44.
    lrs = [0.1, 1.0, 5.0, 20.0]
    wds = [1e-4, 1e-8, 0.0, 1e-5]
    weight, bias = train_sgd_batched(
        x, np.arange(300)[None], y[None], lrs, wds, seeds=[7], n_classes=3,
        epochs=8, batch_size=64, device="cpu",
    )  # fmt: skip
    for t, (lr, wd) in enumerate(zip(lrs, wds, strict=True)):
        ref_w, ref_b = train_sgd_reference(
            x, y, lr, wd, seed=7, n_classes=3, epochs=8, batch_size=64
        )
        scale = max(1.0, float(np.abs(ref_w).max()))
        np.testing.assert_allclose(weight[0, t], ref_w, rtol=0, atol=2e-5 * scale)
        np.testing.assert_allclose(bias[0, t], ref_b, rtol=0, atol=2e-5 * scale)
        assert np.abs(ref_w).max() > 0.3  # the probe moved away from its small init


def test_slots_are_independent_probes_with_their_own_rows_and_seeds() -> None:
    x, y = _blobs(200, 12, 4, 1.0, seed=2)
    x = l2_normalize(x)
    rng = np.random.default_rng(0)
    rows = np.stack([rng.permutation(200)[:150] for _ in range(3)])
    labels = np.stack([y[r] for r in rows])
    labels[2] = rng.integers(0, 4, 150)  # a slot's labels need not be the bank's
    weight, bias = train_sgd_batched(
        x, rows, labels, [0.5, 3.0], [1e-6, 1e-5], seeds=[0, 5, 9], n_classes=4,
        epochs=6, batch_size=32, device="cpu",
    )  # fmt: skip
    for s, seed in enumerate([0, 5, 9]):
        for t, (lr, wd) in enumerate([(0.5, 1e-6), (3.0, 1e-5)]):
            ref_w, ref_b = train_sgd_reference(
                x[rows[s]], labels[s], lr, wd, seed=seed, n_classes=4, epochs=6, batch_size=32
            )
            np.testing.assert_allclose(weight[s, t], ref_w, rtol=0, atol=2e-5)
            np.testing.assert_allclose(bias[s, t], ref_b, rtol=0, atol=2e-5)


def test_chunking_changes_nothing_but_round_off() -> None:
    x, y = _blobs(256, 32, 3, 1.0, seed=3)
    x = l2_normalize(x)
    args = (x, np.arange(256)[None].repeat(2, 0), y[None].repeat(2, 0), [0.3, 2.0, 9.0], [0, 0, 0])
    kw = {"seeds": [1, 2], "n_classes": 3, "epochs": 4, "batch_size": 100, "device": "cpu"}
    whole_w, whole_b = train_sgd_batched(*args, **kw)  # type: ignore[arg-type]
    # A budget this small trains one slot and one trial at a time.
    assert sgd_mod._chunk_plan(2, 3, 32, 3, 100, 1e-3, False) == (1, 1)
    part_w, part_b = train_sgd_batched(*args, memory_budget_mb=1e-3, **kw)  # type: ignore[arg-type]
    np.testing.assert_allclose(whole_w, part_w, rtol=0, atol=1e-6)
    np.testing.assert_allclose(whole_b, part_b, rtol=0, atol=1e-6)


def test_cosine_schedule_is_cosine_annealing_stepped_per_epoch() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=7, eta_min=0.0)
    for epoch in range(7):
        assert opt.param_groups[0]["lr"] == pytest.approx(
            2.5 * sgd_mod._cosine_factor(epoch, 7), rel=1e-12, abs=1e-15
        )
        opt.step()
        sched.step()


# ------------------------------------------------------------------------- accuracy


def test_linearly_encoded_labels_are_read_back_almost_perfectly() -> None:
    x, y = _blobs(600, 32, 4, 4.0, seed=4)
    xt, yt = _blobs(400, 32, 4, 4.0, seed=5)
    result = LinearProbe(epochs=20, n_trials=6).fit(x, y).evaluate(xt, yt)
    assert result.top1 >= 0.99
    assert result.mean_per_class >= 0.99
    assert result.chance == 0.25
    assert result.confusion.sum() == 400
    assert result.n_train == 600


def test_pure_noise_gives_chance_accuracy() -> None:
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(400, 16)), rng.integers(0, 4, 400)
    xt, yt = rng.normal(size=(2000, 16)), rng.integers(0, 4, 2000)
    result = LinearProbe(epochs=15, n_trials=4).fit(x, y).evaluate(xt, yt)
    binomial_sd = math.sqrt(0.25 * 0.75 / 2000)
    assert abs(result.top1 - 0.25) < 4 * binomial_sd


def test_protocol_defaults_run_on_small_data() -> None:
    probe = LinearProbe()
    assert (probe.mode, probe.epochs, probe.batch_size, probe.momentum, probe.n_trials) == (
        "sgd", DEFAULT_EPOCHS, DEFAULT_BATCH_SIZE, DEFAULT_MOMENTUM, DEFAULT_TRIALS,
    )  # fmt: skip
    assert (DEFAULT_EPOCHS, DEFAULT_BATCH_SIZE, DEFAULT_MOMENTUM, DEFAULT_TRIALS) == (
        100, 1024, 0.9, 30,
    )  # fmt: skip
    assert (LR_RANGE, WD_RANGE, probe.val_fraction) == ((0.1, 100.0), (1e-12, 1e-4), 0.2)
    x, y = _blobs(250, 8, 3, 3.0, seed=7)
    xt, yt = _blobs(300, 8, 3, 3.0, seed=8)
    result = probe.fit(x, y).evaluate(xt, yt)
    search = result.search
    assert search is not None
    assert len(search.trials) == 30
    assert (search.n_fit, search.n_val) == (200, 50)
    for trial in search.trials:
        assert 0.1 <= trial.params["lr"] <= 100.0
        assert 1e-12 <= trial.params["weight_decay"] <= 1e-4
    assert result.hyperparameters == search.best_params
    assert result.top1 > 0.9


# --------------------------------------------------------------------------- search


def test_search_points_are_seeded_log_uniform_sobol() -> None:
    lrs, wds = search_points(30, seed=3)
    again = search_points(30, seed=3)
    np.testing.assert_array_equal(lrs, again[0])
    np.testing.assert_array_equal(wds, again[1])
    assert not np.array_equal(lrs, search_points(30, seed=4)[0])
    assert lrs.min() >= 0.1
    assert lrs.max() <= 100.0
    assert wds.min() >= 1e-12
    assert wds.max() <= 1e-4
    # Quasi-random: each third of the log-range holds close to a third of the points.
    counts = np.histogram(np.log10(lrs), bins=3, range=(-1, 2))[0]
    assert counts.min() >= 8
    counts = np.histogram(np.log10(wds), bins=4, range=(-12, -4))[0]
    assert counts.min() >= 6


def test_search_points_shrink_around_a_centre_inside_the_ranges() -> None:
    lrs, wds = search_points(16, seed=0, center=(1.9, -5.0), shrink=0.5)
    # lr: 1.5 decades around 1.9, shifted down to end at log10(100) = 2: [0.5, 2].
    # wd: 4 decades around -5, shifted down to end at log10(1e-4) = -4: [-8, -4].
    eps = 1e-9
    assert 0.5 - eps <= np.log10(lrs).min()
    assert np.log10(lrs).max() <= 2.0 + eps
    assert -8.0 - eps <= np.log10(wds).min()
    assert np.log10(wds).max() <= -4.0 + eps
    assert np.log10(lrs).max() - np.log10(lrs).min() > 1.0  # the box is filled


def test_search_picks_the_best_validation_trial_and_its_scores_are_reproducible() -> None:
    x, y = _blobs(300, 16, 3, 0.6, seed=9)
    probe = LinearProbe(epochs=10, n_trials=8, seed=2).fit(x, y)
    search = probe.search_
    assert search is not None
    best = max(search.trials, key=lambda t: (t.val_correct, -t.val_loss, -t.index))
    assert search.best_index == best.index
    assert search.best_params == best.params == probe.hyperparameters_
    assert len({t.val_correct for t in search.trials}) > 1  # the trials differ
    # Recompute the chosen trial's validation accuracy from scratch.
    feats = l2_normalize(x)
    fit_idx, val_idx = stratified_split(y, 0.2, seed=2)
    weight, bias = train_sgd_reference(
        feats[fit_idx], y[fit_idx], best.params["lr"], best.params["weight_decay"],
        seed=2, n_classes=3, epochs=10,
    )  # fmt: skip
    preds = (feats[val_idx] @ weight + bias).argmax(axis=1)
    assert int((preds == y[val_idx]).sum()) == best.val_correct
    assert best.val_top1 == pytest.approx(best.val_correct / val_idx.size)


def test_ties_go_to_lower_validation_loss_then_earlier_trial() -> None:
    def trial(i: int, correct: int, loss: float) -> SearchTrial:
        return SearchTrial(i, 0, {"lr": 1.0, "weight_decay": 0.0}, correct / 10, 0, loss, correct)

    pick = search_mod._best_trial
    assert pick([trial(0, 7, 0.5), trial(1, 8, 0.9), trial(2, 8, 0.4)]).index == 2
    assert pick([trial(0, 8, 0.4), trial(1, 8, 0.4)]).index == 0
    assert pick([trial(0, 8, float("nan")), trial(1, 8, 3.0)]).index == 1


def test_later_search_rounds_narrow_around_the_best_point() -> None:
    x, y = _blobs(200, 8, 3, 1.0, seed=10)
    search = LinearProbe(epochs=5, n_trials=9, search_rounds=3).fit(x, y).search_
    assert search is not None
    assert [t.round for t in search.trials] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    best_so_far = search_mod._best_trial(search.trials[:3])
    for t in search.trials[3:6]:
        # Round 1 spans half of each log-range around round 0's best.
        assert abs(math.log10(t.params["lr"]) - math.log10(best_so_far.params["lr"])) <= 1.5
        assert abs(math.log10(t.params["weight_decay"]) - math.log10(
            best_so_far.params["weight_decay"]
        )) <= 4.0  # fmt: skip
    assert search.best_index == search_mod._best_trial(search.trials).index


def test_stratified_split_keeps_class_shares() -> None:
    y = np.repeat([0, 1, 2], [50, 30, 20])
    fit_idx, val_idx = stratified_split(y, 0.2, seed=0)
    assert np.bincount(y[val_idx]).tolist() == [10, 6, 4]
    assert sorted(np.concatenate([fit_idx, val_idx]).tolist()) == list(range(100))
    np.testing.assert_array_equal(val_idx, stratified_split(y, 0.2, seed=0)[1])


# ---------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_results() -> None:
    x, y = _blobs(250, 16, 3, 0.8, seed=11)
    xt, yt = _blobs(100, 16, 3, 0.8, seed=12)
    a = LinearProbe(epochs=8, n_trials=5, seed=4).fit(x, y).evaluate(xt, yt).to_dict()
    b = LinearProbe(epochs=8, n_trials=5, seed=4).fit(x, y).evaluate(xt, yt).to_dict()
    assert _strip_times(a) == _strip_times(b)
    c = LinearProbe(epochs=8, n_trials=5, seed=5).fit(x, y).evaluate(xt, yt).to_dict()
    assert _strip_times(a) != _strip_times(c)
    json.dumps(a, allow_nan=False)


# --------------------------------------------------------------------------- results


def test_classification_metrics_on_a_hand_case() -> None:
    top1, mpc, per_class, confusion = classification_metrics(
        [0, 0, 0, 1, 1, 2], [0, 1, 0, 1, 0, 2], 4
    )
    assert confusion.tolist() == [[2, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert top1 == pytest.approx(4 / 6)
    assert per_class[:3].tolist() == pytest.approx([2 / 3, 1 / 2, 1.0])
    assert math.isnan(per_class[3])  # no test samples: left out of the mean
    assert mpc == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)


def test_evaluate_reports_predictions_and_json_ready_dict() -> None:
    x, y = _blobs(150, 8, 3, 3.0, seed=13)
    probe = LinearProbe(lr=2.0, weight_decay=1e-6, epochs=10).fit(x, y)
    result = probe.evaluate(x[:20], y[:20])
    np.testing.assert_array_equal(result.predictions, probe.predict(x[:20]))
    assert result.search is None
    assert result.hyperparameters == {"lr": 2.0, "weight_decay": 1e-6}
    d = result.to_dict()
    assert d["predictions"] == result.predictions.tolist()
    assert d["settings"]["epochs"] == 10
    json.dumps(d, allow_nan=False)


def test_lbfgs_mode_searches_c_on_the_validation_split() -> None:
    x, y = _blobs(300, 16, 3, 3.0, seed=14)
    xt, yt = _blobs(200, 16, 3, 3.0, seed=15)
    result = LinearProbe(mode="lbfgs", lbfgs_c_grid=(0.01, 1.0, 100.0)).fit(x, y).evaluate(xt, yt)
    assert result.mode == "lbfgs"
    assert result.search is not None
    assert [t.params["C"] for t in result.search.trials] == [0.01, 1.0, 100.0]
    assert result.top1 >= 0.97


def test_lbfgs_binary_problem_matches_sklearn_predictions() -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = _blobs(200, 6, 2, 0.7, seed=16)
    probe = LinearProbe(mode="lbfgs", lbfgs_c=1.0).fit(x, y)
    feats = l2_normalize(x)
    clf = LogisticRegression(C=1.0, max_iter=1000).fit(feats, y)
    np.testing.assert_array_equal(probe.predict(x), clf.predict(feats))


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("x", "y", "kwargs", "match"),
    [
        (np.ones(10), np.zeros(10), {}, r"2-D array"),
        (np.ones((0, 4)), np.zeros(0), {}, r"is empty"),
        (np.ones((10, 4)), np.zeros(9), {}, r"9 entries but the features have 10 rows"),
        (np.ones((10, 4)), np.zeros(10), {}, r"at least two classes, got 1"),
        (np.ones((10, 4)), np.arange(10) % 2, {"n_classes": 3}, r"class\(es\) \[2\]"),
        (np.ones((10, 4)), np.arange(10) % 2 - 1, {}, r"class indices >= 0"),
        (np.ones((10, 4)), np.full(10, 0.5), {}, r"integer class indices"),
    ],
)
def test_bad_training_input_names_the_problem(
    x: np.ndarray, y: np.ndarray, kwargs: dict[str, int], match: str
) -> None:
    with pytest.raises(ProbeInputError, match=match):
        LinearProbe(lr=1.0, weight_decay=0.0, epochs=1).fit(x, y, **kwargs)


def test_nan_features_name_the_first_bad_row() -> None:
    x = np.ones((10, 4))
    x[3, 1] = np.nan
    x[7, 0] = np.inf
    with pytest.raises(
        ProbeInputError, match=r"2 row\(s\) with NaN or infinite values \(first: row 3\)"
    ):
        LinearProbe().fit(x, np.arange(10) % 2)


def test_test_set_errors() -> None:
    x, y = _blobs(60, 4, 2, 2.0, seed=17)
    probe = LinearProbe(lr=1.0, weight_decay=0.0, epochs=2)
    with pytest.raises(RuntimeError, match="not fitted"):
        probe.predict(x)
    probe.fit(x, y)
    with pytest.raises(ProbeInputError, match="dimension 5 but the probe expects 4"):
        probe.evaluate(np.ones((3, 5)), np.zeros(3))
    with pytest.raises(ProbeInputError, match="class 2 but the probe was fitted on 2"):
        probe.evaluate(x[:3], [0, 1, 2])


def test_search_needs_two_samples_per_class() -> None:
    x = np.eye(5)
    with pytest.raises(
        ProbeInputError,
        match=r"5 over 2 classes, of which class 1 \(1\) have fewer than two",
    ):
        LinearProbe().fit(x, [0, 0, 0, 0, 1])
    # With fixed hyper-parameters no split is needed.
    LinearProbe(lr=1.0, weight_decay=0.0, epochs=2).fit(x, [0, 0, 0, 0, 1])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "adam"}, "unknown probe mode 'adam'"),
        ({"lr": 1.0}, "give both lr and weight_decay"),
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"val_fraction": 1.0}, r"val_fraction must lie in \(0, 1\)"),
        ({"lr_range": (1.0, 0.1)}, "lr_range must be"),
        ({"search_rounds": 40}, r"search_rounds \(40\) exceeds n_trials \(30\)"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
    ],
)
def test_bad_parameters_are_reported_by_fit(kwargs: dict[str, object], match: str) -> None:
    x, y = _blobs(40, 4, 2, 2.0, seed=18)
    with pytest.raises(ProbeInputError, match=match):
        LinearProbe(**kwargs).fit(x, y)  # type: ignore[arg-type]


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the message on a machine without CUDA"
)
def test_asking_for_cuda_without_a_gpu_is_a_clear_error() -> None:
    x, y = _blobs(40, 4, 2, 2.0, seed=19)
    with pytest.raises(ProbeInputError, match="no CUDA GPU is available; use device 'auto'"):
        LinearProbe(device="cuda").fit(x, y)


# ------------------------------------------------------------------------------ CUDA


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_training_matches_the_cpu_reference() -> None:
    x, y = _blobs(3000, 64, 5, 0.8, seed=20)
    x = l2_normalize(x)
    lrs, wds = [0.2, 2.0, 8.0], [1e-6, 1e-9, 1e-5]
    weight, bias = train_sgd_batched(
        x, np.arange(3000)[None], y[None], lrs, wds, seeds=[3], n_classes=5,
        epochs=10, batch_size=1024, device="cuda",
    )  # fmt: skip
    for t in range(3):
        ref_w, ref_b = train_sgd_reference(
            x, y, lrs[t], wds[t], seed=3, n_classes=5, epochs=10, batch_size=1024
        )
        np.testing.assert_allclose(weight[0, t], ref_w, rtol=0, atol=1e-4)
        np.testing.assert_allclose(bias[0, t], ref_b, rtol=0, atol=1e-4)
    probe = LinearProbe(epochs=10, n_trials=6).fit(x, y)
    assert probe.device_.startswith("cuda")
