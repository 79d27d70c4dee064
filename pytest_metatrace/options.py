"""Every ``--metatrace-*`` option in one table, each with its ini twin.

One helper, :func:`get_option`, resolves a value as command line > ini file >
environment > default, and converts it to the option's type with an error
message that names the option. Knobs that only an environment variable sets
(they act before pytest's configuration exists, e.g. in loader processes) are
rows of the same table with ``env_only=True``, read by :func:`env_value`.
This module is imported at plugin load: stdlib only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pytest

__all__ = [
    "OPTIONS",
    "Option",
    "add_options",
    "env_value",
    "get_option",
    "resolved_options",
]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be a positive integer")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be zero or a positive integer")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise ValueError("must lie strictly between 0 and 1")
    return value


def _unit_interval(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError("must lie in [0, 1]")
    return value


def _crop_area(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise ValueError("must lie in (0, 1]: the share of the area kept")
    return value


def _device(text: str) -> str:
    from pytest_metatrace._device import DEVICE_PATTERN

    if not DEVICE_PATTERN.match(text):
        raise ValueError("use auto, cpu, cuda, cuda:N or mps")
    if text not in ("auto", "cpu"):
        # Checked at start, not when the first encoder loads: a device torch
        # lacks is a usage error. Only an explicit GPU choice imports torch here.
        from pytest_metatrace._device import resolve_device

        resolve_device(text)
    return text


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


@dataclass(frozen=True)
class Option:
    """One option: ``--metatrace-<name>`` on the command line, ``metatrace_<name>`` in ini."""

    name: str  #: dash-separated name after ``--metatrace-``
    help: str  #: help text shown by ``pytest --help``
    default: Any  #: value when neither the command line nor the ini file sets it
    convert: Callable[[str], Any] = str  #: text -> value; raises ValueError with a reason
    multiple: bool = False  #: repeatable on the command line, a line list in ini
    choices: tuple[str, ...] | None = None  #: allowed values, if closed
    metavar: str = "VALUE"  #: placeholder in help
    flag: bool = False  #: a store_true switch (ini: true/false)
    env: str | None = None  #: environment variable consulted between ini and default
    env_only: bool = False  #: no command-line flag or ini key: only ``env`` sets it

    @property
    def cli(self) -> str:
        """The command-line flag."""
        return f"--metatrace-{self.name}"

    @property
    def dest(self) -> str:
        """The argparse destination."""
        return "metatrace_" + self.name.replace("-", "_")

    @property
    def ini(self) -> str:
        """The ini-file key."""
        return self.dest


OPTIONS: tuple[Option, ...] = (
    Option(
        "encoder",
        "encoder spec to audit; repeatable. Forms: lite0 (built-in default), timm:NAME[@TAG|FILE], "
        "open_clip:ARCH@TAG|FILE, hf:HUB_ID|DIR, onnx:FILE, py:MODULE:CALLABLE, or a "
        "registered name "
        "(see --metatrace-list-encoders)",
        ["lite0"],
        multiple=True,
        metavar="SPEC",
    ),
    Option(
        "data",
        "dataset to audit on; repeatable: 'demo' (built-in photos), an image folder (one "
        "sub-folder "
        "per class), a CSV manifest (path,label[,group,metadata...]) or a registered name",
        ["demo"],
        multiple=True,
        metavar="SPEC",
    ),
    Option(
        "device",
        "torch device for embedding and analyses: auto (CUDA when present), cpu, cuda, cuda:N",
        "auto",
        _device,
        metavar="DEVICE",
    ),
    Option(
        "precision",
        "embedding precision: auto (bf16 autocast on CUDA, fp32 on CPU), fp32, bf16, fp16",
        "auto",
        choices=("auto", "fp32", "bf16", "fp16"),
    ),
    Option("batch-size", "images per forward pass", 64, _positive_int, metavar="N"),
    Option(
        "workers",
        "DataLoader worker processes that decode and process images (0 = in the main process; "
        "default: 0 on CPU, where the forward pass needs every core; one per core, at most 8, "
        "on CUDA)",
        -1,
        _non_negative_int,
        metavar="N",
    ),
    Option(
        "resize-policy",
        "encoder resize before the crop: native (the encoder's own crop_pct) or crop-size "
        "(shorter side straight to the crop size, as the paper's research code)",
        "native",
        choices=("native", "crop-size"),
    ),
    Option(
        "mask-ratio",
        "share of the crop's area blacked out by center masking in acquisition audits "
        "(paper text 0.90, research code 0.95)",
        0.90,
        _unit_interval,
        metavar="RATIO",
    ),
    Option("seed", "base seed for splits, processing draws and probes", 0, int, metavar="N"),
    Option(
        "test-fraction",
        "share of each class held out as the test split",
        0.5,
        _fraction,
        metavar="FRACTION",
    ),
    Option(
        "max-pixels",
        "refuse (skip and list) images larger than this many pixels instead of decoding them",
        100_000_000,
        _positive_int,
        metavar="N",
    ),
    Option(
        "cache-dir",
        "where embeddings and image checks are cached (default: .metatrace_cache under rootdir, "
        "or $METATRACE_CACHE_DIR)",
        None,
        metavar="DIR",
        env="METATRACE_CACHE_DIR",
    ),
    Option(
        "store",
        "shared embedding store: a directory or fsspec URL (s3://, gs://, a network file "
        "system) holding content-addressed Parquet shards, safe for many writers on many "
        "machines (needs the 'ray' extra); default: the local SQLite cache under the cache dir",
        None,
        metavar="URL",
    ),
    Option(
        "ray",
        "compute missing embeddings as a Ray Data job on this cluster: 'auto' joins a running "
        "local cluster or starts one, an address joins that cluster (as ray.init does); "
        "needs the 'ray' extra",
        None,
        metavar="ADDRESS",
    ),
    Option(
        "ray-timeout",
        "seconds to wait for the cluster at --metatrace-ray's address to answer; the session "
        "stops at start with 'cannot join a Ray cluster' when it does not",
        30.0,
        float,
        metavar="SECONDS",
    ),
    Option(
        "report",
        "where to write the HTML audit report (relative to the current directory, like "
        "--junitxml and --metatrace-json); 'none' to skip it",
        "reports/metatrace.html",
        metavar="PATH",
    ),
    Option(
        "json",
        "also write every record with its provenance to this JSON file (relative to the "
        "current directory, like --junitxml)",
        None,
        metavar="PATH",
    ),
    Option(
        "threshold",
        "gate threshold KEY=VALUE, repeatable (e.g. probe.jpeg=0.6, probe.*=chance+0.3, "
        "knn.jpeg.pos_same_gap=0.05); overrides ini and markers",
        [],
        multiple=True,
        metavar="KEY=VALUE",
    ),
    Option(
        "save-baseline",
        "at the end of the run, save every record (with intervals and per-image scores), the "
        "encoder fingerprints and the protocol settings to this baseline file (relative to the "
        "current directory)",
        None,
        metavar="PATH",
    ),
    Option(
        "baseline",
        "compare every gated record with this baseline file: a gate fails when the trace grew "
        "significantly (lower end of the 95 percent interval of candidate - baseline, paired "
        "over the same test images, above the tolerance)",
        None,
        metavar="PATH",
    ),
    Option(
        "baseline-tolerance",
        "allowed growth against the baseline, in the record's unit: VALUE for every gate or "
        "KEY=VALUE (wildcards allowed), repeatable (default 0)",
        [],
        multiple=True,
        metavar="[KEY=]VALUE",
    ),
    Option(
        "probe-mode",
        "linear-probe trainer: protocol (SGD, 30-trial search, 100 epochs) or lbfgs (faster, "
        "not the protocol)",
        "protocol",
        choices=("protocol", "lbfgs"),
    ),
    Option("probe-seeds", "seeds of the training draw in processing probes", 10, _positive_int),
    Option("probe-trials", "hyper-parameter trials of the probe search", 30, _positive_int),
    Option("probe-epochs", "probe training epochs", 100, _positive_int),
    Option("knn-k", "neighbours voting in the kNN semantic-influence audit", 10, _positive_int),
    Option(
        "malloc-tuning",
        "tune glibc malloc for inference (no trimming, no mmap) in embedding processes; "
        "METATRACE_MALLOC_TUNING=0 turns it off",
        True,
        _bool,
        env="METATRACE_MALLOC_TUNING",
        env_only=True,
    ),
    Option(
        "progress-interval",
        "seconds between progress lines when the output is not a terminal (a CI log)",
        15.0,
        float,
        env="METATRACE_PROGRESS_INTERVAL",
        env_only=True,
    ),
    Option(
        "pairs",
        "paired photos for the cross-camera retrieval audit: 'city100' (built-in camera/phone "
        "pairs), a folder (<subject>/<camera type>.jpg), a CSV manifest (path,subject,camera) "
        "or hf:OWNER/NAME[@SPLIT] (e.g. hf:CTU-OU/PairCams, needs the 'pairs' extra)",
        "city100",
        metavar="SPEC",
    ),
    Option(
        "pairs-camera",
        "map photo file names (or Hugging Face camera models) to camera types, PATTERN=TYPE, "
        "repeatable, first match wins (e.g. 'iphone*=smartphone'); default: the file name's stem",
        [],
        multiple=True,
        metavar="PATTERN=TYPE",
    ),
    Option(
        "pairs-crop",
        "the harder retrieval protocol: share of each photo's area kept by a centre crop of both "
        "photos of a pair (1 disables it; whole frames saturate recall@1 on easy pairs)",
        0.02,
        _crop_area,
        metavar="AREA",
    ),
    Option(
        "acquisition-data",
        "data of the acquisition audit: city100 (built-in camera/phone pairs), city100-samesize "
        "(resize control: both sides at 840x600), or a CSV manifest / folder whose metadata "
        "columns hold make, model, smartphone, exposure, aperture, iso, focal_length",
        "city100",
        metavar="SPEC",
    ),
    Option(
        "exif-data",
        "folder of photos straight from cameras and phones, labelled by their EXIF, for the "
        "acquisition audit (first sub-folder = group, e.g. photographer); overrides "
        "--metatrace-acquisition-data",
        None,
        metavar="DIR",
    ),
    Option(
        "smartphone-table",
        "CSV make,model,smartphone (model a regex, smartphone yes/no) whose rows take precedence "
        "over the built-in smartphone table",
        None,
        metavar="CSV",
    ),
    Option(
        "min-per-class",
        "acquisition probes keep classes with at least this many images (paper: 5000)",
        10,
        _positive_int,
        metavar="N",
    ),
    Option(
        "test-per-class",
        "acquisition probes hold out this many test images per class (paper: 500; 0 = a quarter "
        "of the smallest kept class)",
        0,
        _non_negative_int,
        metavar="N",
    ),
    Option(
        "sweep-data",
        "labelled set of the mask sweep's semantic kNN curve ('none' to skip the sweep)",
        "demo",
        metavar="SPEC",
    ),
    Option(
        "list-encoders",
        "print the registered encoder names and spec forms, then exit",
        False,
        _bool,
        flag=True,
    ),
)

_BY_NAME = {opt.name: opt for opt in OPTIONS}


def add_options(parser: pytest.Parser) -> None:
    """Register every option and its ini twin under the ``metatrace`` group."""
    env_only = ", ".join(f"{opt.env} ({opt.help})" for opt in OPTIONS if opt.env_only)
    group = parser.getgroup(
        "metatrace",
        "visual-encoder metadata-trace audits (pytest-metatrace); environment only: " + env_only,
    )
    for opt in OPTIONS:
        if opt.env_only:
            continue
        default_text = "" if opt.default in (None, [], False) else f" (default: {opt.default})"
        if opt.multiple and isinstance(opt.default, list) and opt.default:
            default_text = f" (default: {', '.join(map(str, opt.default))})"
        if opt.flag:
            group.addoption(
                opt.cli, action="store_true", dest=opt.dest, default=None, help=opt.help
            )
            parser.addini(opt.ini, opt.help, type="bool", default=None)
            continue
        group.addoption(
            opt.cli,
            action="append" if opt.multiple else "store",
            dest=opt.dest,
            default=None,
            metavar=opt.metavar,
            choices=list(opt.choices) if opt.choices else None,
            help=opt.help + default_text,
        )
        ini_type: Literal["linelist", "string"] = "linelist" if opt.multiple else "string"
        parser.addini(
            opt.ini,
            opt.help + default_text,
            type=ini_type,
            default=None,
        )


def _convert(opt: Option, raw: Any, source: str) -> Any:
    if opt.flag:
        return raw if isinstance(raw, bool) else _bool(str(raw))
    values: Sequence[Any] = raw if opt.multiple else [raw]
    where = {"command line": opt.cli, "environment": f"environment variable {opt.env}"}.get(
        source, f"ini option {opt.ini}"
    )
    out = []
    for item in values:
        text = str(item).strip()
        if opt.choices and text not in opt.choices:
            raise pytest.UsageError(f"{where} = {text!r}: choose one of {', '.join(opt.choices)}")
        try:
            out.append(opt.convert(text))
        except ValueError as exc:
            raise pytest.UsageError(f"{where} = {text!r}: {exc}") from None
    return out if opt.multiple else out[0]


def get_option(config: pytest.Config, name: str) -> Any:
    """Resolve one option: command line > ini file > environment > default, typed."""
    opt = _BY_NAME[name]
    if opt.env_only:
        return env_value(name)
    cli = config.getoption(opt.dest, default=None)
    if cli is not None:
        return _convert(opt, cli, "command line")
    ini = config.getini(opt.ini)
    if ini is not None and ini != []:
        if opt.multiple:
            return _convert(opt, list(ini), "ini file")
        return _convert(opt, ini, "ini file")
    if opt.env and os.environ.get(opt.env):
        return _convert(opt, os.environ[opt.env], "environment")
    return list(opt.default) if isinstance(opt.default, list) else opt.default


def env_value(name: str) -> Any:
    """Resolve an option from its environment variable alone: environment > default, typed."""
    opt = _BY_NAME[name]
    raw = os.environ.get(opt.env) if opt.env else None
    if raw is not None and raw.strip():
        return _convert(opt, raw, "environment")
    return list(opt.default) if isinstance(opt.default, list) else opt.default


def resolved_options(config: pytest.Config) -> dict[str, Any]:
    """Every option's resolved value, for the report's run summary."""
    return {opt.name: get_option(config, opt.name) for opt in OPTIONS if not opt.flag}
