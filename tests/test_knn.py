"""Tests of the kNN semantic-influence engine (docs/protocol.md §5) and its figure data."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pytest_metatrace.audits.semantic_influence.figures import (
    SIMILARITY_GROUPS,
    neighbor_gallery,
    similarity_distributions,
)
from pytest_metatrace.audits.semantic_influence.influence import (
    PAIR_SETUPS,
    SETUPS,
    KnnInfluence,
    KnnInfluenceResult,
    majority_vote,
    resolve_device,
    topk_neighbors,
    uniform_draw,
)

DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
    ),
]

Data = tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray], np.ndarray, list[str]]


# --------------------------------------------------------------------------- data


def semantic_plus_metadata(
    meta_weight: float,
    *,
    n_labels: int = 4,
    per_label_train: int = 10,
    per_label_test: int = 3,
    n_classes: int = 3,
    noise: float = 0.05,
    seed: int = 0,
) -> Data:
    """Embedding = one-hot semantic part + meta_weight x one-hot processing part + image noise.

    The noise belongs to the image (shared by all its processed versions), so
    with zero metadata weight every class holds identical embeddings.
    """
    rng = np.random.default_rng(seed)
    dim = n_labels + n_classes + 8
    classes = [f"p{c}" for c in range(n_classes)]
    train_labels = np.repeat(np.arange(n_labels), per_label_train)
    test_labels = np.repeat(np.arange(n_labels), per_label_test)

    def embed(labels: np.ndarray) -> dict[str, np.ndarray]:
        image_noise = noise * rng.normal(size=(len(labels), dim))
        out = {}
        for c, name in enumerate(classes):
            x = image_noise.copy()
            x[np.arange(len(labels)), labels] += 1.0
            x[:, n_labels + c] += meta_weight
            out[name] = x.astype(np.float32)
        return out

    return embed(train_labels), train_labels, embed(test_labels), test_labels, classes


def dyadic(
    *,
    n_train: int = 36,
    n_test: int = 10,
    n_classes: int = 3,
    n_labels: int = 3,
    dim: int = 16,
    seed: int = 0,
) -> Data:
    """Random ±1 embeddings scaled by powers of two: normalization and dot products are exact.

    Rows are dense ±1 vectors in 16 dimensions (norm 4) times 2^e, so the
    normalized entries are ±1/4 and every cosine similarity is a multiple of
    1/16, computed exactly in float32 and float64 by any summation order.
    Label patterns with random flips give semantic structure; per-class flips
    give processing traces; the coarse similarity grid gives many exact ties.
    """
    assert dim == 16
    rng = np.random.default_rng(seed)
    classes = [f"q{c}" for c in range(n_classes)]
    patterns = rng.choice([-1.0, 1.0], size=(n_labels, dim))
    trace = rng.choice([-1.0, 1.0], size=(n_classes, dim))

    def embed(n: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        labels = rng.integers(0, n_labels, n)
        base = patterns[labels] * rng.choice([-1.0, 1.0], p=[0.25, 0.75], size=(n, dim))
        out = {}
        for c, name in enumerate(classes):
            use_trace = rng.random((n, dim)) < 0.2
            x = np.where(use_trace, trace[c], base)
            scale = 2.0 ** rng.integers(-2, 3, size=(n, 1))
            out[name] = (x * scale).astype(np.float32)
        return out, labels

    train, train_labels = embed(n_train)
    test, test_labels = embed(n_test)
    return train, train_labels, test, test_labels, classes


# --------------------------------------------------------------------------- naive reference


def naive_predictions(data: Data, k: int, seeds: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Per test image, build each database explicitly (rows chosen per setup), rank, vote.

    Independent of the engine: float64 NumPy, one database per query, ranking
    by ``np.lexsort`` (similarity descending, then training index), vote with a
    Counter scanned in rank order. Returns predicted labels shaped like the
    engine's ``predictions`` (pair setups (K, K, N_test), uniform (K, seeds, N_test)).
    """
    train, train_labels, test, test_labels, classes = data
    n_cls = len(classes)
    tr = [np.asarray(train[c], np.float64) for c in classes]
    te = [np.asarray(test[c], np.float64) for c in classes]
    tr = [x / np.linalg.norm(x, axis=1, keepdims=True) for x in tr]
    te = [x / np.linalg.norm(x, axis=1, keepdims=True) for x in te]
    n_train, n_test = len(train_labels), len(test_labels)
    pairs = np.full((4, n_cls, n_cls, n_test), None, dtype=object)
    uniform = np.full((n_cls, len(seeds), n_test), None, dtype=object)

    def vote(db: np.ndarray, query: np.ndarray) -> Any:
        sims = db @ query
        ranking = np.lexsort((np.arange(n_train), -sims))[:k]
        labels = [train_labels[n] for n in ranking]
        counts = Counter(labels)
        best = max(counts.values())
        return next(label for label in labels if counts[label] == best)

    for t in range(n_test):
        positive = train_labels == test_labels[t]
        for i in range(n_cls):
            query = te[i][t]
            for j in range(n_cls):
                if j == i:
                    continue
                versions = {
                    "all_same": np.full(n_train, i),
                    "all_diff": np.full(n_train, j),
                    "pos_same": np.where(positive, i, j),
                    "neg_same": np.where(positive, j, i),
                }
                for a, name in enumerate(PAIR_SETUPS):
                    db = np.stack([tr[versions[name][n]][n] for n in range(n_train)])
                    pairs[a, i, j, t] = vote(db, query)
            for s, seed in enumerate(seeds):
                draw = np.random.default_rng(seed).integers(0, n_cls, n_train)
                db = np.stack([tr[draw[n]][n] for n in range(n_train)])
                uniform[i, s, t] = vote(db, query)
    out = {name: pairs[a] for a, name in enumerate(PAIR_SETUPS)}
    out["uniform"] = uniform
    return out


