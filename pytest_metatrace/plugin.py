"""The pytest11 entry point: options, hooks, parametrization, collection checks, reporting.

Loading this module imports only pytest and the standard library (plus this
package's light modules), so ``pytest --help`` in a project that never uses
the plugin stays fast. Encoders, datasets, torch and friends are imported by
the fixtures, when an audit asks for them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from pytest_metatrace import hookspec
from pytest_metatrace._backend import check_backend, describe_backend
from pytest_metatrace._files import atomic_write_text
from pytest_metatrace._omp import set_passive_omp_wait
from pytest_metatrace._relay import WORKERINPUT_KEY as RELAY_KEY
from pytest_metatrace._relay import ProgressRelay
from pytest_metatrace.baseline import (
    active_baseline,
    baseline_choices,
    save_session_baseline,
    saved_baseline_path,
)
from pytest_metatrace.fixtures import (  # noqa: F401 - pytest finds fixtures in this module
    metatrace_dataset,
    metatrace_embeddings,
    metatrace_encoder,
    metatrace_record,
    metatrace_settings,
)
from pytest_metatrace.gate_keys import (
    AUDIT_MARKER,
    GATE_MARKER,
    check_collected_thresholds,
    session_thresholds,
)
from pytest_metatrace.ids import dataset_ids, encoder_ids, unique_specs
from pytest_metatrace.options import add_options
from pytest_metatrace.registry import create_registry, session_registry
from pytest_metatrace.session import PROP_EXTRACT, PROP_USED, MetatraceSession
from pytest_metatrace.settings import core_options, get_settings
from pytest_metatrace.state import STATE_KEY, ProcessState, cache_dir
from pytest_metatrace.summary import (
    audit_summary_lines,
    failure_counts,
    failure_lines,
    readable_properties,
)

# At plugin load, before any conftest or fixture imports torch: OpenMP reads it once (_omp).
set_passive_omp_wait()

SESSION_KEY = pytest.StashKey[MetatraceSession]()
_FIXTURES = (
    "metatrace_encoder",
    "metatrace_dataset",
    "metatrace_embeddings",
    "metatrace_record",
    "metatrace_settings",
)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Register the plugin's own hooks (see :mod:`pytest_metatrace.hookspec`)."""
    pluginmanager.add_hookspecs(hookspec)


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    """Add the ``metatrace`` option group: the core options and every registered audit's."""
    add_options(parser, core_options())
    create_registry(parser, pluginmanager)


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """Handle ``--metatrace-list-encoders``: print the names and spec forms, then exit."""
    if not get_settings(config).list_encoders:
        return None
    from pytest_metatrace.encoders import FAMILIES, session_registry

    config._do_configure()  # conftest hooks must be registered before asking them
    try:
        registry = session_registry()
        config.hook.pytest_metatrace_register_encoders(registry=registry)
        tw = config.get_terminal_writer()
        tw.line("Registered encoder names (--metatrace-encoder=NAME):", bold=True)
        for name, description in registry.describe().items():
            tw.line(f"  {name:<24} {description}")
        tw.line("")
        tw.line("Spec forms (--metatrace-encoder=SPEC):", bold=True)
        for form in FAMILIES.values():
            tw.line(f"  {form}")
    finally:
        config._ensure_unconfigure()
    return 0


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """``--junitxml``: the run's failed checks as testsuite properties, counted once each.

    ``metatrace_failed`` (threshold + baseline, gating), ``metatrace_threshold_failures``,
    ``metatrace_baseline_failures``, ``metatrace_reported`` (not gating) and
    ``metatrace_undecided``; runs before the XML is written, on the controller only.
    """
    config = session.config
    if _is_worker(config) or SESSION_KEY not in config.stash:
        return
    from _pytest.junitxml import xml_key

    xml = config.stash.get(xml_key, None)
    records = config.stash[SESSION_KEY].records
    if xml is None or not records:
        return
    counts = failure_counts(records)
    for name, key in (
        ("metatrace_failed", "failed"),
        ("metatrace_threshold_failures", "threshold"),
        ("metatrace_baseline_failures", "baseline"),
        ("metatrace_reported", "reported"),
        ("metatrace_undecided", "undecided"),
    ):
        xml.add_global_property(name, counts[key])


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop caching analyses under this session's cache (a later in-process run has its own)."""
    import sys

    memo = sys.modules.get("pytest_metatrace.analysis.memo")
    if memo is not None:
        memo.deactivate()


