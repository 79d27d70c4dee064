"""The analysis cache (analysis/memo.py): keyed by every input, exact on reuse, safe to read."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from plugin_helpers import FAST, TINY_CONFTEST, copy_audits, make_tiny_dataset, preimport

from pytest_metatrace.analysis import memo
from pytest_metatrace.analysis.stats import Interval

# pytester's in-process runs drop the modules they import; these cannot load twice.
preimport("numpy.fft", "sklearn.linear_model")


@pytest.fixture
def cache(tmp_path: Path):
    memo.activate(tmp_path / "analyses")
    before = (memo.stats().computed, memo.stats().reused)
    yield tmp_path / "analyses", before
    memo.deactivate()


def _counts(before: tuple[int, int]) -> tuple[int, int]:
    return memo.stats().computed - before[0], memo.stats().reused - before[1]


def test_same_inputs_are_computed_once_and_read_back_exactly(cache) -> None:
    root, before = cache
    x = np.random.default_rng(0).normal(size=(20, 8)).astype(np.float32)
    calls = []

    def compute() -> dict:
        calls.append(1)
        return {"mean": x.mean(axis=0), "interval": Interval(0.2, 0.1, 0.3, 0.95, 20, "m")}

    first = memo.cached("toy", {"k": 3, "lr": 0.1}, [x], compute)
    second = memo.cached("toy", {"lr": 0.1, "k": 3}, [x.copy()], compute)  # key order: same
    assert len(calls) == 1 and _counts(before) == (1, 1)
    assert np.array_equal(first["mean"], second["mean"])
    assert second["mean"].dtype == np.float32 and second["interval"] == first["interval"]
    assert len(list(root.rglob("*.pkl"))) == 1


@pytest.mark.parametrize(
    "change",
    ["param", "float_param", "array_value", "array_dtype", "array_shape", "name"],
)
def test_every_input_is_part_of_the_key(cache, change: str) -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    base = ("toy", {"k": 3, "lr": 0.1}, [x])
    changed = {
        "param": ("toy", {"k": 4, "lr": 0.1}, [x]),
        "float_param": ("toy", {"k": 3, "lr": 0.1000001}, [x]),
        "array_value": ("toy", {"k": 3, "lr": 0.1}, [x + np.float32(1e-6) * (x == 5)]),
        "array_dtype": ("toy", {"k": 3, "lr": 0.1}, [x.astype(np.float64)]),
        "array_shape": ("toy", {"k": 3, "lr": 0.1}, [x.reshape(4, 3)]),
        "name": ("toy2", {"k": 3, "lr": 0.1}, [x]),
    }[change]
    assert memo.analysis_key(*base) != memo.analysis_key(*changed)
    calls = []
    memo.cached(*base, lambda: calls.append(1) or 1)
    memo.cached(*changed, lambda: calls.append(1) or 2)
    assert len(calls) == 2


def test_a_damaged_entry_is_recomputed_and_rewritten(cache) -> None:
    root, before = cache
    x = np.ones((4, 2))
    assert memo.cached("toy", {}, [x], lambda: [1.5, 2.5]) == [1.5, 2.5]
    (entry,) = root.rglob("*.pkl")
    entry.write_bytes(entry.read_bytes()[:5])  # truncated by a killed writer or a full disk
    assert memo.cached("toy", {}, [x], lambda: [1.5, 2.5]) == [1.5, 2.5]
    assert _counts(before) == (2, 0)
    assert memo.cached("toy", {}, [x], lambda: [9.0]) == [1.5, 2.5]  # rewritten whole
    assert _counts(before) == (2, 1)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > " + str(Path.cwd() / "pwned"),))


def test_a_foreign_pickle_cannot_run_code(cache, tmp_path: Path, monkeypatch) -> None:
    root, before = cache
    monkeypatch.chdir(tmp_path)
    x = np.zeros(3)
    key = memo.analysis_key("toy", {}, [x])
    path = root / "toy" / key[:2] / f"{key}.pkl"
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps(_Evil()))
    assert memo.cached("toy", {}, [x], lambda: "safe") == "safe"
    assert not (tmp_path / "pwned").exists()
    assert _counts(before) == (1, 0)


def test_inputs_that_cannot_be_keyed_are_computed_uncached(cache) -> None:
    root, _ = cache
    calls = []
    obj = np.array([object()], dtype=object)
    assert memo.cached("toy", {"f": object()}, [np.zeros(2)], lambda: calls.append(1) or 7) == 7
    assert memo.cached("toy", {}, [obj], lambda: calls.append(1) or 8) == 8
    assert len(calls) == 2 and not list(root.rglob("*.pkl"))


def test_without_a_cache_every_call_computes() -> None:
    memo.deactivate()
    calls = []
    for _ in range(2):
        memo.cached("toy", {}, [np.zeros(2)], lambda: calls.append(1) or 0)
    assert len(calls) == 2


def _values(path: Path) -> dict:
    doc = json.loads(path.read_text())
    return {(r["audit"], r["parameter"], r["metric"]): r for r in doc["records"]}, doc


def test_a_warm_run_recomputes_no_probe_and_a_new_parameter_does(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(TINY_CONFTEST)
    make_tiny_dataset(pytester.path / "tinyset")
    copy_audits(pytester.path, ("test_processing_traces.py",))
    # three of the four groups (the JPEG group's 6 classes need more than 24 images)
    args = (*FAST, "--metatrace-data=tinyset", "--metatrace-json=out.json", "-k", "not jpeg")
    args = (*args, "audits")
    cold = pytester.runpytest(*args)
    cold.stdout.fnmatch_lines(["*analyses (probes, maps) computed 3, reused from cache 0*"])
    recs, doc = _values(pytester.path / "out.json")
    assert doc["run"]["analyses"] == {"computed": 3, "reused": 0}

    warm = pytester.runpytest(*args)
    warm.stdout.fnmatch_lines(["*analyses (probes, maps) computed 0, reused from cache 3*"])
    recs2, doc2 = _values(pytester.path / "out.json")
    assert doc2["run"]["analyses"] == {"computed": 0, "reused": 3}
    assert set(recs2) == set(recs)
    for key, rec in recs.items():  # identical numbers, details and per-image scores
        for field in ("value", "interval", "scores", "details"):
            assert recs2[key][field] == rec[field], (key, field)

    more = pytester.runpytest(*args, "--metatrace-probe-seeds=3")
    more.stdout.fnmatch_lines(["*analyses (probes, maps) computed 3, reused from cache 0*"])