def decoded(result: KnnInfluenceResult) -> dict[str, np.ndarray]:
    """The engine's predictions as label values (None where not evaluated)."""
    assert result.predictions is not None
    assert result.label_values is not None
    out = {}
    for name, codes in result.predictions.items():
        labels = np.full(codes.shape, None, dtype=object)
        labels[codes >= 0] = result.label_values[codes[codes >= 0]]
        out[name] = labels
    return out


def assert_matches_naive(
    result: KnnInfluenceResult, naive: dict[str, np.ndarray], n_cls: int
) -> None:
    """Every prediction of every setup, pair and seed equals the naive one."""
    engine = decoded(result)
    off = ~np.eye(n_cls, dtype=bool)
    for name in SETUPS:
        got, want = engine[name], naive[name]
        if name in PAIR_SETUPS:
            assert (got[off] == want[off]).all(), name
        else:
            assert (got == want).all(), name


def naive_accuracy(pred: np.ndarray, test_labels: np.ndarray, pair: bool) -> tuple[float, Any]:
    n_cls = pred.shape[0]
    if pair:
        off = ~np.eye(n_cls, dtype=bool)
        correct = pred[off] == test_labels  # (K(K-1), N_test)
    else:
        correct = pred.reshape(-1, pred.shape[-1]) == test_labels
    correct = correct.astype(np.int64)
    return int(correct.sum()) / correct.size, correct.sum(axis=0) / correct.shape[0]


# --------------------------------------------------------------------------- constructed cases


def test_zero_metadata_weight_makes_every_setup_equal_to_all_same():
    data = semantic_plus_metadata(0.0, noise=0.6)
    result = KnnInfluence(k=5, seeds=(0, 1), keep_predictions=True).evaluate(*data)
    base = result.setups["all_same"]
    assert 0.3 < base.accuracy < 1.0  # noisy enough that agreement is not trivial
    for name in SETUPS:
        setup = result.setups[name]
        assert setup.accuracy == base.accuracy, name
        np.testing.assert_array_equal(setup.per_image, base.per_image)
        np.testing.assert_array_equal(setup.per_pair, base.per_pair)
    assert result.pos_same_gap == 0.0
    assert result.neg_same_gap == 0.0


