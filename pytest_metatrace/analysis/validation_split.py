"""The probes' validation split, drawn so that small datasets still get one.

The protocol's split is ``sklearn.model_selection.train_test_split(...,
stratify=labels, random_state=seed)`` with 20% held out; it is used exactly
whenever it puts every class on both sides. On small data (a class with two
or three training samples, fewer validation slots than classes) it either
fails or leaves a class on one side; then the split is drawn per class
instead: each class with at least two samples gives ``round(0.2 * count)``
of them, at least one and never all, to validation (seeded shuffle), and a
class with a single sample goes to the fitting side only, so that the probe
is still trained on it. Only where fewer than two classes can be validated
at all is the data too small; the error says what the minimum is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from pytest_metatrace.analysis.sgd import VAL_FRACTION, ProbeInputError

__all__ = ["SplitTooSmall", "validation_split"]


class SplitTooSmall(ProbeInputError):
    """Too few training samples for a validation split; :meth:`named` words it with class names."""

    def __init__(self, counts: Sequence[int], classes: Sequence[int]) -> None:
        self.counts = [int(c) for c in counts]  #: training samples per class
        self.classes = [int(c) for c in classes]  #: the classes that lack samples
        super().__init__(self.named())

    def named(self, names: Sequence[str] | None = None) -> str:
        """The message, with classes called by ``names`` (``names[k]`` is class ``k``)."""

        def name(k: int) -> str:
            return repr(names[k]) if names is not None and k < len(names) else f"class {k}"

        lacking = ", ".join(f"{name(k)} ({self.counts[k]})" for k in self.classes)
        return (
            f"too few training samples for the hyper-parameter search's validation split: "
            f"{sum(self.counts)} over {len(self.counts)} classes, of which {lacking} have fewer "
            "than two; it needs at least two classes with two or more samples (one to fit, "
            "one to validate), and every class needs at least one - add samples (see "
            "'Minimum dataset size' in the README)"
        )


def validation_split(
    labels: ArrayLike,
    val_fraction: float = VAL_FRACTION,
    seed: int = 0,
    *,
    n_classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (fit, validation) index split, each sorted ascending (see the module docstring).

    Classes are ``0..n_classes-1`` when ``n_classes`` is given, else the
    labels present. Raises :class:`SplitTooSmall` when no validation split
    can rank trials.
    """
    y = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(y, minlength=n_classes or 0)
    classes = np.arange(counts.size) if n_classes is not None else np.flatnonzero(counts)
    n_val = math.ceil(val_fraction * y.size)
    fewest = int(counts[classes].min()) if classes.size else 0
    if fewest >= 2 and n_val >= classes.size and y.size - n_val >= classes.size:
        from sklearn.model_selection import train_test_split

        try:
            fit_idx, val_idx = train_test_split(
                np.arange(y.size), test_size=val_fraction, stratify=y, random_state=seed
            )
        except ValueError:
            pass
        else:
            fit_idx, val_idx = np.sort(np.asarray(fit_idx)), np.sort(np.asarray(val_idx))
            if _both_sides(y, classes, fit_idx, val_idx):
                return fit_idx, val_idx
    lacking = [int(c) for c in classes if counts[c] < 2]
    if np.count_nonzero(counts[classes] >= 2) < 2 or fewest == 0:
        raise SplitTooSmall(counts.tolist(), lacking)
    rng = np.random.default_rng(seed)
    fit: list[np.ndarray] = []
    val: list[np.ndarray] = []
    for c in classes:
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        k = idx.size
        v = 0 if k < 2 else min(max(round(val_fraction * k), 1), k - 1)
        val.append(idx[:v])
        fit.append(idx[v:])
    return np.sort(np.concatenate(fit)), np.sort(np.concatenate(val))


def _both_sides(y: np.ndarray, classes: np.ndarray, fit: np.ndarray, val: np.ndarray) -> bool:
    return bool(np.isin(classes, y[fit]).all() and np.isin(classes, y[val]).all())
