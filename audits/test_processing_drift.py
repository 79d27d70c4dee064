"""Processing drift: how far each processing class moves the embedding of the same photo.

The audit lives in :mod:`pytest_metatrace.audits.test_processing_drift` (installed with the
package); this shim lets ``pytest audits/`` run it from the repository.
"""

from pytest_metatrace.audits.test_processing_drift import *  # noqa: F403
