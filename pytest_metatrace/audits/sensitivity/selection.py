"""Keeps the sensitivity audit opt-in: its tests run only when asked for.

Registered by the plugin as the spec's ``fixtures`` module. A cold search
embeds the demo set under about 20 more views and fits a probe per step
(README "Sensitivity"), so ``pytest audits/`` does not run it: its tests are
deselected unless their module is named on the command line (a path such as
``audits/test_sensitivity.py`` or, with ``--pyargs``, the module's dotted
name) or ``--metatrace-sensitivity=always`` is given.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

__all__ = ["AUDIT", "pytest_collection_modifyitems"]

#: The ``metatrace_audit`` marker value of the audit's tests.
AUDIT = "sensitivity"


def _named_files(config: pytest.Config) -> set[Path]:
    """The files the command line names (paths, or modules with ``--pyargs``)."""
    out: set[Path] = set()
    for arg in config.args:
        target = str(arg).split("::", 1)[0]
        path = Path(config.invocation_params.dir, target)
        if path.is_file():
            out.add(path.resolve())
            continue
        if getattr(config.option, "pyargs", False):
            try:
                found = importlib.util.find_spec(target)
            except (ImportError, ValueError):
                found = None
            if found is not None and found.origin:
                out.add(Path(found.origin).resolve())
    return out


def _is_sensitivity(item: pytest.Item) -> bool:
    marker = item.get_closest_marker("metatrace_audit")
    return marker is not None and bool(marker.args) and marker.args[0] == AUDIT


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Deselect the sensitivity tests unless their module was named or the option says always."""
    from pytest_metatrace.audits.sensitivity.spec import SensitivitySettings
    from pytest_metatrace.settings import get_settings

    if get_settings(config).of(SensitivitySettings).sensitivity == "always":
        return
    mine = [item for item in items if _is_sensitivity(item)]
    if not mine:
        return
    named = _named_files(config)
    dropped = [item for item in mine if Path(item.path).resolve() not in named]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        keep = {id(item) for item in dropped}
        items[:] = [item for item in items if id(item) not in keep]
