"""Processing traces: can a linear probe read the processing back from the embedding? (Sec. 3.1)

The audit lives in :mod:`pytest_metatrace.audits.test_processing_traces` (installed with the
package); this shim lets ``pytest audits/`` run it from the repository.
"""

from pytest_metatrace.audits.test_processing_traces import *  # noqa: F403