def test_large_metadata_weight_drives_pos_same_to_1_and_neg_same_to_0():
    data = semantic_plus_metadata(5.0)
    result = KnnInfluence(k=5, seeds=(0, 1)).evaluate(*data)
    off = ~np.eye(3, dtype=bool)
    assert result.accuracy("pos_same") == 1.0
    assert result.accuracy("neg_same") == 0.0
    assert (result.setups["pos_same"].per_pair[off] == 1.0).all()
    assert (result.setups["neg_same"].per_pair[off] == 0.0).all()
    assert np.isnan(np.diag(result.setups["pos_same"].per_pair)).all()
    # Within one processing class the semantic part decides.
    assert result.accuracy("all_same") == 1.0
    assert result.neg_same_gap == 1.0
    assert result.pos_same_gap == 0.0


def test_metadata_weight_orders_the_gaps():
    gaps = []
    for weight in (0.0, 0.3, 5.0):
        data = semantic_plus_metadata(weight, noise=0.5, per_label_train=12, seed=3)
        gaps.append(KnnInfluence(k=5, seeds=(0,)).evaluate(*data).neg_same_gap)
    assert gaps[0] == 0.0
    assert 0.0 < gaps[1] < gaps[2]


# --------------------------------------------------------------------------- exact equivalence


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("k", "chunk_size"), [(1, 4), (4, 3), (7, None), (36, 10)])
def test_vectorized_equals_naive_exactly_on_dyadic_data(k, chunk_size, device):
    data = dyadic(seed=k)
    seeds = (0, 1, 5)
    result = KnnInfluence(
        k=k, seeds=seeds, chunk_size=chunk_size, device=device, keep_predictions=True
    ).evaluate(*data)
    naive = naive_predictions(data, k, seeds)
    assert_matches_naive(result, naive, len(data[4]))
    test_labels = data[3]
    for name in SETUPS:
        accuracy, per_image = naive_accuracy(naive[name], test_labels, name in PAIR_SETUPS)
        assert result.setups[name].accuracy == accuracy, name
        np.testing.assert_array_equal(result.setups[name].per_image, per_image)


def test_dyadic_data_exercises_straddling_ties():
    # The equivalence test above is only meaningful if ties across the top-k
    # boundary occur: check the data really produces them.
    train, _, test, _, classes = dyadic(seed=4)
    db = torch.as_tensor(train[classes[0]])
    q = torch.as_tensor(test[classes[0]])
    sims = (q / q.norm(dim=1, keepdim=True)) @ (db / db.norm(dim=1, keepdim=True)).T
    values = torch.sort(sims, dim=1, descending=True).values
    assert (values[:, 3] == values[:, 4]).any()


def test_vectorized_equals_naive_on_gaussian_data_with_string_labels():
    rng = np.random.default_rng(7)
    classes = ["a", "b", "c", "d"]
    base_train = rng.normal(size=(30, 12))
    base_test = rng.normal(size=(8, 12))
    train = {c: base_train + 0.7 * rng.normal(size=(30, 12)) for c in classes}
    test = {c: base_test + 0.7 * rng.normal(size=(8, 12)) for c in classes}
    labels = np.array(["cat", "dog", "emu"])
    data = (train, labels[rng.integers(0, 3, 30)], test, labels[rng.integers(0, 3, 8)], classes)
    result = KnnInfluence(k=3, seeds=(0, 1), chunk_size=3, keep_predictions=True).evaluate(*data)
    assert_matches_naive(result, naive_predictions(data, 3, (0, 1)), 4)


def test_uniform_uses_the_documented_draw():
    assert (uniform_draw(3, 6, 50) == np.random.default_rng(3).integers(0, 6, 50)).all()
    # k=1 with the query's own image in the database under every class: the
    # nearest neighbour is the query's image itself when it sits under p_i, so
    # uniform correctness tracks the draw exactly.
    rng = np.random.default_rng(0)
    n, classes = 40, ["x", "y"]
    base = rng.normal(size=(n, 8))
    shift = np.zeros(8)
    shift[0] = 5.0
    train = {"x": base + shift, "y": base + np.roll(shift, 1)}
    labels = np.arange(n)  # every image its own label
    result = KnnInfluence(k=1, seeds=(11,), keep_predictions=True).evaluate(
        train, labels, train, labels, classes
    )
    assert result.predictions is not None
    draw = uniform_draw(11, 2, n)
    for i in range(2):
        correct = result.predictions["uniform"][i, 0] == labels
        # correct whenever the image's own version is the query's class
        assert correct[draw == i].all()
    assert result.setups["uniform"].per_seed is not None


