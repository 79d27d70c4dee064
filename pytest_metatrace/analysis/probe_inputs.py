"""Input checks of the linear probe: features, labels, classes, device and the validation split.

Split out of :mod:`pytest_metatrace.analysis.sgd` (the training engine), which
re-exports every public name here: a probe's inputs are checked once, here,
whichever engine (protocol SGD or the ``lbfgs`` mode) then trains on them.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numpy.typing import ArrayLike

from pytest_metatrace._device import resolve_device as _resolve_device

__all__ = [
    "VAL_FRACTION",
    "ProbeInputError",
    "check_features",
    "check_labels",
    "l2_normalize",
    "resolve_device",
    "stratified_split",
]

#: Share of the training set held out (stratified) to score search trials.
VAL_FRACTION = 0.2


class ProbeInputError(ValueError):
    """Bad input to a probe (shapes, labels, NaN features), with the fix in the message."""


# --------------------------------------------------------------------------------------
# Input checks


def _as_numpy(x: ArrayLike | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
        # numpy has no bfloat16; float32 holds every bf16/fp16 value exactly.
        if t.is_floating_point() and t.dtype not in (torch.float32, torch.float64):
            t = t.float()
        return np.asarray(t.numpy())
    return np.asarray(x)


def l2_normalize(x: ArrayLike | torch.Tensor, out: np.ndarray | None = None) -> np.ndarray:
    """Rows of ``x`` divided by their L2 norm, as float32 (norms taken in float64).

    Zero rows stay zero (the norm is clamped at 1e-12, as ``F.normalize`` does).
    ``out``, if given, is a float32 array of the same shape to write into.
    """
    arr = _as_numpy(x)
    if out is None:
        out = np.empty(arr.shape, dtype=np.float32)
    # Chunked so that the float64 copy stays small for large embedding sets.
    for start in range(0, arr.shape[0], 65536):
        chunk = arr[start : start + 65536].astype(np.float64)
        norms = np.sqrt(np.einsum("ij,ij->i", chunk, chunk))
        out[start : start + 65536] = chunk / np.maximum(norms, 1e-12)[:, None]
    return out


def check_features(
    x: ArrayLike | torch.Tensor,
    name: str = "features",
    *,
    dim: int | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Validate an ``(n_samples, dim)`` embedding matrix; return it L2-normalized, float32.

    Raises :class:`ProbeInputError` for a wrong number of dimensions, an empty
    matrix, a dimension other than ``dim``, non-numeric data or NaN / infinite
    values (naming the first bad row).
    """
    arr = _as_numpy(x)
    if arr.dtype.kind not in "fiub":
        raise ProbeInputError(f"{name} must hold numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ProbeInputError(f"{name} must be a 2-D array (n_samples, dim), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ProbeInputError(f"{name} is empty (shape {arr.shape})")
    if dim is not None and arr.shape[1] != dim:
        raise ProbeInputError(
            f"{name} has dimension {arr.shape[1]} but the probe expects {dim}: "
            "were both sets embedded by the same encoder?"
        )
    if arr.dtype.kind == "f":
        finite = np.isfinite(arr).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            raise ProbeInputError(
                f"{name} has {bad.size} row(s) with NaN or infinite values (first: row "
                f"{int(bad[0])}); the encoder produced invalid embeddings for those images - "
                "drop them or re-embed in float32"
            )
    return l2_normalize(arr, out=out)


def check_labels(y: ArrayLike | torch.Tensor, n_samples: int, name: str = "labels") -> np.ndarray:
    """Validate integer class labels ``0..C-1`` for ``n_samples`` samples; return int64."""
    arr = _as_numpy(y)
    if arr.ndim != 1:
        raise ProbeInputError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ProbeInputError(
            f"{name} has {arr.shape[0]} entries but the features have {n_samples} rows"
        )
    if arr.dtype.kind == "b" or arr.dtype.kind not in "iuf":
        raise ProbeInputError(f"{name} must be integer class indices, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and (not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr))):
        raise ProbeInputError(f"{name} must be integer class indices, got non-integer floats")
    out = arr.astype(np.int64)
    if out.size and out.min() < 0:
        raise ProbeInputError(f"{name} must be class indices >= 0, got {int(out.min())}")
    return out


def _check_classes(y: np.ndarray, n_classes: int | None, name: str) -> int:
    n = int(y.max()) + 1 if n_classes is None else int(n_classes)
    if n < 2:
        raise ProbeInputError(
            f"a probe needs at least two classes, got {n} in {name}: "
            "accuracy against a single class is meaningless"
        )
    if y.max() >= n:
        raise ProbeInputError(f"{name} holds class {int(y.max())} but n_classes is {n}")
    counts = np.bincount(y, minlength=n)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise ProbeInputError(
            f"class(es) {empty.tolist()} of 0..{n - 1} have no samples in {name}; every class "
            "needs training samples - relabel the classes to consecutive integers or drop them"
        )
    return n


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: the first CUDA GPU when there is one, else the CPU; otherwise as given."""
    return _resolve_device(device, error=ProbeInputError)


def stratified_split(
    labels: ArrayLike,
    val_fraction: float = VAL_FRACTION,
    seed: int = 0,
    *,
    n_classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (fit, validation) index split, each sorted ascending.

    ``sklearn.model_selection.train_test_split(arange(N), test_size=val_fraction,
    stratify=labels, random_state=seed)``; every class (``0..n_classes-1``
    when given) needs two samples.
    """
    from sklearn.model_selection import train_test_split

    y = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(y, minlength=n_classes or 0)
    # Without n_classes, absent labels are not classes; with it, they are.
    small = np.flatnonzero((counts < 2) & ((counts > 0) | (n_classes is not None))).tolist()
    if n_classes is None:
        n_classes = int(np.count_nonzero(counts))
    if small:
        raise ProbeInputError(
            f"class(es) {small} have fewer than two training samples ({counts[small].tolist()}); "
            "the stratified validation split of the hyper-parameter search needs at least two "
            "per class - add samples"
        )
    n_val = math.ceil(val_fraction * y.size)
    if n_val < n_classes or y.size - n_val < n_classes:
        raise ProbeInputError(
            f"{y.size} training samples are too few for a {val_fraction:.0%} stratified "
            f"validation split over {n_classes} classes (each side needs one sample per class) - "
            "add samples"
        )
    fit_idx, val_idx = train_test_split(
        np.arange(y.size), test_size=val_fraction, stratify=y, random_state=seed
    )
    return np.sort(np.asarray(fit_idx)), np.sort(np.asarray(val_idx))
