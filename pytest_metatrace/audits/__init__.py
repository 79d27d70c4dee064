"""The built-in audits, installed with the package.

Run them on the defaults from any folder with ``pytest --pyargs
pytest_metatrace.audits`` (add ``--metatrace-encoder=...`` and the other
options as usual). ``python -m pytest_metatrace copy-audits DIR`` copies them
into a repository to edit. The repository's top-level ``audits/`` holds
one-line shims that import these modules, so there is one source per audit.
"""

#: The audit modules, in the order the README lists them.
AUDIT_MODULES = (
    "test_processing_drift",
    "test_processing_traces",
    "test_semantic_influence",
    "test_acquisition_traces",
    "test_cross_camera_retrieval",
)