# --------------------------------------------------------------------------- chunking, determinism


@pytest.mark.parametrize("device", DEVICES)
def test_chunk_size_does_not_change_results(device):
    data = semantic_plus_metadata(0.4, noise=0.5, seed=5)
    runs = [
        KnnInfluence(
            k=5, seeds=(0, 1), chunk_size=c, device=device, keep_predictions=True
        ).evaluate(*data)
        for c in (1, 5, 12, 1000)
    ]
    # a tiny memory budget also forces one-image chunks
    runs.append(
        KnnInfluence(k=5, seeds=(0, 1), memory_budget_mb=1e-6, keep_predictions=True).evaluate(
            *data
        )
    )
    assert [r.chunk_size for r in runs] == [1, 5, 12, 12, 1]
    ref = runs[0]
    assert ref.predictions is not None
    for run in runs[1:]:
        assert run.predictions is not None
        for name in SETUPS:
            np.testing.assert_array_equal(run.predictions[name], ref.predictions[name])
            np.testing.assert_array_equal(run.setups[name].per_image, ref.setups[name].per_image)
            assert run.setups[name].accuracy == ref.setups[name].accuracy


def _comparable(result: KnnInfluenceResult) -> dict[str, Any]:
    out = result.to_dict()
    out.pop("seconds")
    return out


def test_evaluate_is_deterministic_and_ignores_mapping_order():
    train, train_labels, test, test_labels, classes = semantic_plus_metadata(0.4, noise=0.5)
    engine = KnnInfluence(k=3, seeds=(0, 1, 2))
    first = engine.evaluate(train, train_labels, test, test_labels, classes)
    second = engine.evaluate(train, train_labels, test, test_labels, classes)
    shuffled = engine.evaluate(
        dict(reversed(train.items())),
        train_labels,
        dict(reversed(test.items())),
        test_labels,
        classes,
    )
    assert _comparable(first) == _comparable(second) == _comparable(shuffled)


def test_seed_changes_uniform_only():
    data = semantic_plus_metadata(0.8, noise=0.6, seed=2)
    a = KnnInfluence(k=5, seeds=(0,), keep_predictions=True).evaluate(*data)
    b = KnnInfluence(k=5, seeds=(1,), keep_predictions=True).evaluate(*data)
    assert a.predictions is not None
    assert b.predictions is not None
    for name in PAIR_SETUPS:
        np.testing.assert_array_equal(a.predictions[name], b.predictions[name])
    assert (a.predictions["uniform"] != b.predictions["uniform"]).any()


# --------------------------------------------------------------------------- tie-breaking


def test_topk_orders_equal_similarities_by_lower_index():
    sim = torch.tensor([[0.5, 0.75, 0.5, 0.75, 0.5], [0.125, 0.75, 0.75, 0.25, 0.0]])
    values, indices = topk_neighbors(sim, 3)
    assert indices.tolist() == [[1, 3, 0], [1, 2, 3]]
    assert values.tolist() == [[0.75, 0.75, 0.5], [0.75, 0.75, 0.25]]
    assert topk_neighbors(sim, 4)[1].tolist() == [[1, 3, 0, 2], [1, 2, 3, 0]]
    assert topk_neighbors(sim, 5)[1].tolist() == [[1, 3, 0, 2, 4], [1, 2, 3, 0, 4]]


@settings(max_examples=60, deadline=None)
@given(
    sim=arrays(
        np.int8, st.tuples(st.integers(1, 6), st.integers(1, 12)), elements=st.integers(-3, 3)
    ),
    data=st.data(),
)
def test_topk_matches_lexsort_on_heavily_tied_rows(sim, data):
    k = data.draw(st.integers(1, sim.shape[1]))
    values, indices = topk_neighbors(torch.as_tensor(sim, dtype=torch.float32), k)
    for r in range(sim.shape[0]):
        expected = np.lexsort((np.arange(sim.shape[1]), -sim[r].astype(np.int64)))[:k]
        assert indices[r].tolist() == expected.tolist()
        assert values[r].tolist() == sim[r, expected].tolist()


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ([2, 1, 1, 2], 2),  # 2-2 tie: label of the best-ranked neighbour among the tied
        ([3, 1, 1, 2], 1),  # clear majority beats the best-ranked neighbour
        ([3, 1, 2, 1, 2], 1),  # 1 and 2 tied; 1 ranks higher (position 1)
        ([5], 5),
        ([4, 6, 7], 4),  # all tied: the nearest neighbour
    ],
)
def test_majority_vote_tie_rule(labels, expected):
    assert majority_vote(torch.tensor([labels])).tolist() == [expected]


