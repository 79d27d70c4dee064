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
from pytest_metatrace.results import GateOutcome, Record
from pytest_metatrace.session import PROP_DATASET, PROP_ENCODER, PROP_RECORD
from pytest_metatrace.settings import Settings, get_settings
from pytest_metatrace.spec import DataContext, DataSpec
from pytest_metatrace.state import STATE_KEY, ProcessState, cache_dir, make_progress
from pytest_metatrace.summary import junit_property

if TYPE_CHECKING:
    from pytest_metatrace.data import Dataset
    from pytest_metatrace.embeddings import Embeddings
    from pytest_metatrace.encoders import Encoder

__all__ = [
    "Recorder",
    "announce_data",
    "data_fixture",
    "metatrace_dataset",
    "metatrace_embeddings",
    "metatrace_encoder",
    "metatrace_record",
    "metatrace_settings",
]


def _state(config: pytest.Config) -> ProcessState:
    return config.stash[STATE_KEY]


def _fail(message: str, short: str) -> NoReturn:
    """Fail with ``message`` alone: no traceback, no "during handling of..." chain.

    Called from an ``except`` block; ``from None`` drops the caught error, whose
    text is already in ``message``. A session fixture's error is re-raised by
    pytest in every test that needs it: the plugin shows ``message`` with the
    first of them and ``short`` (plus where the full message is) with the others.
    """
    exc = pytest.fail.Exception(message, pytrace=False)
    exc.metatrace_clear = True  # type: ignore[attr-defined]
    exc.metatrace_short = short  # type: ignore[attr-defined]
    raise exc from None


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
    settings = get_settings(config)
    spec = getattr(request, "param", None) or settings.encoder[0]
    state = _state(config)
    try:
        encoder = create_encoder(
            spec,
            device=settings.device,
            precision=settings.precision,
            resize_policy=settings.resize_policy,
            registry=state.encoder_registry(config),
            cache_dir=cache_dir(config) / "weights",
        )
    except EncoderSpecError as exc:
        _fail(f"cannot load encoder {spec!r}: {exc}", f"cannot load encoder {spec!r}")
    encoder.id = encoder_ids(settings.encoder).get(spec, encoder.id)
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
    settings = get_settings(config)
    spec = getattr(request, "param", None) or settings.data[0]
    state = _state(config)
    registry = state.dataset_registry(config)
    named = settings.given("data", spec)  # a registered name wins over a folder of that name
    try:
        dataset = load_dataset(
            named if registry.get(named) is not None else spec,
            cache_dir=cache_dir(config),
            max_pixels=settings.max_pixels,
            registry=registry,
            progress=make_progress(config),
        )
        split = dataset.split(seed=settings.seed, test_fraction=settings.test_fraction)
    except (DatasetError, OSError) as exc:
        _fail(f"cannot load dataset {spec!r}: {exc}", f"cannot load dataset {spec!r}")
    dataset.id = dataset_ids(settings.data).get(spec, dataset.id)
    state.datasets[dataset.id] = dataset.describe(split)
    announce_data(config, dataset)
    return dataset


def announce_data(config: pytest.Config, data: Any) -> None:
    """Name in the terminal what a loaded dataset (or paired set) left out, and why.

    The same lists reach the report and the JSON through the dataset's
    description; every data surface (``--metatrace-data``, an audit's data
    fixtures) is announced the same way.
    """
    write = make_progress(config).write
    what = "pairs" if hasattr(data, "incomplete") else "dataset"
    skipped = list(getattr(data, "skipped", ()))
    if skipped:
        shown = "; ".join(f"{s.path}: {s.reason}" for s in skipped[:5])
        more = f" (and {len(skipped) - 5} more, listed in the report)" if len(skipped) > 5 else ""
        write(f"metatrace: {what} {data.id}: skipped {len(skipped)} image(s): {shown}{more}")
    ignored = getattr(data, "ignored_files", 0)
    if ignored:
        kinds = ", ".join(f"{ext} x{n}" for ext, n in data.ignored_extensions.items())
        write(
            f"metatrace: {what} {data.id}: ignored {ignored} file(s) without an image "
            f"extension ({kinds}), e.g. {', '.join(data.ignored_examples)}"
        )
    incomplete = list(getattr(data, "incomplete", ()))
    if incomplete:
        shown = "; ".join(f"{s.subject}: {s.reason}" for s in incomplete[:5])
        more = f" (and {len(incomplete) - 5} more)" if len(incomplete) > 5 else ""
        write(
            f"metatrace: {what} {data.id}: left out {len(incomplete)} subject(s) without one "
            f"photo per camera type: {shown}{more}"
        )


