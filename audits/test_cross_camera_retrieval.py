"""Cross-camera near-duplicate retrieval (paper Sec. 4.2); the audit lives in the package."""

from pytest_metatrace.audits.test_cross_camera_retrieval import *  # noqa: F403
