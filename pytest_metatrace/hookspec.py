"""The plugin's own hooks, registered with ``pytest_addhooks``.

Implement them in a ``conftest.py`` or a plugin::

    def pytest_metatrace_register_encoders(registry):
        registry.register("my_model", make_my_model, description="in-house ViT-S")

    def pytest_metatrace_register_audits(registry):
        registry.register(MY_AUDIT_SPEC)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

hookspec = pytest.hookspec


def pytest_metatrace_register_encoders(registry: Any) -> None:
    """Register encoder names, so that ``--metatrace-encoder=NAME`` finds them.

    ``registry`` is a :class:`pytest_metatrace.encoders.EncoderRegistry`; call
    ``registry.register(name, factory, description=...)`` where ``factory(**options)``
    returns ``(model, preprocess)`` or an ``Encoder``.
    """


def pytest_metatrace_register_datasets(registry: Any) -> None:
    """Register dataset names, so that ``--metatrace-data=NAME`` finds them.

    ``registry`` is a :class:`pytest_metatrace.data.DatasetRegistry`; call
    ``registry.register(name, factory)`` where ``factory()`` returns a ``Dataset``.
    """


@hookspec(historic=True)
def pytest_metatrace_register_audits(registry: Any) -> None:
    """Register audit specs (:class:`pytest_metatrace.AuditSpec`) with ``registry.register(spec)``.

    Called while pytest reads its options, for plugins and for the initial
    conftest files (rootdir, testpaths), so that a spec's options get their
    ``--metatrace-*`` flags and ini keys. An installed package can register
    instead through the ``pytest_metatrace.audits`` entry-point group.
    """


def pytest_metatrace_records(records: list[dict[str, Any]], config: pytest.Config) -> None:
    """Called once at the end of the session with every record (as dicts), before the report.

    Use it to send results elsewhere (a dashboard, a baseline store).
    """


def pytest_metatrace_report(
    document: dict[str, Any], paths: dict[str, Path], config: pytest.Config
) -> None:
    """Called once at the end of the session, after the report files are written.

    ``document`` is the results document (the ``--metatrace-json`` content);
    ``paths`` maps what was written (``html``, ``json``, ``markdown``, ``baseline``) to where.
    Use it to publish the report (an artifact store, a pull-request comment).
    """
