"""OpenMP threads that sleep when they wait: ``OMP_WAIT_POLICY=PASSIVE`` unless the user chose.

torch's CPU kernels and scikit-learn run on OpenMP (libgomp). By default an
OpenMP thread that reaches a barrier spins for a while before it sleeps; when
every core is busy with another job (a second pytest, a build, xdist workers
sharing the machine), the spinning threads take the cores the working threads
need, and a run slows down far more than its share of the CPU
(``bench/bench_contention.py``). ``PASSIVE`` makes waiting threads sleep at
once. OpenMP reads the variable once, when its library loads (``import
torch``), so the plugin sets it when it is loaded, before any conftest, test
module or fixture imports torch; pytest-xdist workers, DataLoader workers and a
local Ray cluster the run starts inherit it. A value the user set (``ACTIVE``
to spin again) is left alone. Stdlib only (plugin load).
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

__all__ = ["OMP_WAIT_POLICY", "set_passive_omp_wait"]

#: The variable OpenMP runtimes read for how waiting threads wait.
OMP_WAIT_POLICY = "OMP_WAIT_POLICY"


def set_passive_omp_wait(environ: MutableMapping[str, str] | None = None) -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` in ``environ`` (``os.environ``) unless it is set.

    Returns whether it set the variable; an empty value counts as unset.
    """
    env = os.environ if environ is None else environ
    if env.get(OMP_WAIT_POLICY, "").strip():
        return False
    env[OMP_WAIT_POLICY] = "PASSIVE"
    return True
