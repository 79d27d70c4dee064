"""One audit, one place: the spec each audit declares, and the registry every part reads.

An audit is a unit (deepchecks' check, not a scatter of table rows): its
gate keys with their kinds, ranges and default thresholds; its options (each
with an ini twin) as one typed settings dataclass; its provenance choices;
its result types; its report sections and templates; the data it needs
beyond the encoder and dataset fixtures; and which of its metrics are traces.
It declares them once, in an :class:`AuditSpec`::

    SPEC = AuditSpec(
        name="processing_drift",
        title="Processing drift",
        gates=(GateFamily("drift.*", "a cosine distance", 0.0, 2.0),),
        gate_keys=tuple(f"drift.{c}" for c in CLASSES),
        sections=(SectionSpec("processing_drift", "Processing drift", "section.html.j2",
                              "pytest_metatrace.audits.processing_drift.section:drift_context"),),
        ...
    )

and the plugin (options, ``Settings``, thresholds and their checks, the data
fixtures, provenance), the report (sections, comparison page), the JSON
Schema and ``copy-audits`` read the :class:`AuditRegistry`. The built-in
audits are the folders under ``pytest_metatrace/audits/`` that hold a
``spec.py`` with a ``SPEC``: a new built-in audit is a new folder. Installed
packages register theirs through the ``pytest_metatrace.audits`` entry-point
group, conftest files through the ``pytest_metatrace_register_audits`` hook.

Spec modules are imported at plugin load, so they (and this module) use the
standard library only: heavy parts (section context functions, result types,
data loaders, provenance builders) are named as ``"module:attribute"`` strings
and imported when used.

Stdlib only at import (plugin load).
"""

from __future__ import annotations

import fnmatch
import importlib
import pkgutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pytest_metatrace.options import Option, options_of

if TYPE_CHECKING:
    import pytest

__all__ = [
    "ENTRY_POINT_GROUP",
    "AuditRegistry",
    "AuditSpec",
    "AuditSpecError",
    "DataContext",
    "DataSpec",
    "Direction",
    "GateFamily",
    "MetricSpec",
    "SectionSpec",
    "builtin_specs",
    "default_registry",
    "resolve",
]

#: Entry-point group through which installed packages register audit specs.
ENTRY_POINT_GROUP = "pytest_metatrace.audits"

#: How a metric relates to a trace: more of it is more trace, less is, or it is no trace.
Direction = Literal["higher", "lower", "none"]


class AuditSpecError(ValueError):
    """An audit spec that cannot be registered; the message says which part is wrong."""


def resolve(target: str) -> Any:
    """Import ``"package.module:attribute"`` and return the attribute."""
    module, sep, attribute = target.partition(":")
    if not sep or not module or not attribute:
        raise AuditSpecError(f"{target!r} must read 'package.module:attribute'")
    value: Any = importlib.import_module(module)
    for part in attribute.split("."):
        value = getattr(value, part)
    return value


@dataclass(frozen=True)
class GateFamily:
    """A family of gate keys: what they measure, the thresholds that make sense, the default.

    ``low``/``high`` bound the absolute thresholds that could ever fail (a
    threshold outside them is a usage error at start); ``chance`` says whether
    ``chance+X`` applies (records with a chance level).
    """

    pattern: str  #: shell pattern of the keys, e.g. ``probe.jpeg`` or ``knn.*.pos_same_gap``
    measures: str  #: what the value is, for messages ("an accuracy (a fraction)")
    low: float  #: smallest sensible absolute threshold
    high: float  #: largest sensible absolute threshold
    chance: bool = False  #: whether ``chance+X`` applies
    default: str | None = (
        None  #: built-in threshold (``0.6``, ``chance+0.15``); None: informational
    )
    reason: str = ""  #: why this default (README "Thresholds" and the report)
    #: the score's bounds for the gate interval (``gate_interval(bounds=...)``)
    bounds: tuple[float, float] = (0.0, 1.0)
    #: growth against a baseline too small to matter, in the record's unit: the baseline
    #: comparison fails only above it unless ``--metatrace-baseline-tolerance`` sets one
    tolerance: float = 0.0
    tolerance_reason: str = ""  #: why this tolerance (README "Gating")
    #: ``above``: a gate fails when the trace is significantly above its threshold;
    #: ``below``: smaller values are the stronger trace (the smallest detectable step),
    #: and a gate fails when the value is below its threshold
    direction: str = "above"


@dataclass(frozen=True)
class SectionSpec:
    """A report section for the records of one audit kind (a record's ``audit``)."""

    audit: str  #: the records' ``audit`` value this section renders
    title: str  #: heading in the report and its table of contents
    template: str  #: template file next to the spec (or a name in ``report/templates``)
    context: str  #: ``"module:function"``: ``(records, document) -> template variables``
    order: int  #: sections appear by increasing order


