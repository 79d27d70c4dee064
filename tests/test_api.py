"""The audit author's API: exports, settings, typed results, audits that travel."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from plugin_helpers import FAST, REPO, TINY_CONFTEST, make_tiny_dataset

import pytest_metatrace
from pytest_metatrace.audits.processing_drift.analysis import DriftResult
from pytest_metatrace.audits.processing_probe.results import ProbeDetails, SearchPoint
from pytest_metatrace.audits.semantic_influence.results import (
    GalleryFigure,
    SemanticDetails,
    SetupSummary,
    SimilarityFigure,
)
from pytest_metatrace.options import env_value, option
from pytest_metatrace.settings import Settings, core_options, protocol_option_names
from pytest_metatrace.spec import AuditRegistry, AuditSpec, default_registry

REGISTRY = default_registry()
#: every built-in audit's test modules, dotted
AUDIT_MODULES = [m for spec in REGISTRY.specs() for m in spec.test_modules()]
OPTIONS = (*core_options(), *REGISTRY.options())

# --------------------------------------------------------------------------- exports


def _type_checking_imports() -> dict[str, str]:
    tree = ast.parse(Path(pytest_metatrace.__file__).read_text())
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
    )
    return {
        alias.asname or alias.name: str(stmt.module)
        + (f":{alias.name}" if alias.asname and alias.asname != alias.name else "")
        for stmt in block.body
        if isinstance(stmt, ast.ImportFrom)
        for alias in stmt.names
    }


def test_exports_all_and_type_checking_imports_agree():
    exports = pytest_metatrace._EXPORTS
    assert set(pytest_metatrace.__all__) == set(exports) | {"__version__"}
    assert _type_checking_imports() == exports
    for name, target in exports.items():
        value = getattr(pytest_metatrace, name)
        module, _, attribute = target.partition(":")
        fresh = getattr(importlib.import_module(module), attribute or name)
        # pytester's in-process runs may re-import a module after the export was cached:
        # then the export is the same definition from the earlier import of that module.
        same = value is fresh or value == fresh
        same = same or (
            getattr(value, "__qualname__", None) == getattr(fresh, "__qualname__", 0)
            and getattr(value, "__module__", None) == getattr(fresh, "__module__", 0)
        )
        assert same, (name, target)


def test_exports_what_an_audit_author_needs():
    needed = {
        "Record",
        "Recorder",
        "Settings",
        "processing_drift",
        "processing_probe",
        "semantic_influence",
        "DriftResult",
        "ProcessingProbeResult",
        "SemanticInfluenceResult",
    }
    assert needed <= set(pytest_metatrace.__all__)


def test_unknown_export_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = pytest_metatrace.nope


# --------------------------------------------------------------------------- settings


@dataclasses.dataclass(frozen=True)
class _MySettings:
    my_level: float = option(0.5, "a user audit's option", convert=float)
    my_names: tuple[str, ...] = option((), "repeatable", multiple=True)


def test_settings_fields_are_the_options():
    fields = {f.name for f in dataclasses.fields(Settings)} - {"audits", "origins"}
    assert fields == {opt.attr for opt in core_options()}
    # every option has a flag and an ini twin, derived from the field's name
    knn = next(o for o in core_options() if o.attr == "knn_k")
    assert (knn.cli, knn.ini, knn.default) == ("--metatrace-knn-k", "metatrace_knn_k", 10)


def test_settings_are_frozen_typed_and_readable_by_option_name():
    settings = Settings(knn_k=7, audits={"mine": _MySettings(my_level=0.7, my_names=("a",))})
    assert settings.knn_k == 7
    assert settings["knn-k"] == 7 and settings["knn_k"] == 7
    assert settings.encoder == ("lite0",)
    # an audit's options: typed through of(), by name through the attribute or the item
    assert settings.of(_MySettings).my_level == 0.7
    assert settings.my_level == 0.7 and settings["my-names"] == ("a",)
    assert settings.to_dict()["my-names"] == ["a"]
    assert settings.to_dict()["encoder"] == ["lite0"]
    assert "list-encoders" not in settings.to_dict()  # flags are actions, not settings
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.seed = 3  # type: ignore[misc]
    with pytest.raises(KeyError, match="pytest --help"):
        settings["no-such-option"]
    with pytest.raises(AttributeError, match="pytest --help"):
        _ = settings.no_such_option
    with pytest.raises(LookupError, match="_MySettings"):
        Settings().of(_MySettings)


def test_protocol_settings_are_the_options_marked_protocol():
    registry = AuditRegistry([AuditSpec("mine", "Mine", "x", settings=_MySettings)])
    settings = Settings(seed=3, audits={"mine": _MySettings()})
    protocol = settings.protocol_settings()
    assert protocol["seed"] == 3 and "knn-k" in protocol and "device" not in protocol
    assert "my-level" not in protocol
    names = protocol_option_names(registry)
    assert "seed" in names and "batch-size" not in names


def test_environment_knobs_are_rows_of_the_option_table(monkeypatch: pytest.MonkeyPatch):
    env_only = {opt.env for opt in OPTIONS if opt.env_only}
    assert {"METATRACE_MALLOC_TUNING", "METATRACE_PROGRESS_INTERVAL"} <= env_only
    monkeypatch.setenv("METATRACE_MALLOC_TUNING", "0")
    assert env_value("malloc-tuning") is False
    monkeypatch.delenv("METATRACE_MALLOC_TUNING")
    assert env_value("malloc-tuning") is True
    monkeypatch.setenv("METATRACE_PROGRESS_INTERVAL", "soon")
    with pytest.raises(pytest.UsageError, match="METATRACE_PROGRESS_INTERVAL = 'soon'"):
        env_value("progress-interval")


def test_metatrace_settings_fixture_precedence(pytester: pytest.Pytester, monkeypatch):
    pytester.makeini("[pytest]\nmetatrace_knn_k = 5\nmetatrace_seed = 4\n")
    monkeypatch.setenv("METATRACE_PROGRESS_INTERVAL", "2.5")
    pytester.makepyfile(
        """
        from pytest_metatrace import Settings

        def test_settings(metatrace_settings):
            assert isinstance(metatrace_settings, Settings)
            assert metatrace_settings.knn_k == 9  # command line over ini
            assert metatrace_settings.seed == 4  # ini over default
            assert metatrace_settings.progress_interval == 2.5  # environment
            assert metatrace_settings.batch_size == 64  # default
        """
    )
    pytester.runpytest("-p", "no:cacheprovider", "--metatrace-knn-k=9").assert_outcomes(passed=1)


# --------------------------------------------------------------------------- typed results


def test_probe_details_round_trip_and_tolerance():
    details = ProbeDetails(
        classes=["a", "b"],
        top1_mean=0.75,
        top1_std=0.05,
        top1_per_seed=[0.7, 0.8],
        per_class_accuracy={"a": 1.0, "b": 0.5},
        confusion=[[4, 0], [2, 2]],
        hyperparameters={"lr": 1.0, "weight_decay": 1e-6},
        search=[SearchPoint(val_top1=0.5, lr=1.0, weight_decay=1e-6)],
        search_method="sobol",
        seeds=[0, 1],
        mode="sgd",
    )
    data = json.loads(json.dumps(details.to_dict()))
    assert data["search"] == [{"val_top1": 0.5, "lr": 1.0, "weight_decay": 1e-6}]
    assert ProbeDetails.from_dict(data) == details
    junk = ProbeDetails.from_dict({"top1_mean": "x", "confusion": "no", "seeds": [1, None]})
    assert junk.top1_mean is None and junk.confusion == [] and junk.seeds == [1]
    assert ProbeDetails.from_dict(None) == ProbeDetails()


def test_semantic_details_round_trip():
    details = SemanticDetails(
        k=3,
        classes=["p", "q"],
        setups={"all_same": SetupSummary(0.5, 0.4, 0.6, [[None, 0.5], [0.5, None]])},
        similarity_distributions=SimilarityFigure(
            query_class="p",
            bin_edges=[-1.0, 0.0, 1.0],
            groups={"same_sem_same_meta": [1.0, 2.0]},
            means={"same_sem_same_meta": 0.25},
        ),
        gallery=GalleryFigure.from_dict(
            {
                "pair": ["p", "q"],
                "thumbs": {"x|p": "data:image/png;base64,AA=="},
                "queries": [
                    {
                        "thumb": "x|p",
                        "label": "cat",
                        "processing": "p",
                        "setups": {
                            "all_same": [
                                {
                                    "thumb": "x|p",
                                    "label": "cat",
                                    "processing": "p",
                                    "match": True,
                                    "similarity": 0.9,
                                }
                            ]
                        },
                    }
                ],
            }
        ),
        n_train=4,
        n_test=4,
        seeds=[0],
    )
    data = json.loads(json.dumps(details.to_dict()))
    assert data["setups"]["all_same"]["interval"] == {"low": 0.4, "high": 0.6}
    assert SemanticDetails.from_dict(data) == details
    assert details.gallery is not None and details.gallery.queries[0].setups["all_same"][0].match


def test_drift_result_details_and_records():
    import numpy as np

    from pytest_metatrace.analysis.stats import bootstrap_mean

    distances = np.array([0.1, 0.2, 0.3, 0.4])
    result = DriftResult(
        processing="jpeg75_420",
        reference="jpeg95_444",
        mean=0.25,
        interval=bootstrap_mean(distances),
        quantiles={"p05": 0.115, "p50": 0.25, "p95": 0.385},
        n_images=4,
        distances=tuple(distances.tolist()),
        image_ids=("a", "b", "c", "d"),
    )
    (record,) = result.to_records(encoder="e", dataset="d")
    assert (record.audit, record.metric, record.parameter) == (
        "processing_drift",
        "mean_cosine_distance",
        "jpeg75_420",
    )
    assert record.scores == [0.1, 0.2, 0.3, 0.4] and record.score_ids == ["a", "b", "c", "d"]
    back = DriftResult.from_dict(record.details, processing="jpeg75_420", mean=record.value)
    assert back.quantiles == result.quantiles and back.n_images == 4
    assert back.reference == "jpeg95_444"


# --------------------------------------------------------------------------- audits that travel


def _copy(target: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_metatrace", "copy-audits", str(target), *extra],
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )


def test_copy_audits_writes_the_installed_modules_and_refuses_to_overwrite(tmp_path: Path):
    target = tmp_path / "my_audits"
    first = _copy(target)
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in target.iterdir()) == sorted(
        f"{m.rpartition('.')[2]}.py" for m in AUDIT_MODULES
    )
    for module in AUDIT_MODULES:
        source = REPO / (module.replace(".", "/") + ".py")
        assert (target / f"{module.rpartition('.')[2]}.py").read_text() == source.read_text()
    (target / "test_processing_drift.py").write_text("# edited\n")
    again = _copy(target)
    assert again.returncode == 1
    assert "not overwriting" in again.stderr and "--force" in again.stderr
    assert (target / "test_processing_drift.py").read_text() == "# edited\n"
    forced = _copy(target, "--force")
    assert forced.returncode == 0, forced.stderr
    assert (target / "test_processing_drift.py").read_text() != "# edited\n"


def test_repository_audits_are_shims_of_the_installed_ones():
    for module in AUDIT_MODULES:
        shim = (REPO / "audits" / f"{module.rpartition('.')[2]}.py").read_text()
        code = [line for line in ast.parse(shim).body if not isinstance(line, ast.Expr)]
        assert len(code) == 1 and isinstance(code[0], ast.ImportFrom)
        assert code[0].module == module


def test_audit_modules_use_only_the_public_api_and_no_plugin_state():
    for module in AUDIT_MODULES:
        tree = ast.parse((REPO / (module.replace(".", "/") + ".py")).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pytest_"):
                assert node.module == "pytest_metatrace", f"{module} imports {node.module}"
            assert not (isinstance(node, ast.Name) and node.id in ("STATE_KEY", "stash"))
            assert not (isinstance(node, ast.Attribute) and node.attr == "stash"), module


def test_audit_functions_fit_on_one_screen():
    for module in AUDIT_MODULES:
        tree = ast.parse((REPO / (module.replace(".", "/") + ".py")).read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                lines = node.end_lineno - node.lineno + 1 + len(node.decorator_list)
                assert lines <= 40, f"{module}.{node.name} has {lines} lines"


@pytest.fixture
def tiny_plugin(pytester: pytest.Pytester) -> pytest.Pytester:
    """The tiny encoder as a plugin module (``-p tinyplug``) and a tiny dataset, no conftest."""
    pytester.makepyfile(tinyplug=TINY_CONFTEST)
    make_tiny_dataset(pytester.path / "tinyset", per_class=40)  # enough for the probe's split
    return pytester


def test_pyargs_runs_the_installed_audits_from_a_fresh_folder(tiny_plugin: pytest.Pytester):
    pytester = tiny_plugin
    result = pytester.runpytest_subprocess(
        *FAST,
        "-p",
        "tinyplug",
        f"--metatrace-data={pytester.path / 'tinyset'}",
        f"--metatrace-cache-dir={pytester.path / 'cache'}",
        "--metatrace-json=out.json",
        "--metatrace-report=none",
        "--pyargs",
        "pytest_metatrace.audits",
        "-k",
        "jpeg75_420 or sharpening",
        # The tiny encoder is built to carry a sharpening trace, which the probe
        # (converged on small sets since issue 8) reads above the default 0.70.
        "--metatrace-threshold",
        "probe.sharpening=1.0",
    )
    # drift[jpeg75_420], processing probe[sharpening], semantic influence[sharpening]
    result.assert_outcomes(passed=3)
    doc = json.loads((pytester.path / "out.json").read_text())
    audits = sorted({r["audit"] for r in doc["records"]})
    assert audits == ["processing_drift", "processing_probe", "semantic_influence"]
    for record in doc["records"]:
        module = record["provenance"]["nodeid"].split("::")[0].removesuffix(".py")
        assert any(m.endswith(module.replace("/", ".")) for m in AUDIT_MODULES), module
        scores = record["scores"]
        assert len(scores) == len(record["score_ids"]) > 0
        assert sum(scores) / len(scores) == pytest.approx(record["value"], abs=1e-9)
    knn = next(r for r in doc["records"] if r["metric"] == "knn_accuracy")
    gallery = SemanticDetails.from_dict(knn["details"]).gallery
    assert gallery is not None and gallery.queries
    for query in gallery.queries:
        assert all(len(ns) == 3 for ns in query.setups.values())  # --metatrace-knn-k=3


def test_copied_audits_run(tiny_plugin: pytest.Pytester):
    pytester = tiny_plugin
    assert _copy(pytester.path / "audits").returncode == 0
    result = pytester.runpytest_subprocess(
        *FAST,
        "-p",
        "tinyplug",
        "--metatrace-data=tinyset",
        "--metatrace-report=none",
        "audits",
        "-k",
        "jpeg75_420",
    )
    result.assert_outcomes(passed=1)


def test_report_and_json_paths_are_relative_to_the_invocation_folder(
    tiny_plugin: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
):
    pytester = tiny_plugin
    pytester.makeini("[pytest]\n")
    assert _copy(pytester.path / "audits").returncode == 0
    sub = pytester.path / "sub"
    sub.mkdir()
    monkeypatch.chdir(sub)
    monkeypatch.setenv("PYTHONPATH", f"{pytester.path}:{REPO}")  # tinyplug, this tree
    result = pytester.runpytest_subprocess(
        *FAST,
        "-p",
        "tinyplug",
        f"--metatrace-data={pytester.path / 'tinyset'}",
        f"--metatrace-cache-dir={pytester.path / 'cache'}",
        "--metatrace-report=out/r.html",
        "--metatrace-json=out/r.json",
        str(pytester.path / "audits"),
        "-k",
        "jpeg75_420",
    )
    result.assert_outcomes(passed=1)
    assert (sub / "out" / "r.html").is_file() and (sub / "out" / "r.json").is_file()
    assert not (pytester.path / "out").exists()


# --------------------------------------------------------------------------- the protocol


def test_every_protocol_citation_points_to_a_section_of_docs_protocol():
    import re

    doc = (REPO / "docs" / "protocol.md").read_text()
    sections = {int(n) for n in re.findall(r"^## §(\d+)\.", doc, flags=re.MULTILINE)}
    assert sections == set(range(1, 12))
    cited: set[int] = set()
    files = [*REPO.glob("pytest_metatrace/**/*.py"), *REPO.glob("pytest_metatrace/**/*.j2")]
    files += [*REPO.glob("audits/*.py"), *REPO.glob("tests/*.py"), REPO / "README.md"]
    for path in files:
        text = path.read_text()
        assert not re.search(r"PROTOCOL (section|sections|\d|:)", text), path
        for match in re.finditer(r"docs/protocol\.md §(\d+)((?:(?:, | and )§\d+)*)", text):
            numbers = [int(match.group(1)), *map(int, re.findall(r"§(\d+)", match.group(2)))]
            assert set(numbers) <= sections, f"{path}: {match.group(0)}"
            cited.update(numbers)
    assert {1, 2, 3, 4, 5} <= cited


def test_recorder_refuses_score_ids_that_do_not_pair_with_scores(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        from pytest_metatrace import Record

        def test_bad(metatrace_record):
            metatrace_record(Record(audit="a", metric="m", value=0.5, encoder="e", dataset="d",
                                    scores=[0.5, 0.5], score_ids=["x"]))
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--metatrace-report=none")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*1 score_ids for 2 scores; give one id per score*"])


def _compare_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "compare_json", REPO / "bench" / "compare_json.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compare_json_ignores_timing_and_finds_moved_numbers(tmp_path: Path, capsys):
    compare = _compare_module()
    record = {
        "audit": "processing_probe",
        "metric": "top1",
        "encoder": "e",
        "dataset": "d",
        "parameter": "jpeg",
        "value": 0.5,
        "interval": {"low": 0.4, "high": 0.6},
        "details": {"confusion": [[3, 1], [1, 3]], "wall_time_s": 1.0},
        "provenance": {"nodeid": "a.py::t", "seed": 0},
    }
    before = {"schema_version": 1, "records": [record], "run": {"duration_s": 5.0}}
    after = json.loads(json.dumps(before))
    after["run"]["duration_s"] = 9.0
    after["records"][0]["details"]["wall_time_s"] = 2.0
    after["records"][0]["provenance"]["nodeid"] = "b.py::t"
    after["records"][0]["scores"] = [0.5]
    paths = [tmp_path / "before.json", tmp_path / "after.json"]
    for path, doc in zip(paths, (before, after)):
        path.write_text(json.dumps(doc))
    assert compare.main([str(p) for p in paths]) == 0
    out = capsys.readouterr().out
    assert "identical: 1 records" in out and "added: records/*/scores (x1)" in out

    after["records"][0]["details"]["confusion"][1][0] = 2
    paths[1].write_text(json.dumps(after))
    assert compare.main([str(p) for p in paths]) == 1
    assert "details/confusion/1/0: 1 != 2" in capsys.readouterr().out


def test_the_protocol_document_is_installed_with_the_package():
    from importlib.resources import files

    installed = files("pytest_metatrace").joinpath("protocol.md")
    assert installed.read_text() == (REPO / "docs" / "protocol.md").read_text()
