"""Typed ``details`` of the processing-probe records (``to_dict`` / ``from_dict``).

Field names are the JSON keys; ``from_dict`` accepts older and hand-written
documents (a missing field takes its empty value). Neither torch nor numpy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pytest_metatrace.analysis.schema import as_float, as_floats, as_int, as_map, as_seq, as_str

__all__ = ["ProbeDetails", "SearchPoint"]


@dataclass(frozen=True)
class SearchPoint:
    """One trial of the probe's hyper-parameter search."""

    val_top1: float | None  #: validation top-1 accuracy
    lr: float | None = None  #: learning rate (sgd)
    weight_decay: float | None = None  #: weight decay (sgd)
    C: float | None = None  #: inverse regularization (lbfgs)


@dataclass(frozen=True)
class ProbeDetails:
    """``details`` of a ``processing_probe`` / ``top1`` record (docs/protocol.md §4)."""

    classes: list[str] = field(default_factory=list)  #: the group's classes, label k = classes[k]
    top1_mean: float | None = None  #: mean top-1 over seeds
    top1_std: float | None = None  #: std of top-1 over seeds (``std_ddof``)
    top1_per_seed: list[float | None] = field(default_factory=list)  #: top-1 per seed
    mean_per_class_mean: float | None = None  #: mean per-class accuracy, mean over seeds
    mean_per_class_std: float | None = None  #: its std over seeds
    per_class_accuracy: dict[str, float | None] = field(default_factory=dict)  #: by class
    confusion: list[list[float | None]] = field(default_factory=list)  #: (K, K) rows true
    hyperparameters: dict[str, float] = field(default_factory=dict)  #: of the final fits
    search: list[SearchPoint] = field(default_factory=list)  #: every search trial
    search_method: str | None = None  #: how the trials were placed
    n_train: int | None = None  #: training images
    n_test_images: int | None = None  #: test images
    n_test_samples: int | None = None  #: K x test images, scored per seed
    seeds: list[int] = field(default_factory=list)  #: seeds of the training draws
    mode: str | None = None  #: ``sgd`` (protocol) or ``lbfgs``
    std_ddof: int | None = None  #: 0 population std, 1 sample std
    device: str | None = None  #: torch device of the probes
    wall_time_s: float | None = None  #: seconds for fit and evaluate

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; search points keep only the parameters they have."""
        out = asdict(self)
        out["search"] = [
            {k: v for k, v in asdict(p).items() if v is not None or k == "val_top1"}
            for p in self.search
        ]
        return out

    @classmethod
    def from_dict(cls, data: Any) -> ProbeDetails:
        """Rebuild from a record's ``details``; tolerant of missing or malformed fields."""
        d = as_map(data)
        hyper = {str(k): v for k, v in as_map(d.get("hyperparameters")).items()}
        return cls(
            classes=[str(c) for c in as_seq(d.get("classes"))],
            top1_mean=as_float(d.get("top1_mean")),
            top1_std=as_float(d.get("top1_std")),
            top1_per_seed=as_floats(d.get("top1_per_seed")),
            mean_per_class_mean=as_float(d.get("mean_per_class_mean")),
            mean_per_class_std=as_float(d.get("mean_per_class_std")),
            per_class_accuracy={
                str(k): as_float(v) for k, v in as_map(d.get("per_class_accuracy")).items()
            },
            confusion=[as_floats(row) for row in as_seq(d.get("confusion"))],
            hyperparameters={k: v for k, v in hyper.items() if as_float(v) is not None},
            search=[
                SearchPoint(
                    val_top1=as_float(t.get("val_top1")),
                    lr=as_float(t.get("lr")),
                    weight_decay=as_float(t.get("weight_decay")),
                    C=as_float(t.get("C")),
                )
                for t in map(as_map, as_seq(d.get("search")))
            ],
            search_method=d.get("search_method")
            if isinstance(d.get("search_method"), str)
            else None,
            n_train=as_int(d.get("n_train")),
            n_test_images=as_int(d.get("n_test_images")),
            n_test_samples=as_int(d.get("n_test_samples")),
            seeds=[s for s in (as_int(v) for v in as_seq(d.get("seeds"))) if s is not None],
            mode=as_str(d.get("mode")),
            std_ddof=as_int(d.get("std_ddof")),
            device=as_str(d.get("device")),
            wall_time_s=as_float(d.get("wall_time_s")),
        )
