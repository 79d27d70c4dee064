"""Glue of the cross-camera retrieval audit: options -> pairs, and the failed-query gallery.

Kept out of the audit module so that the audit reads like a test.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_metatrace.analysis.retrieval import QueryCameraResult
from pytest_metatrace.data.dataset import Dataset
from pytest_metatrace.data.pairs import PairedDataset

__all__ = ["FAILURES_SHOWN", "failure_gallery", "load_pairs_for", "pairs_view"]

#: Failed queries shown per query camera type and setting (the smallest margins first).
FAILURES_SHOWN = 4


def load_pairs_for(config: pytest.Config) -> PairedDataset:
    """The pairs of ``--metatrace-pairs``; a bad spec fails the test with the fix, no traceback."""
    from pytest_metatrace.data.dataset import DatasetError
    from pytest_metatrace.data.pairs import load_pairs, parse_camera_mapping
    from pytest_metatrace.options import get_option
    from pytest_metatrace.state import cache_dir, make_progress

    spec = get_option(config, "pairs")
    try:
        pairs = load_pairs(
            spec,
            cache_dir=cache_dir(config),
            mapping=parse_camera_mapping(get_option(config, "pairs-camera")),
            max_pixels=get_option(config, "max-pixels"),
            progress=make_progress(config),
            crop=get_option(config, "pairs-crop"),
        )
    except DatasetError as exc:
        raise pytest.fail.Exception(f"cannot load pairs {spec!r}: {exc}", pytrace=False) from None
    if pairs.skipped:
        shown = "; ".join(f"{s.path}: {s.reason}" for s in pairs.skipped[:5])
        more = f" (and {len(pairs.skipped) - 5} more)" if len(pairs.skipped) > 5 else ""
        make_progress(config).write(
            f"metatrace: pairs {pairs.id}: skipped {len(pairs.skipped)} photo(s): {shown}{more}"
        )
    if pairs.incomplete:
        shown = "; ".join(f"{s.subject}: {s.reason}" for s in pairs.incomplete[:5])
        more = f" (and {len(pairs.incomplete) - 5} more)" if len(pairs.incomplete) > 5 else ""
        make_progress(config).write(
            f"metatrace: pairs {pairs.id}: left out {len(pairs.incomplete)} subject(s) without "
            f"one photo per camera type: {shown}{more}"
        )
    return pairs


def pairs_view(config: pytest.Config, pairs: PairedDataset, crop: float) -> Dataset:
    """The pairs as a dataset (whole frames or centre crops), described for the report."""
    from pytest_metatrace.state import STATE_KEY

    dataset = pairs.dataset(crop)
    described = dataset.describe()
    described["pairs"] = pairs.describe()
    config.stash[STATE_KEY].datasets[dataset.id] = described
    return dataset


def failure_gallery(
    pairs: PairedDataset, dataset: Dataset, result: QueryCameraResult, limit: int = FAILURES_SHOWN
) -> dict[str, Any]:
    """Failed queries of both settings: query, true pair and wrongly retrieved photo, as thumbnails.

    Thumbnails show what the encoder was given (the crop, under the crop
    protocol); each photo's thumbnail is made once.
    """
    from pytest_metatrace.data.thumbs import thumbnail_uri

    rows = dict(zip(("a", "b"), pairs.sides(dataset), strict=True))
    side_of = {pairs.cameras[0]: rows["a"], pairs.cameras[1]: rows["b"]}
    thumbs: dict[str, str] = {}

    def thumb(camera: str, subject: int) -> str:
        item = dataset.items[int(side_of[camera][subject])]
        if item.id not in thumbs:
            thumbs[item.id] = thumbnail_uri(item)
        return item.id

    failures = []
    for setting in ("same", "different"):
        scores = getattr(result, setting)
        retrieved_camera = result.query_camera if setting == "same" else result.other_camera
        missed = [i for i, hit in enumerate(scores.recall_at_1) if not hit]
        for i in sorted(missed, key=lambda k: (scores.margin[k], k))[:limit]:
            j = scores.hardest[i]
            failures.append(
                {
                    "setting": setting,
                    "subject": pairs.subjects[i],
                    "query": thumb(result.query_camera, i),
                    "positive": thumb(result.other_camera, i),
                    "retrieved": thumb(retrieved_camera, j),
                    "retrieved_subject": pairs.subjects[j],
                    "retrieved_camera": retrieved_camera,
                    "rank": scores.rank[i],
                    "positive_similarity": scores.positive[i],
                    "retrieved_similarity": scores.positive[i] - scores.margin[i],
                }
            )
    return {"thumbs": thumbs, "queries": failures}
