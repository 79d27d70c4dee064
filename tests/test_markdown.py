"""The pull-request summary (``--metatrace-markdown``, ``$GITHUB_STEP_SUMMARY``), issue 18 item 4.

Known-answer rows on constructed record dicts, then an end-to-end run of a
user audit that needs no encoder: one gate above its threshold, one trace
that grew against a saved baseline, one undecided gate and one that passed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from plugin_helpers import preimport

from pytest_metatrace.report.markdown import (
    AUDIT_HEADER,
    FAILURE_HEADER,
    UNDECIDED_HEADER,
    escape_cell,
    render_markdown,
    table,
    write_summaries,
)

# pytester runs in-process; see plugin_helpers.preimport.
preimport()


def _gate(
    passed: bool, *, decided: bool = True, gating: bool = True, **extra: Any
) -> dict[str, Any]:
    return {
        "key": "mine.m",
        "threshold": 0.9,
        "spec": "0.9",
        "source": "command line",
        "compared": "interval low",
        "passed": passed,
        "message": "...",
        "gating": gating,
        "decided": decided,
        "min_n": extra.pop("min_n", None),
        **extra,
    }


def _rec(dataset: str, value: float, low: float, high: float, **extra: Any) -> dict[str, Any]:
    return {
        "audit": "mine",
        "metric": "m",
        "value": value,
        "encoder": "e",
        "dataset": dataset,
        "parameter": extra.pop("parameter", None),
        "unit": "fraction",
        "interval": {"low": low, "high": high, "level": 0.95},
        **extra,
    }


def _baseline(difference: float, low: float, passed: bool, gating: bool = True) -> dict[str, Any]:
    return {
        "key": "mine.m",
        "baseline_encoder": "old",
        "difference": difference,
        "low": low,
        "high": difference + 0.05,
        "tolerance": 0.0,
        "passed": passed,
        "gating": gating,
        "message": "...",
    }


FAILED = _rec("high", 1.0, 0.93, 1.0, parameter="jpeg", gate=_gate(False))
GREW = _rec("grow", 0.5, 0.42, 0.58, gate=_gate(True), baseline=_baseline(0.5, 0.45, passed=False))
UNDECIDED = _rec("few", 1.0, 0.3, 1.0, gate=_gate(False, decided=False, min_n=12))
PASSED = _rec("low", 0.0, 0.0, 0.07, gate=_gate(True), baseline=_baseline(0.0, -0.05, True))
RECORDS = [FAILED, GREW, UNDECIDED, PASSED]


def _rows(text: str, heading: str) -> list[str]:
    """The body rows of the table under ``heading`` (header and rule left out)."""
    block = text.split(f"\n{heading}\n\n", 1)[1].split("\n\n", 1)[0]
    return block.splitlines()[2:]


def _cells(row: str) -> list[str]:
    """A table row's cells: split at ``|`` not preceded by a backslash."""
    assert row.startswith("| ") and row.endswith(" |"), row
    return [c.strip() for c in re.split(r"(?<!\\)\|", row[1:-1])]


def _check_tables(text: str) -> int:
    """Every table row has as many cells as its header; returns the number of tables."""
    tables = 0
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|---"):
            tables += 1
            width = len(_cells(lines[i - 1]))
            assert line.count("---") == width
            for row in lines[i + 1 :]:
                if not row.startswith("|"):
                    break
                assert len(_cells(row)) == width, row
    return tables


# ---------------------------------------------------------------- known answers


def test_the_heading_gives_the_verdict_and_the_scope() -> None:
    text = render_markdown(RECORDS, report_path=None, json_path=None)
    first, _, scope = text.splitlines()[:3]
    assert first == (
        "## metatrace: 2 gate(s) failed (1 above threshold, 1 grew against the baseline), "
        "1 undecided"
    )
    assert scope == "4 record(s), 4 gated, over 1 encoder(s) and 4 dataset(s)."


def test_failing_gates_come_first_one_row_each_threshold_then_baseline() -> None:
    text = render_markdown(RECORDS, report_path=None, json_path=None)
    assert text.index("### Failing gates") < text.index("### Undecided") < text.index("### mine")
    assert _rows(text, "### Failing gates and regressions") == [
        "| above threshold | mine.m | e / high / jpeg "
        "| m 100.0% (interval low 93.0%) > threshold 90.0% |",
        "| grew against the baseline | mine.m | e / grow "
        "| m changed +50.0 points against old (CI low +45.0 points) > tolerance +0.0 points |",
    ]


