"""Analyses cached on disk by their inputs: a warm run recomputes no probe, sweep or map.

The embeddings are cached by the embedding store; the analyses on top of them
(probe searches and fits, the mask sweep's probes, the t-SNE map) are pure
functions of those embeddings, their labels and split, and their parameters.
:func:`cached` keys a result by all of these:

- the analysis name and :data:`ANALYSIS_VERSION` (bumped when an analysis'
  output changes for the same inputs) and the package version;
- every parameter, as canonical JSON (sorted keys; floats by ``repr``, so
  0.1 and 0.1000001 differ);
- every input array's dtype, shape and bytes (SHA-256), so a different
  encoder, dataset, processing, mask ratio, split or seed is a different
  key without naming it.

Results are stored as pickles under ``<cache dir>/analyses/<name>/``, written
atomically (:func:`pytest_metatrace._files.atomic_write`), and read back
through an unpickler that only rebuilds numpy arrays, plain builtins and the
package's own dataclasses (a cache file from elsewhere cannot run code). A
damaged, truncated or foreign entry is recomputed and rewritten. Outside the
plugin (no cache activated) :func:`cached` just computes.

Imported at plugin load (the counters): stdlib only at module level.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import pickle
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "ANALYSIS_VERSION",
    "AnalysisStats",
    "activate",
    "active_root",
    "analysis_key",
    "cached",
    "deactivate",
    "stats",
]

#: Bump when an analysis returns something else for the same inputs and parameters.
ANALYSIS_VERSION = 1

T = TypeVar("T")

# Globals a cache entry may name: numpy's array/scalar reconstructors and dtypes,
# harmless builtins, and (checked separately) dataclasses of this package.
_NUMPY_GLOBALS = {
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}
_BUILTINS = {"set", "frozenset", "complex", "slice", "range", "bytearray", "tuple", "list", "dict"}


@dataclass
class AnalysisStats:
    """How many analyses this process computed and read back from the cache."""

    computed: int = 0
    reused: int = 0


_ROOT: Path | None = None
_STATS = AnalysisStats()


def activate(root: Path) -> None:
    """Cache analyses under ``root`` (the plugin calls it with ``<cache dir>/analyses``)."""
    global _ROOT
    _ROOT = Path(root)


def active_root() -> Path | None:
    """Where analyses are cached now (None: not cached)."""
    return _ROOT


def deactivate() -> None:
    """Stop caching (analyses are computed every time)."""
    global _ROOT
    _ROOT = None


def stats() -> AnalysisStats:
    """The counts of this process since it started."""
    return _STATS


def _canonical(value: Any) -> Any:
    import numpy as np

    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, (np.integer, bool, int)) or value is None or isinstance(value, str):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return repr(f) if not math.isfinite(f) else f
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _canonical(dataclasses.asdict(value))
    if hasattr(value, "get_params"):
        return {"class": type(value).__qualname__, "params": _canonical(value.get_params())}
    raise TypeError(f"cannot key an analysis on a {type(value).__name__}: {value!r}")


def analysis_key(name: str, params: Mapping[str, Any], arrays: Sequence[Any]) -> str:
    """The SHA-256 key of an analysis of ``arrays`` with ``params``."""
    import numpy as np

    from pytest_metatrace import __version__

    digest = hashlib.sha256()
    header = {
        "name": name,
        "analysis_version": ANALYSIS_VERSION,
        "package": __version__,
        "params": _canonical(params),
    }
    digest.update(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
    for arr in arrays:
        if hasattr(arr, "detach"):  # a torch tensor, on any device and in any precision
            t = arr.detach().cpu()
            arr = t.float().numpy() if str(t.dtype) == "torch.bfloat16" else t.numpy()
        a = np.ascontiguousarray(np.asarray(arr))
        digest.update(f"|{a.dtype.str}{a.shape}|".encode())
        if a.dtype.hasobject:
            raise TypeError("object arrays have no stable bytes to key on")
        digest.update(a.tobytes())
    return digest.hexdigest()


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_GLOBALS or module == "numpy.dtypes":
            return super().find_class(module, name)
        if module == "builtins" and name in _BUILTINS:
            return super().find_class(module, name)
        if module == "pytest_metatrace" or module.startswith("pytest_metatrace."):
            found = super().find_class(module, name)
            if isinstance(found, type) and dataclasses.is_dataclass(found):
                return found
        raise pickle.UnpicklingError(f"a cached analysis may not name {module}.{name}")


def _load(path: Path) -> tuple[bool, Any]:
    try:
        data = path.read_bytes()
    except OSError:  # absent, or unreadable: computed (and rewritten) below
        return False, None
    try:
        return True, _Unpickler(io.BytesIO(data)).load()
    except Exception:  # damaged, truncated or foreign: recomputed below
        return False, None


def cached(
    name: str,
    params: Mapping[str, Any],
    arrays: Sequence[Any] | Callable[[], Sequence[Any]],
    compute: Callable[[], T],
) -> T:
    """``compute()``, or its result from an earlier run with the same inputs.

    ``params`` holds every value the result depends on besides ``arrays``
    (JSON-like values, dataclasses, or estimators with ``get_params()``);
    ``arrays`` may be a function returning them. Inputs that cannot be keyed
    (a missing class, an object without parameters) are not cached:
    ``compute()`` runs and raises its own, clear error if they are wrong. A
    result that cannot be stored (a full disk) is returned all the same.
    """
    root = _ROOT
    if root is None:
        _STATS.computed += 1
        return compute()
    try:
        key = analysis_key(name, params, arrays() if callable(arrays) else arrays)
    except Exception:
        _STATS.computed += 1
        return compute()
    path = root / name / key[:2] / f"{key}.pkl"
    found, value = _load(path)
    if found:
        _STATS.reused += 1
        return value  # type: ignore[no-any-return]
    value = compute()
    _STATS.computed += 1
    from pytest_metatrace._files import atomic_write

    try:
        payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        atomic_write(path, lambda handle: handle.write(payload))
    except (OSError, pickle.PicklingError, TypeError, AttributeError):
        pass  # not cached this time; the result itself is unaffected
    return value
