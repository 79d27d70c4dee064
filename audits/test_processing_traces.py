"""Processing traces: can a linear probe read the processing back from the embedding? (Sec. 3.1)

For each parameter group (JPEG 6 classes, sharpening 3, resizing 3,
interpolation 4), every training image is processed with one class drawn
uniformly at random, every test image with every class; a linear probe
(PROTOCOL section 4: SGD, 30-trial search, 100 epochs, cosine decay) is
trained on the embeddings and scored on the test set, averaged over 10 seeds
of the draw (hyper-parameters tuned on the first).

The gate: ``probe.<group>``, an accuracy (``0.6``) or a gain over chance
(``chance+0.3``); it fails when the lower end of the accuracy's 95% interval
is above it. Defaults: see :data:`pytest_metatrace.gating.DEFAULT_THRESHOLDS`.
"""

from __future__ import annotations

import pytest

from pytest_metatrace import PARAMETER_GROUPS, Record
from pytest_metatrace.analysis.probe import LinearProbe, ProbeInputError
from pytest_metatrace.analysis.processing_probe import run_processing_probe

#: --metatrace-probe-mode -> LinearProbe mode
_MODES = {"protocol": "sgd", "lbfgs": "lbfgs"}


@pytest.mark.parametrize("group", list(PARAMETER_GROUPS))
def test_processing_trace(
    metatrace_encoder,
    metatrace_dataset,
    metatrace_embeddings,
    metatrace_record,
    metatrace_settings,
    group,
):
    spec = PARAMETER_GROUPS[group]
    classes = list(spec.classes)
    settings = metatrace_settings
    seed = settings["seed"]
    train = metatrace_embeddings.many(metatrace_dataset, "train", classes)
    test = metatrace_embeddings.many(metatrace_dataset, "test", classes)

    probe = LinearProbe(
        mode=_MODES[settings["probe-mode"]],
        epochs=settings["probe-epochs"],
        n_trials=settings["probe-trials"],
        seed=seed,
        device=settings["device"],
    )
    try:
        result = run_processing_probe(
            train, test, classes, probe=probe, seeds=settings["probe-seeds"], base_seed=seed
        )
        problem = None
    except ProbeInputError as exc:  # e.g. a dataset too small for the validation split
        problem = f"cannot run the {spec.title} probe on {metatrace_dataset.id}: {exc}"
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    search = result.search.to_dict() if result.search is not None else None
    record = Record(
        audit="processing_probe",
        metric="top1",
        value=result.top1_mean,
        encoder=metatrace_encoder.id,
        dataset=metatrace_dataset.id,
        parameter=group,
        interval=result.interval.to_dict(),
        chance=result.chance,
        details={
            "classes": classes,
            "top1_mean": result.top1_mean,
            "top1_std": result.top1_std,
            "top1_per_seed": result.top1_per_seed,
            "mean_per_class_mean": result.mean_per_class_mean,
            "mean_per_class_std": result.mean_per_class_std,
            "per_class_accuracy": dict(zip(classes, result.per_class_accuracy, strict=True)),
            "confusion": result.confusion.tolist(),
            "hyperparameters": result.hyperparameters,
            "search": [
                {"val_top1": t["val_top1"], **t["params"]} for t in (search or {}).get("trials", [])
            ],
            "search_method": (search or {}).get("method"),
            "n_train": result.n_train,
            "n_test_images": result.n_test_images,
            "n_test_samples": result.n_test_samples,
            "seeds": result.seeds,
            "mode": result.mode,
            "std_ddof": result.std_ddof,
            "device": result.device,
            "wall_time_s": result.wall_time_s,
        },
        provenance={"processing": classes, "probe": result.settings},
    )
    metatrace_record.gate(record, f"probe.{group}", what=f"{spec.title} trace")
    metatrace_record.assert_gates()
