"""Neighbour agreement (paper Table 2, docs/protocol.md §7), group-aware.

For every query image, the share of its top-k neighbours (cosine similarity
of L2-normalized embeddings, the query itself excluded) that carry the
query's metadata label, averaged over queries, for k = 10, 25, 50.

Where the photos carry groups (the dataset's ``group_column``: photographer,
owner, scene), the neighbours from the query's own group are left out by
default (``--metatrace-agreement-own-group=exclude``): photos of one group
share a photographer and subjects, so they agree on content whatever the
encoder knows about the camera. On City100 (the postcard is the group) this
removes each photo's twin from the other device. Both figures are computed;
the option chooses which one is the record's (gated) value, and the share of
own-group neighbours in the unrestricted top-k is reported beside them.

Chance is the share expected from the label frequencies alone among the
query's candidates: a query of class c in group g sees
``(n_c - m_gc) / (N - n_g)`` same-class images among the eligible ones
(``m_gc`` images of class c and ``n_g`` images in its own group, the query
included), averaged over queries; without the exclusion (or without groups)
that is ``(n_c - 1) / (N - 1)``. Similarity ties are broken towards the
lower item index, so the numbers do not depend on the sort algorithm. The
interval is a bootstrap over queries of each query's share.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from pytest_metatrace.analysis.stats import Interval, bootstrap_mean
from pytest_metatrace.results import Record, jsonable

__all__ = [
    "AGREEMENT_K",
    "OWN_GROUP_RULES",
    "AgreementUnavailable",
    "NeighbourAgreement",
    "group_codes",
    "neighbour_agreement",
    "neighbour_shares",
    "own_group_shares",
]

#: The k of the paper's Table 2.
AGREEMENT_K = (10, 25, 50)
#: Values of ``--metatrace-agreement-own-group``.
OWN_GROUP_RULES = ("exclude", "include")

OwnGroup = Literal["excluded", "included", "no groups"]


class AgreementUnavailable(ValueError):
    """Data on which agreement cannot be measured; the message says why and what to change."""


def group_codes(groups: Sequence[str | None]) -> np.ndarray:
    """``(N,)`` integer group codes; an item without a group is a group of its own."""
    lookup: dict[str, int] = {}
    out = np.empty(len(groups), dtype=np.int64)
    for i, g in enumerate(groups):
        out[i] = lookup.setdefault(g if g is not None else f"\0item{i}", len(lookup))
    return out


def _normalized(features: np.ndarray) -> np.ndarray:
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"expected (images, dim) embeddings, got shape {x.shape}")
    out: np.ndarray = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return out


def _check_ks(ks: Sequence[int], n: int, limit: int) -> None:
    if not ks or max(ks) > limit or min(ks) < 1:
        raise ValueError(
            f"every k must lie in [1, {limit}] (the fewest candidates of any query) for {n} "
            f"images, got {list(ks)}"
        )


def _orders(
    x: np.ndarray, codes: np.ndarray | None, kmax: int, chunk: int
) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(start, stop, order)`` per chunk of queries: the ``kmax`` best candidates, best first.

    ``codes`` None: every other image is a candidate; else the images of the
    query's own group (code) are not.
    """
    n = x.shape[0]
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        sim = x[start:stop] @ x.T
        if codes is None:
            rows = np.arange(stop - start)
            sim[rows, rows + start] = -np.inf  # the query is not its own neighbour
        else:
            sim[codes[start:stop, None] == codes[None, :]] = -np.inf
        # Stable sort of -sim: equal similarities keep index order.
        yield start, stop, np.argsort(-sim, axis=1, kind="stable")[:, :kmax]


def neighbour_shares(
    features: np.ndarray,
    labels: np.ndarray,
    ks: Sequence[int],
    *,
    groups: np.ndarray | None = None,
    chunk: int = 1024,
) -> np.ndarray:
    """``(len(ks), N)``: per query, the share of its top-k neighbours with its label.

    ``features`` ``(N, D)`` (normalized here), ``labels`` ``(N,)`` integers.
    ``groups`` None: every other image is a candidate; else ``(N,)`` group
    codes (:func:`group_codes`) and the query's own group is left out. Every
    k must be at most the fewest candidates of any query. Chunked over
    queries, so memory stays at ``chunk x N`` similarities.
    """
    x = _normalized(features)
    y = np.asarray(labels)
    n = x.shape[0]
    if y.shape != (n,):
        raise ValueError(f"{y.shape[0] if y.ndim else 0} labels for {n} embeddings")
    codes = None if groups is None else np.asarray(groups, dtype=np.int64)
    if codes is not None and codes.shape != (n,):
        raise ValueError(f"{codes.size} group codes for {n} embeddings")
    _check_ks(ks, n, _fewest_candidates(codes, n))
    out = np.empty((len(ks), n), dtype=np.float64)
    for start, stop, order in _orders(x, codes, max(ks), chunk):
        cum = np.cumsum(y[order] == y[start:stop, None], axis=1)
        for j, k in enumerate(ks):
            out[j, start:stop] = cum[:, k - 1] / k
    return out