def data_fixture(audit: str, spec: DataSpec) -> Any:
    """The session fixture of an audit's :class:`~pytest_metatrace.spec.DataSpec`.

    Loads the data once per session through ``spec.load``, describes a
    :class:`~pytest_metatrace.data.Dataset` for the report, announces what it
    left out, and fails every test that needs it with one message (no
    traceback) when it cannot be loaded.
    """

    def fixture(request: pytest.FixtureRequest) -> Any:
        from pytest_metatrace.data import Dataset, DatasetError
        from pytest_metatrace.spec import resolve

        config = request.config
        state = _state(config)
        context = DataContext(
            settings=get_settings(config),
            cache_dir=cache_dir(config),
            dataset_registry=state.dataset_registry(config),
            progress=make_progress(config),
        )
        try:
            data = resolve(spec.load)(context)
        except (DatasetError, ValueError, OSError) as exc:
            _fail(f"cannot load {spec.description}: {exc}", f"cannot load {spec.description}")
        if isinstance(data, Dataset):
            state.datasets[data.id] = data.describe()
        if data is not None:
            announce_data(config, data)
        return data

    fixture.__name__ = spec.fixture
    fixture.__doc__ = f"{spec.description[:1].upper()}{spec.description[1:]} (audit {audit})."
    return pytest.fixture(scope="session", name=spec.fixture)(fixture)


@pytest.fixture(scope="session")
def metatrace_embeddings(metatrace_encoder: Encoder, request: pytest.FixtureRequest) -> Embeddings:
    """``embeddings(dataset, split="all", processing="jpeg95_444", masked=False) -> (n, dim)``.

    Cached on disk; missing embeddings are extracted on first use.
    """
    from pytest_metatrace.embeddings import Embeddings

    config = request.config
    state = _state(config)
    settings = get_settings(config)
    emb = state.embeddings.get(metatrace_encoder.id)
    if emb is None:
        if settings.store is not None or settings.ray is not None:
            _check_ray_extra(settings.ray is not None)

        def describe(dataset: Dataset) -> None:
            # Every dataset the audits embed appears in the report (views of pairs too).
            state.datasets.setdefault(dataset.id, dataset.describe())

        emb = Embeddings(
            metatrace_encoder,
            cache_dir=cache_dir(config),
            seed=settings.seed,
            test_fraction=settings.test_fraction,
            mask_ratio=settings.mask_ratio,
            batch_size=settings.batch_size,
            num_workers=None if settings.workers < 0 else settings.workers,
            max_pixels=settings.max_pixels,
            progress=make_progress(config),
            store_url=settings.store,
            ray_address=settings.ray,
            ray_timeout=settings.ray_timeout,
            encoder_factory=_encoder_factory(config, metatrace_encoder),
            on_dataset=describe,
        )
        state.embeddings[metatrace_encoder.id] = emb
        from pytest_metatrace.analysis import memo

        memo.activate(cache_dir(config) / "analyses")  # analyses cached beside the embeddings
    return emb


def _check_ray_extra(need_ray: bool) -> None:
    """Fail with the install command when --metatrace-store/--metatrace-ray lack their extra."""
    import importlib.util

    wanted = ["pyarrow", "fsspec", *(["ray"] if need_ray else [])]
    missing = [m for m in wanted if importlib.util.find_spec(m) is None]
    if missing:
        _fail(
            f"--metatrace-store / --metatrace-ray need {', '.join(missing)}: "
            "pip install 'pytest-metatrace[ray]'",
            f"--metatrace-store / --metatrace-ray need {', '.join(missing)}",
        )


