"""Semantic influence: does processing move kNN semantic predictions? (paper Sec. 4.1)

The audit lives in :mod:`pytest_metatrace.audits.test_semantic_influence` (installed with the
package); this shim lets ``pytest audits/`` run it from the repository.
"""

from pytest_metatrace.audits.test_semantic_influence import *  # noqa: F403