def pytest_configure(config: pytest.Config) -> None:
    """Create the per-process state; check every option's value early; add the audits' fixtures."""
    config.addinivalue_line(
        "markers",
        "metatrace_threshold(value_or_mapping): gate threshold for this test's metatrace gates: "
        "a value (0.6, 60%, chance+0.3) for all of them, or a dict {key pattern: value}",
    )
    config.addinivalue_line(
        "markers",
        f"{GATE_MARKER}(*key_patterns): the gate keys this audit can produce (shell patterns); "
        "thresholds whose keys match no declared key are usage errors",
    )
    config.addinivalue_line(
        "markers",
        f"{AUDIT_MARKER}(name): this test module is the registered audit NAME (its spec "
        "declares the gate keys, options and report section)",
    )
    worker = config.workerinput["workerid"] if _is_worker(config) else "master"  # type: ignore[attr-defined]
    config.stash[STATE_KEY] = ProcessState(worker_id=worker)
    session = MetatraceSession(config)
    config.stash[SESSION_KEY] = session
    if not _is_worker(config):
        config.pluginmanager.register(Controller(session), "metatrace-controller")
    get_settings(config)  # a bad value is a UsageError now, not after an hour of work
    active_baseline(config)  # so is a baseline of other settings
    session_thresholds(config)  # and a threshold that cannot be read or never fails
    check_backend(get_settings(config))  # and a store or Ray cluster that cannot work
    config.pluginmanager.register(_ThresholdKeyCheck(), "metatrace-threshold-keys")
    _register_audit_fixtures(config)


def _register_audit_fixtures(config: pytest.Config) -> None:
    """The registered audits' data fixtures and fixture modules, as plugins."""
    import importlib
    import types

    from pytest_metatrace.fixtures import data_fixture

    registry = session_registry(config)
    holder = types.ModuleType("pytest_metatrace_data_fixtures", "the audits' data fixtures")
    for spec, data in registry.data():
        setattr(holder, data.fixture, data_fixture(spec.name, data))
    config.pluginmanager.register(holder, "metatrace-data-fixtures")
    for spec in registry.specs():
        if spec.fixtures and config.pluginmanager.get_plugin(spec.fixtures) is None:
            config.pluginmanager.register(importlib.import_module(spec.fixtures), spec.fixtures)


