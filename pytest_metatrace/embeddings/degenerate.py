"""The degenerate-embedding check: embeddings no audit can measure anything on.

An encoder that collapsed (all-zero or constant output, NaN, a forward that
ignores its input, a model built without its weights) gives drift 1.0 or 0,
probes at chance and retrieval gaps of 0: numbers that *pass* trace gates.
:class:`~pytest_metatrace.embeddings.Embeddings` runs :func:`degeneracy` once
per (encoder, dataset) on a sample of the dataset's unmasked embeddings and
refuses them with :class:`DegenerateEmbeddings` before any audit sees them.

Definitions, on the sampled embeddings ``X`` (``m`` rows, ``d`` columns;
float64):

- **non-finite**: a row holds NaN or an infinity;
- **zero**: a row is all zero (its cosine similarity to anything is undefined);
- **near-identical**: the relative spread ``||X - mean(X)||_F / ||X||_F`` is
  below :data:`MIN_SPREAD` (``2**-10``). The rows then differ from each other
  by less than the rounding step of bfloat16 (``2**-8`` relative), the
  precision the plugin's default autocast computes in on a GPU: any difference
  left is rounding noise, not the image. ``0`` is a constant encoder.
- **rank-collapsed**: with at least :data:`RANK_MIN_ROWS` rows, the effective
  rank of the centered rows is below :data:`MIN_EFFECTIVE_RANK` (1.5). The
  effective rank (Roy & Vetterli, EUSIPCO 2007; RankMe, Garrido et al. 2023)
  is ``exp(H(p))`` with ``p_i = s_i / sum(s)`` over the singular values
  ``s`` of ``X - mean(X)``: 1.0 when every embedding lies on one line, ``k``
  for ``k`` equal directions. Below 1.5 the second direction is under about
  15% of the first (over 97% of the variance along one axis) and the images
  differ by one number only. Real encoders sit far above it: EfficientNet-
  Lite0 (1280-d) measures 200 on the 300-image demo set, 146 on City100's
  200 photos (76 on a 100-image split, 128 even masked at ratio 0.9), and
  on the smallest set the test applies to, any 8 of those photos (200
  random draws per set), at least 5.5 of the 7 possible, with a spread of at
  least 0.40 (the bound is 0.001); the 6-d toy encoder of the tests measures
  2.7 on 24 images. Fewer than :data:`RANK_MIN_ROWS` rows can lie near a
  line by chance (three photos, two of them alike), so the rank test needs
  eight.

``degeneracy`` is pure numpy on at most :data:`CHECK_ROWS` rows (an
``m x m`` Gram matrix), a few milliseconds whatever the dataset's size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = [
    "CHECK_ROWS",
    "MIN_EFFECTIVE_RANK",
    "MIN_SPREAD",
    "RANK_MIN_ROWS",
    "DegenerateEmbeddings",
    "degeneracy",
    "effective_rank",
    "sample_rows",
]

#: Rows the check reads per (encoder, dataset), evenly spaced over the dataset.
CHECK_ROWS = 512
#: Relative spread below which the rows are near-identical: under bfloat16's 2**-8 rounding.
MIN_SPREAD = 2.0**-10
#: Effective rank of the centered rows below which they vary along one direction only.
MIN_EFFECTIVE_RANK = 1.5
#: Rows the rank test needs: fewer can lie near a line by chance.
RANK_MIN_ROWS = 8


class DegenerateEmbeddings(RuntimeError):
    """An encoder's embeddings on a dataset are degenerate; no audit can measure on them."""

    #: The plugin shows this error's message instead of a traceback (once per session).
    metatrace_clear = True


def sample_rows(n: int, limit: int = CHECK_ROWS) -> list[int]:
    """Up to ``limit`` row indices evenly spaced over ``range(n)``, first and last included."""
    if n <= limit:
        return list(range(n))
    return sorted({int(i) for i in np.linspace(0, n - 1, limit).round()})


def effective_rank(x: npt.ArrayLike) -> float:
    """``exp(entropy)`` of the normalized singular values of ``x`` minus its row mean.

    1.0 for rows on one line; 0.0 for identical rows. Computed from the
    smaller Gram matrix, so ``(m, d)`` costs ``O(m * d * min(m, d))``.
    """
    arr = np.asarray(x, dtype=np.float64)
    centered = arr - arr.mean(axis=0)
    rows, cols = centered.shape
    gram = centered @ centered.T if rows <= cols else centered.T @ centered
    singular = np.sqrt(np.clip(np.linalg.eigvalsh(gram), 0.0, None))
    total = float(singular.sum())
    if total == 0.0:
        return 0.0
    p = singular[singular > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def degeneracy(x: npt.ArrayLike, ids: Sequence[str] | None = None) -> str | None:
    """Why the ``(m, d)`` embeddings ``x`` are degenerate (module docstring), or None.

    ``ids`` names the rows (image ids) in the reason. The first failed test
    of non-finite, zero, near-identical and rank-collapsed is reported.
    """
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0:
        return None
    m = arr.shape[0]
    names = list(ids) if ids is not None else [f"row {i}" for i in range(m)]

    def example(rows: npt.NDArray[np.bool_]) -> str:
        shown = [names[int(i)] for i in np.flatnonzero(rows)[:3]]
        return ", ".join(shown) + (", ..." if int(rows.sum()) > 3 else "")

    bad = np.logical_not(np.isfinite(arr).all(axis=1))
    if bad.any():
        return (
            f"{int(bad.sum())} of the {m} embeddings sampled hold NaN or infinite values "
            f"({example(bad)})"
        )
    zero = np.logical_not(arr.any(axis=1))
    if zero.all():
        return f"every embedding is all zero ({m} sampled)"
    if zero.any():
        return (
            f"{int(zero.sum())} of the {m} embeddings sampled are all zero ({example(zero)}): "
            "their cosine similarity to anything is undefined"
        )
    if m < 2:
        return None
    spread = float(np.linalg.norm(arr - arr.mean(axis=0)) / np.linalg.norm(arr))
    if spread == 0.0:
        return f"every embedding is the same vector ({m} images sampled)"
    if spread < MIN_SPREAD:
        return (
            f"the embeddings are near-identical: the {m} sampled differ from their mean by "
            f"{spread:.1e} of their size (below {MIN_SPREAD:.1e} = 2**-10, the rows differ by "
            "less than bfloat16 rounding)"
        )
    if m >= RANK_MIN_ROWS and arr.shape[1] >= 2:
        rank = effective_rank(arr)
        if rank < MIN_EFFECTIVE_RANK:
            return (
                f"the embeddings are rank-collapsed: the {m} sampled vary along one direction "
                f"only (effective rank {rank:.2f} of the centered rows, below "
                f"{MIN_EFFECTIVE_RANK})"
            )
    return None
