"""The pytest11 entry point: options, hooks, parametrization, collection checks, reporting.

Loading this module imports only pytest and the standard library (plus this
package's light modules), so ``pytest --help`` in a project that never uses
the plugin stays fast. Encoders, datasets, torch and friends are imported by
the fixtures, when an audit asks for them.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from pytest_metatrace import hookspec
from pytest_metatrace._backend import check_backend, describe_backend
from pytest_metatrace._files import atomic_write_text
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
    GATE_MARKER,
    check_collected_thresholds,
    session_thresholds,
)
from pytest_metatrace.ids import dataset_ids, encoder_ids, unique_specs
from pytest_metatrace.options import add_options, get_option, resolved_options
from pytest_metatrace.session import PROP_EXTRACT, PROP_USED, MetatraceSession
from pytest_metatrace.settings import get_settings
from pytest_metatrace.state import STATE_KEY, ProcessState, cache_dir
from pytest_metatrace.summary import audit_summary_lines, describe_record, readable_properties

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


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add the ``metatrace`` option group and the ini twins."""
    add_options(parser)


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """Handle ``--metatrace-list-encoders``: print the names and spec forms, then exit."""
    if not get_option(config, "list-encoders"):
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


def pytest_configure(config: pytest.Config) -> None:
    """Create the per-process state; check every option's value early."""
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
    worker = config.workerinput["workerid"] if _is_worker(config) else "master"  # type: ignore[attr-defined]
    config.stash[STATE_KEY] = ProcessState(worker_id=worker)
    session = MetatraceSession(config)
    config.stash[SESSION_KEY] = session
    if not _is_worker(config):
        config.pluginmanager.register(Controller(session), "metatrace-controller")
    resolved_options(config)  # a bad value is a UsageError now, not after an hour of work
    active_baseline(config)  # so is a baseline of other settings
    session_thresholds(config)  # and a threshold that cannot be read or never fails
    check_backend(get_settings(config))  # and a store or Ray cluster that cannot work
    config.pluginmanager.register(_ThresholdKeyCheck(), "metatrace-threshold-keys")


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
    return [
        f"metatrace: encoders {', '.join(get_option(config, 'encoder'))}; "
        f"data {', '.join(get_option(config, 'data'))}; device {get_option(config, 'device')}; "
        + describe_backend(get_settings(config))
    ]


