"""The built-in audit of this name; its source: pytest_metatrace/audits/ (one folder per audit)."""

from pytest_metatrace.audits.cross_camera_retrieval.test_cross_camera_retrieval import *  # noqa: F403
