"""The plugin's own hooks, registered with ``pytest_addhooks``.

Implement them in a ``conftest.py`` or a plugin::

    def pytest_metatrace_register_encoders(registry):
        registry.register("my_model", make_my_model, description="in-house ViT-S")
"""

from __future__ import annotations

from typing import Any

import pytest


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


def pytest_metatrace_records(records: list[dict[str, Any]], config: pytest.Config) -> None:
    """Called once at the end of the session with every record (as dicts), before the report.

    Use it to send results elsewhere (a dashboard, a baseline store).
    """