def test_engine_ties_use_the_first_training_images():
    # Identical training embeddings: every similarity ties, so the neighbours
    # are the first k training images and the vote is over their labels.
    train = {c: np.ones((6, 4), np.float32) for c in ("a", "b")}
    test = {c: np.ones((2, 4), np.float32) for c in ("a", "b")}
    train_labels = np.array([7, 8, 8, 9, 9, 9])
    result = KnnInfluence(k=3, seeds=(0,), keep_predictions=True).evaluate(
        train, train_labels, test, np.array([8, 9]), ["a", "b"]
    )
    # top-3 = images 0, 1, 2 (labels 7, 8, 8) -> 8 for every setup
    for name in SETUPS:
        assert result.setups[name].per_image.tolist() == [1.0, 0.0], name
    result = KnnInfluence(k=1, seeds=(0,)).evaluate(
        train, train_labels, test, np.array([7, 8]), ["a", "b"]
    )
    assert result.setups["all_same"].per_image.tolist() == [1.0, 0.0]


# --------------------------------------------------------------------------- result object


def test_result_bookkeeping_and_json():
    data = semantic_plus_metadata(0.5, noise=0.5, seed=1)
    result = KnnInfluence(k=4, seeds=(0, 1, 2)).evaluate(*data)
    assert (result.n_train, result.n_test, result.dim, result.n_labels) == (40, 12, 15, 4)
    assert result.n_pairs == 6
    for name in SETUPS:
        setup = result.setups[name]
        assert setup.per_image.shape == (12,)
        assert setup.per_image.mean() == pytest.approx(setup.accuracy, abs=1e-12)
        assert np.nanmean(setup.per_pair) == pytest.approx(setup.accuracy, abs=1e-12)
        assert setup.per_query_class.mean() == pytest.approx(setup.accuracy, abs=1e-12)
    assert result.setups["uniform"].per_seed is not None
    assert result.setups["uniform"].per_seed.mean() == pytest.approx(result.accuracy("uniform"))
    assert result.pos_same_gap == result.accuracy("pos_same") - result.accuracy("all_same")
    text = json.dumps(result.to_dict(), allow_nan=False)
    loaded = json.loads(text)
    assert loaded["setups"]["neg_same"]["per_pair"][1][1] is None
    assert loaded["setups"]["neg_same"]["per_pair"][1][0] is not None
    assert loaded["k"] == 4
    assert loaded["seeds"] == [0, 1, 2]
    assert "predictions" not in loaded
    intervals = result.intervals(n_boot=200)
    assert set(intervals) == {*SETUPS, "pos_same_gap", "neg_same_gap"}
    gap = intervals["neg_same_gap"]
    assert gap.estimate == pytest.approx(result.neg_same_gap)
    assert gap.low <= gap.estimate <= gap.high
    with pytest.raises(KeyError, match="known: all_same"):
        result.accuracy("pos-same")


# --------------------------------------------------------------------------- errors


def _small() -> Data:
    return semantic_plus_metadata(0.5, n_labels=2, per_label_train=3, per_label_test=2)


@pytest.mark.parametrize(
    ("mutate", "error", "match"),
    [
        (lambda d: d[0].update(p1=d[0]["p1"][:-1]), ValueError, "same images in the same order"),
        (lambda d: d[2].update(p2=d[2]["p2"][:, :-1]), ValueError, "same dimension"),
        (lambda d: d[0].pop("p2"), ValueError, r"unknown processing class\(es\) \['p2'\]"),
        (lambda d: d[0].update(p0=d[0]["p0"][0]), ValueError, "2-D"),
        (lambda d: d[0]["p0"].__setitem__((0, 0), np.nan), ValueError, "NaN"),
        (lambda d: d[2]["p1"].__setitem__(1, 0.0), ValueError, "row 1 has zero norm"),
        (lambda d: d[0]["p1"].__setitem__(2, 3e38), ValueError, "too large for float32"),
    ],
)
def test_bad_embeddings_are_named(mutate, error, match):
    data = _small()
    mutate(data)
    with pytest.raises(error, match=match):
        KnnInfluence(k=2).evaluate(*data)


