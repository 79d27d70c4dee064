"""The built-in audit of this name; its source: pytest_metatrace/audits/ (one folder per audit)."""

from pytest_metatrace.audits.processing_probe.test_processing_traces import *  # noqa: F403