def test_an_undecided_gate_says_how_many_images_it_needs() -> None:
    text = render_markdown(RECORDS, report_path=None, json_path=None)
    assert _rows(text, "### Undecided gates (too few test images)") == [
        "| mine.m | e / few | too few test images: need at least 12 |"
    ]


def test_the_audit_table_has_one_row_per_record_with_status_and_baseline_change() -> None:
    text = render_markdown(RECORDS, report_path=None, json_path=None)
    assert _rows(text, "### mine") == [
        "| e / high | jpeg | m | 100.0% | 93.0%–100.0% | 90.0% | FAILED | — |",
        "| e / grow | — | m | 50.0% | 42.0%–58.0% | 90.0% | passed | +50.0 points GREW |",
        "| e / few | — | m | 100.0% | 30.0%–100.0% | 90.0% | undecided | — |",
        "| e / low | — | m | 0.0% | 0.0%–7.0% | 90.0% | passed | +0.0 points |",
    ]
    assert _check_tables(text) == 3


def test_a_record_without_gate_or_interval_shows_dashes_and_other_units_plain() -> None:
    rec = {"audit": "drift", "metric": "d", "value": 0.004542, "encoder": "e", "dataset": "s"}
    rec |= {"unit": "cosine distance"}
    text = render_markdown([rec], report_path=None, json_path=None)
    assert text.splitlines()[0] == (
        "## metatrace: 0 gate(s) failed (0 above threshold, 0 grew against the baseline)"
    )
    assert "### Failing" not in text and "### Undecided" not in text
    assert _rows(text, "### drift") == ["| e / s | — | d | 0.004542 | — | — | — | — |"]


def test_checks_reported_but_not_gating_have_their_own_table_after_the_failures() -> None:
    reported = _rec("r", 1.0, 0.93, 1.0, gate=_gate(False, gating=False))
    text = render_markdown([FAILED, reported], report_path=None, json_path=None)
    assert text.splitlines()[0].endswith(", 1 reported, not gating")
    assert text.index("### Failing gates") < text.index("### Reported, not gating")
    assert _rows(text, "### Reported, not gating") == [
        "| above threshold | mine.m | e / r | m 100.0% (interval low 93.0%) > threshold 90.0% |"
    ]
    assert "| failed, not gating |" in _rows(text, "### mine")[1]


def test_pipes_and_markup_in_names_are_escaped_and_keep_the_cell_count() -> None:
    rec = _rec("a|b", 1.0, 0.93, 1.0, parameter="x|`y`<b>\nz", gate=_gate(False))
    text = render_markdown([rec], report_path=None, json_path=None)
    assert "e / a\\|b / x\\|\\`y\\`\\<b> z" in text
    assert "<b>" not in text.replace("\\<b>", "")
    assert _check_tables(text) == 2
    assert escape_cell("") == "—"


def test_a_row_of_the_wrong_width_is_refused() -> None:
    with pytest.raises(ValueError, match="a row of 2 cells under a header of 3"):
        table(UNDECIDED_HEADER, [("a", "b")])
    assert len(FAILURE_HEADER) == 4 and len(AUDIT_HEADER) == 8


def test_the_last_line_links_the_report_and_json_relative_to_the_summary(tmp_path: Path) -> None:
    text = render_markdown(
        [PASSED],
        report_path=tmp_path / "reports" / "my report.html",
        json_path=tmp_path / "r.json",
        relative_to=tmp_path / "out",
    )
    assert text.endswith(
        "Files: [HTML report: ../reports/my report.html](../reports/my%20report.html)"
        " · [JSON: ../r.json](../r.json)\n"
    )
    plain = render_markdown([PASSED], report_path=Path("/x/r.html"), json_path=None, links=False)
    assert plain.endswith("Files: HTML report: /x/r.html\n")
    none = render_markdown([PASSED], report_path=None, json_path=None)
    assert none.endswith("No HTML report or JSON document was written.\n")