def test_bad_labels_classes_and_parameters_are_named():
    train, train_labels, test, test_labels, classes = _small()
    engine = KnnInfluence(k=2)
    with pytest.raises(ValueError, match=r"train_labels: expected shape \(6,\)"):
        engine.evaluate(train, train_labels[:-1], test, test_labels, classes)
    with pytest.raises(TypeError, match="same kind"):
        engine.evaluate(train, train_labels, test, test_labels.astype(str), classes)
    with pytest.raises(ValueError, match="at least 2 processing classes"):
        engine.evaluate(train, train_labels, test, test_labels, ["p0"])
    with pytest.raises(ValueError, match="distinct"):
        engine.evaluate(train, train_labels, test, test_labels, ["p0", "p0"])
    with pytest.raises(ValueError, match="unknown processing class"):
        engine.evaluate(train, train_labels, test, test_labels, ["p0", "jpeg75"])
    with pytest.raises(TypeError, match="sequence of class names"):
        engine.evaluate(train, train_labels, test, test_labels, "p0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"k=7 is out of range: the database holds 6"):
        KnnInfluence(k=7).evaluate(train, train_labels, test, test_labels, classes)
    with pytest.raises(ValueError, match="positive integer"):
        KnnInfluence(k=0).evaluate(train, train_labels, test, test_labels, classes)
    with pytest.raises(ValueError, match="at least one seed"):
        KnnInfluence(seeds=()).evaluate(train, train_labels, test, test_labels, classes)
    with pytest.raises(ValueError, match="chunk_size must be a positive"):
        KnnInfluence(k=2, chunk_size=0).evaluate(train, train_labels, test, test_labels, classes)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_request_without_cuda_names_the_fix():
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="use device 'auto'"):
        resolve_device("cuda")


# --------------------------------------------------------------------------- Fig. 2


def _fig2_data() -> Data:
    # query [1, 0]; train under a: [1, 0] (label 0), [0, 1] (label 1);
    # under b: [-1, 0] (label 0), [1, 1] (label 1, cosine 1/sqrt(2)).
    train = {
        "a": np.array([[1.0, 0.0], [0.0, 1.0]]),
        "b": np.array([[-1.0, 0.0], [1.0, 1.0]]),
    }
    test = {"a": np.array([[1.0, 0.0], [2.0, 0.0]]), "b": np.array([[0.0, 3.0], [0.0, 1.0]])}
    return train, np.array([0, 1]), test, np.array([0, 1]), ["a", "b"]


@pytest.mark.parametrize("device", DEVICES)
def test_similarity_distributions_on_a_hand_checked_case(device):
    dist = similarity_distributions(*_fig2_data(), "a", bins=4, max_queries=1, device=device)
    assert dist.query_indices.tolist() == [0]
    np.testing.assert_array_equal(dist.bin_edges, [-1.0, -0.5, 0.0, 0.5, 1.0])
    counts = {g: dist.groups[g].tolist() for g in SIMILARITY_GROUPS}
    assert counts == {
        "same_sem_same_meta": [0, 0, 0, 1],  # 1.0, last bin closed
        "same_sem_diff_meta": [1, 0, 0, 0],  # -1.0
        "diff_sem_same_meta": [0, 0, 1, 0],  # 0.0
        "diff_sem_diff_meta": [0, 0, 0, 1],  # 0.707
    }
    assert dist.means["same_sem_same_meta"] == 1.0
    assert dist.means["same_sem_diff_meta"] == -1.0
    assert dist.means["diff_sem_same_meta"] == 0.0
    assert dist.means["diff_sem_diff_meta"] == pytest.approx(2**-0.5, abs=1e-6)
    json.dumps(dist.to_dict(), allow_nan=False)


