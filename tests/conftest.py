"""Shared test setup: the suite never writes into a real GitHub job summary."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_github_step_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs of the plugin inside the tests must not append to ``$GITHUB_STEP_SUMMARY``.

    Under GitHub Actions every ``pytester`` run that records something would
    otherwise add its summary to the job's page; tests that want it set it.
    """
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
