"""Relative paths in option values: ini values start at the ini file's folder, others at the
invocation folder (``pytest_metatrace.paths.locate``, ``options.resolve_option_origin``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from plugin_helpers import FAST, TINY_CONFTEST, make_tiny_dataset, preimport

from pytest_metatrace.paths import locate

# pytester runs in-process; see plugin_helpers.preimport.
preimport()

# --------------------------------------------------------------------------- the rule


def test_file_values_are_joined_to_the_base_and_keep_absolute_paths_urls_and_names(
    tmp_path: Path,
) -> None:
    assert locate("file", "reports/r.html", tmp_path) == str(tmp_path / "reports/r.html")
    assert locate("file", "../r.json", tmp_path / "sub") == str(tmp_path / "r.json")
    assert locate("file", "/abs/r.json", tmp_path) == "/abs/r.json"
    assert locate("file", "~/r.json", tmp_path) == os.path.expanduser("~/r.json")
    assert locate("file", "s3://bucket/store", tmp_path) == "s3://bucket/store"
    assert locate("file", "none", tmp_path, names=("none",)) == "none"
    assert locate("file", "None", tmp_path, names=("none",)) == "None"


def test_data_specs_keep_names_and_resolve_what_is_a_path(tmp_path: Path) -> None:
    (tmp_path / "audit-data").mkdir()
    names = ("demo", "city100")
    assert locate("spec", "demo", tmp_path, names) == "demo"
    assert locate("spec", "audit-data", tmp_path, names) == str(tmp_path / "audit-data")
    # a bare word that names nothing there stays a name: a registered dataset, or an error
    # that says where it looked
    assert locate("spec", "registered", tmp_path, names) == "registered"
    assert locate("spec", "sets/a.csv", tmp_path, names) == str(tmp_path / "sets/a.csv")
    assert locate("spec", "a.csv", tmp_path, names) == str(tmp_path / "a.csv")
    assert locate("spec", "./missing", tmp_path, names) == str(tmp_path / "missing")
    assert locate("spec", "hf:CTU-OU/PairCams@test", tmp_path, names) == "hf:CTU-OU/PairCams@test"
    assert locate("spec", str(tmp_path / "x"), Path("/elsewhere"), names) == str(tmp_path / "x")


def test_encoder_specs_resolve_their_file_parts_only(tmp_path: Path) -> None:
    (tmp_path / "local_model").mkdir()
    b = tmp_path
    assert locate("encoder", "lite0", b) == "lite0"
    assert locate("encoder", "timm:resnet50.a1_in1k", b) == "timm:resnet50.a1_in1k"
    assert locate("encoder", "py:my_pkg.models:make?width=8", b) == "py:my_pkg.models:make?width=8"
    assert locate("encoder", "py:encoders/mine.py:build?width=8", b) == (
        f"py:{b}/encoders/mine.py:build?width=8"
    )
    assert (
        locate("encoder", "py:/src/enc.py:make@w/net.pt", b) == f"py:/src/enc.py:make@{b}/w/net.pt"
    )
    assert locate("encoder", "onnx:m.onnx?output=emb", b) == f"onnx:{b}/m.onnx?output=emb"
    assert locate("encoder", "hf:facebook/dinov2-small", b) == "hf:facebook/dinov2-small"
    assert locate("encoder", "hf:local_model", b) == f"hf:{b}/local_model"
    assert locate("encoder", "timm:resnet50@weights/r50.pth", b) == (
        f"timm:resnet50@{b}/weights/r50.pth"
    )
    assert locate("encoder", "open_clip:ViT-B-32@openai", b) == "open_clip:ViT-B-32@openai"
    assert locate("encoder", "open_clip:local-dir:m", b) == f"open_clip:local-dir:{b}/m"
    assert locate("encoder", "nosuchfamily:x", b) == "nosuchfamily:x"  # reported later


# --------------------------------------------------------------------------- end to end

ENCODER_MODULE = TINY_CONFTEST.split("def pytest_metatrace_register_encoders")[0]

AUDIT = """
import json, os