def _encoder_factory(config: pytest.Config, encoder: Encoder) -> Callable[[], Encoder] | None:
    """How a Ray actor rebuilds ``encoder`` (same spec and options), or None without Ray."""
    settings = get_settings(config)
    if settings.ray is None:
        return None
    import functools

    from pytest_metatrace.encoders import create_encoder

    return functools.partial(
        create_encoder,
        encoder.spec,
        device=encoder.device.type,
        precision=encoder.precision,
        memory_format=encoder.memory_format,
        resize_policy=settings.resize_policy,
        registry=_state(config).encoder_registry(config),
        cache_dir=cache_dir(config) / "weights",
    )


class Recorder:
    """Stores records of the current test and gates them against thresholds.

    A gate that failed fails its test even when the test never calls
    :meth:`assert_gates` (the plugin checks :attr:`unasserted` when the test
    ends): no gate passes by mistake. A record recorded or gated twice is
    reported once.
    """

    def __init__(self, item: pytest.Item, state: ProcessState) -> None:
        self._item = item
        self._state = state
        self.records: list[Record] = []
        self.failures: list[GateOutcome | BaselineComparison] = []
        #: gates that had too few test images to be able to fail (neither passed nor failed)
        self.undecided: list[GateOutcome] = []
        self._asserted = 0  #: failures[:_asserted] were reported by assert_gates
        self._asserted_undecided = 0  #: undecided[:_asserted_undecided] likewise
        self._gated: dict[tuple[int, str], GateOutcome | None] = {}
        self._properties: dict[int, int] = {}  #: id(record) -> its user_properties index

    @property
    def unasserted(self) -> list[GateOutcome | BaselineComparison]:
        """Failed gates that no :meth:`assert_gates` call has reported yet."""
        return self.failures[self._asserted :]

    @property
    def unasserted_undecided(self) -> list[GateOutcome]:
        """Undecided gates that no :meth:`assert_gates` call has reported yet."""
        return self.undecided[self._asserted_undecided :]

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
            "seed": get_settings(self._item.config).seed,
            "versions": self._state.versions(),
        }
        record.provenance = {**prov, **record.provenance}
        entry = (PROP_RECORD, json.dumps(record.to_dict(), sort_keys=True))
        index = self._properties.get(id(record))
        if index is not None:  # recorded again (e.g. gated after recording): replace, not add
            self._item.user_properties[index] = entry
            self._item.user_properties[index + 1] = junit_property(record)
            return record
        self._properties[id(record)] = len(self._item.user_properties)
        self._item.user_properties.append(entry)
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

        Does not fail the test by itself: call :meth:`assert_gates` after the
        last gate so that one test reports all of its failing gates at once
        (a test that forgets fails anyway when it ends). Gating the same
        record under the same key again returns the first outcome.
        """
        done = (id(record), key)
        if done in self._gated:
            return self._gated[done]
        bounds, direction = _gate_rules(self._item.config, key)
        min_n = _apply_gate_interval(record, key, bounds)
        resolved = resolve_threshold(key, self._threshold_sources())
        try:
            record.gate = evaluate_gate(
                record,
                key,
                resolved,
                what=what,
                min_n=min_n,
                direction=direction,
            )
        except ThresholdError as exc:
            raise pytest.UsageError(f"{key}: {exc}") from None
        if record.gate is not None and get_settings(self._item.config).gate == "baseline":
            record.gate.gating = False  # measured and reported, not gating
            record.gate.message += "\n  (reported, not gating: --metatrace-gate=baseline)"
        compared = gate_against_baseline(self._item.config, record, key, what=what, bounds=bounds)
        self(record)
        self._gated[done] = record.gate
        if record.gate is not None and record.gate.status == "failed" and record.gate.gating:
            self.failures.append(record.gate)
        elif record.gate is not None and record.gate.status == "undecided" and record.gate.gating:
            self.undecided.append(record.gate)
        if compared is not None and not compared.passed and compared.gating:
            self.failures.append(compared)
        return record.gate

    def assert_gates(self) -> None:
        """End the test by its gates, without a traceback.

        Fails it if any gate failed; otherwise skips it if any gate was
        undecided (too few test images for the gate to be able to fail), with
        the number of images each needs.
        """
        if self.failures:
            self._asserted = len(self.failures)
            self._asserted_undecided = len(self.undecided)
            pytest.fail("\n\n".join(g.message for g in self.failures), pytrace=False)
        if self.undecided:
            self._asserted_undecided = len(self.undecided)
            skip = pytest.skip.Exception(undecided_reason(self.undecided))
            # Reported at the test, not here (what a skip marker does); the attribute is
            # read with getattr by pytest's reports, so an older pytest just ignores it.
            skip._use_item_location = True
            raise skip


def undecided_reason(gates: list[GateOutcome]) -> str:
    """The skip reason of a test whose gates could not decide: each gate's first line."""
    return "; ".join(g.message.split("\n", 1)[0] for g in gates)


