"""The built-in audit of this name; its source: pytest_metatrace/audits/ (one folder per audit)."""

from pytest_metatrace.audits.acquisition_traces.test_acquisition_traces import *  # noqa: F403