def test_similarity_distributions_both_queries_and_clipping():
    # Second query [2, 0] (label 1) normalizes to [1, 0]: same label as train
    # row 1. value_range (0, 1) clips the -1.0 into the first bin.
    dist = similarity_distributions(*_fig2_data(), "a", bins=2, value_range=(0.0, 1.0))
    assert dist.query_indices.tolist() == [0, 1]
    assert sum(dist.n.values()) == 2 * 2 * 2  # queries x training images x classes
    assert dist.groups["same_sem_same_meta"].tolist() == [1, 1]  # 1.0 and 0.0
    assert dist.groups["diff_sem_diff_meta"].tolist() == [1, 1]  # -1.0 clipped, 0.707
    assert dist.means["same_sem_same_meta"] == 0.5
    with pytest.raises(ValueError, match="unknown query class"):
        similarity_distributions(*_fig2_data(), "c")


# --------------------------------------------------------------------------- Fig. 9


@pytest.mark.parametrize("device", DEVICES)
def test_neighbor_gallery_under_strong_metadata(device):
    data = semantic_plus_metadata(5.0, per_label_test=2)
    train, train_labels, test, test_labels, _ = data
    gallery = neighbor_gallery(*data, ("p0", "p2"), k=4, n_queries=3, device=device)
    # every query is "all-same right, neg-same wrong": three evenly spaced ones
    assert [q.test_index for q in gallery.queries] == [0, 4, 7]
    assert gallery.selection.startswith("automatic")
    for q in gallery.queries:
        assert q.label == test_labels[q.test_index]
        assert q.processing == "p0"
        pos, neg = q.setups["pos_same"], q.setups["neg_same"]
        assert pos.correct
        assert not neg.correct
        assert q.setups["all_same"].correct
        assert all(n.match and n.processing == "p0" for n in pos.neighbors)
        assert all(not n.match and n.processing == "p0" for n in neg.neighbors)
        assert all(n.processing == "p0" for n in q.setups["all_same"].neighbors)
        for entry in q.setups.values():
            assert [n.rank for n in entry.neighbors] == [0, 1, 2, 3]
            sims = [n.similarity for n in entry.neighbors]
            assert sims == sorted(sims, reverse=True)
            x = test["p0"][q.test_index].astype(np.float64)
            for n in entry.neighbors:
                assert n.label == train_labels[n.train_index]
                y = train[n.processing][n.train_index].astype(np.float64)
                cosine = x @ y / np.linalg.norm(x) / np.linalg.norm(y)
                assert n.similarity == pytest.approx(cosine, abs=1e-6)
    json.dumps(gallery.to_dict(), allow_nan=False)


def test_neighbor_gallery_on_a_tiny_case_with_given_queries():
    train, train_labels, test, test_labels, classes = _fig2_data()
    gallery = neighbor_gallery(
        train, train_labels, test, test_labels, classes, ("a", "b"), k=2, query_indices=[0]
    )
    assert gallery.selection == "given indices"
    (query,) = gallery.queries
    # query [1, 0], label 0. all-same (a): [1,0] label 0 (1.0), [0,1] label 1 (0.0)
    rows = {
        name: [(n.train_index, n.processing, n.label, n.match, n.similarity) for n in e.neighbors]
        for name, e in query.setups.items()
    }
    assert rows["all_same"] == [(0, "a", 0, True, 1.0), (1, "a", 1, False, 0.0)]
    # pos-same: positive row 0 under a (1.0), negative row 1 under b (0.707)
    assert rows["pos_same"][0] == (0, "a", 0, True, 1.0)
    assert rows["pos_same"][1][:4] == (1, "b", 1, False)
    # neg-same: negative row 1 under a (0.0) beats positive row 0 under b (-1.0)
    assert rows["neg_same"] == [(1, "a", 1, False, 0.0), (0, "b", 0, True, -1.0)]
    # 1-1 vote ties go to the nearest neighbour
    assert query.setups["all_same"].prediction == 0
    assert query.setups["neg_same"].prediction == 1
    with pytest.raises(ValueError, match="out of range"):
        neighbor_gallery(
            train, train_labels, test, test_labels, classes, ("a", "b"), query_indices=[5], k=1
        )
    with pytest.raises(ValueError, match="two different"):
        neighbor_gallery(train, train_labels, test, test_labels, classes, ("a", "a"), k=1)