def _gate_rules(config: pytest.Config, key: str) -> tuple[tuple[float, float], str]:
    """``key``'s gate family's score bounds and direction (``(0, 1)`` and ``above`` if none)."""
    from pytest_metatrace.registry import session_registry

    family = session_registry(config).gate_family(key)
    if family is None:
        return (0.0, 1.0), "above"
    return (float(family.bounds[0]), float(family.bounds[1])), family.direction


def _apply_gate_interval(
    record: Record, key: str, bounds: tuple[float, float]
) -> Callable[[float], int | None] | None:
    """Give ``record`` the gate interval of its per-image scores; return its decidability rule.

    The interval the audit computed (a descriptive bootstrap) moves to
    ``provenance["descriptive_interval"]``; ``provenance["gate_interval"]`` says
    which method the gate used and what it guarantees. A record without
    per-image scores keeps its own interval and gets no undecided outcome
    (None is returned): there is nothing to count.
    """
    if not record.scores:
        return None
    from pytest_metatrace.analysis.intervals import (
        METHOD_CLOPPER_PEARSON,
        IntervalError,
        gate_interval,
        interval_provenance,
        min_decidable_n,
    )
    from pytest_metatrace.analysis.stats import DEFAULT_LEVEL

    level = float((record.interval or {}).get("level", DEFAULT_LEVEL))
    try:
        interval = gate_interval(record.scores, bounds=bounds, level=level)
    except IntervalError as exc:
        what = f"{record.audit}/{record.metric} ({record.parameter}) of {record.encoder}"
        _fail(
            f"{key}: cannot compute the gate interval of {what}: {exc} (the gate family's "
            f"score bounds are {bounds[0]:g} to {bounds[1]:g})",
            f"{key}: cannot compute the gate interval of {what}",
        )
    if record.interval is not None and record.interval.get("method") != interval.method:
        record.provenance["descriptive_interval"] = dict(record.interval)
    record.interval = interval.to_dict()
    record.provenance["gate_interval"] = {
        "method": interval.method,
        "bounds": list(bounds),
        "level": level,
        "n": interval.n,
        "guarantee": interval_provenance(interval.method, level=level),
    }
    binary = interval.method == METHOD_CLOPPER_PEARSON

    def min_n(threshold: float) -> int | None:
        return _min_decidable(threshold, bounds, level, binary, min_decidable_n)

    return min_n


_MIN_N_CACHE: dict[tuple[float, tuple[float, float], float, bool], int | None] = {}


def _min_decidable(
    threshold: float,
    bounds: tuple[float, float],
    level: float,
    binary: bool,
    compute: Callable[..., int | None],
) -> int | None:
    """:func:`~pytest_metatrace.analysis.intervals.min_decidable_n`, memoized per process."""
    key = (float(threshold), bounds, level, binary)
    if key not in _MIN_N_CACHE:
        _MIN_N_CACHE[key] = compute(threshold, bounds=bounds, level=level, binary=binary)
    return _MIN_N_CACHE[key]


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