def _uses_plugin_args(config: pytest.Config) -> bool:
    if any(str(a).startswith("--metatrace") for a in config.invocation_params.args):
        return True
    # Encoders and data chosen in the ini file are as much this run's as those on the command line.
    return any(config.getini(f"metatrace_{name}") for name in ("encoder", "data"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One session-scoped instance per ``--metatrace-encoder`` / ``--metatrace-data``."""
    config = metafunc.config
    if "metatrace_encoder" in metafunc.fixturenames:
        ids = encoder_ids(get_option(config, "encoder"))
        metafunc.parametrize(
            "metatrace_encoder", list(ids), indirect=True, scope="session", ids=list(ids.values())
        )
    if "metatrace_dataset" in metafunc.fixturenames:
        ids = dataset_ids(get_option(config, "data"))
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
    if used & {"metatrace_encoder", "metatrace_embeddings"}:
        from pytest_metatrace.encoders import EncoderSpecError, validate_spec

        registry = state.encoder_registry(config)
        for spec in unique_specs(get_option(config, "encoder")):
            try:
                validate_spec(spec, registry=registry, check_available=True)
            except EncoderSpecError as exc:
                raise pytest.UsageError(f"--metatrace-encoder={spec}: {exc}") from None
    if "metatrace_dataset" in used:
        registry = state.dataset_registry(config)
        for spec in unique_specs(get_option(config, "data")):
            if spec != "demo" and registry.get(spec) is None and not Path(spec).exists():
                import difflib

                close = difflib.get_close_matches(spec, ["demo", *registry.names()], n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise pytest.UsageError(
                    f"--metatrace-data={spec}: no such folder, manifest or registered dataset."
                    f"{hint} Use 'demo', an image folder (one sub-folder per class), a CSV "
                    "manifest (path,label[,group,...]) or a name registered by the "
                    "pytest_metatrace_register_datasets hook."
                )
            if registry.get(spec) is None and spec.lower().endswith(".csv"):
                from pytest_metatrace.data import DatasetError
                from pytest_metatrace.data.sources import check_manifest

                try:
                    check_manifest(Path(spec))
                except DatasetError as exc:
                    raise pytest.UsageError(f"--metatrace-data={spec}: {exc}") from None


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
    if call.excinfo is not None and getattr(call.excinfo.value, "metatrace_clear", False):
        report.longrepr = _clear_failure(call.excinfo.value)
    return report


def _clear_failure(exc: BaseException) -> str:
    """The message of a plugin error that says everything, plus the user code's error it chains.

    The plugin's own frames add nothing to such a message; the chained cause
    (e.g. the exception an encoder's forward raised) keeps its traceback.
    """
    import traceback

    text = f"{type(exc).__name__}: {exc}"
    cause = exc.__cause__
    if getattr(exc, "_metatrace_shown", False):
        # A session-scoped fixture re-raises the same error for every test: one traceback.
        return text + "\n(the error it was raised from is shown with the first test it failed)"
    exc._metatrace_shown = True  # type: ignore[attr-defined]
    if cause is not None:
        chained = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
        text += "\n\nThe error it was raised from:\n" + chained.rstrip()
    return text


def _choices(config: pytest.Config) -> list[dict[str, str]]:
    """Every protocol choice made by this run, for the report's provenance section."""
    opts = resolved_options(config)
    return [
        {
            "topic": "Processing order",
            "choice": "Pillow processing on the full-resolution decoded RGB image, then the "
            "encoder's resize / crop / normalize (docs/protocol.md §1)",
            "reason": "as in the paper",
        },
        {
            "topic": "Processing classes",
            "choice": "14 distinct operations, 16 class slots over the four groups: jpeg95_444 is "
            "the 'none' class of sharpening and resizing",
            "reason": "docs/protocol.md §1 table and groups",
        },
        {
            "topic": "Interpolation scale",
            "choice": f"s = 0.8 + 0.4 * u, u from SHA-256(seed={opts['seed']}, image content "
            "digest); sizes int(W*s), int(H*s), at least 1 pixel",
            "reason": "the research code's stateful RNG depends on worker order; a pure function "
            "of (seed, image) gives identical pixels on any worker count or machine",
        },
        {
            "topic": "Encoder resize policy",
            "choice": opts["resize-policy"],
            "reason": "native = the encoder's own crop_pct (paper text); crop-size = shorter side "
            "straight to the crop size (research code). Part of the encoder fingerprint.",
        },
        {
            "topic": "Center mask ratio",
            "choice": f"{opts['mask-ratio']:g} of the crop's area, margins rounded half up",
            "reason": "paper text 0.90 (default), research code 0.95",
        },
        {
            "topic": "Image decoding",
            "choice": "EXIF orientation applied; alpha flattened on white; 16-bit scaled by bit "
            "depth; CMYK/grey/palette converted by Pillow; truncated, float and over-sized "
            f"(> {opts['max-pixels']:,} px) images skipped and listed",
            "reason": "every conversion is counted per dataset; nothing is changed silently",
        },
        {
            "topic": "Splits",
            "choice": f"stratified by semantic label, seed {opts['seed']}, test fraction "
            f"{opts['test-fraction']}; group-disjoint (StratifiedGroupKFold) when a group column "
            "exists",
            "reason": "a probe must not learn a photographer instead of a camera "
            "(docs/protocol.md §4)",
        },
        {
            "topic": "Device and precision",
            "choice": f"device {opts['device']}, precision {opts['precision']} (auto = bf16 "
            "autocast on CUDA, fp32 on CPU)",
            "reason": "both change the numbers, so both key the embedding cache",
        },
        {
            "topic": "Linear probe",
            "choice": f"mode {opts['probe-mode']}: L2-normalized float32 features, linear layer "
            "with bias, cross-entropy, SGD momentum 0.9 with weight decay on weight and bias, "
            "batch 1024, or min(1024, ceil(N/4)) on N < 4096 training samples so that every "
            f"epoch takes at least 4 steps, {opts['probe-epochs']} epochs, CosineAnnealingLR "
            "stepped per epoch "
            f"(eta_min 0); {opts['probe-trials']} trials at scrambled Sobol points over lr "
            "[1e-1, 1e2] x weight decay [1e-12, 1e-4] (log), trained together in one batched "
            "computation, best validation top-1 on a stratified 20% split (ties: lower loss, "
            "then the earlier trial); identical seeded init and shuffles for every trial",
            "reason": "docs/protocol.md §4; the paper's code uses TPE, and any search at least as "
            "good on validation is allowed: Sobol matched TPE on hold-out (bench/README.md). "
            "The small-set batch: with batch 1024 a set under 1024 images takes one step per "
            "epoch and the probe under-trains; 4 steps bring it within 1 point of converged "
            "L-BFGS logistic regression (bench/README.md); the protocol is unchanged from 4096",
        },
        {
            "topic": "Processing probes",
            "choice": f"{opts['probe-seeds']} seeds of the training draw "
            "(np.random.default_rng(seed).integers(0, K, N_train)), hyper-parameters tuned on "
            "the first; every test image under every class; std over seeds with ddof 0",
            "reason": "docs/protocol.md §4 (paper Sec. 3.1); the paper does not say which std",
        },
        {
            "topic": "kNN semantic influence",
            "choice": f"k = {opts['knn-k']}, cosine similarity, unweighted majority vote; equal "
            "similarities ranked by lower training index, tied votes to the label of the "
            "best-ranked neighbour among them; uniform: np.random.default_rng(seed).integers(0, "
            "K, N_train) for seeds base..base+9, one draw for positives and negatives; averaged "
            "over every ordered pair (p_i, p_j), i != j",
            "reason": "docs/protocol.md §5; ties must be broken deterministically for the fast "
            "path to equal the naive construction exactly",
        },
        {
            "topic": "Acquisition probes",
            "choice": f"classes with at least {opts['min-per-class']} images; "
            f"{opts['test-per-class'] or 'a quarter of the smallest class'} test images per "
            "class, whole groups at a time in a seeded order, surplus test images dropped (not "
            "moved to training); the rest undersampled to the minority class; hyper-parameters "
            "tuned on the probe's stratified 20% validation share of the training side; a target "
            "whose classes split the images exactly like an earlier one is listed, not re-run",
            "reason": "docs/protocol.md §4 at a user's scale (paper: 5,000 / 500 / 200); groups "
            "(photographer, owner, scene) never on both sides",
        },
        {
            "topic": "Acquisition data",
            "choice": "City100 labels from the device folder; EXIF folders: group = first "
            "sub-folder; smartphone from the built-in make / model table unless "
            "--metatrace-smartphone-table overrides it; city100-samesize = Nikon photos "
            "downscaled to 840x600 with Pillow LANCZOS before the encoder",
            "reason": "City100 ships without EXIF; the resize control separates a device trace "
            "from the encoder's different resize of the two native sizes",
        },
        {
            "topic": "Neighbour agreement and mask sweep",
            "choice": "agreement: cosine on unmasked embeddings, query excluded, equal "
            "similarities ranked by lower index, chance = mean over queries of (n_c - 1)/(N - 1); "
            "sweep ratios 0, 0.5, 0.75, 0.9, 0.95, 1; semantic kNN on the sweep set's split, "
            "tied votes to the lowest label index (research code rule); the sweep's probes search "
            "a sixth of the probe trials (the audit's own probe searches all of them)",
            "reason": "docs/protocol.md §3 and §7 (paper Table 2, Fig. 5)",
        },
        {
            "topic": "Confidence intervals and gates",
            "choice": "95% percentile bootstrap over test images (each image carries the mean of "
            "its scores over classes, pairs and seeds); a gate fails only when the lower end "
            "exceeds the threshold",
            "reason": "test images are the independent unit; comparing the lower end keeps a "
            "borderline encoder from failing at random",
        },
    ]


class Controller:
    """Controller-side hooks (the single process, or the xdist controller).

    Registered as a plugin object in ``pytest_configure``; its state is the
    :class:`MetatraceSession` kept in ``config.stash``.
    """

    def __init__(self, session: MetatraceSession) -> None:
        self.session = session

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
        config = session.config
        state = self.session
        used = any(t.get("uses_metatrace") for t in state.tests.values()) or state.records
        if not used:
            return
        state.choices = _choices(config) + baseline_choices(config)
        doc = state.document(resolved_options(config))
        config.hook.pytest_metatrace_records(records=doc["records"], config=config)
        baseline_error = save_session_baseline(config, doc)
        if baseline_error:
            state.write_errors.append(baseline_error)
        json_opt = get_option(config, "json")
        if json_opt:
            path = Path(json_opt)
            if not path.is_absolute():
                path = config.invocation_params.dir / path
            try:
                atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=True, allow_nan=False))
                state.json_path = path
            except OSError as exc:
                state.write_errors.append(f"could not write {path}: {exc}")
        report_opt = get_option(config, "report")
        if report_opt and report_opt.lower() != "none":
            path = Path(report_opt)
            if not path.is_absolute():
                path = config.invocation_params.dir / path
            try:
                from pytest_metatrace.report import render_report

                state.report_path = render_report(path, doc)
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
        gated = [r for r in state.records if r.get("gate")]
        failed = [r for r in gated if not r["gate"]["passed"]]
        tr.write_line(
            f"metatrace: {len(state.records)} records, {len(gated)} gated, "
            f"{len(failed)} gate(s) failed"
        )
        for rec in failed:
            gate = rec["gate"]
            tr.write_line(
                f"  FAILED {gate['key']} [{rec['encoder']} / {rec['dataset']}]: "
                f"{rec['metric']} {rec['value']:.4g}"
                + (
                    f" (interval low {rec['interval']['low']:.4g})"
                    if gate.get("compared") == "interval low" and rec.get("interval")
                    else ""
                )
                + f" > threshold {gate['threshold']:.4g}",
                red=True,
            )
        for line in audit_summary_lines(state.records):
            tr.write_line(line)
        for rec in state.records:
            if rec.get("baseline") and not rec["baseline"]["passed"]:
                tr.write_line(
                    f"  GREW {rec['baseline']['key']} [{rec['encoder']} / {rec['dataset']}]: "
                    + describe_record(rec),
                    red=True,
                )
        ex = state.extract
        tr.write_line(
            f"metatrace: embeddings computed {ex.computed}, reused from cache {ex.reused} "
            f"({describe_backend(get_settings(config), cache_dir(config))})"
        )
        if state.json_path is not None:
            tr.write_line(f"metatrace: JSON written to {state.json_path}")
        if state.report_path is not None:
            tr.write_line(f"metatrace: report written to {state.report_path}")
        saved = saved_baseline_path(config)
        if saved is not None:
            tr.write_line(f"metatrace: baseline saved to {saved}")
        for err in state.write_errors:
            tr.write_line(f"metatrace: {err}", red=True)