def own_group_shares(
    features: np.ndarray, groups: np.ndarray, ks: Sequence[int], *, chunk: int = 1024
) -> np.ndarray:
    """``(len(ks), N)``: per query, the share of its top-k neighbours from its own group.

    The neighbours are those of the unrestricted search (every other image a
    candidate); ``groups`` are ``(N,)`` codes (:func:`group_codes`).
    """
    x = _normalized(features)
    codes = np.asarray(groups, dtype=np.int64)
    n = x.shape[0]
    if codes.shape != (n,):
        raise ValueError(f"{codes.size} group codes for {n} embeddings")
    _check_ks(ks, n, n - 1)
    out = np.empty((len(ks), n), dtype=np.float64)
    for start, stop, order in _orders(x, None, max(ks), chunk):
        cum = np.cumsum(codes[order] == codes[start:stop, None], axis=1)
        for j, k in enumerate(ks):
            out[j, start:stop] = cum[:, k - 1] / k
    return out


def _fewest_candidates(codes: np.ndarray | None, n: int) -> int:
    if codes is None:
        return n - 1
    return int(n - np.bincount(codes).max())


def _chance(y: np.ndarray, codes: np.ndarray) -> float:
    """Mean over queries of the same-label share among the query's candidates."""
    n = y.size
    n_classes = int(y.max()) + 1
    class_counts = np.bincount(y, minlength=n_classes)
    group_sizes = np.bincount(codes)
    in_group = np.zeros((group_sizes.size, n_classes), dtype=np.int64)
    np.add.at(in_group, (codes, y), 1)
    same = class_counts[y] - in_group[codes, y]
    return float(np.mean(same / (n - group_sizes[codes])))


