"""The example workflow's audit steps, run as written in bash on a constructed pull request.

``examples/github-actions/metatrace.yml`` saves a baseline on the pull
request's base commit (a ``git worktree``) and audits the pull request
against it with ``--metatrace-gate=baseline``. These tests read the steps'
``run`` scripts and environment out of the YAML and execute them the way the
runner does (``bash --noprofile --norc -eo pipefail``) in a git repository
whose base commit registers the tiny trace detector as ``inhouse``: the job
must be green when the pull request leaves the encoder unchanged, although
threshold gates fail, and red with a GREW line when the pull request makes
the trace larger. Only ``-k`` comes from the test (``PYTEST_ADDOPTS``), to
keep to the two drift parameters the tiny set decides; the protocol settings
live in the project's ``pyproject.toml``, as the workflow says.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from baseline_helpers import GAIN_CONFTEST
from plugin_helpers import REPO, make_tiny_dataset

WORKFLOW = REPO / "examples" / "github-actions" / "metatrace.yml"
WHEEL_CHECK = REPO / ".ci" / "wheel-check"

#: The steps these tests run, by id, in the workflow's order.
AUDIT_STEPS = ("baseline", "audit")

#: The project's settings: the tiny set's protocol settings (plugin_helpers.FAST) and a
#: threshold strict on purpose, so that threshold gates fail and are reported, not gating.
PYPROJECT = """\
[tool.pytest.ini_options]
metatrace_workers = "0"
metatrace_probe_trials = "4"
metatrace_probe_epochs = "100"
metatrace_probe_seeds = "2"
metatrace_knn_k = "3"
metatrace_threshold = ["drift.* = 0"]
"""


#: The Markdown summary's writer (issue 18 item 4) lands separately; once it is in, the
#: audit step must write reports/metatrace.md and append it to the job's summary page.
HAS_MARKDOWN = importlib.util.find_spec("pytest_metatrace.report.markdown") is not None


def _summary(root: Path, work: Path) -> str:
    """The job summary page the audit steps appended to ('' until the writer lands)."""
    text = (root / "step_summary.md").read_text()
    if HAS_MARKDOWN:
        assert (work / "reports" / "metatrace.md").is_file()
        assert text.strip(), "the audit step appended nothing to $GITHUB_STEP_SUMMARY"
    return text


def _conftest(encoder: str) -> str:
    """The project's conftest: ``inhouse`` is ``tiny`` (the base) or a variant of it."""
    return (
        GAIN_CONFTEST
        + f"""

def pytest_metatrace_register_encoders(registry):
    registry.register("inhouse", {encoder}, description="in-house encoder")
"""
    )


def _workflow() -> dict[str, Any]:
    doc = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(doc, dict)
    return doc


def _steps() -> list[dict[str, Any]]:
    (job,) = _workflow()["jobs"].values()
    steps = job["steps"]
    assert isinstance(steps, list)
    return steps


def _step(step_id: str) -> dict[str, Any]:
    (step,) = (s for s in _steps() if s.get("id") == step_id)
    return step


def _resolve(value: str, context: dict[str, str]) -> str:
    """Substitute ``${{ expr }}``; an expression the test does not know fails it."""

    def sub(match: re.Match[str]) -> str:
        expr = match.group(1)
        assert expr in context, f"the test does not know the workflow's expression {expr!r}"
        return context[expr]

    return re.sub(r"\$\{\{\s*(.+?)\s*\}\}", sub, value)


def _git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def _pull_request(root: Path, pr_encoder: str) -> tuple[Path, str]:
    """A repository whose base commit registers ``tiny`` and whose head registers ``pr_encoder``."""
    work = root / "workspace"
    work.mkdir()
    _git(work, "init", "-q", "-b", "main")
    (work / "pyproject.toml").write_text(PYPROJECT)
    (work / "conftest.py").write_text(_conftest("make_tiny"))
    # 96 images: enough to tell tiny_strong's drift change (+0.2) from none (test_baseline)
    make_tiny_dataset(work / "audit-data", per_class=32)
    _git(work, "add", "-A")
    _git(work, "commit", "-q", "-m", "base")
    base = _git(work, "rev-parse", "HEAD")
    _git(work, "checkout", "-q", "-b", "pr")
    (work / "conftest.py").write_text(_conftest(pr_encoder))
    (work / "NOTES.md").write_text("a change beside the encoder\n")
    _git(work, "add", "-A")
    _git(work, "commit", "-q", "-m", "pull request")
    return work, base