class _ThresholdKeyCheck:
    """Runs before ``-k`` / ``-m`` deselect items, so every collected audit's keys count."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        """Thresholds whose keys no collected audit declares are usage errors."""
        check_collected_thresholds(config, items)


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    """One header line naming the encoders, datasets and device of this run."""
    if not _uses_plugin_args(config):
        return None
    settings = get_settings(config)
    # as the user wrote them (relative paths stay short; messages name them resolved)
    encoders = ", ".join(settings.given("encoder", e) for e in settings.encoder)
    data = ", ".join(settings.given("data", d) for d in settings.data)
    return [
        f"metatrace: encoders {encoders}; data {data}; device {settings.device}; "
        + describe_backend(settings)
    ]


def _uses_plugin_args(config: pytest.Config) -> bool:
    if any(str(a).startswith("--metatrace") for a in config.invocation_params.args):
        return True
    # Encoders and data chosen in the ini file are as much this run's as those on the command line.
    return any(config.getini(f"metatrace_{name}") for name in ("encoder", "data"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One session-scoped instance per ``--metatrace-encoder`` / ``--metatrace-data``."""
    settings = get_settings(metafunc.config)
    if "metatrace_encoder" in metafunc.fixturenames:
        ids = encoder_ids(settings.encoder)
        metafunc.parametrize(
            "metatrace_encoder", list(ids), indirect=True, scope="session", ids=list(ids.values())
        )
    if "metatrace_dataset" in metafunc.fixturenames:
        ids = dataset_ids(settings.data)
        metafunc.parametrize(
            "metatrace_dataset", list(ids), indirect=True, scope="session", ids=list(ids.values())
        )


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Fail at collection, with a fix, on an unusable encoder or dataset spec."""
    used = {
        name for item in items for name in getattr(item, "fixturenames", ()) if name in _FIXTURES
    }
    state = config.stash[STATE_KEY]
    settings = get_settings(config)
    if used:
        _check_cache_folder(config)
    if used & {"metatrace_encoder", "metatrace_embeddings"}:
        from pytest_metatrace.encoders import EncoderSpecError, validate_spec

        registry = state.encoder_registry(config)
        for spec in unique_specs(settings.encoder):
            try:
                validate_spec(spec, registry=registry, check_available=True)
            except EncoderSpecError as exc:
                raise pytest.UsageError(f"{settings.where('encoder', spec)}: {exc}") from None
    if "metatrace_dataset" in used:
        registry = state.dataset_registry(config)
        for spec in unique_specs(settings.data):
            where, named = settings.where("data", spec), settings.given("data", spec)
            path = Path(spec)  # relative only when it names nothing at the base (paths.locate)
            if not path.is_absolute() and "data" in settings.origins:
                path = settings.origins["data"].base / spec
            if spec != "demo" and registry.get(named) is None and not path.exists():
                import difflib

                close = difflib.get_close_matches(named, ["demo", *registry.names()], n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise pytest.UsageError(
                    f"{where}: no such folder, manifest or registered dataset ({path} does not "
                    f"exist).{hint} Use 'demo', an image folder (one sub-folder per class), a CSV "
                    "manifest (path,label[,group,...]) or a name registered by the "
                    "pytest_metatrace_register_datasets hook."
                )
            if registry.get(named) is None and spec.lower().endswith(".csv"):
                from pytest_metatrace.data import DatasetError
                from pytest_metatrace.data.sources import check_manifest

                try:
                    check_manifest(Path(spec))
                except DatasetError as exc:
                    raise pytest.UsageError(f"{where}: {exc}") from None


def _check_cache_folder(config: pytest.Config) -> None:
    """A cache path that is a file or lies under one is a usage error now, not in every test.

    A folder that exists but cannot be written is fine here: it is used read-only, and
    the cache names what it lacks if the run must write (``_sqlite.read_only_message``).
    """
    path = cache_dir(config)  # creates the folder where it can
    if path.is_dir():
        return
    blocker = next((p for p in (path, *path.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        why = "is a file" if blocker == path else f"lies under {blocker}, which is a file"
    else:
        why = "cannot be created"
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            why += f" ({exc.strerror or exc})"
    raise pytest.UsageError(
        f"--metatrace-cache-dir: the cache folder {path} {why}; point --metatrace-cache-dir "
        "(ini metatrace_cache_dir, or METATRACE_CACHE_DIR) at a folder"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach extraction counts (and a marker that the test used the plugin) to the report."""
    if call.when == "teardown":
        state = item.config.stash[STATE_KEY]
        delta = state.extract_delta()
        if delta:
            item.user_properties.append((PROP_EXTRACT, json.dumps(delta)))
        if any(name in _FIXTURES for name in getattr(item, "fixturenames", ())):
            item.user_properties.append((PROP_USED, "1"))
    report = yield
    if call.excinfo is not None:
        exc = call.excinfo.value
        if getattr(exc, "metatrace_clear", False) or _is_audit_refusal(item, exc):
            shown = item.config.stash.setdefault(_SHOWN_KEY, {})
            text = _clear_failure(exc, item.nodeid, shown)
            if text is not None:
                report.longrepr = text
    if call.when == "call" and report.passed:
        _fail_unasserted_gates(item, report)
    return report


def _fail_unasserted_gates(item: pytest.Item, report: pytest.TestReport) -> None:
    """A test that gated a failing record and never asserted it fails with the gates' messages.

    No gate passes by mistake: forgetting ``metatrace_record.assert_gates()``
    must not turn a failed gate into a green CI job.
    """
    from pytest_metatrace.fixtures import Recorder, undecided_reason

    recorder = getattr(item, "funcargs", {}).get("metatrace_record")
    if not isinstance(recorder, Recorder):
        return
    if not recorder.unasserted:
        if recorder.unasserted_undecided:
            # Neither passed nor failed: skipped, with the number of images each gate needs.
            path, lineno, _ = item.location
            report.outcome = "skipped"
            reason = undecided_reason(recorder.unasserted_undecided)
            report.longrepr = (str(path), (lineno or 0) + 1, f"Skipped: {reason}")
        return
    report.outcome = "failed"
    report.longrepr = (
        "\n\n".join(g.message for g in recorder.unasserted)
        + "\n\n(this test gated the record(s) above but did not call "
        "metatrace_record.assert_gates(); a failed gate fails its test all the same)"
    )


#: Plugin errors already shown in full in this process: their key -> the test they failed first.
_SHOWN_KEY = pytest.StashKey[dict[str, str]]()
#: What :class:`~pytest_metatrace.embeddings.Embeddings` appends to an extraction error it
#: raises again; the error is the same, so it is shown in full once.
_NOT_RETRIED = " (failed earlier in this session; not retried)"
#: Longest one-line summary of an error already shown in full.
_SHORT_WIDTH = 200