@dataclass(frozen=True)
class DataContext:
    """What a :class:`DataSpec` loader gets: the session's settings and where things live."""

    settings: Any  #: the session's :class:`~pytest_metatrace.settings.Settings`
    cache_dir: Path  #: the cache folder (image checks, conversions)
    dataset_registry: Any  #: the session's :class:`~pytest_metatrace.data.DatasetRegistry`
    progress: Any  #: a :class:`~pytest_metatrace.progress.Progress` for long loads


@dataclass(frozen=True)
class DataSpec:
    """Data an audit needs beyond ``metatrace_dataset``, handed out as a session fixture.

    The plugin loads it once per session with ``load(context)`` (a
    :class:`DataContext`), names its skipped files in the terminal, report and
    JSON like the main dataset's, and fails each test that asks for it with
    one message when it cannot be loaded (``load`` raises ``DatasetError``,
    ``ValueError`` or ``OSError`` with the reason). A loader may return None:
    the data is switched off (the fixture gives None).
    """

    fixture: str  #: fixture name, e.g. ``metatrace_pairs``
    load: str  #: ``"module:function"``: ``(DataContext) -> Dataset | PairedDataset | None``
    description: str  #: one line for ``pytest --fixtures`` and the README


@dataclass(frozen=True)
class MetricSpec:
    """Whether a metric of an audit is a trace, and which way (the comparison page ranks by it)."""

    audit: str  #: the records' ``audit`` value
    metric: str  #: the record's ``metric`` (shell patterns allowed)
    direction: Direction  #: ``higher``/``lower`` = more trace; ``none``: not a trace, not ranked
    label: str = ""  #: how the comparison page names it (default: the metric)
    #: chance level shown with its bars ("record": each record's own ``chance``)
    chance: Literal["record", "none"] = "record"


@dataclass(frozen=True)
class AuditSpec:
    """Everything the plugin, the report and the docs need to know about one audit."""

    name: str  #: unique id, e.g. ``processing_drift``; the ``metatrace_audit`` marker's value
    title: str  #: human-readable name
    summary: str  #: what it measures, one sentence (README table, ``--help``)
    paper: str = "-"  #: where the paper shows it, e.g. ``Sec. 3.1, Fig. 4``
    order: int = 100  #: position in the README, report and ``copy-audits``
    #: test modules of the audit, dotted, relative to ``package`` (``test_processing_drift``)
    tests: tuple[str, ...] = ()
    package: str = ""  #: the audit's package (built-ins: filled in from the folder)
    gates: tuple[GateFamily, ...] = ()  #: gate-key families with kinds, ranges and defaults
    gate_keys: tuple[str, ...] = ()  #: every concrete key (did-you-mean, README)
    settings: type | None = None  #: frozen dataclass of this audit's options (``option()`` fields)
    #: ``"module:function"``: ``(Settings) -> [{"topic", "choice", "reason"}]`` for provenance
    choices: str | None = None
    results: Mapping[str, str] = field(default_factory=dict)  #: record audit -> result type
    sections: tuple[SectionSpec, ...] = ()  #: report sections
    data: tuple[DataSpec, ...] = ()  #: secondary data fixtures
    metrics: tuple[MetricSpec, ...] = ()  #: which metrics are traces (comparison page)
    #: extra fixtures (a module the plugin registers, e.g. derived session fixtures)
    fixtures: str | None = None

    @property
    def options(self) -> tuple[Option, ...]:
        """The options of :attr:`settings`, in field order."""
        return options_of(self.settings) if self.settings is not None else ()

    @property
    def folder(self) -> Path | None:
        """The audit's folder (its package directory), or None for a module-less spec."""
        if not self.package:
            return None
        module = importlib.import_module(self.package)
        file = getattr(module, "__file__", None)
        return Path(file).parent if file else None

    def template_path(self, section: SectionSpec) -> str:
        """The section's template: a file in the audit's folder, else a report template name."""
        folder = self.folder
        if folder is not None and (folder / section.template).is_file():
            return str(folder / section.template)
        return section.template

    def test_modules(self) -> tuple[str, ...]:
        """The dotted names of the audit's test modules."""
        return tuple(f"{self.package}.{t}" if self.package else t for t in self.tests)

    def validate(self) -> None:
        """Raise :class:`AuditSpecError` on a spec that could not work."""
        where = f"audit spec {self.name!r}"
        if not self.name or not self.name.replace("_", "").isalnum():
            raise AuditSpecError(f"{where}: the name must be letters, digits and '_'")
        if self.settings is not None and not is_dataclass(self.settings):
            raise AuditSpecError(f"{where}: settings must be a dataclass with option() fields")
        for key in self.gate_keys:
            if not any(fnmatch.fnmatchcase(key, g.pattern) for g in self.gates):
                raise AuditSpecError(f"{where}: gate key {key!r} matches none of its gate families")
        for gate in self.gates:
            if not gate.low <= gate.high:
                raise AuditSpecError(f"{where}: gate {gate.pattern!r} has low > high")
            if not any(fnmatch.fnmatchcase(k, gate.pattern) for k in self.gate_keys):
                raise AuditSpecError(f"{where}: gate family {gate.pattern!r} matches no gate key")
        for target in (
            *(s.context for s in self.sections),
            *self.results.values(),
            *(d.load for d in self.data),
            *([self.choices] if self.choices else []),
        ):
            if ":" not in target:
                raise AuditSpecError(f"{where}: {target!r} must read 'package.module:attribute'")
        for data in self.data:
            if not data.fixture.isidentifier():
                raise AuditSpecError(f"{where}: fixture name {data.fixture!r} is not an identifier")


