"""The example CI workflow names real options; the example conftest runs an audit."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from plugin_helpers import REPO, copy_audits, make_tiny_dataset, preimport

from pytest_metatrace.settings import core_options
from pytest_metatrace.spec import default_registry

OPTIONS = (*core_options(), *default_registry().options())

# pytester runs in-process; see plugin_helpers.preimport.
preimport()

WORKFLOW = REPO / "examples" / "github-actions" / "metatrace.yml"


def _steps() -> list[dict]:
    doc = yaml.safe_load(WORKFLOW.read_text())
    return [step for job in doc["jobs"].values() for step in job["steps"]]


def test_workflow_parses_and_names_only_existing_options():
    text = WORKFLOW.read_text()
    named = set(re.findall(r"--metatrace-[a-z-]+", text))
    known = {opt.cli for opt in OPTIONS}
    assert named - known == set()
    assert {"--metatrace-baseline", "--metatrace-save-baseline", "--metatrace-encoder"} <= named
    steps = _steps()
    uses = [s.get("uses", "").split("@")[0] for s in steps]
    assert {
        "actions/checkout",
        "actions/setup-python",
        "actions/cache",
        "actions/upload-artifact",
    } <= set(uses)
    cache = next(s for s in steps if s.get("uses", "").startswith("actions/cache"))
    assert cache["with"]["path"] == ".metatrace_cache"
    assert "--metatrace-cache-dir=.metatrace_cache" in text
    assert "checkpoints/inhouse.pt" in cache["with"]["key"] and "audit-data" in cache["with"]["key"]
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert "reports/metatrace.html" in upload["with"]["path"] and upload["if"] == "${{ always() }}"
    assert "--metatrace-report=reports/metatrace.html" in text


def test_example_conftest_registers_an_encoder_that_audits(pytester: pytest.Pytester):
    shutil.copy(REPO / "examples" / "conftest.py", pytester.path / "conftest.py")
    make_tiny_dataset(pytester.path / "audit-data")
    copy_audits(pytester.path, ("test_processing_drift.py",))
    common = (
        "--metatrace-encoder=inhouse",
        "--metatrace-data=audit-data",
        "--metatrace-workers=0",
        "--metatrace-report=reports/metatrace.html",
        "-p",
        "no:cacheprovider",
        "audits",
        "-k",
        "jpeg75_420",
    )
    saved = pytester.runpytest(*common, "--metatrace-save-baseline=metatrace/baseline.json")
    saved.assert_outcomes(passed=1)
    assert (pytester.path / "metatrace" / "baseline.json").is_file()
    again = pytester.runpytest(*common, "--metatrace-baseline=metatrace/baseline.json")
    again.assert_outcomes(passed=1)
    again.stdout.fnmatch_lines(["*1 vs baseline, 0 grew significantly*", "*computed 0*"])
    assert (pytester.path / "reports" / "metatrace.html").is_file()
    listed = pytester.runpytest_subprocess("--metatrace-list-encoders")
    listed.stdout.fnmatch_lines(["*inhouse*in-house encoder, release candidate*"])


def test_example_files_exist_where_the_readme_says():
    readme = (REPO / "README.md").read_text()
    for path in ("examples/github-actions/metatrace.yml", "examples/conftest.py"):
        assert path in readme and Path(REPO / path).is_file()


def test_the_readme_options_table_lists_every_option() -> None:
    """The Options table is written by hand: it must not fall behind the declarations."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    table = readme.split("## Options", 1)[1].split("\n## ", 1)[0]
    for opt in OPTIONS:
        if opt.env_only:
            assert opt.env in table, opt.env
            continue
        stem = opt.cli.rsplit("-", 1)[-1]
        assert opt.cli in table or f"-{stem}`" in table, f"{opt.cli} is not in README's Options"
