"""The built-in audit of this name; its source: pytest_metatrace/audits/ (one folder per audit)."""

from pytest_metatrace.audits.processing_drift.test_processing_drift import *  # noqa: F403
