"""Session state: what every process learned, gathered on the controller.

Workers (or the single process) attach records, encoder and dataset
descriptions and extraction counts to each test's ``user_properties`` as JSON;
pytest-xdist ships reports to the controller, where
:meth:`MetatraceSession.collect` reads them back. So the controller needs no
encoder or dataset of its own, and the same code path serves one process and
many. At the end the controller assembles one document - the JSON of
``--metatrace-json`` - and renders the HTML report from it.

Stdlib only at import (plugin load).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from pytest_metatrace.results import SCHEMA_VERSION, jsonable
from pytest_metatrace.summary import failure_counts

__all__ = [
    "PROP_DATASET",
    "PROP_ENCODER",
    "PROP_EXTRACT",
    "PROP_RECORD",
    "PROP_USED",
    "MetatraceSession",
]

PROP_RECORD = "metatrace_record"
PROP_ENCODER = "metatrace_encoder"
PROP_DATASET = "metatrace_dataset"
PROP_EXTRACT = "metatrace_extract"
PROP_USED = "metatrace_used"  #: the test used a metatrace fixture (so a report is due)

_VERSION_PACKAGES = {
    "pytest_metatrace": "pytest-metatrace",
    "pytest": "pytest",
    "torch": "torch",
    "torchvision": "torchvision",
    "timm": "timm",
    "open_clip": "open_clip_torch",
    "transformers": "transformers",
    "onnxruntime": "onnxruntime",
    "pillow": "pillow",
    "numpy": "numpy",
    "scikit-learn": "scikit-learn",
}


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that change results (None if absent)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for key, dist in _VERSION_PACKAGES.items():
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = None
    return out


@dataclass
class ExtractTotals:
    """Embedding counts summed over processes."""

    computed: int = 0
    reused_sum: int = 0  #: "reused" summed over processes (counts shared work twice)
    images_decoded: int = 0
    wall_s: float = 0.0
    needed: dict[str, int] = field(default_factory=dict)  #: see ``ExtractStats.needed``
    analyses_computed: int = 0  #: probes, sweeps and maps computed (analysis.memo)
    analyses_reused: int = 0  #: ... and read back from the analysis cache

    def add(self, data: Mapping[str, Any]) -> None:
        """Add one process's delta."""
        self.analyses_computed += int(data.get("analyses_computed", 0))
        self.analyses_reused += int(data.get("analyses_reused", 0))
        self.computed += int(data.get("computed", 0))
        self.reused_sum += int(data.get("reused", 0))
        self.images_decoded += int(data.get("images_decoded", 0))
        self.wall_s += float(data.get("wall_s", 0.0))
        for key, value in data.items():
            if key.startswith("needed:"):
                self.needed[key] = max(self.needed.get(key, 0), int(value))

    @property
    def reused(self) -> int:
        """Embeddings read from the cache, each counted once over all processes.

        Under pytest-xdist a worker that waited for another one's extraction
        finds its rows present; summed, they would count twice (once computed,
        once reused). Every process reports which (store, dataset, view)
        it needed and how many embeddings that covers: those, once each, minus
        what was computed, came from the cache.
        """
        if not self.needed:
            return self.reused_sum
        return max(0, sum(self.needed.values()) - self.computed)


@dataclass
class MetatraceSession:
    """Everything the report needs, gathered from test reports."""

    config: pytest.Config
    started: float = field(default_factory=time.time)
    records: list[dict[str, Any]] = field(default_factory=list)
    encoders: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    tests: dict[str, dict[str, Any]] = field(default_factory=dict)
    extract: ExtractTotals = field(default_factory=ExtractTotals)
    choices: list[dict[str, str]] = field(default_factory=list)
    report_path: Path | None = None
    json_path: Path | None = None
    write_errors: list[str] = field(default_factory=list)

    def collect(self, report: pytest.TestReport) -> None:
        """Read one test report (any phase) on the controller."""
        entry = self.tests.setdefault(
            report.nodeid,
            {"nodeid": report.nodeid, "outcome": "passed", "duration_s": 0.0, "message": None},
        )
        entry["duration_s"] += float(getattr(report, "duration", 0.0) or 0.0)
        if report.failed:
            entry["outcome"] = "failed" if report.when == "call" else "error"
            entry["message"] = _short_message(report)
        elif report.skipped and entry["outcome"] == "passed":
            entry["outcome"] = "skipped"
            entry["message"] = _short_message(report)
        if report.when != "teardown":
            return
        # user_properties accumulate over the phases; teardown holds them all.
        for name, value in report.user_properties:
            if not isinstance(value, str):
                continue
            if name == PROP_RECORD:
                self.records.append(json.loads(value))
            elif name == PROP_ENCODER:
                enc = json.loads(value)
                self.encoders.setdefault(enc.get("fingerprint", enc.get("id", "?")), enc)
            elif name == PROP_DATASET:
                ds = json.loads(value)
                self.datasets.setdefault(
                    f"{ds.get('fingerprint')}:{json.dumps(ds.get('split'), sort_keys=True)}", ds
                )
            elif name == PROP_EXTRACT:
                self.extract.add(json.loads(value))
            elif name == PROP_USED:
                entry["uses_metatrace"] = True

    def outcomes(self) -> dict[str, int]:
        """Counts of test outcomes."""
        counts = {"passed": 0, "failed": 0, "skipped": 0, "error": 0}
        for entry in self.tests.values():
            counts[entry["outcome"]] = counts.get(entry["outcome"], 0) + 1
        return counts

    def document(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The complete JSON document (``--metatrace-json``, input of the report)."""
        finished = time.time()
        device = "cpu"
        if "torch" in sys.modules:  # only describe CUDA when torch was used anyway
            torch = sys.modules["torch"]
            if torch.cuda.is_available():
                device = f"cuda: {torch.cuda.get_device_name(0)}"
        doc: dict[str, Any] = jsonable(
            {
                "schema_version": SCHEMA_VERSION,
                "run": {
                    "started": _iso(self.started),
                    "finished": _iso(finished),
                    "duration_s": finished - self.started,
                    "invocation": " ".join(["pytest", *self.config.invocation_params.args]),
                    "rootdir": str(self.config.rootpath),
                    "outcomes": self.outcomes(),
                    "failures": failure_counts(self.records),
                    "tests": list(self.tests.values()),
                    "options": dict(options),
                    "versions": package_versions(),
                    "host": {
                        "platform": platform.platform(),
                        "cpus": os.cpu_count(),
                        "device": device,
                    },
                    "embeddings": {
                        "computed": self.extract.computed,
                        "reused": self.extract.reused,
                        "images_decoded": self.extract.images_decoded,
                        "extraction_s": self.extract.wall_s,
                    },
                    "analyses": {
                        "computed": self.extract.analyses_computed,
                        "reused": self.extract.analyses_reused,
                    },
                },
                "choices": self.choices,
                "encoders": list(self.encoders.values()),
                "datasets": list(self.datasets.values()),
                "records": self.records,
            }
        )
        return doc


def _iso(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc).isoformat(timespec="seconds")


def _short_message(report: pytest.TestReport) -> str | None:
    longrepr = report.longrepr
    if longrepr is None:
        return None
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # skip: (path, lineno, reason)
        return str(longrepr[2])
    text = str(getattr(report, "longreprtext", "") or longrepr)
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    # Gate failures are raised with pytrace=False: the whole text is the message.
    return "\n".join(lines[-12:]) if lines else None
