"""The session's audit registry: created while pytest parses options, kept in ``config.stash``.

:func:`create_registry` runs in the plugin's ``pytest_addoption``: it builds
the registry of the built-in and entry-point audits, adds their options to the
parser, and calls the ``pytest_metatrace_register_audits`` hook historically,
so that a conftest registered later (the initial conftests are) still
registers its audits, with their options, before the command line is parsed.

Stdlib only at import (plugin load).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pytest_metatrace.spec import AuditRegistry, default_registry

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pytest_metatrace.options import Option

__all__ = ["PLUGIN_NAME", "REGISTRY_KEY", "create_registry", "session_registry"]

#: The name under which the registry is registered with pytest's plugin manager.
PLUGIN_NAME = "metatrace-audits"
REGISTRY_KEY = pytest.StashKey[AuditRegistry]()


def create_registry(
    parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager
) -> AuditRegistry:
    """The session's registry, with every known audit's options added to ``parser``."""
    from pytest_metatrace.options import add_options

    def add(parser: pytest.Parser, options: Sequence[Option]) -> None:
        add_options(parser, options)

    registry = default_registry()
    registry.attach_parser(parser, add)
    pluginmanager.register(registry, PLUGIN_NAME)
    pluginmanager.hook.pytest_metatrace_register_audits.call_historic(kwargs={"registry": registry})
    return registry


def session_registry(config: pytest.Config) -> AuditRegistry:
    """The registry of this session (built-ins, entry points and conftest registrations)."""
    registry = config.stash.get(REGISTRY_KEY, None)
    if registry is None:
        found = config.pluginmanager.get_plugin(PLUGIN_NAME)
        registry = found if isinstance(found, AuditRegistry) else default_registry()
        config.stash[REGISTRY_KEY] = registry
    return registry