def _run_steps(
    root: Path, work: Path, base_sha: str
) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run the audit steps as the runner would, stopping at the first that fails."""
    bin_dir = root / "bin"
    bin_dir.mkdir()
    # `pytest` in the scripts is this interpreter's (the workflow's fresh venv is on PATH)
    shim = bin_dir / "pytest"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pytest "$@"\n')
    shim.chmod(0o755)
    runner_temp = root / "runner"
    runner_temp.mkdir()
    summary = root / "step_summary.md"
    summary.touch()
    context = {"github.event.pull_request.base.sha": base_sha}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "GITHUB_"))}
    env.update({k: _resolve(str(v), context) for k, v in _workflow().get("env", {}).items()})
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        GITHUB_WORKSPACE=str(work),
        RUNNER_TEMP=str(runner_temp),
        GITHUB_STEP_SUMMARY=str(summary),
        PYTEST_ADDOPTS='-k "jpeg75_420 or sharpen4"',
    )
    results = {}
    for step_id in AUDIT_STEPS:
        step = _step(step_id)
        script = root / f"{step_id}.sh"
        assert "${{" not in step["run"], "expressions belong in the step's env, not its script"
        script.write_text(step["run"])
        step_env = {**env, **{k: _resolve(str(v), context) for k, v in step.get("env", {}).items()}}
        results[step_id] = done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=work,
            env=step_env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            break
    return results


def test_the_workflow_builds_a_wheel_then_audits_the_base_and_the_pull_request():
    steps = _steps()
    ids = [s.get("id") for s in steps if s.get("id")]
    assert ids == ["build", "install", "baseline", "audit"]
    uses = [s.get("uses", "").split("@")[0] for s in steps]
    assert uses.index("actions/cache") < [s.get("id") for s in steps].index("baseline")
    build, install = _step("build")["run"], _step("install")["run"]
    # the route .ci/wheel-check proves offline: a wheel, a fresh venv, the wheel installed
    assert "python -m pip wheel --no-deps -w dist" in build
    assert "python -m venv" in install and "pip install dist/pytest_metatrace-*.whl" in install
    check = WHEEL_CHECK.read_text()
    assert "-m pip wheel --no-deps" in check and "-m venv" in check
    env = _workflow()["env"]["METATRACE_ARGS"]
    assert "--pyargs pytest_metatrace.audits" in env and "--metatrace-gate=baseline" in env
    assert "--metatrace-save-baseline=" in _step("baseline")["run"]
    audit = _step("audit")["run"]
    assert "--metatrace-baseline=metatrace/baseline.json" in audit
    assert "--metatrace-markdown=" in audit
    assert _step("baseline")["env"]["BASE_SHA"] == "${{ github.event.pull_request.base.sha }}"


def test_an_unchanged_encoder_is_green_although_threshold_gates_fail(tmp_path: Path):
    work, base = _pull_request(tmp_path, "make_tiny")
    runs = _run_steps(tmp_path, work, base)
    saved, audit = runs["baseline"], runs.get("audit")
    assert saved.returncode == 0, saved.stdout + saved.stderr
    assert "metatrace: baseline saved to" in saved.stdout
    assert (work / "metatrace" / "baseline.json").is_file()
    assert audit is not None
    out = audit.stdout
    assert audit.returncode == 0, out + audit.stderr
    assert "2 passed" in out
    assert "0 gate(s) failed (0 above threshold, 0 grew against the baseline)" in out
    # drift.* = 0 fails both threshold gates, measured and shown but not gating
    assert "metatrace: 2 check(s) reported, not gating (--metatrace-gate=baseline):" in out
    assert "above threshold (not gating) drift.jpeg75_420 [inhouse / audit-data" in out
    assert "GREW" not in out
    # the base commit's embeddings, cached from its worktree, serve the unchanged encoder
    assert "embeddings computed 0" in out
    for name in ("metatrace.html", "metatrace.json", "junit.xml"):
        assert (work / "reports" / name).is_file(), name
    # the base commit was audited from its own worktree, not from the pull request
    assert "jpeg75_420" in (work / "metatrace" / "baseline.json").read_text()
    assert _git(tmp_path / "runner" / "base", "rev-parse", "HEAD") == base
    _summary(tmp_path, work)


def test_a_larger_trace_in_the_pull_request_is_red_with_a_grew_line(tmp_path: Path):
    work, base = _pull_request(tmp_path, "scaled(1.0, 2.2)")  # tiny_strong: drift x50
    runs = _run_steps(tmp_path, work, base)
    assert runs["baseline"].returncode == 0, runs["baseline"].stdout + runs["baseline"].stderr
    audit = runs["audit"]
    out = audit.stdout
    assert audit.returncode == 1, out + audit.stderr
    assert "2 failed" in out
    assert "GREW drift.jpeg75_420 [inhouse / audit-data / jpeg75_420]" in out
    assert "grew significantly against the baseline inhouse" in out
    assert "0 above threshold, 2 grew against the baseline" in out
    assert "Traceback" not in out
    assert (work / "reports" / "metatrace.html").is_file()
    assert not HAS_MARKDOWN or "drift.jpeg75_420" in _summary(tmp_path, work)