def test_tables_parse_as_gfm_tables() -> None:
    markdown_it = pytest.importorskip("markdown_it")
    html = (
        markdown_it.MarkdownIt("commonmark")
        .enable("table")
        .render(render_markdown(RECORDS, report_path=None, json_path=None))
    )
    assert html.count("<table>") == 3
    assert html.count("<tr>") == (1 + 2) + (1 + 1) + (1 + 4)  # header and body rows
    assert html.count("<td>") == 2 * 4 + 1 * 3 + 4 * 8  # every body row filled, none ragged
    assert "<td>e / high / jpeg</td>" in html


# ---------------------------------------------------------------- end to end

AUDIT = """
import pathlib
import pytest
from pytest_metatrace import Record

pytestmark = pytest.mark.metatrace_gates("mine.m")

LEVEL = float((pathlib.Path(__file__).parent / "level.txt").read_text())

def _record(dataset, scores):
    return Record(audit="mine", encoder="e", dataset=dataset, metric="m",
                  value=sum(scores) / len(scores), scores=scores,
                  score_ids=[f"img{i}" for i in range(len(scores))])

def test_above_threshold(metatrace_record):
    metatrace_record.gate(_record("high", [1.0] * 40), "mine.m", what="my trace")
    metatrace_record.assert_gates()

def test_grows(metatrace_record):
    metatrace_record.gate(_record("grow", [LEVEL] * 40), "mine.m", what="my trace")
    metatrace_record.assert_gates()

def test_too_few(metatrace_record):
    metatrace_record.gate(_record("few", [1.0] * 3), "mine.m", what="my trace")
    metatrace_record.assert_gates()

def test_low(metatrace_record):
    metatrace_record.gate(_record("low", [0.0] * 40), "mine.m", what="my trace")
    metatrace_record.assert_gates()
"""

ARGS = ("-p", "no:cacheprovider", "--metatrace-threshold", "mine.m=0.9")


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """The audit, with a baseline saved at level 0 and the level raised to 0.5."""
    pytester.makepyfile(test_mine=AUDIT)
    (pytester.path / "level.txt").write_text("0.0")
    saved = pytester.runpytest(*ARGS, "--metatrace-save-baseline=base.json")
    saved.assert_outcomes(passed=2, failed=1, skipped=1)
    (pytester.path / "level.txt").write_text("0.5")
    return pytester


def test_markdown_and_step_summary_end_to_end(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = project.path / "step_summary.md"
    step.write_text("# earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    result = project.runpytest(
        *ARGS, "--metatrace-baseline=base.json", "--metatrace-json=r.json",
        "--metatrace-markdown=out/summary.md",
    )  # fmt: skip
    result.assert_outcomes(passed=1, failed=2, skipped=1)
    out = result.stdout.str()
    written = project.path / "out" / "summary.md"
    assert f"metatrace: Markdown summary written to {written}" in out
    assert f"metatrace: Markdown summary appended to {step}" in out
    text = written.read_text()
    lines = text.splitlines()
    assert lines[0] == (
        "## metatrace: 2 gate(s) failed (1 above threshold, 1 grew against the baseline), "
        "1 undecided"
    )
    failing = _rows(text, "### Failing gates and regressions")
    assert [_cells(r)[:3] for r in failing] == [
        ["above threshold", "mine.m", "e / high"],
        ["grew against the baseline", "mine.m", "e / grow"],
    ]
    assert "against e (CI low +" in failing[1]
    (undecided,) = _rows(text, "### Undecided gates (too few test images)")
    assert re.fullmatch(
        r"\| mine\.m \| e / few \| too few test images: need at least \d+ \|", undecided
    )
    statuses = [_cells(r)[6] for r in _rows(text, "### mine")]
    assert statuses == ["FAILED", "passed", "undecided", "passed"]
    assert _check_tables(text) == 3
    assert lines[-1] == (
        "Files: [HTML report: ../reports/metatrace.html](../reports/metatrace.html)"
        " · [JSON: ../r.json](../r.json)"
    )
    # Appended after what an earlier step wrote, files named relative to the run's folder.
    summary = step.read_text()
    assert summary.startswith("# earlier step\n\n## metatrace: 2 gate(s) failed")
    assert summary.endswith("Files: HTML report: reports/metatrace.html · JSON: r.json\n")
    body = summary.removeprefix("# earlier step\n\n").splitlines()
    assert body[:-1] == lines[:-1]  # the same summary, but for how the files are named
    # README's example is this run's summary (written there next to the files it links).
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert readme.split("```markdown\n", 1)[1].split("```", 1)[0] == text.replace("../", "")


@pytest.mark.parametrize("bad", ["folder", "file/summary.md"])
def test_a_bad_markdown_path_is_one_line_and_keeps_html_and_json(
    pytester: pytest.Pytester, bad: str
) -> None:
    pytester.makepyfile(test_mine=AUDIT)
    (pytester.path / "level.txt").write_text("0.0")
    (pytester.path / "folder").mkdir()
    (pytester.path / "file").write_text("in the way")
    result = pytester.runpytest(*ARGS, "--metatrace-json=r.json", f"--metatrace-markdown={bad}")
    result.assert_outcomes(passed=2, failed=1, skipped=1)
    out = result.stdout.str()
    assert "Traceback" not in out and "INTERNALERROR" not in out
    why = "is a folder, not a file" if bad == "folder" else "is a file, not a folder"
    (line,) = [ln for ln in out.splitlines() if "Markdown summary" in ln]
    assert line.startswith(f"metatrace: could not write the Markdown summary {pytester.path / bad}")
    assert why in line
    assert (pytester.path / "r.json").is_file()
    assert (pytester.path / "reports" / "metatrace.html").is_file()
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_bad_step_summary_path_is_one_line_and_keeps_the_markdown(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_mine=AUDIT)
    (pytester.path / "level.txt").write_text("0.0")
    (pytester.path / "folder").mkdir()
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(pytester.path / "folder"))
    result = pytester.runpytest(*ARGS, "--metatrace-markdown=s.md")
    out = result.stdout.str()
    assert "Traceback" not in out
    assert "metatrace: could not append the Markdown summary to $GITHUB_STEP_SUMMARY" in out
    assert (pytester.path / "s.md").read_text().startswith("## metatrace: 1 gate(s) failed")


