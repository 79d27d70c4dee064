"""The fixtures audits use: encoder, dataset, embeddings and the recorder.

``metatrace_encoder`` and ``metatrace_dataset`` are session-scoped and
parametrized by the plugin (one instance per ``--metatrace-encoder`` /
``--metatrace-data``), so pytest sets each encoder up once and tears it down
before the next, keeping one model in (GPU) memory at a time. Heavy imports
happen inside the fixtures, never at plugin load.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from pytest_metatrace.baseline import BaselineComparison, gate_against_baseline
from pytest_metatrace.gate_keys import marker_thresholds, session_thresholds
from pytest_metatrace.gating import (
    ThresholdError,
    ThresholdSpec,
    evaluate_gate,
    resolve_threshold,
)
from pytest_metatrace.ids import dataset_ids, encoder_ids
from pytest_metatrace.options import get_option
from pytest_metatrace.results import GateOutcome, Record
from pytest_metatrace.session import PROP_DATASET, PROP_ENCODER, PROP_RECORD
from pytest_metatrace.settings import Settings, get_settings
from pytest_metatrace.state import STATE_KEY, ProcessState, cache_dir, make_progress
from pytest_metatrace.summary import junit_property

if TYPE_CHECKING:
    from pytest_metatrace.data import Dataset
    from pytest_metatrace.embeddings import Embeddings
    from pytest_metatrace.encoders import Encoder

__all__ = [
    "Recorder",
    "metatrace_dataset",
    "metatrace_embeddings",
    "metatrace_encoder",
    "metatrace_record",
    "metatrace_settings",
]


def _state(config: pytest.Config) -> ProcessState:
    return config.stash[STATE_KEY]


def _fail(message: str) -> NoReturn:
    """Fail with ``message`` alone: no traceback, no "during handling of..." chain.

    Called from an ``except`` block; ``from None`` drops the caught error, whose
    text is already in ``message``.
    """
    raise pytest.fail.Exception(message, pytrace=False) from None


@pytest.fixture(scope="session")
def metatrace_settings(pytestconfig: pytest.Config) -> Settings:
    """Every ``--metatrace-*`` option as a frozen :class:`~pytest_metatrace.settings.Settings`.

    Attributes are the option names with ``_`` (``metatrace_settings.knn_k``),
    resolved once per session: command line > ini > environment > default.
    """
    return get_settings(pytestconfig)


@pytest.fixture(scope="session")
def metatrace_encoder(request: pytest.FixtureRequest) -> Iterator[Encoder]:
    """The encoder under audit, loaded from one ``--metatrace-encoder`` spec."""
    from pytest_metatrace.encoders import EncoderSpecError, create_encoder

    config = request.config
    spec = getattr(request, "param", None) or get_option(config, "encoder")[0]
    state = _state(config)
    try:
        encoder = create_encoder(
            spec,
            device=get_option(config, "device"),
            precision=get_option(config, "precision"),
            resize_policy=get_option(config, "resize-policy"),
            registry=state.encoder_registry(config),
            cache_dir=cache_dir(config) / "weights",
        )
    except EncoderSpecError as exc:
        _fail(f"cannot load encoder {spec!r}: {exc}")
    encoder.id = encoder_ids(get_option(config, "encoder")).get(spec, encoder.id)
    state.encoders[encoder.id] = encoder.describe()
    try:
        yield encoder
    finally:
        emb = state.embeddings.pop(encoder.id, None)
        if emb is not None:
            state.retire(emb)
            emb.close()
        encoder.close()


@pytest.fixture(scope="session")
def metatrace_dataset(request: pytest.FixtureRequest) -> Dataset:
    """The dataset under audit, from one ``--metatrace-data`` spec."""
    from pytest_metatrace.data import DatasetError, load_dataset

    config = request.config
    spec = getattr(request, "param", None) or get_option(config, "data")[0]
    state = _state(config)
    try:
        dataset = load_dataset(
            spec,
            cache_dir=cache_dir(config),
            max_pixels=get_option(config, "max-pixels"),
            registry=state.dataset_registry(config),
            progress=make_progress(config),
        )
        split = dataset.split(
            seed=get_option(config, "seed"), test_fraction=get_option(config, "test-fraction")
        )
    except DatasetError as exc:
        _fail(f"cannot load dataset {spec!r}: {exc}")
    dataset.id = dataset_ids(get_option(config, "data")).get(spec, dataset.id)
    state.datasets[dataset.id] = dataset.describe(split)
    if dataset.skipped:
        shown = "; ".join(f"{s.path}: {s.reason}" for s in dataset.skipped[:5])
        more = (
            f" (and {len(dataset.skipped) - 5} more, listed in the report)"
            if len(dataset.skipped) > 5
            else ""
        )
        make_progress(config).write(
            f"metatrace: dataset {dataset.id}: skipped {len(dataset.skipped)} image(s): "
            f"{shown}{more}"
        )
    if dataset.ignored_files:
        kinds = ", ".join(f"{ext} x{n}" for ext, n in dataset.ignored_extensions.items())
        make_progress(config).write(
            f"metatrace: dataset {dataset.id}: ignored {dataset.ignored_files} file(s) without an "
            f"image extension ({kinds}), e.g. {', '.join(dataset.ignored_examples)}"
        )
    return dataset


@pytest.fixture(scope="session")
def metatrace_embeddings(metatrace_encoder: Encoder, request: pytest.FixtureRequest) -> Embeddings:
    """``embeddings(dataset, split="all", processing="jpeg95_444", masked=False) -> (n, dim)``.

    Cached on disk; missing embeddings are extracted on first use.
    """
    from pytest_metatrace.embeddings import Embeddings

    config = request.config
    state = _state(config)
    emb = state.embeddings.get(metatrace_encoder.id)
    if emb is None:
        workers = get_option(config, "workers")
        if get_option(config, "store") is not None or get_option(config, "ray") is not None:
            _check_ray_extra(get_option(config, "ray") is not None)
        emb = Embeddings(
            metatrace_encoder,
            cache_dir=cache_dir(config),
            seed=get_option(config, "seed"),
            test_fraction=get_option(config, "test-fraction"),
            mask_ratio=get_option(config, "mask-ratio"),
            batch_size=get_option(config, "batch-size"),
            num_workers=None if workers < 0 else workers,
            max_pixels=get_option(config, "max-pixels"),
            progress=make_progress(config),
            store_url=get_option(config, "store"),
            ray_address=get_option(config, "ray"),
            ray_timeout=get_option(config, "ray-timeout"),
            encoder_factory=_encoder_factory(config, metatrace_encoder),
        )
        state.embeddings[metatrace_encoder.id] = emb
    return emb


def _check_ray_extra(need_ray: bool) -> None:
    """Fail with the install command when --metatrace-store/--metatrace-ray lack their extra."""
    import importlib.util

    wanted = ["pyarrow", "fsspec", *(["ray"] if need_ray else [])]
    missing = [m for m in wanted if importlib.util.find_spec(m) is None]
    if missing:
        _fail(
            f"--metatrace-store / --metatrace-ray need {', '.join(missing)}: "
            "pip install 'pytest-metatrace[ray]'"
        )


def _encoder_factory(config: pytest.Config, encoder: Encoder) -> Callable[[], Encoder] | None:
    """How a Ray actor rebuilds ``encoder`` (same spec and options), or None without Ray."""
    if get_option(config, "ray") is None:
        return None
    import functools

    from pytest_metatrace.encoders import create_encoder

    return functools.partial(
        create_encoder,
        encoder.spec,
        device=encoder.device.type,
        precision=encoder.precision,
        memory_format=encoder.memory_format,
        resize_policy=get_option(config, "resize-policy"),
        registry=_state(config).encoder_registry(config),
        cache_dir=cache_dir(config) / "weights",
    )


class Recorder:
    """Stores records of the current test and gates them against thresholds."""

    def __init__(self, item: pytest.Item, state: ProcessState) -> None:
        self._item = item
        self._state = state
        self.records: list[Record] = []
        self.failures: list[GateOutcome | BaselineComparison] = []

    def _attach(self, name: str, payload: dict[str, Any]) -> None:
        self._item.user_properties.append((name, json.dumps(payload, sort_keys=True)))

    def __call__(self, record: Record) -> Record:
        """Record ``record`` (with provenance) for the report and ``--metatrace-json``."""
        _check_interval(record)
        _check_scores(record)
        enc = self._state.encoders.get(record.encoder)
        ds = self._state.datasets.get(record.dataset)
        # Descriptions travel once per process; the controller deduplicates.
        if enc is not None and record.encoder not in self._state.sent_encoders:
            self._attach(PROP_ENCODER, enc)
            self._state.sent_encoders.add(record.encoder)
        if ds is not None and record.dataset not in self._state.sent_datasets:
            self._attach(PROP_DATASET, ds)
            self._state.sent_datasets.add(record.dataset)
        prov = {
            "nodeid": self._item.nodeid,
            "worker": self._state.worker_id,
            "encoder_fingerprint": enc.get("fingerprint") if enc else None,
            "dataset_fingerprint": ds.get("fingerprint") if ds else None,
            "seed": get_option(self._item.config, "seed"),
            "versions": self._state.versions(),
        }
        record.provenance = {**prov, **record.provenance}
        self._attach(PROP_RECORD, record.to_dict())
        self._item.user_properties.append(junit_property(record))
        self.records.append(record)
        return record

    def _threshold_sources(self) -> list[tuple[str, dict[str, ThresholdSpec]]]:
        """Command line > marker > ini > default; all but the markers parsed once per session."""
        cli, ini, defaults = session_thresholds(self._item.config)
        marker: dict[str, ThresholdSpec] = {}
        try:
            for mark in reversed(list(self._item.iter_markers("metatrace_threshold"))):
                marker.update(marker_thresholds(mark))
        except ThresholdError as exc:
            raise pytest.UsageError(str(exc)) from None
        return [("command line", cli), ("marker", marker), ("ini", ini), ("default", defaults)]

    def gate(self, record: Record, key: str, *, what: str) -> GateOutcome | None:
        """Resolve ``key``'s threshold, attach the outcome to ``record`` and record it.

        Does not fail the test by itself; call :meth:`assert_gates` after the
        last gate so that one test reports all of its failing gates at once.
        """
        resolved = resolve_threshold(key, self._threshold_sources())
        try:
            record.gate = evaluate_gate(record, key, resolved, what=what)
        except ThresholdError as exc:
            raise pytest.UsageError(f"{key}: {exc}") from None
        compared = gate_against_baseline(self._item.config, record, key, what=what)
        self(record)
        if record.gate is not None and not record.gate.passed:
            self.failures.append(record.gate)
        if compared is not None and not compared.passed:
            self.failures.append(compared)
        return record.gate

    def assert_gates(self) -> None:
        """Fail the test (without a traceback) if any gate of it failed."""
        if self.failures:
            pytest.fail("\n\n".join(g.message for g in self.failures), pytrace=False)


def _check_interval(record: Record) -> None:
    """Refuse a value outside its own interval; absorb float round-off at the ends.

    The point estimate and the bootstrap are computed by different sums (e.g.
    mean over seeds vs mean over images), so they can differ in the last bit.
    """
    if record.interval is None:
        return
    low, high = float(record.interval["low"]), float(record.interval["high"])
    value = float(record.value)
    tol = 1e-9 * max(1.0, abs(value))
    if not low - tol <= value <= high + tol:
        raise ValueError(
            f"record {record.audit}/{record.metric} of {record.encoder} on {record.dataset}: "
            f"value {value!r} lies outside its interval [{low!r}, {high!r}]; the audit computed "
            "them from different data"
        )
    record.interval = {**record.interval, "low": min(low, value), "high": max(high, value)}


def _check_scores(record: Record) -> None:
    """Refuse ``score_ids`` that do not pair one-to-one with ``scores``."""
    if record.score_ids is None:
        return
    n_scores = None if record.scores is None else len(record.scores)
    if n_scores != len(record.score_ids):
        raise ValueError(
            f"record {record.audit}/{record.metric} of {record.encoder} on {record.dataset}: "
            f"{len(record.score_ids)} score_ids for {n_scores or 'no'} scores; give one id per "
            "score (the test image it was measured on), or no ids"
        )


@pytest.fixture
def metatrace_record(request: pytest.FixtureRequest) -> Recorder:
    """Record results with ``metatrace_record(Record(...))``; gate them with ``.gate()``."""
    return Recorder(request.node, _state(request.config))
