"""The cross-camera retrieval audit's data: the pairs fixture's loader, the failed-query gallery.

Kept out of the audit module so that the audit reads like a test.
"""

from __future__ import annotations

from typing import Any

from pytest_metatrace.audits.cross_camera_retrieval.analysis import QueryCameraResult
from pytest_metatrace.data.dataset import Dataset
from pytest_metatrace.data.pairs import PairedDataset
from pytest_metatrace.spec import DataContext

__all__ = ["FAILURES_SHOWN", "failure_gallery", "load_pairs_data"]

#: Failed queries shown per query camera type and setting (the smallest margins first).
FAILURES_SHOWN = 4


def load_pairs_data(context: DataContext) -> PairedDataset:
    """The ``metatrace_pairs`` fixture's loader: the pairs of ``--metatrace-pairs``.

    Subjects without exactly one usable photo per camera type are left out and
    named (the plugin prints ``incomplete`` with the skipped files).
    """
    from pytest_metatrace.audits.cross_camera_retrieval.spec import RetrievalSettings
    from pytest_metatrace.data.pairs import load_pairs, parse_camera_mapping

    own = context.settings.of(RetrievalSettings)
    return load_pairs(
        own.pairs,
        cache_dir=context.cache_dir,
        mapping=parse_camera_mapping(own.pairs_camera),
        max_pixels=context.settings.max_pixels,
        progress=context.progress,
        crop=own.pairs_crop,
    )


def failure_gallery(
    pairs: PairedDataset, dataset: Dataset, result: QueryCameraResult, limit: int = FAILURES_SHOWN
) -> dict[str, Any]:
    """Failed queries of both settings: query, true pair and wrongly retrieved photo, as thumbnails.

    Thumbnails show what the encoder was given (the crop, under the crop
    protocol); each photo's thumbnail is made once. At most ``limit`` per
    setting are shown (smallest margins first); ``missed`` counts them all.
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
    counts: dict[str, int] = {}
    for setting in ("same", "different"):
        scores = getattr(result, setting)
        retrieved_camera = result.query_camera if setting == "same" else result.other_camera
        missed = [i for i, hit in enumerate(scores.recall_at_1) if not hit]
        counts[setting] = len(missed)
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
    return {"thumbs": thumbs, "queries": failures, "missed": counts, "limit": limit}
