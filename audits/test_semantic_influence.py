"""The built-in audit of this name; its source: pytest_metatrace/audits/ (one folder per audit)."""

from pytest_metatrace.audits.semantic_influence.test_semantic_influence import *  # noqa: F403
