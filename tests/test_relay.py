"""Progress lines of pytest-xdist workers reach the controller's terminal (_relay.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from plugin_helpers import FAST, TINY_CONFTEST, copy_audits, make_tiny_dataset

from pytest_metatrace._relay import ProgressRelay, worker_line


def test_complete_lines_are_shown_once_with_their_worker_and_partial_ones_wait() -> None:
    shown: list[str] = []
    relay = ProgressRelay(shown.append, poll_s=60)  # the test drains by hand
    folder = relay.folder()
    info = {"workerid": "gw1", "metatrace_progress_dir": str(folder)}
    assert worker_line(info, "metatrace: embedding x: 0/10")
    with open(folder / "gw0.log", "a", encoding="utf-8") as handle:
        handle.write("metatrace: half a li")  # a writer caught mid-line
    relay.drain()
    assert shown == ["[gw1] metatrace: embedding x: 0/10"]
    with open(folder / "gw0.log", "a", encoding="utf-8") as handle:
        handle.write("ne\n")
    worker_line(info, "metatrace: embedding x: done")
    relay.close()
    assert shown == [
        "[gw1] metatrace: embedding x: 0/10",
        "[gw0] metatrace: half a line",
        "[gw1] metatrace: embedding x: done",
    ]
    assert not folder.exists()  # nothing outlives the session


def test_without_a_relay_a_worker_line_is_not_taken(tmp_path: Path) -> None:
    assert worker_line({"workerid": "gw0"}, "x") is False
    assert worker_line({"metatrace_progress_dir": str(tmp_path / "gone")}, "x") is False


def test_workers_progress_is_shown_by_the_controller(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("xdist")
    monkeypatch.setenv("METATRACE_PROGRESS_INTERVAL", "0")
    monkeypatch.setenv("TMPDIR", str(pytester.path / "tmp"))
    (pytester.path / "tmp").mkdir()
    pytester.makeconftest(TINY_CONFTEST)
    make_tiny_dataset(pytester.path / "tinyset")
    copy_audits(pytester.path, ("test_processing_drift.py",))
    result = pytester.runpytest_subprocess(
        *FAST, "--metatrace-data=tinyset", "-n", "2", "audits", "-k", "jpeg75_420 or sharpen2"
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "[[]gw?[]] metatrace: embedding tinyset with tiny (14 views): 0/336",
            "[[]gw?[]] metatrace: embedding tinyset with tiny (14 views): done, 336 in *",
        ]
    )
    assert not list((pytester.path / "tmp").glob("metatrace-progress-*"))