@dataclass(frozen=True)
class NeighbourAgreement:
    """Table 2 for one target: agreement per k next to chance, with intervals.

    ``agreement``, ``intervals`` and ``chance`` are the record's (gated)
    figure: without the query's own-group neighbours when ``own_group`` is
    ``"excluded"``, with them when ``"included"``; ``"no groups"`` when the
    photos carry none (only the query itself is left out). Both figures are
    kept, with the share of own-group neighbours in the unrestricted search.
    """

    target: str  #: the metadata target, e.g. ``smartphone``
    classes: list[str]  #: class names
    class_counts: list[int]  #: images per class
    ks: list[int]  #: the k values
    agreement: list[float]  #: mean share of same-label neighbours, per k (the gated figure)
    intervals: list[Interval]  #: bootstrap interval per k
    chance: float  #: share expected from label frequencies among the query's candidates
    mask_ratio: float | None  #: None: unmasked embeddings (Table 2)
    own_group: OwnGroup = "no groups"  #: how the query's own group was treated
    group_column: str | None = None  #: the dataset's group column, None without groups
    n_groups: int = 0  #: groups among the images (0 without groups)
    #: agreement per k with own-group neighbours counted (every other image a candidate)
    agreement_with_own_group: list[float] = field(default_factory=list)
    chance_with_own_group: float | None = None  #: ``(n_c - 1) / (N - 1)`` averaged over queries
    #: agreement per k with the query's own group left out
    agreement_without_own_group: list[float] = field(default_factory=list)
    chance_without_own_group: float | None = None  #: ``(n_c - m_gc) / (N - n_g)`` averaged
    #: per k: mean share of the unrestricted top-k that comes from the query's own group
    own_group_share: list[float] = field(default_factory=list)
    query_ids: list[str] = field(default_factory=list)  #: the queries (not in record details)
    query_shares: list[float] = field(default_factory=list)  #: each query's share at ``ks[0]``

    @property
    def gain(self) -> float:
        """Agreement at the first k minus chance."""
        return self.agreement[0] - self.chance

    @property
    def grouping_note(self) -> str:
        """One plain sentence on how own-group neighbours were treated, and why."""
        if self.own_group == "no groups" or not self.own_group_share:
            return (
                "These photos carry no groups (photographer, owner, scene): neighbours from the "
                "same photographer or of the same subject count, so content clustering can "
                "raise agreement. Add a group column (or sub-folders) to rule that out."
            )
        k = self.ks[0]
        col = self.group_column or "group"
        share = f"{self.own_group_share[0]:.1%}"
        with_own = f"{self.agreement_with_own_group[0]:.1%}"
        without = f"{self.agreement_without_own_group[0]:.1%}"
        if self.own_group == "excluded":
            return (
                f"Neighbours from the query's own {col} are left out: {share} of each photo's "
                f"top-{k} came from its own {col}, whose photos share a photographer or a "
                f"subject and so agree on content rather than on the camera. Counting them, "
                f"agreement at k = {k} would be {with_own} (chance "
                f"{self.chance_with_own_group:.1%}); left out, {without}."
            )
        return (
            f"Own-{col} neighbours are counted (--metatrace-agreement-own-group=include): "
            f"{share} of each photo's top-{k} came from its own {col}, so content shared within "
            f"a {col} weighs in. Left out, agreement at k = {k} would be {without} (chance "
            f"{self.chance_without_own_group:.1%})."
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out: dict[str, Any] = jsonable(dataclasses.asdict(self))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NeighbourAgreement:
        """Inverse of :meth:`to_dict` (records written before groups were handled load too)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs["intervals"] = [Interval(**iv) for iv in kwargs["intervals"]]
        return cls(**kwargs)

    def to_records(self, *, encoder: str, dataset: str) -> list[Record]:
        """One ``neighbour_agreement`` record: the value and interval are those at ``ks[0]``."""
        details = self.to_dict()
        scores = details.pop("query_shares")
        ids = details.pop("query_ids")
        details["grouping_note"] = self.grouping_note
        record = Record(
            audit="neighbour_agreement",
            metric=f"agreement@{self.ks[0]}",
            value=self.agreement[0],
            encoder=encoder,
            dataset=dataset,
            parameter=self.target,
            interval=self.intervals[0].to_dict(),
            chance=self.chance,
            details=details,
            provenance={
                "ks": list(self.ks),
                "mask_ratio": self.mask_ratio,
                "own_group": self.own_group,
                "group_column": self.group_column,
            },
            scores=scores,
            score_ids=ids,
        )
        return [record]


def neighbour_agreement(
    features: np.ndarray,
    labels: Sequence[str],
    *,
    target: str,
    ids: Sequence[str],
    groups: Sequence[str | None] | None = None,
    group_column: str | None = None,
    own_group: str = "exclude",
    ks: Sequence[int] = AGREEMENT_K,
    mask_ratio: float | None = None,
    seed: int = 0,
) -> NeighbourAgreement:
    """Table 2 for one target, group-aware (see the module docstring).

    ``groups[i]`` is image i's group or None; ``own_group`` (``exclude`` or
    ``include``) picks which figure is the record's value when there are
    groups. k values above the fewest candidates of any query (under both
    rules) are left out; raises :class:`AgreementUnavailable` when none is left
    or the labels have fewer than 2 classes.
    """
    if own_group not in OWN_GROUP_RULES:
        raise ValueError(f"own_group must be one of {OWN_GROUP_RULES}, got {own_group!r}")
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise AgreementUnavailable(f"neighbour agreement needs 2 classes, {target} has {classes}")
    lookup = {c: i for i, c in enumerate(classes)}
    y = np.array([lookup[lab] for lab in labels], dtype=np.int64)
    n = y.size
    if len(ids) != n or (groups is not None and len(groups) != n):
        raise ValueError(f"{n} labels, {len(ids)} ids and {len(groups or ())} groups differ")
    grouped = groups is not None and any(g is not None for g in groups)
    codes = group_codes(groups) if grouped and groups is not None else np.arange(n)
    limit = _fewest_candidates(codes, n)
    usable = [k for k in ks if k <= limit]
    if not usable:
        biggest = int(np.bincount(codes).max())
        why = (
            f"its largest {group_column or 'group'} holds {biggest} of the {n} images, so its "
            f"photos have only {limit} candidates once their own {group_column or 'group'} is "
            "left out"
            if grouped
            else f"{n} images are too few"
        )
        raise AgreementUnavailable(
            f"neighbour agreement at k = {list(ks)} needs at least {min(ks)} candidates per "
            f"query: {why}; add photos"
            + (
                " from more groups or pass --metatrace-agreement-own-group=include"
                if grouped
                else ""
            )
        )
    x = _normalized(features)
    with_own = neighbour_shares(x, y, usable)
    chance_with = float(np.mean((np.bincount(y)[y] - 1) / (n - 1)))
    if grouped:
        without_own = neighbour_shares(x, y, usable, groups=codes)
        chance_without = _chance(y, codes)
        own_share = own_group_shares(x, codes, usable).mean(axis=1).tolist()
        rule: OwnGroup = "excluded" if own_group == "exclude" else "included"
    else:
        without_own, chance_without, own_share, rule = with_own, chance_with, [], "no groups"
    shares, chance = (
        (without_own, chance_without) if rule == "excluded" else (with_own, chance_with)
    )
    return NeighbourAgreement(
        target=target,
        classes=classes,
        class_counts=np.bincount(y, minlength=len(classes)).tolist(),
        ks=list(usable),
        agreement=[float(s.mean()) for s in shares],
        intervals=[bootstrap_mean(s, seed=seed) for s in shares],
        chance=chance,
        mask_ratio=mask_ratio,
        own_group=rule,
        group_column=group_column if grouped else None,
        n_groups=int(codes.max()) + 1 if grouped else 0,
        agreement_with_own_group=[float(s.mean()) for s in with_own],
        chance_with_own_group=chance_with,
        agreement_without_own_group=[float(s.mean()) for s in without_own],
        chance_without_own_group=chance_without,
        own_group_share=[float(v) for v in own_share],
        query_ids=list(ids),
        query_shares=shares[0].tolist(),
    )
