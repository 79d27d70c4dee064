"""Per-process state kept in ``config.stash`` (never in private attributes).

Stdlib only at import (plugin load).
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_metatrace.options import env_value
from pytest_metatrace.settings import get_settings

__all__ = ["STATE_KEY", "ProcessState", "cache_dir", "make_progress"]


@dataclass
class ProcessState:
    """What this process (controller, single process or xdist worker) holds."""

    worker_id: str = "master"
    encoders: dict[str, dict[str, Any]] = field(default_factory=dict)  #: id -> describe()
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)  #: id -> describe()
    embeddings: dict[str, Any] = field(default_factory=dict)  #: encoder id -> Embeddings
    sent_encoders: set[str] = field(default_factory=set)
    sent_datasets: set[str] = field(default_factory=set)
    _encoder_registry: Any = None
    _dataset_registry: Any = None
    _versions: dict[str, str | None] | None = None
    _extract_seen: dict[str, float] = field(default_factory=dict)
    _retired: dict[str, float] = field(default_factory=dict)
    #: this process's analysis counts when the session began (the counters are per process)
    _analyses_base: tuple[int, int] = field(default_factory=lambda: _analysis_counts())

    def versions(self) -> dict[str, str | None]:
        """Package versions, computed once per process."""
        if self._versions is None:
            from pytest_metatrace.session import package_versions

            self._versions = package_versions()
        return self._versions

    def encoder_registry(self, config: pytest.Config) -> Any:
        """The encoder registry, with conftest / plugin registrations applied once."""
        if self._encoder_registry is None:
            from pytest_metatrace.encoders import session_registry

            registry = session_registry()
            config.hook.pytest_metatrace_register_encoders(registry=registry)
            self._encoder_registry = registry
        return self._encoder_registry

    def dataset_registry(self, config: pytest.Config) -> Any:
        """The dataset registry, with conftest / plugin registrations applied once."""
        if self._dataset_registry is None:
            from pytest_metatrace.data import DatasetRegistry, default_dataset_registry

            registry = DatasetRegistry()
            for name in default_dataset_registry.names():
                factory = default_dataset_registry.get(name)
                assert factory is not None
                registry.register(name, factory)
            config.hook.pytest_metatrace_register_datasets(registry=registry)
            self._dataset_registry = registry
        return self._dataset_registry

    def retire(self, emb: Any) -> None:
        """Keep the totals of an Embeddings object that is being closed."""
        for key, value in _stats_dict(emb).items():
            self._retired[key] = self._retired.get(key, 0.0) + value

    def extract_delta(self) -> dict[str, float]:
        """Extraction counts since the last call (summed over this process's encoders)."""
        totals = dict(self._retired)
        for emb in self.embeddings.values():
            for key, value in _stats_dict(emb).items():
                totals[key] = totals.get(key, 0.0) + value
        computed, reused = _analysis_counts()
        totals["analyses_computed"] = float(computed - self._analyses_base[0])
        totals["analyses_reused"] = float(reused - self._analyses_base[1])
        delta = {k: v - self._extract_seen.get(k, 0.0) for k, v in totals.items()}
        self._extract_seen = totals
        return {k: v for k, v in delta.items() if v}


def _analysis_counts() -> tuple[int, int]:
    from pytest_metatrace.analysis.memo import stats

    st = stats()
    return st.computed, st.reused


def _stats_dict(emb: Any) -> dict[str, float]:
    st = emb.stats
    return {
        "computed": float(st.computed),
        "reused": float(st.reused),
        "images_decoded": float(st.images_decoded),
        "wall_s": float(st.wall_s),
        # Constant per key: the first delta carries it, later ones drop it.
        **{f"needed:{key}": float(n) for key, n in getattr(st, "needed", {}).items()},
    }


STATE_KEY = pytest.StashKey[ProcessState]()


def cache_dir(config: pytest.Config) -> Path:
    """The cache directory (created with a .gitignore so it is never committed)."""
    value = get_settings(config).cache_dir
    base = config.rootpath
    invoked = config.invocation_params.dir
    if config.inipath is None and not invoked.is_relative_to(base):
        # `pytest --pyargs pytest_metatrace.audits` from a folder without an ini
        # file: pytest takes the installed package as rootdir; cache where the
        # user is, never inside site-packages.
        base = invoked
    path = Path(value).expanduser() if value else base / ".metatrace_cache"
    if not path.is_absolute():
        path = base / path
    with contextlib.suppress(OSError):
        # A folder that cannot be created or written is used read-only; the
        # cache says what it lacks when something must be written (_sqlite.py).
        path.mkdir(parents=True, exist_ok=True)
    ignore = path / ".gitignore"
    if not ignore.exists():
        with contextlib.suppress(OSError):
            ignore.write_text("# created by pytest-metatrace\n*\n")
    return path


class _TerminalProgressWriter:
    """Writes progress lines to the terminal with pytest's capture suspended."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._dirty = False

    def _emit(self, line: str, transient: bool) -> None:
        capman = self.config.pluginmanager.getplugin("capturemanager")
        reporter = self.config.pluginmanager.getplugin("terminalreporter")
        if hasattr(self.config, "workerinput") or reporter is None:
            # xdist workers have no terminal: the controller shows their lines (_relay.py);
            # without a relay (another controller), they go to stderr.
            from pytest_metatrace._relay import worker_line

            if not worker_line(getattr(self.config, "workerinput", {}), line):
                print(line, file=sys.__stderr__, flush=True)
            return
        quiet = capman.global_and_fixture_disabled() if capman else contextlib.nullcontext()
        with quiet:
            if transient:
                if not self._dirty:
                    reporter.ensure_newline()
                reporter.rewrite(line, erase=True)
                self._dirty = True
            else:
                if self._dirty:  # replace the redrawn line by the permanent one
                    reporter.rewrite(line, erase=True)
                    reporter.line("")
                    self._dirty = False
                else:
                    reporter.ensure_newline()
                    reporter.write_line(line)

    def __call__(self, line: str) -> None:
        self._emit(line, transient=False)

    def update(self, line: str) -> None:
        """Redraw the current line (terminals only)."""
        self._emit(line, transient=True)

    @property
    def isatty(self) -> bool:
        """Whether progress can be redrawn in place."""
        reporter = self.config.pluginmanager.getplugin("terminalreporter")
        return bool(reporter is not None and getattr(reporter, "isatty", False))


def make_progress(config: pytest.Config) -> Any:
    """A :class:`~pytest_metatrace.progress.Progress` that prints to the terminal."""
    from pytest_metatrace.progress import Progress

    writer = _TerminalProgressWriter(config)
    if writer.isatty and not hasattr(config, "workerinput"):
        return Progress(writer, update=writer.update, interval=0.5)
    # A log (CI): a line every 15 s keeps it short but shows the run is alive.
    interval = float(env_value("progress-interval"))
    return Progress(writer, interval=interval)
