"""The run's settings as one frozen, typed object, resolved once per session.

:class:`Settings` has one attribute per row of the option table in
:mod:`pytest_metatrace.options`, named like the option with ``_`` for ``-``
(``--metatrace-knn-k`` -> ``settings.knn_k``). Each value is resolved by
:func:`~pytest_metatrace.options.get_option`: command line > ini file >
environment > default. Gate thresholds are the exception: a test's markers
sit between the command line and the ini file (command line > marker > ini >
default), so they are resolved per test by the recorder; ``threshold`` here is
the command line's list, or the ini file's when the command line gives none.

Options added to the table without a field here are still reachable as
``settings["new-option"]`` (and ``settings.extra``); the dashed-key lookup also
keeps audits written against the former ``dict`` fixture working.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import pytest

from pytest_metatrace.options import OPTIONS, get_option

__all__ = ["SETTINGS_KEY", "Settings", "get_settings"]


@dataclass(frozen=True)
class Settings:
    """Every resolved ``--metatrace-*`` option of a session (see ``pytest --help``)."""

    encoder: tuple[str, ...]  #: encoder specs, in command-line order
    data: tuple[str, ...]  #: dataset specs, in command-line order
    device: str  #: torch device for embedding and analyses (``auto``, ``cpu``, ``cuda:N``)
    precision: str  #: embedding precision (``auto``, ``fp32``, ``bf16``, ``fp16``)
    batch_size: int  #: images per forward pass
    workers: int  #: DataLoader workers (-1: chosen from the device)
    resize_policy: str  #: ``native`` or ``crop-size``
    mask_ratio: float  #: share of the crop blacked out by center masking
    seed: int  #: base seed for splits, processing draws and probes
    test_fraction: float  #: share of each class held out for testing
    max_pixels: int  #: larger images are refused, not decoded
    cache_dir: str | None  #: embedding cache folder (None: ``.metatrace_cache`` under rootdir)
    report: str  #: HTML report path (relative to the invocation folder) or ``none``
    json: str | None  #: JSON results path (relative to the invocation folder)
    threshold: tuple[str, ...]  #: ``KEY=VALUE`` gate thresholds (command line, else ini)
    probe_mode: str  #: ``protocol`` (SGD) or ``lbfgs``
    probe_seeds: int  #: seeds of the training draw in processing probes
    probe_trials: int  #: hyper-parameter trials of the probe search
    probe_epochs: int  #: probe training epochs
    knn_k: int  #: neighbours voting in the kNN audit
    save_baseline: str | None  #: write this run as a baseline to this path
    baseline: str | None  #: compare every gated record with this saved baseline
    baseline_tolerance: tuple[str, ...]  #: ``[KEY=]VALUE`` growth tolerated against the baseline
    pairs: str  #: paired photos of the retrieval audit (``city100``, folder, CSV, ``hf:...``)
    pairs_camera: tuple[str, ...]  #: ``PATTERN=TYPE`` camera-type mapping of paired photos
    pairs_crop: float  #: area share kept by the harder retrieval protocol's centre crop
    acquisition_data: str  #: data of the acquisition audit (``city100``, a manifest, ...)
    exif_data: str | None  #: folder of camera/phone photos labelled by their EXIF
    smartphone_table: str | None  #: CSV ``make,model,smartphone`` overriding the built-in table
    min_per_class: int  #: acquisition probes keep classes with at least this many images
    test_per_class: int  #: test images per class of acquisition probes (0: a quarter of the min)
    sweep_data: str  #: labelled set of the mask sweep's semantic curve (``none`` skips it)
    store: str | None  #: shared Parquet-shard embedding store URL (None: SQLite in the cache)
    ray: str | None  #: Ray cluster address for extraction (``auto``), None: in process
    ray_timeout: float  #: seconds to wait for the Ray cluster to answer before giving up
    malloc_tuning: bool  #: glibc malloc tuning in embedding processes (environment only)
    progress_interval: float  #: seconds between progress lines in a log (environment only)
    #: options of the table that have no field above (added by extensions), by dashed name
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_options(cls, values: Mapping[str, Any]) -> Settings:
        """Build from resolved option values keyed by dashed option name."""
        names = {f.name for f in fields(cls)} - {"extra"}
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in values.items():
            attr = key.replace("-", "_")
            frozen = tuple(value) if isinstance(value, list) else value
            if attr in names:
                kwargs[attr] = frozen
            else:
                extra[key] = frozen
        missing = sorted(names - kwargs.keys())
        if missing:
            raise ValueError(f"settings are missing option(s) {', '.join(missing)}")
        return cls(**kwargs, extra=extra)

    @classmethod
    def from_config(cls, config: pytest.Config) -> Settings:
        """Resolve every option of the table (flags aside) against ``config``."""
        return cls.from_options(
            {opt.name: get_option(config, opt.name) for opt in OPTIONS if not opt.flag}
        )

    def __getitem__(self, name: str) -> Any:
        """``settings["knn-k"]``: lookup by option name (dashed or underscored)."""
        attr = name.replace("-", "_")
        if attr != "extra" and attr in {f.name for f in fields(self)}:
            return getattr(self, attr)
        for key in (name, name.replace("_", "-")):
            if key in self.extra:
                return self.extra[key]
        raise KeyError(f"no option {name!r}; `pytest --help` lists the --metatrace-* options")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready ``{dashed option name: value}``, extensions' options included."""
        out = {
            f.name.replace("_", "-"): list(v) if isinstance(v, tuple) else v
            for f in fields(self)
            if f.name != "extra"
            for v in [getattr(self, f.name)]
        }
        out.update({k: list(v) if isinstance(v, tuple) else v for k, v in self.extra.items()})
        return out


SETTINGS_KEY = pytest.StashKey[Settings]()


def get_settings(config: pytest.Config) -> Settings:
    """The session's :class:`Settings`, resolved on first use and kept in ``config.stash``."""
    settings = config.stash.get(SETTINGS_KEY, None)
    if settings is None:
        settings = Settings.from_config(config)
        config.stash[SETTINGS_KEY] = settings
    return settings
