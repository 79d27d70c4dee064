"""The run's settings as one frozen, typed object, resolved once per session.

:class:`Settings` declares the core ``--metatrace-*`` options: each field is
made with :func:`~pytest_metatrace.options.option`, so the field *is* the
option (flag ``--metatrace-knn-k``, ini key ``metatrace_knn_k``, attribute
``settings.knn_k``). Each audit declares its own options the same way, as the
settings dataclass of its :class:`~pytest_metatrace.spec.AuditSpec`;
``settings.of(RetrievalSettings)`` gives that audit's typed object, and
``settings.pairs_crop`` reaches any audit's option by name.

Values are resolved once per session: command line > ini file > environment >
default. Gate thresholds are the exception: a test's markers sit between the
command line and the ini file (command line > marker > ini > default), so they
are resolved per test by the recorder; ``threshold`` here is the command
line's list, or the ini file's when the command line gives none.

Stdlib only at import (plugin load).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from pytest_metatrace.options import (
    RELATIVE,
    Option,
    OptionOrigin,
    boolean,
    device,
    fraction,
    non_negative_int,
    option,
    options_of,
    positive_int,
    resolve_option_origin,
    seed,
    unit_interval,
)

if TYPE_CHECKING:
    from pytest_metatrace.spec import AuditRegistry

__all__ = [
    "DEFAULT_REPORT_PATH",
    "SETTINGS_KEY",
    "Settings",
    "core_options",
    "get_settings",
    "protocol_option_names",
]

T = TypeVar("T")

#: Where the plugin writes the HTML report unless told otherwise.
DEFAULT_REPORT_PATH = "reports/metatrace.html"


@dataclass(frozen=True)
class Settings:
    """Every resolved ``--metatrace-*`` option of a session (see ``pytest --help``)."""

    encoder: tuple[str, ...] = option(
        ("lite0",),
        "encoder spec to audit; repeatable. Forms: lite0 (built-in default), "
        "timm:NAME[@TAG|FILE], open_clip:ARCH@TAG|FILE, hf:HUB_ID|DIR, onnx:FILE, "
        "py:MODULE:CALLABLE, or a registered name (see --metatrace-list-encoders); file parts "
        f"{RELATIVE}",
        multiple=True,
        metavar="SPEC",
        path="encoder",
    )
    data: tuple[str, ...] = option(
        ("demo",),
        "dataset to audit on; repeatable: 'demo' (built-in photos), an image folder (one "
        "sub-folder per class), a CSV manifest (path,label[,group,metadata...]) or a "
        f"registered name; paths {RELATIVE}",
        multiple=True,
        metavar="SPEC",
        path="spec",
        names=("demo", "city100", "city100-samesize"),
    )
    device: str = option(
        "auto",
        "torch device for embedding and analyses: auto (CUDA when present), cpu, cuda, cuda:N",
        convert=device,
        metavar="DEVICE",
    )
    precision: str = option(
        "auto",
        "embedding precision: auto (bf16 autocast on CUDA, fp32 on CPU), fp32, bf16, fp16",
        choices=("auto", "fp32", "bf16", "fp16"),
    )
    batch_size: int = option(64, "images per forward pass", convert=positive_int, metavar="N")
    workers: int = option(
        -1,
        "DataLoader worker processes that decode and process images (0 = in the main "
        "process; default: 0 on CPU, where the forward pass needs every core; one per core, "
        "at most 8, on CUDA)",
        convert=non_negative_int,
        metavar="N",
    )
    resize_policy: str = option(
        "native",
        "encoder resize before the crop: native (the encoder's own crop_pct) or crop-size "
        "(shorter side straight to the crop size, as the paper's research code)",
        choices=("native", "crop-size"),
        protocol=True,
    )
    mask_ratio: float = option(
        0.90,
        "share of the crop's area blacked out by center masking in acquisition audits "
        "(paper text 0.90, research code 0.95)",
        convert=unit_interval,
        metavar="RATIO",
        protocol=True,
    )
    seed: int = option(
        0,
        "base seed for splits, processing draws and probes (0 to 2**32 - 1)",
        convert=seed,
        metavar="N",
        protocol=True,
    )
    test_fraction: float = option(
        0.5,
        "share of each class held out as the test split",
        convert=fraction,
        metavar="FRACTION",
        protocol=True,
    )
    max_pixels: int = option(
        100_000_000,
        "refuse (skip and list) images larger than this many pixels instead of decoding them",
        convert=positive_int,
        metavar="N",
    )
    cache_dir: str | None = option(
        None,
        "where embeddings and image checks are cached (default: .metatrace_cache under "
        f"rootdir, or $METATRACE_CACHE_DIR); {RELATIVE}",
        metavar="DIR",
        path="file",
        env="METATRACE_CACHE_DIR",
    )
    store: str | None = option(
        None,
        "shared embedding store: a directory or fsspec URL (s3://, gs://, a network file "
        "system) holding content-addressed Parquet shards, safe for many writers on many "
        "machines (needs the 'ray' extra); default: the local SQLite cache under the cache dir; "
        f"a directory is {RELATIVE}",
        metavar="URL",
        path="file",
    )
    ray: str | None = option(
        None,
        "compute missing embeddings as a Ray Data job on this cluster: 'auto' joins a running "
        "local cluster or starts one, an address joins that cluster (as ray.init does); "
        "needs the 'ray' extra",
        metavar="ADDRESS",
    )
    ray_timeout: float = option(
        30.0,
        "seconds to wait for the cluster at --metatrace-ray's address to answer; the session "
        "stops at start with 'cannot join a Ray cluster' when it does not",
        convert=float,
        metavar="SECONDS",
    )
    report: str = option(
        DEFAULT_REPORT_PATH,
        f"where to write the HTML audit report ({RELATIVE}); 'none' to skip it",
        metavar="PATH",
        path="file",
        names=("none",),
    )
    json: str | None = option(
        None,
        f"also write every record with its provenance to this JSON file ({RELATIVE})",
        metavar="PATH",
        path="file",
    )
    threshold: tuple[str, ...] = option(
        (),
        "gate threshold KEY=VALUE, repeatable (e.g. probe.jpeg=0.6, probe.*=chance+0.3, "
        "knn.jpeg.pos_same_gap=0.05); overrides ini and markers",
        multiple=True,
        metavar="KEY=VALUE",
    )
    save_baseline: str | None = option(
        None,
        "at the end of the run, save every record (with intervals and per-image scores), the "
        f"encoder fingerprints and the protocol settings to this baseline file ({RELATIVE})",
        metavar="PATH",
        path="file",
    )
    baseline: str | None = option(
        None,
        "compare every gated record with this baseline file: a gate fails when the trace grew "
        "significantly (lower end of the 95 percent interval of candidate - baseline, paired "
        f"over the same test images, above the tolerance); {RELATIVE}",
        metavar="PATH",
        path="file",
    )
    baseline_tolerance: tuple[str, ...] = option(
        (),
        "allowed growth against the baseline, in the record's unit: VALUE for every gate or "
        "KEY=VALUE (wildcards allowed), repeatable (default 0)",
        multiple=True,
        metavar="[KEY=]VALUE",
    )
    gate: str = option(
        "both",
        "which checks fail a test: thresholds, baseline (a trace that grew significantly "
        "against --metatrace-baseline) or both; the other is still measured and reported "
        "(reported, not gating)",
        choices=("thresholds", "baseline", "both"),
        metavar="MODE",
    )
    markdown: str | None = option(
        None,
        "also write a GitHub-flavoured Markdown summary (failing gates first, then a table per "
        f"audit) to this file ({RELATIVE}); under GitHub Actions "
        "($GITHUB_STEP_SUMMARY set) the summary of a run with records is appended there "
        "even without this option",
        metavar="PATH",
        path="file",
    )
    probe_mode: str = option(
        "protocol",
        "linear-probe trainer: protocol (SGD, 30-trial search, 100 epochs) or lbfgs (faster, "
        "not the protocol)",
        choices=("protocol", "lbfgs"),
        protocol=True,
    )
    probe_seeds: int = option(
        10, "seeds of the training draw in processing probes", convert=positive_int, protocol=True
    )
    probe_trials: int = option(
        30, "hyper-parameter trials of the probe search", convert=positive_int, protocol=True
    )
    probe_epochs: int = option(100, "probe training epochs", convert=positive_int, protocol=True)
    knn_k: int = option(
        10,
        "neighbours voting in the kNN audits (semantic influence, mask sweep)",
        convert=positive_int,
        protocol=True,
    )
    malloc_tuning: bool = option(
        True,
        "tune glibc malloc for inference (no trimming, no mmap) in embedding processes; "
        "METATRACE_MALLOC_TUNING=0 turns it off",
        convert=boolean,
        env="METATRACE_MALLOC_TUNING",
        env_only=True,
    )
    progress_interval: float = option(
        15.0,
        "seconds between progress lines when the output is not a terminal (a CI log)",
        convert=float,
        env="METATRACE_PROGRESS_INTERVAL",
        env_only=True,
    )
    list_encoders: bool = option(
        False,
        "print the registered encoder names and spec forms, then exit",
        convert=boolean,
        flag=True,
    )
    #: the audits' own settings objects, by audit name (see :meth:`of`)
    audits: Mapping[str, Any] = field(default_factory=dict)
    #: where each option's value came from, by attribute (see :meth:`where`)
    origins: Mapping[str, OptionOrigin] = field(default_factory=dict, repr=False, compare=False)

    def where(self, attr: str, value: str | None = None) -> str:
        """The option as the user set it, for messages: source, text as written, base folder.

        ``settings.where("data", spec)``: ``metatrace_data = audit-data in
        /x/pyproject.toml (relative to /x)``, or ``--metatrace-data=audit-data
        (relative to /x/sub)``; ``value`` picks one item of a repeatable option.
        """
        origin = self.origins.get(attr)
        if origin is None:
            dashed = attr.replace("_", "-")
            return f"--metatrace-{dashed}" + (f"={value}" if value is not None else "")
        return origin.describe(value)

    def given(self, attr: str, value: str) -> str:
        """The text as written for ``value``, one resolved item of option ``attr``.

        Registered names are looked up by this text: a relative folder of the same
        name resolved to an absolute path does not hide them.
        """
        origin = self.origins.get(attr)
        return origin.given_text(value) if origin is not None else value

    def of(self, cls: type[T]) -> T:
        """The settings object of the audit whose spec declares ``cls`` (typed).

        ``settings.of(RetrievalSettings).pairs_crop``; raises ``LookupError``
        when no registered audit declares ``cls``.
        """
        for value in self.audits.values():
            if type(value) is cls:
                return value
        raise LookupError(
            f"no registered audit declares settings {cls.__name__}; is its spec registered?"
        )

    def __getattr__(self, name: str) -> Any:
        """An audit's option by attribute (``settings.pairs_crop``), typed ``Any``."""
        if name.startswith("__") or name in ("audits", "origins"):
            raise AttributeError(name)
        for value in self.__dict__.get("audits", {}).values():
            if name in {f.name for f in fields(value)}:
                return getattr(value, name)
        raise AttributeError(f"no option {name!r}; `pytest --help` lists the --metatrace-* options")

    def __getitem__(self, name: str) -> Any:
        """``settings["knn-k"]``: lookup by option name (dashed or underscored)."""
        try:
            return getattr(self, name.replace("-", "_"))
        except AttributeError:
            raise KeyError(
                f"no option {name!r}; `pytest --help` lists the --metatrace-* options"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready ``{dashed option name: value}`` of the core and every audit's options."""
        out = {o.name: _plain(getattr(self, o.attr)) for o in core_options() if not o.flag}
        for value in self.audits.values():
            out.update({o.name: _plain(getattr(value, o.attr)) for o in options_of(type(value))})
        return out

    def protocol_settings(self) -> dict[str, Any]:
        """The options that change what a number means (a baseline must match them)."""
        names = {o.name for o in core_options() if o.protocol}
        for value in self.audits.values():
            names.update(o.name for o in options_of(type(value)) if o.protocol)
        return {k: v for k, v in self.to_dict().items() if k in names}

    @classmethod
    def from_config(cls, config: pytest.Config, registry: AuditRegistry | None = None) -> Settings:
        """Resolve the core options and those of every registered audit against ``config``."""
        origins: dict[str, OptionOrigin] = {}

        def resolve(opt: Option) -> Any:
            value, origins[opt.attr] = resolve_option_origin(config, opt)
            return value

        core = {opt.attr: resolve(opt) for opt in core_options()}
        audits: dict[str, Any] = {}
        for spec in registry.specs() if registry is not None else ():
            if spec.settings is not None:
                audits[spec.name] = spec.settings(**{o.attr: resolve(o) for o in spec.options})
        return cls(**core, audits=audits, origins=origins)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def core_options() -> tuple[Option, ...]:
    """The core options (the fields of :class:`Settings`), in ``--help`` order."""
    return options_of(Settings)


def protocol_option_names(registry: AuditRegistry | None = None) -> tuple[str, ...]:
    """Options that change what a number means: a baseline must have been measured with them.

    Device, precision, batch size and workers may differ (another CI machine).
    The core options and those of ``registry``'s audits (default: the built-in
    and installed audits) marked ``protocol=True``.
    """
    if registry is None:
        from pytest_metatrace.spec import default_registry

        registry = default_registry()
    options = (*core_options(), *registry.options())
    return tuple(o.name for o in options if o.protocol)


SETTINGS_KEY = pytest.StashKey[Settings]()


def get_settings(config: pytest.Config) -> Settings:
    """The session's :class:`Settings`, resolved on first use and kept in ``config.stash``.

    Raises :class:`pytest.UsageError` on a value that cannot be read.
    """
    settings = config.stash.get(SETTINGS_KEY, None)
    if settings is None:
        from pytest_metatrace.registry import session_registry

        settings = Settings.from_config(config, session_registry(config))
        config.stash[SETTINGS_KEY] = settings
    return settings
