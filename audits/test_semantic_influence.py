"""Semantic influence: does processing move kNN semantic predictions? (paper Sec. 4.1)

For each parameter group, a kNN classifier labels test images processed with
p_i against five training databases: all-same (every image under p_i),
all-diff (under p_j), pos-same (same-label images under p_i, the others under
p_j), neg-same (the reverse) and uniform (a random class per image), averaged
over every ordered pair (p_i, p_j) and 10 seeds for uniform. The gates are on
the two gaps pos-same − all-same and all-same − neg-same: a large gap means
an image's processing pulls it towards images processed the same way,
whatever they show.

Thresholds: ``knn.<group>.pos_same_gap`` and ``knn.<group>.neg_same_gap``
(default 0.05, i.e. 5 points).
"""

from __future__ import annotations

import pytest

from pytest_metatrace import PARAMETER_GROUPS, Record
from pytest_metatrace.analysis.knn import KnnInfluence, neighbor_gallery, similarity_distributions
from pytest_metatrace.data.thumbs import thumbnail_uri

#: Queries shown in the Fig. 9 gallery per parameter group.
GALLERY_QUERIES = 3

#: The engine's Fig. 2 group names -> the report's.
_FIG2 = {
    "same_label_same_processing": "same_sem_same_meta",
    "same_label_diff_processing": "same_sem_diff_meta",
    "diff_label_same_processing": "diff_sem_same_meta",
    "diff_label_diff_processing": "diff_sem_diff_meta",
}


def _gallery(dataset, split, gallery, seed):
    """Fig. 9 data in the report's schema, thumbnails deduplicated by (image, processing)."""
    thumbs: dict[str, str] = {}

    def thumb(index: int, processing: str) -> str:
        item = dataset.items[index]
        key = f"{item.id}|{processing}"
        if key not in thumbs:
            thumbs[key] = thumbnail_uri(item, processing, seed=seed)
        return key

    queries = []
    for q in gallery["queries"]:
        entry = {
            "thumb": thumb(int(split.test[q["test_index"]]), q["processing"]),
            "label": dataset.classes[q["label"]],
            "processing": q["processing"],
            "setups": {},
        }
        for setup, data in q["setups"].items():
            entry["setups"][setup] = [
                {
                    "thumb": thumb(int(split.train[n["train_index"]]), n["processing"]),
                    "label": dataset.classes[n["label"]],
                    "processing": n["processing"],
                    "match": bool(n["match"]),
                    "similarity": float(n["similarity"]),
                }
                for n in data["neighbors"]
            ]
        queries.append(entry)
    return {"pair": gallery["pair"], "thumbs": thumbs, "queries": queries}


@pytest.mark.parametrize("group", list(PARAMETER_GROUPS))
def test_semantic_influence(
    metatrace_encoder,
    metatrace_dataset,
    metatrace_embeddings,
    metatrace_record,
    metatrace_settings,
    group,
):
    spec = PARAMETER_GROUPS[group]
    classes = list(spec.classes)
    seed = metatrace_settings["seed"]
    device = metatrace_settings["device"]
    emb = metatrace_embeddings
    train = emb.many(metatrace_dataset, "train", classes)
    test = emb.many(metatrace_dataset, "test", classes)
    y_train = emb.labels(metatrace_dataset, "train")
    y_test = emb.labels(metatrace_dataset, "test")
    split = emb.split(metatrace_dataset)

    result = KnnInfluence(
        k=metatrace_settings["knn-k"], seeds=range(seed, seed + 10), device=device
    ).evaluate(train, y_train, test, y_test, classes)
    intervals = result.intervals(seed=seed)
    dist = similarity_distributions(
        train, y_train, test, y_test, classes, query_class=classes[0], device=device
    ).to_dict()
    gallery = neighbor_gallery(
        train,
        y_train,
        test,
        y_test,
        classes,
        pair=(classes[0], classes[-1]),
        k=10,
        n_queries=GALLERY_QUERIES,
        device=device,
    ).to_dict()

    summary = result.to_dict()
    common = {
        "encoder": metatrace_encoder.id,
        "dataset": metatrace_dataset.id,
        "parameter": group,
    }
    provenance = {"processing": classes, "uniform_draw": summary["uniform_draw"]}
    metatrace_record(
        Record(
            audit="semantic_influence",
            metric="knn_accuracy",
            value=result.accuracy("all_same"),
            interval=intervals["all_same"].to_dict(),
            details={
                "k": result.k,
                "classes": classes,
                "setups": {
                    name: {
                        "accuracy": summary["setups"][name]["accuracy"],
                        "interval": {
                            "low": intervals[name].low,
                            "high": intervals[name].high,
                        },
                        "per_pair": summary["setups"][name]["per_pair"],
                    }
                    for name in summary["setups"]
                },
                "similarity_distributions": {
                    "query_class": dist["query_class"],
                    "bin_edges": dist["edges"],
                    "groups": {_FIG2[name]: counts for name, counts in dist["counts"].items()},
                    "means": {_FIG2[name]: mean for name, mean in dist["mean"].items()},
                },
                "gallery": _gallery(metatrace_dataset, split, gallery, seed),
                "n_train": result.n_train,
                "n_test": result.n_test,
                "seeds": list(result.seeds),
            },
            provenance=dict(provenance),
            **common,
        )
    )
    for metric, what in (
        ("pos_same_gap", "pull towards same-processing positives (pos-same − all-same)"),
        ("neg_same_gap", "pull towards same-processing negatives (all-same − neg-same)"),
    ):
        metatrace_record.gate(
            Record(
                audit="semantic_influence",
                metric=metric,
                value=getattr(result, metric),
                interval=intervals[metric].to_dict(),
                provenance=dict(provenance),
                **common,
            ),
            f"knn.{group}.{metric}",
            what=f"{spec.title} {what}",
        )
    metatrace_record.assert_gates()
