"""The built-in audit of this name; its source: pytest_metatrace/audits/ (one folder per audit)."""

from pytest_metatrace.audits.sensitivity.test_sensitivity import *  # noqa: F403