def _is_audit_refusal(item: pytest.Item, exc: BaseException) -> bool:
    """A built-in or registered audit failed its test with a message and no traceback."""
    return (
        isinstance(exc, pytest.fail.Exception)
        and not exc.pytrace
        and item.get_closest_marker(AUDIT_MARKER) is not None
    )


def _clear_failure(exc: BaseException, nodeid: str, shown: dict[str, str]) -> str | None:
    """What the report of a plugin error that says everything shows: in full once, then one line.

    Session-wide errors (a dataset, encoder, cache or data refusal; pytest
    re-raises a session fixture's error in every test that needs it) are shown
    in full with the first test they fail, plus the user code's error they
    chain (e.g. what an encoder's forward raised), with its traceback: the
    plugin's own frames add nothing. Every later test gets one line that
    names the first. Returns None where pytest's own report is kept (the
    first showing of a ``pytest.fail`` message).
    """
    import traceback

    is_fail = isinstance(exc, pytest.fail.Exception)
    message = str(exc)
    key = message.removesuffix(_NOT_RETRIED)
    text = message if is_fail else f"{type(exc).__name__}: {message}"
    first = shown.get(key)
    if first is not None and first != nodeid:
        short = getattr(exc, "metatrace_short", None) or _headline(text.removesuffix(_NOT_RETRIED))
        return f"{short} (the same error as in {first}, shown there in full)"
    shown[key] = nodeid
    if is_fail:
        return None
    cause = exc.__cause__
    if cause is not None:
        chained = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
        text += "\n\nThe error it was raised from:\n" + chained.rstrip()
    return text


def _headline(text: str) -> str:
    """The first clause of ``text`` (to the first ``; `` or ``. ``), at most :data:`_SHORT_WIDTH`.

    A longer clause is cut at its last ``: `` or ``, `` that leaves 40 characters or more.
    """
    line = (text.strip().splitlines() or [""])[0]
    ends = [i for i in (line.find("; "), line.find(". ")) if i > 0]
    clause = line[: min(ends)] if ends else line
    if len(clause) <= _SHORT_WIDTH:
        return clause
    head = clause[: _SHORT_WIDTH - 3]
    cut = max(head.rfind(": "), head.rfind(", "))
    return head[:cut] if cut >= 40 else head.rstrip() + "..."


