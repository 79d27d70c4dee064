"""Keep glibc from returning activation buffers to the kernel after every batch.

On CPU, a forward pass allocates activation buffers of tens of megabytes.
glibc serves allocations above 32 MiB with ``mmap`` and gives them back with
``munmap`` when freed, so every batch page-faults its activations in again:
on a 2-core machine EfficientNet-Lite0 spent more time in the kernel than in
convolutions (42 img/s; 101 img/s with the tuning below, numbers unchanged).
Serving them from the heap and not trimming it keeps the pages mapped. The
cost: the process keeps its peak heap until it exits, which is fine for a
test session. Set ``METATRACE_MALLOC_TUNING=0`` to leave malloc alone.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["tune_malloc_for_inference"]

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
_done: bool | None = None


def tune_malloc_for_inference() -> bool:
    """Apply the tuning once per process (glibc on Linux only); return whether it is active."""
    global _done
    if _done is not None:
        return _done
    _done = False
    from pytest_metatrace.options import env_value

    if sys.platform != "linux" or not env_value("malloc-tuning"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc: nothing to tune
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _done = bool(
        mallopt(_M_MMAP_MAX, 0)
        and mallopt(_M_TRIM_THRESHOLD, 1 << 30)
        and mallopt(_M_TOP_PAD, 256 << 20)
    )
    return _done
