"""Fault injection on whole-session errors and degenerate embeddings (issue 17, items 4 and 6).

The reliability promise (README, "Reliability"): an error that holds for the
whole session is shown once - a usage error at start (exit status 4) where
it can be known then (an ``input_size`` over the limit, a cache path under a
file), else in full with the first test it fails and as one line naming that
test everywhere else (a dataset, an encoder's weights or config, a read-only
cache, ``--metatrace-knn-k`` over the training set). A collapsed encoder
(all-zero, constant, NaN or rank-collapsed embeddings) stops every audit with
one message naming it, before any gate can pass. Each test builds the fault,
asserts the message and exit status, counts that it is shown in full once,
and that the good data's numbers do not change.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from plugin_helpers import FAST, TINY_CONFTEST, copy_audits, make_tiny_dataset, preimport

from pytest_metatrace.embeddings.degenerate import (
    MIN_EFFECTIVE_RANK,
    MIN_SPREAD,
    RANK_MIN_ROWS,
    degeneracy,
    effective_rank,
    sample_rows,
)

# pytester runs in-process; see plugin_helpers.preimport.
preimport()

SESSION_CONFTEST = (
    TINY_CONFTEST
    + '''

class ZeroNet(torch.nn.Module):
    """A collapsed encoder: every embedding is all zero."""

    def forward(self, x):
        return torch.zeros(x.shape[0], 8)


def make_zero(**options):
    return ZeroNet().eval(), make_tiny()[1]


def make_big(**options):
    # A config (not a spec option) over the limit: 5000 px a side, 75 MB a probe image if
    # the check ever regressed (never the 30 GB of input_size=100000).
    return TinyNet().eval(), make_tiny()[1].replace(input_size=(5000, 5000), crop_pct=1.0)


def pytest_metatrace_register_encoders(registry):
    registry.register("tiny", make_tiny, description="tiny")
    registry.register("zero", make_zero, description="all-zero embeddings")
    registry.register("big", make_big, description="a 5000-pixel input")
'''
)

#: What every report after the first full one says instead.
SAME = "(the same error as in {first}, shown there in full)"
#: :data:`FAST` without its encoder: each test names its own.
ARGS = tuple(a for a in FAST if not a.startswith("--metatrace-encoder"))


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One embedding cache for the module: the tiny set is embedded once, not per test."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def project(pytester: pytest.Pytester, shared_cache: Path) -> pytest.Pytester:
    pytester.makeconftest(SESSION_CONFTEST)
    make_tiny_dataset(pytester.path / "tinyset")
    return pytester


def _run(project: pytest.Pytester, cache: Path, *args: str) -> pytest.RunResult:
    return project.runpytest(
        *ARGS, f"--metatrace-cache-dir={cache}", "--metatrace-report=none", *args
    )


def _reports(result: pytest.RunResult) -> str:
    """The ERRORS / FAILURES sections: pytest 9.2 repeats first messages in its summary."""
    out = result.stdout.str().split("short test summary info")[0]
    starts = [i for i in (out.find("= ERRORS ="), out.find("= FAILURES =")) if i >= 0]
    return out[min(starts) :] if starts else ""


# ---------------------------------------------------------------- the degenerate check


def _healthy(n: int = 24, d: int = 6) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, d)) + 3.0


def test_constructed_degenerate_embeddings_are_named() -> None:
    ids = [f"img{i}" for i in range(10)]
    x = _healthy(10, 4)
    assert degeneracy(x, ids) is None
    assert degeneracy(np.zeros((10, 4)), ids) == "every embedding is all zero (10 sampled)"
    nan = x.copy()
    nan[3, 1] = np.nan
    nan[7, 0] = np.inf
    assert degeneracy(nan, ids) == (
        "2 of the 10 embeddings sampled hold NaN or infinite values (img3, img7)"
    )
    zero = x.copy()
    zero[5] = 0.0
    assert degeneracy(zero, ids) == (
        "1 of the 10 embeddings sampled are all zero (img5): their cosine similarity to "
        "anything is undefined"
    )
    assert degeneracy(np.tile([1.0, -2.0, 0.5, 4.0], (10, 1)), ids) == (
        "every embedding is the same vector (10 images sampled)"
    )


def test_near_identical_rows_are_refused_at_the_bf16_bound() -> None:
    base = np.tile([1.0, -2.0, 0.5, 4.0], (10, 1))
    wiggle = np.zeros_like(base)
    wiggle[::2, 0], wiggle[1::2, 0] = 1.0, -1.0  # spread = |w| / |base| exactly
    norm = float(np.linalg.norm(base))
    assert MIN_SPREAD == 2.0**-10
    below = base + wiggle * (0.5 * MIN_SPREAD * norm / np.sqrt(10))
    reason = degeneracy(below)
    assert reason is not None and reason.startswith(
        "the embeddings are near-identical: the 10 sampled differ from their mean by 4.9e-04 of "
        "their size (below 9.8e-04 = 2**-10"
    )
    above = base + wiggle * (2.0 * MIN_SPREAD * norm / np.sqrt(10))
    # 2x the bound: near-identical no more, but rows on one line: rank-collapsed instead
    assert degeneracy(above) is not None and "rank-collapsed" in str(degeneracy(above))


def test_effective_rank_has_its_known_values() -> None:
    e = np.eye(3)
    assert effective_rank(np.stack([e[0], -e[0], e[1], -e[1]])) == pytest.approx(2.0)
    assert effective_rank(np.concatenate([e, -e])) == pytest.approx(3.0)
    t = np.linspace(-1, 1, 9)[:, None]
    assert effective_rank(t * [1.0, 2.0, -1.0] + 5.0) == pytest.approx(1.0)
    assert effective_rank(np.ones((4, 3))) == 0.0


def test_rank_collapsed_rows_are_refused_from_eight_rows() -> None:
    rng = np.random.default_rng(1)
    line = rng.normal(size=(RANK_MIN_ROWS, 1)) * [[1.0, 2.0, -1.0, 0.5]] + 3.0
    line += 1e-6 * rng.normal(size=line.shape)  # float noise off the line
    reason = degeneracy(line)
    assert reason is not None and reason.startswith(
        "the embeddings are rank-collapsed: the 8 sampled vary along one direction only "
        "(effective rank 1.00 of the centered rows, below 1.5)"
    )
    assert degeneracy(line[:-1]) is None  # 7 rows can lie near a line by chance
    # Two equal directions: effective rank 2, well above the bound
    plane = np.concatenate([line[:4], line[:4] @ np.diag([1, -1, 1, -1])])
    assert effective_rank(plane) > MIN_EFFECTIVE_RANK and degeneracy(plane) is None
    assert degeneracy(_healthy()) is None


def test_sample_rows_spans_the_dataset() -> None:
    assert sample_rows(5) == [0, 1, 2, 3, 4]
    rows = sample_rows(10_000, limit=512)
    assert len(rows) == 512 and rows[0] == 0 and rows[-1] == 9_999


def _fake_embeddings(tmp_path: Path, encoder: Any) -> tuple[Any, Any]:
    from image_helpers import synthetic_rgb, write_image

    from pytest_metatrace.data import load_dataset
    from pytest_metatrace.embeddings import Embeddings

    root = tmp_path / "data"
    for c in range(2):
        for k in range(6):
            write_image(root / f"c{c}" / f"{k}.png", synthetic_rgb(8, 6, seed=10 * c + k))
    ds = load_dataset(str(root), cache_dir=tmp_path / "c")
    return Embeddings(encoder, cache_dir=tmp_path / "c", batch_size=4, num_workers=0), ds


def test_check_runs_once_per_dataset_and_leaves_the_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fake_encoder import FakeEncoder

    from pytest_metatrace.embeddings import provider

    calls: list[int] = []

    def counted(x: np.ndarray, ids: list[str] | None = None) -> str | None:
        calls.append(len(x))
        return degeneracy(x, ids)

    monkeypatch.setattr(provider, "degeneracy", counted)
    emb, ds = _fake_embeddings(tmp_path / "checked", FakeEncoder())
    first = emb.many(ds, "train", ["jpeg75_420", "sharpen2"])
    again = emb(ds, "test", None, masked=True)
    third = emb(ds, "all", "interp_box")
    assert calls == [12]  # once, on a sample of the whole dataset (12 images), not per split
    monkeypatch.setattr(provider, "degeneracy", lambda x, ids=None: None)
    plain, ds2 = _fake_embeddings(tmp_path / "unchecked", FakeEncoder())
    np.testing.assert_array_equal(
        first["jpeg75_420"], plain.many(ds2, "train", ["jpeg75_420"])["jpeg75_420"]
    )
    np.testing.assert_array_equal(again, plain(ds2, "test", None, masked=True))
    np.testing.assert_array_equal(third, plain(ds2, "all", "interp_box"))
    assert emb.stats.computed == plain.stats.computed


def test_a_degenerate_dataset_is_refused_on_every_call_without_a_recheck(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fake_encoder import FakeEncoder

    from pytest_metatrace.embeddings.degenerate import DegenerateEmbeddings

    class Constant(FakeEncoder):
        def embed(self, pixels: Any) -> Any:
            return super().embed(pixels) * 0.0 + 1.0

    emb, ds = _fake_embeddings(tmp_path, Constant())
    with pytest.raises(DegenerateEmbeddings) as first:
        emb(ds, "train", "jpeg75_420")
    assert str(first.value).startswith(
        "the embeddings of encoder 'fake' on dataset 'data' are degenerate: every embedding is "
        "the same vector (12 images sampled); view jpeg75_420. No audit can measure a trace"
    )
    monkeypatch.setattr(emb.store, "get", lambda *a, **k: pytest.fail("read again"))
    with pytest.raises(DegenerateEmbeddings) as second:
        emb(ds, "test", "sharpen2")
    assert str(second.value) == str(first.value)


def test_collapsed_encoder_stops_every_audit_with_one_message(
    project: pytest.Pytester, shared_cache: Path
) -> None:
    copy_audits(
        project.path,
        ("test_processing_drift.py", "test_processing_traces.py", "test_semantic_influence.py"),
    )
    result = _run(
        project,
        shared_cache,
        "--metatrace-encoder=zero",
        "--metatrace-encoder=tiny",
        "--metatrace-data=tinyset",
        "--metatrace-json=out.json",
        "audits",
        "-k",
        "zero and jpeg or tiny and jpeg75_420",
    )
    # zero: 5 drift classes + the jpeg probe + the jpeg kNN group fail; tiny's drift passes
    result.assert_outcomes(failed=7, passed=1)
    out = _reports(result)
    full = (
        "DegenerateEmbeddings: the embeddings of encoder 'zero' on dataset 'tinyset' are "
        "degenerate: every embedding is all zero (24 sampled); view jpeg95_444. No audit can "
        "measure a trace on them"
    )
    assert out.count(full) == 1, out
    first = "audits/test_processing_drift.py::test_processing_drift[zero-tinyset-jpeg75_420]"
    short = (
        "DegenerateEmbeddings: the embeddings of encoder 'zero' on dataset 'tinyset' are "
        f"degenerate: every embedding is all zero (24 sampled) {SAME.format(first=first)}"
    )
    assert out.count(short) == 6
    assert "Traceback" not in out and "zero norm" not in out and "embedding cache" not in out
    doc = json.loads((project.path / "out.json").read_text())
    # Nothing recorded (so nothing gated) on zero; tiny measured as ever.
    assert [(r["encoder"], r["metric"]) for r in doc["records"]] == [
        ("tiny", "mean_cosine_distance")
    ]
    assert 0.0 < doc["records"][0]["value"] < 1.0


# ---------------------------------------------------------------- range checks


def test_knn_k_over_the_training_set_is_refused_once(
    project: pytest.Pytester, shared_cache: Path
) -> None:
    copy_audits(project.path, ("test_semantic_influence.py",))
    result = _run(
        project,
        shared_cache,
        "--metatrace-encoder=tiny",
        "--metatrace-data=tinyset",
        "--metatrace-knn-k=1000",
    )
    result.assert_outcomes(failed=4)  # the four parameter groups
    out = _reports(result)
    full = (
        "cannot run the kNN semantic-influence audit on tinyset: k=1000 is out of range: the "
        "database holds 12 training images, and a vote of the k nearest neighbours needs "
        "1 <= k <= 12. Lower --metatrace-knn-k (the protocol uses 10 for ImageNet-like sets, 1 "
        "for iNaturalist-like sets) or use a dataset with at least 1000 training images"
    )
    assert out.count(full) == 1, out
    first = "audits/test_semantic_influence.py::test_semantic_influence[tiny-tinyset-jpeg]"
    short = full.split(". Lower")[0]  # the first sentence, then where the full message is
    assert out.count(f"{short} {SAME.format(first=first)}") == 3
    assert "Traceback" not in out and "knn_engine.py" not in out


def test_knn_k_equal_to_the_training_set_measures() -> None:
    from pytest_metatrace.audits.semantic_influence.influence import KnnInfluence, KnnInputError

    rng = np.random.default_rng(0)
    train = {c: rng.normal(size=(6, 4)) for c in ("a", "b")}
    test = {c: rng.normal(size=(3, 4)) for c in ("a", "b")}
    labels, queries = [0, 0, 0, 1, 1, 1], [0, 1, 1]
    with pytest.raises(KnnInputError, match=r"k=7 is out of range: the database holds 6 "):
        KnnInfluence(k=7, device="cpu").evaluate(train, labels, test, queries, ["a", "b"])
    result = KnnInfluence(k=6, device="cpu").evaluate(train, labels, test, queries, ["a", "b"])
    # Six neighbours of three each: the tie goes to the best-ranked neighbour's label.
    assert result.n_train == 6 and result.k == 6


def test_input_size_over_the_limit_is_a_usage_error_at_collection(
    project: pytest.Pytester,
) -> None:
    from pytest_metatrace.encoders import EncoderSpecError, validate_spec

    with pytest.raises(EncoderSpecError) as info:
        validate_spec("lite0?input_size=100000", check_available=False)
    assert str(info.value) == (
        "'lite0?input_size=100000': input_size=100000 is over the limit of 4096 pixels a side: "
        "one 100000 x 100000 image takes 30 GB as uint8 pixels (120 GB as float32) before the "
        "model sees it. Vision encoders take 224 to 1024 pixels (SAM's ViTs 1024, "
        "EfficientNet-L2 800); drop the option to use the encoder's own size, or stay within "
        "4096"
    )
    assert validate_spec("lite0?input_size=4096,1024", check_available=False)
    project.makepyfile(
        "def test_a(metatrace_embeddings):\n    pass\ndef test_b(metatrace_encoder):\n    pass\n"
    )
    # 5000, not 100000: should the check ever regress, the probe image is 75 MB, not 30 GB.
    result = project.runpytest("-p", "no:cacheprovider", "--metatrace-encoder=tiny?input_size=5000")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert (
        err.count(
            "input_size=5000 is over the limit of 4096 pixels a side: one 5000 x 5000 image "
            "takes 75 MB"
        )
        == 1
    ), err
    assert "Traceback" not in err and "passed" not in result.stdout.str()


def test_encoder_config_over_the_limit_fails_once_before_any_pixel(
    project: pytest.Pytester, shared_cache: Path
) -> None:
    project.makepyfile(
        "import pytest\n"
        "@pytest.mark.parametrize('i', range(3))\n"
        "def test_a(metatrace_encoder, i):\n    pass\n"
    )
    result = _run(
        project,
        shared_cache,
        "--metatrace-encoder=big",
        "--metatrace-encoder=tiny?crop_pct=0.005",
        "--metatrace-encoder=tiny",
    )
    result.assert_outcomes(errors=6, passed=3)
    out = _reports(result)
    big = (
        "cannot load encoder 'big': input_size (5000, 5000) is over the limit of 4096 pixels a "
        "side: one 5000 x 5000 image takes 75 MB"
    )
    crop = (
        "cannot load encoder 'tiny?crop_pct=0.005': the resize target (9600, 9600) (input_size "
        "/ crop_pct 0.005) is over the limit of 8192 pixels a side"
    )
    assert out.count(big) == out.count(crop) == 1, out
    assert out.count("cannot load encoder 'big' (the same error as in test_") == 2
    assert out.count("cannot load encoder 'tiny?crop_pct=0.005' (the same error as in") == 2


# ---------------------------------------------------------------- errors once


def test_dataset_and_weight_errors_are_shown_once(
    project: pytest.Pytester, shared_cache: Path
) -> None:
    for c in ("0", "1"):  # one image per class: no stratified split
        (project.path / "bad" / c).mkdir(parents=True)
        image = project.path / f"tinyset/class{c}/img00.png"
        (project.path / "bad" / c / "0.png").write_bytes(image.read_bytes())
    (project.path / "garbage.bin").write_bytes(np.random.default_rng(0).bytes(4096))
    project.makepyfile(
        "import pytest\n"
        "@pytest.mark.parametrize('i', range(4))\n"
        "def test_data(metatrace_dataset, i):\n    pass\n"
        "@pytest.mark.parametrize('i', range(3))\n"
        "def test_embed(metatrace_embeddings, i):\n    pass\n"
    )
    result = _run(
        project,
        shared_cache,
        "--metatrace-data=bad",
        "--metatrace-encoder=timm:resnet18@garbage.bin",
    )
    result.assert_outcomes(errors=7)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = _reports(result)
    # relative command-line paths are named as resolved, against the folder pytest ran in
    bad, garbage = project.path / "bad", project.path / "garbage.bin"
    dataset = (
        f"cannot load dataset '{bad}': dataset 'bad': classes ['0', '1'] have fewer than 2 images"
    )
    weights = f"cannot load encoder 'timm:resnet18@{garbage}': "
    assert out.count(dataset) == 1 and out.count(weights) == 1, out
    assert f"cannot read the weights in {garbage}: it is not a PyTorch state dict" in out
    first = re.escape("(the same error as in test_dataset_and_weight_errors_are_shown_once.py::")
    again = rf"cannot load dataset '{re.escape(str(bad))}' {first}test_data\[bad-0\]"
    assert len(re.findall(again, out)) == 3
    assert len(re.findall(rf"cannot load encoder '[^']+' {first}test_embed\[", out)) == 2
    assert "Traceback" not in out


def test_read_only_empty_cache_is_shown_once(project: pytest.Pytester, tmp_path: Path) -> None:
    # Root reads and writes any folder: the read-only folder is simulated, and put back.
    project.makeconftest(
        SESSION_CONFTEST + "\n\nimport pytest_metatrace._sqlite as _sq\n_real = _sq._writable\n\n"
        "def pytest_configure(config):\n    _sq._writable = lambda folder: False\n\n"
        "def pytest_unconfigure(config):\n    _sq._writable = _real\n"
    )
    project.makepyfile(
        "import pytest\n"
        "@pytest.mark.parametrize('i', range(3))\n"
        "def test_embed(metatrace_embeddings, metatrace_dataset, i):\n"
        "    metatrace_embeddings(metatrace_dataset, 'all', None)\n"
    )
    cache = tmp_path / "empty"
    cache.mkdir()
    result = _run(project, cache, "--metatrace-encoder=tiny", "--metatrace-data=tinyset")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = _reports(result)
    message = f"the cache folder {cache / 'embeddings'} is read-only and lacks"
    assert out.count(message) == 3 and out.count("(the same error as in test_") == 2, out
    assert out.count("--metatrace-cache-dir") == 1 and "Traceback" not in out


def test_cache_path_under_a_file_is_a_usage_error_at_start(project: pytest.Pytester) -> None:
    (project.path / "afile").write_text("x")
    project.makepyfile(
        "def test_a(metatrace_dataset):\n    pass\ndef test_b(metatrace_dataset):\n    pass\n"
    )
    for where, why in (
        ("afile/sub", f"lies under {project.path / 'afile'}, which is a file"),
        ("afile", "is a file"),
    ):
        result = _run(project, project.path / where, "--metatrace-data=tinyset")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        err = result.stderr.str()
        assert (
            err.count(
                f"--metatrace-cache-dir: the cache folder {project.path / where} {why}; point "
                "--metatrace-cache-dir (ini metatrace_cache_dir, or METATRACE_CACHE_DIR) at a "
                "folder"
            )
            == 1
        ), err
    # a test that never asks for the plugin's fixtures is not stopped by its cache
    project.makepyfile("def test_a():\n    pass\n")
    _run(project, project.path / "afile").assert_outcomes(passed=1)