def test_paths(metatrace_dataset, metatrace_encoder):
    print("CWD", os.getcwd())
    print("DATA", metatrace_dataset.id, len(metatrace_dataset.items))
    print("ENCODER", metatrace_encoder.id)
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A project configured in pyproject.toml: data folder and py: encoder next to it."""
    make_tiny_dataset(pytester.path / "audit-data", classes=2, per_class=4)
    (pytester.path / "encoders").mkdir()
    (pytester.path / "encoders" / "mine.py").write_text(ENCODER_MODULE)
    (pytester.path / "pyproject.toml").write_text(
        "[tool.pytest.ini_options]\n"
        'metatrace_data = ["audit-data"]\n'
        'metatrace_encoder = ["py:encoders/mine.py:make_tiny"]\n'
        'metatrace_json = "reports/run.json"\n'
        'metatrace_report = "none"\n'
    )
    sub = pytester.path / "audits"
    sub.mkdir()
    (sub / "test_paths_audit.py").write_text(AUDIT)
    monkeypatch.chdir(sub)
    return pytester


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    fast = [a for a in FAST if not a.startswith("--metatrace-encoder")]
    cache = f"--metatrace-cache-dir={pytester.path / 'cache'}"
    return pytester.runpytest(*fast, cache, "-s", *args)


def test_ini_paths_resolve_against_the_ini_folder_from_a_subfolder(
    project: pytest.Pytester,
) -> None:
    result = _run(project)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [f"CWD {project.path / 'audits'}", "DATA audit-data 8", "ENCODER py:mine.py:make_tiny"]
    )
    # the JSON of the ini file lands next to it, not under the folder pytest ran from
    doc = json.loads((project.path / "reports" / "run.json").read_text())
    assert doc["run"]["options"]["data"] == [str(project.path / "audit-data")]
    assert not (project.path / "audits" / "reports").exists()


def test_command_line_paths_resolve_against_the_invocation_folder(
    project: pytest.Pytester,
) -> None:
    result = _run(project, "--metatrace-data=audit-data")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    sub = project.path / "audits"
    result.stderr.fnmatch_lines(
        [
            f"ERROR: --metatrace-data=audit-data (relative to {sub}): no such folder, manifest "
            f"or registered dataset ({sub / 'audit-data'} does not exist).*"
        ]
    )
    # the same value names the subfolder's own data set, and the JSON lands there too
    make_tiny_dataset(sub / "audit-data", classes=3, per_class=4)
    result = _run(project, "--metatrace-data=audit-data", "--metatrace-json=here.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["DATA audit-data 12"])
    assert (sub / "here.json").is_file()


def test_errors_name_the_ini_file_and_the_folder_looked_in(project: pytest.Pytester) -> None:
    ini = project.path / "pyproject.toml"
    ini.write_text(ini.read_text().replace('"audit-data"', '"no-such-data"'))
    result = _run(project)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"ERROR: metatrace_data = no-such-data in {ini} (relative to {project.path}): no "
            f"such folder, manifest or registered dataset ({project.path / 'no-such-data'} does "
            "not exist).*"
        ]
    )
    ini.write_text(
        ini.read_text()
        .replace('"no-such-data"', '"audit-data"')
        .replace("encoders/mine.py", "encoders/gone.py")
    )
    result = _run(project)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"ERROR: metatrace_encoder = py:encoders/gone.py:make_tiny in {ini} (relative to "
            f"{project.path}): py: module file not found: {project.path / 'encoders/gone.py'};*"
        ]
    )


def test_a_registered_name_wins_over_a_folder_of_that_name(project: pytest.Pytester) -> None:
    other = make_tiny_dataset(project.path / "other-data", classes=3, per_class=4)
    (project.path / "conftest.py").write_text(
        "from pytest_metatrace.data import load_dataset\n"
        "def pytest_metatrace_register_datasets(registry):\n"
        "    registry.register('audit-data', lambda **kw: load_dataset(\n"
        f"        {str(other)!r}, cache_dir={str(project.path / 'cache')!r}))\n"
    )
    result = _run(project)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["DATA audit-data 12"])


def test_each_source_has_its_base_and_its_name_in_messages(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project.path / "audits" / "test_where.py").write_text(
        "def test_where(metatrace_settings):\n"
        "    s = metatrace_settings\n"
        "    for attr in ('json', 'cache_dir', 'save_baseline', 'report', 'encoder'):\n"
        "        print('WHERE', attr, s.where(attr), '->', getattr(s, attr))\n"
    )
    monkeypatch.setenv("METATRACE_CACHE_DIR", "envcache")
    sub, ini = project.path / "audits", project.path / "pyproject.toml"
    result = project.runpytest(
        "-s", "-p", "no:cacheprovider", "test_where.py",
        "-o", "metatrace_json=typed.json", "--metatrace-save-baseline=~/b.json",
    )  # fmt: skip
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            f"*WHERE json -o metatrace_json=typed.json (relative to {sub}) -> {sub / 'typed.json'}",
            "WHERE cache_dir environment variable METATRACE_CACHE_DIR=envcache (relative to "
            f"{sub}) -> {sub / 'envcache'}",
            "WHERE save_baseline --metatrace-save-baseline=~/b.json -> "
            f"{os.path.expanduser('~/b.json')}",
            f"WHERE report metatrace_report = none in {ini} -> none",
            f"WHERE encoder metatrace_encoder = py:encoders/mine.py:make_tiny in {ini} (relative "
            f"to {project.path}) -> ('py:{project.path}/encoders/mine.py:make_tiny',)",
        ]
    )