def test_under_github_actions_the_step_summary_needs_no_option(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = pytester.path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    pytester.makepyfile(test_mine=AUDIT)
    (pytester.path / "level.txt").write_text("0.0")
    result = pytester.runpytest(*ARGS)
    assert f"metatrace: Markdown summary appended to {step}" in result.stdout.str()
    assert "Markdown summary written to" not in result.stdout.str()  # no file asked for
    assert step.read_text().startswith("## metatrace: ")
    assert len(_rows(step.read_text(), "### mine")) == 4


def test_a_run_without_records_adds_nothing_to_the_step_summary(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = pytester.path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    pytester.makepyfile(test_plain="def test_a():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "Markdown summary" not in result.stdout.str()
    assert not step.exists()


def test_under_xdist_only_the_controller_writes(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("xdist")
    step = pytester.path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    pytester.makepyfile(test_mine=AUDIT)
    (pytester.path / "level.txt").write_text("0.0")
    result = pytester.runpytest_subprocess(*ARGS, "-n", "2", "--metatrace-markdown=s.md")
    result.assert_outcomes(passed=2, failed=1, skipped=1)
    for written in (pytester.path / "s.md", step):
        text = written.read_text()
        assert text.count("## metatrace:") == 1, text  # once, with every worker's records
        assert len(_rows(text, "### mine")) == 4


def test_write_summaries_never_raises_and_names_each_file_it_could_not_write(
    tmp_path: Path,
) -> None:
    broken = _rec("x", 1.0, 0.9, 1.0, gate=_gate(True, threshold="not a number"))
    step = tmp_path / "step.md"
    out = write_summaries(
        Path("s.md"), [broken], report_path=None, json_path=None, cwd=tmp_path,
        step_summary=str(step),
    )  # fmt: skip
    assert out.markdown is None and out.step_summary is None
    assert out.errors == [
        f"could not write the Markdown summary {tmp_path / 's.md'}: ValueError: could not "
        "convert string to float: 'not a number'",
        f"could not append the Markdown summary to $GITHUB_STEP_SUMMARY ({step}): ValueError: "
        "could not convert string to float: 'not a number'",
    ]
    ok = write_summaries(
        Path("s.md"), [PASSED], report_path=None, json_path=None, cwd=tmp_path, step_summary=""
    )
    assert ok.markdown == tmp_path / "s.md" and ok.step_summary is None and not ok.errors