class Controller:
    """Controller-side hooks (the single process, or the xdist controller).

    Registered as a plugin object in ``pytest_configure``; its state is the
    :class:`MetatraceSession` kept in ``config.stash``.
    """

    def __init__(self, session: MetatraceSession) -> None:
        self.session = session
        self.markdown_path: Path | None = None  #: where ``--metatrace-markdown`` was written
        self.step_summary_path: Path | None = None  #: ``$GITHUB_STEP_SUMMARY``, once appended
        self.relay: ProgressRelay | None = None  #: xdist workers' progress lines, shown live

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """pytest-xdist: give each worker the folder its progress lines go to."""
        if self.relay is None:
            reporter = node.config.pluginmanager.getplugin("terminalreporter")
            if reporter is None:
                return

            def write(line: str) -> None:
                # xdist's progress dots are not a line pytest knows about: end them first
                if reporter._tw.width_of_current_line:
                    reporter._tw.line()
                reporter.write_line(line)

            self.relay = ProgressRelay(write)
        node.workerinput[RELAY_KEY] = str(self.relay.folder())

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> Generator[None, None, None]:
        """Gather records and outcomes; other plugins (``--junitxml``) see readable properties."""
        self.session.collect(report)
        original = report.user_properties
        report.user_properties = readable_properties(original)
        try:
            return (yield)
        finally:
            report.user_properties = original

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """On the controller: write ``--metatrace-json`` and the HTML report."""
        if self.relay is not None:
            self.relay.close()  # the workers' last progress lines, before the summary
        config = session.config
        state = self.session
        used = any(t.get("uses_metatrace") for t in state.tests.values()) or state.records
        if not used:
            return
        from pytest_metatrace.provenance import session_choices

        settings = get_settings(config)
        registry = session_registry(config)
        state.choices = session_choices(settings, registry) + baseline_choices(config)
        doc = state.document(settings.to_dict())
        config.hook.pytest_metatrace_records(records=doc["records"], config=config)
        baseline_error = save_session_baseline(config, doc)
        if baseline_error:
            state.write_errors.append(baseline_error)
        json_opt = settings.json
        if json_opt:
            path = Path(json_opt)
            if not path.is_absolute():
                path = config.invocation_params.dir / path
            try:
                atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=True, allow_nan=False))
                state.json_path = path
            except OSError as exc:
                state.write_errors.append(f"could not write {path}: {exc}")
        report_opt = settings.report
        if report_opt and report_opt.lower() != "none":
            path = Path(report_opt)
            if not path.is_absolute():
                path = config.invocation_params.dir / path
            self._write_report(path, doc, registry)
        # Under GitHub Actions the job's summary page gets the run whenever it audited
        # something; a session without records (the project's other tests) adds nothing.
        step_summary = os.environ.get("GITHUB_STEP_SUMMARY") if doc["records"] else None
        if settings.markdown or step_summary:
            from pytest_metatrace.report.markdown import write_summaries

            written = write_summaries(
                Path(settings.markdown) if settings.markdown else None,
                doc["records"],
                report_path=state.report_path,
                json_path=state.json_path,
                cwd=config.invocation_params.dir,
                step_summary=step_summary,
            )
            self.markdown_path, self.step_summary_path = written.markdown, written.step_summary
            state.write_errors += written.errors
        paths = {
            name: p
            for name, p in (
                ("html", state.report_path),
                ("json", state.json_path),
                ("markdown", self.markdown_path),
                ("baseline", saved_baseline_path(config)),
            )
            if p is not None
        }
        config.hook.pytest_metatrace_report(document=doc, paths=paths, config=config)

    def _write_report(self, path: Path, doc: dict[str, Any], registry: Any) -> None:
        """Render the HTML report; on a report bug, keep the numbers next to it as JSON."""
        state = self.session
        try:
            from pytest_metatrace.report import render_report

            state.report_path = render_report(path, doc, registry=registry)
        except OSError as exc:  # a folder that cannot be written: say so, like the JSON
            state.write_errors.append(f"could not write {path}: {exc}")
        except Exception as exc:  # never lose the run's numbers to a report bug
            fallback = path.with_suffix(".json")
            try:
                atomic_write_text(
                    fallback, json.dumps(doc, indent=1, sort_keys=True, allow_nan=False)
                )
            except OSError as write_exc:
                state.write_errors.append(
                    f"could not render the HTML report ({type(exc).__name__}: {exc}) nor "
                    f"write its numbers to {fallback}: {write_exc}"
                )
                return
            state.write_errors.append(
                f"could not render the HTML report ({type(exc).__name__}: {exc}); the numbers "
                f"are saved in {fallback}; re-render with "
                f"`python -m pytest_metatrace.report {fallback} -o {path}`"
            )

    def pytest_terminal_summary(
        self, terminalreporter: Any, exitstatus: int, config: pytest.Config
    ) -> None:
        """Summarize gates, embeddings and where the report and JSON went."""
        state = self.session
        if not state.records and state.report_path is None and not state.write_errors:
            return
        tr = terminalreporter
        tr.write_sep("-", "metatrace")
        for line in failure_lines(state.records, get_settings(config).gate):
            tr.write_line(line, red=line.startswith("  FAILED") or line.startswith("  GREW"))
        for line in audit_summary_lines(state.records):
            tr.write_line(line)
        ex = state.extract
        tr.write_line(
            f"metatrace: embeddings computed {ex.computed}, reused from cache {ex.reused} "
            f"({describe_backend(get_settings(config), cache_dir(config))})"
        )
        if ex.analyses_computed or ex.analyses_reused:
            tr.write_line(
                f"metatrace: analyses (probes, maps) computed {ex.analyses_computed}, "
                f"reused from cache {ex.analyses_reused}"
            )
        if state.json_path is not None:
            tr.write_line(f"metatrace: JSON written to {state.json_path}")
        if state.report_path is not None:
            tr.write_line(f"metatrace: report written to {state.report_path}")
        if self.markdown_path is not None:
            tr.write_line(f"metatrace: Markdown summary written to {self.markdown_path}")
        if self.step_summary_path is not None:
            tr.write_line(f"metatrace: Markdown summary appended to {self.step_summary_path}")
        saved = saved_baseline_path(config)
        if saved is not None:
            tr.write_line(f"metatrace: baseline saved to {saved}")
        for err in state.write_errors:
            tr.write_line(f"metatrace: {err}", red=True)
