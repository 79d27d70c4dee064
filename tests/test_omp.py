"""The plugin sets OMP_WAIT_POLICY=PASSIVE at load unless the user set it (see _omp)."""

from __future__ import annotations

import pytest

from pytest_metatrace._omp import set_passive_omp_wait

PRINT_ENV = """
import os

def test_env():
    policy = repr(os.environ.get("OMP_WAIT_POLICY"))
    print("POLICY", policy)
    with open("policy.txt", "w") as f:  # an xdist worker's output is not shown
        f.write(policy)
"""


def test_set_passive_only_when_unset() -> None:
    env: dict[str, str] = {}
    assert set_passive_omp_wait(env) and env == {"OMP_WAIT_POLICY": "PASSIVE"}
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert not set_passive_omp_wait(env) and env == {"OMP_WAIT_POLICY": "ACTIVE"}
    env = {"OMP_WAIT_POLICY": " "}  # empty is unset
    assert set_passive_omp_wait(env) and env["OMP_WAIT_POLICY"] == "PASSIVE"


@pytest.mark.parametrize("xdist", [False, True], ids=["main", "xdist-worker"])
def test_plugin_sets_the_policy_when_absent(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, xdist: bool
) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    pytester.makepyfile(PRINT_ENV)
    args = ("-s", "-p", "no:cacheprovider", *(("-n", "1") if xdist else ()))
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(passed=1)
    assert (pytester.path / "policy.txt").read_text() == "'PASSIVE'"


def test_plugin_leaves_the_users_policy_alone(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    pytester.makepyfile(PRINT_ENV)
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert (pytester.path / "policy.txt").read_text() == "'ACTIVE'"


def test_without_the_plugin_nothing_is_set(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    pytester.makepyfile(PRINT_ENV)
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider", "-p", "no:metatrace")
    result.assert_outcomes(passed=1)
    assert (pytester.path / "policy.txt").read_text() == "None"