class AuditRegistry:
    """The audit specs of a session: the built-ins, entry points and conftest registrations.

    While pytest parses options (``pytest_addoption``) the plugin attaches the
    parser (:meth:`attach_parser`): a spec registered after that, by a
    conftest's ``pytest_metatrace_register_audits`` hook, has its options
    added to the parser at once.
    """

    def __init__(self, specs: Iterable[AuditSpec] = ()) -> None:
        self._specs: dict[str, AuditSpec] = {}
        self._parser: pytest.Parser | None = None
        self._add_options: Callable[[pytest.Parser, Sequence[Option]], None] | None = None
        for spec in specs:
            self.register(spec)

    # -- registration ---------------------------------------------------------------------

    def attach_parser(
        self, parser: pytest.Parser, add: Callable[[pytest.Parser, Sequence[Option]], None]
    ) -> None:
        """Add the options of every spec to ``parser`` now, and of later specs when registered."""
        self._parser, self._add_options = parser, add
        add(parser, [o for s in self.specs() for o in s.options])

    def register(self, spec: AuditSpec) -> AuditSpec:
        """Add ``spec``; raises :class:`AuditSpecError` on a clash with a registered one."""
        if not isinstance(spec, AuditSpec):
            raise AuditSpecError(f"register() takes an AuditSpec, got {type(spec).__name__}")
        spec.validate()
        if spec.name in self._specs:
            if self._specs[spec.name] == spec:
                return spec  # the same spec twice (an entry point and a conftest): harmless
            raise AuditSpecError(f"an audit named {spec.name!r} is registered already")
        from pytest_metatrace.settings import core_options

        taken = {o.name: "the core options" for o in core_options()}
        for other in self._specs.values():
            taken.update({o.name: f"audit {other.name!r}" for o in other.options})
        for opt in spec.options:
            if opt.name in taken:
                raise AuditSpecError(
                    f"audit spec {spec.name!r}: option --metatrace-{opt.name} is declared by "
                    f"{taken[opt.name]} already"
                )
        drawn = {sec.audit: o.name for o in self._specs.values() for sec in o.sections}
        for sec in spec.sections:
            if sec.audit in drawn:
                raise AuditSpecError(
                    f"audit spec {spec.name!r}: the section of records {sec.audit!r} is drawn "
                    f"by audit {drawn[sec.audit]!r} already"
                )
        fixtures = {d.fixture: o.name for o in self._specs.values() for d in o.data}
        for data in spec.data:
            if data.fixture in fixtures:
                raise AuditSpecError(
                    f"audit spec {spec.name!r}: fixture {data.fixture!r} is declared by audit "
                    f"{fixtures[data.fixture]!r} already"
                )
        self._specs[spec.name] = spec
        if self._parser is not None and self._add_options is not None and spec.options:
            self._add_options(self._parser, spec.options)
        return spec

    # -- reading ----------------------------------------------------------------------------

    def specs(self) -> list[AuditSpec]:
        """Every registered spec, in README order."""
        return sorted(self._specs.values(), key=lambda s: (s.order, s.name))

    def get(self, name: str) -> AuditSpec | None:
        """The spec named ``name``, if registered."""
        return self._specs.get(name)

    def names(self) -> list[str]:
        """Registered audit names, in README order."""
        return [s.name for s in self.specs()]

    def options(self) -> tuple[Option, ...]:
        """The audits' options (the core options are :func:`settings.core_options`)."""
        return tuple(o for s in self.specs() for o in s.options)

    def gates(self) -> tuple[GateFamily, ...]:
        """Every gate family of every audit."""
        return tuple(g for s in self.specs() for g in s.gates)

    def gate_keys(self, audit: str | None = None) -> tuple[str, ...]:
        """Every concrete gate key (of one audit, when ``audit`` is given)."""
        specs = self.specs() if audit is None else [self._require(audit)]
        return tuple(k for s in specs for k in s.gate_keys)

    def default_thresholds(self) -> dict[str, str]:
        """``{key pattern: threshold text}`` of every gate family that has a default."""
        return {g.pattern: g.default for g in self.gates() if g.default is not None}

    def gate_family(self, key: str) -> GateFamily | None:
        """The most specific gate family matching ``key``."""
        hits = [g for g in self.gates() if fnmatch.fnmatchcase(key, g.pattern)]
        return max(hits, key=lambda g: len(g.pattern.replace("*", ""))) if hits else None

    def sections(self) -> list[tuple[AuditSpec, SectionSpec]]:
        """Every report section with the spec it belongs to, by order."""
        out = [(s, sec) for s in self.specs() for sec in s.sections]
        return sorted(out, key=lambda pair: (pair[1].order, pair[1].audit))

    def section_for(self, audit: str) -> tuple[AuditSpec, SectionSpec] | None:
        """The section that renders records of audit kind ``audit``."""
        return next(((s, sec) for s, sec in self.sections() if sec.audit == audit), None)

    def data(self) -> list[tuple[AuditSpec, DataSpec]]:
        """Every secondary-data fixture with its spec."""
        return [(s, d) for s in self.specs() for d in s.data]

    def result_type(self, audit: str) -> Any:
        """The typed result class of records of audit kind ``audit`` (imported), or None."""
        for spec in self.specs():
            if audit in spec.results:
                return resolve(spec.results[audit])
        return None

    def metric(self, audit: str, metric: str) -> MetricSpec | None:
        """How a record's metric relates to a trace, or None when no audit says."""
        for spec in self.specs():
            for m in spec.metrics:
                if m.audit == audit and fnmatch.fnmatchcase(metric, m.metric):
                    return m
        return None

    def spec_of_record_audit(self, audit: str) -> AuditSpec | None:
        """The spec whose sections or results cover records of audit kind ``audit``."""
        for spec in self.specs():
            if audit in spec.results or any(sec.audit == audit for sec in spec.sections):
                return spec
        return None

    def _require(self, name: str) -> AuditSpec:
        spec = self._specs.get(name)
        if spec is None:
            import difflib

            close = difflib.get_close_matches(name, list(self._specs), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise AuditSpecError(
                f"no audit named {name!r}{hint} Registered: {', '.join(self.names())}"
            )
        return spec


def builtin_specs() -> list[AuditSpec]:
    """The specs of the folders under ``pytest_metatrace/audits/`` (each with a ``spec.py``)."""
    import pytest_metatrace.audits as package

    specs = []
    for info in pkgutil.iter_modules(package.__path__):
        if not info.ispkg:
            continue
        name = f"{package.__name__}.{info.name}"
        try:
            module = importlib.import_module(f"{name}.spec")
        except ModuleNotFoundError as exc:
            if exc.name == f"{name}.spec":
                continue  # a helper package without a spec
            raise
        spec = module.SPEC
        if not spec.package:
            spec = _with_package(spec, name)
        specs.append(spec)
    return specs


def _with_package(spec: AuditSpec, package: str) -> AuditSpec:
    values = {f.name: getattr(spec, f.name) for f in fields(spec)}
    values["package"] = package
    return AuditSpec(**values)


def _entry_point_specs() -> list[AuditSpec]:
    from importlib.metadata import entry_points

    specs = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            value = ep.load()
        except Exception as exc:
            raise AuditSpecError(
                f"entry point {ep.name!r} = {ep.value!r} of group {ENTRY_POINT_GROUP!r} cannot "
                f"be loaded: {type(exc).__name__}: {exc}"
            ) from exc
        spec = value() if callable(value) and not isinstance(value, AuditSpec) else value
        if not isinstance(spec, AuditSpec):
            raise AuditSpecError(
                f"entry point {ep.name!r} = {ep.value!r} of group {ENTRY_POINT_GROUP!r} gives "
                f"{type(spec).__name__}, not an AuditSpec"
            )
        specs.append(spec)
    return specs


def default_registry() -> AuditRegistry:
    """A fresh registry of the built-in audits and those of installed packages (entry points)."""
    return AuditRegistry([*builtin_specs(), *_entry_point_specs()])
