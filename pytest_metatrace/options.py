"""How an option is declared, added to pytest and resolved.

Every ``--metatrace-*`` option is declared once, as a field of a frozen
settings dataclass made with :func:`option`: the core options are the fields of
:class:`pytest_metatrace.settings.Settings`; an audit's own options are the
fields of its spec's settings class (``AuditSpec.settings``). :func:`options_of`
reads the :class:`Option` rows back from such a class; :func:`add_options`
gives each a command-line flag and an ini twin; :func:`resolve_option` resolves
one value as command line > ini file > environment > default and converts it
to the option's type, with an error that names the option and the source at
fault. A path-valued option (``path=``) has its relative paths resolved by
:func:`pytest_metatrace.paths.locate`: an ini value against the ini file's
folder, any other against the folder pytest was invoked from; every value
keeps an :class:`OptionOrigin` that says where it came from, for messages.
Knobs that only an environment variable sets (they act before pytest's
configuration exists, e.g. in loader processes) are options with
``env_only=True``, read by :func:`env_value`.

This module is imported at plugin load: stdlib only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

from pytest_metatrace.paths import PathKind, locate

__all__ = [
    "RELATIVE",
    "Option",
    "OptionOrigin",
    "add_options",
    "boolean",
    "crop_area",
    "device",
    "env_value",
    "fraction",
    "non_negative_int",
    "option",
    "options_of",
    "positive_int",
    "resolve_option",
    "resolve_option_origin",
    "seed",
    "unit_interval",
]

_META = "metatrace_option"

#: The path rule, as ``--help`` states it for every path-valued option.
RELATIVE = "relative to the ini file's folder when set there, else to the current folder"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+:")


# --------------------------------------------------------------------------------------
# Converters: text -> value, ValueError with the reason


def positive_int(text: str) -> int:
    """An integer of at least 1."""
    value = int(text)
    if value < 1:
        raise ValueError("must be a positive integer")
    return value


def non_negative_int(text: str) -> int:
    """An integer of at least 0."""
    value = int(text)
    if value < 0:
        raise ValueError("must be zero or a positive integer")
    return value


def seed(text: str) -> int:
    """A seed numpy, torch and scikit-learn all accept: 0 to 2**32 - 1."""
    value = int(text)
    if not 0 <= value <= 2**32 - 1:
        raise ValueError("must be an integer from 0 to 4294967295 (2**32 - 1)")
    return value


def fraction(text: str) -> float:
    """A number strictly between 0 and 1."""
    value = float(text)
    if not 0.0 < value < 1.0:
        raise ValueError("must lie strictly between 0 and 1")
    return value


def unit_interval(text: str) -> float:
    """A number from 0 to 1."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError("must lie in [0, 1]")
    return value


def crop_area(text: str) -> float:
    """A share of an image's area kept by a crop, in (0, 1]."""
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise ValueError("must lie in (0, 1]: the share of the area kept")
    return value


def device(text: str) -> str:
    """A torch device name; an explicit GPU choice is checked against torch now."""
    from pytest_metatrace._device import DEVICE_PATTERN

    if not DEVICE_PATTERN.match(text):
        raise ValueError("use auto, cpu, cuda, cuda:N or mps")
    if text not in ("auto", "cpu"):
        # Checked at start, not when the first encoder loads: a device torch
        # lacks is a usage error. Only an explicit GPU choice imports torch here.
        from pytest_metatrace._device import resolve_device

        resolve_device(text)
    return text


def boolean(text: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off``."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


# --------------------------------------------------------------------------------------
# Declaration


@dataclass(frozen=True)
class Option:
    """One option: ``--metatrace-<name>`` on the command line, ``metatrace_<name>`` in ini."""

    name: str  #: dash-separated name after ``--metatrace-``
    help: str  #: help text shown by ``pytest --help``
    default: Any  #: value when neither the command line nor the ini file sets it
    convert: Callable[[str], Any] = str  #: text -> value; raises ValueError with a reason
    multiple: bool = False  #: repeatable on the command line, a line list in ini (a tuple)
    choices: tuple[str, ...] | None = None  #: allowed values, if closed
    metavar: str = "VALUE"  #: placeholder in help
    flag: bool = False  #: a store_true switch (ini: true/false)
    env: str | None = None  #: environment variable consulted between ini and default
    env_only: bool = False  #: no command-line flag or ini key: only ``env`` sets it
    #: changes what a number means: a baseline must have been measured with the same value
    protocol: bool = False
    #: the value holds paths, resolved by :func:`pytest_metatrace.paths.locate`
    path: PathKind | None = None
    #: words with a meaning of their own, never taken for paths (``none``, ``demo``)
    names: tuple[str, ...] = ()

    @property
    def cli(self) -> str:
        """The command-line flag."""
        return f"--metatrace-{self.name}"

    @property
    def dest(self) -> str:
        """The argparse destination (and the settings attribute, ``metatrace_`` aside)."""
        return "metatrace_" + self.attr

    @property
    def attr(self) -> str:
        """The settings attribute: the name with ``_`` for ``-``."""
        return self.name.replace("-", "_")

    @property
    def ini(self) -> str:
        """The ini-file key."""
        return self.dest


def option(
    default: Any,
    help: str,
    *,
    convert: Callable[[str], Any] = str,
    multiple: bool = False,
    choices: tuple[str, ...] | None = None,
    metavar: str = "VALUE",
    flag: bool = False,
    env: str | None = None,
    env_only: bool = False,
    protocol: bool = False,
    path: PathKind | None = None,
    names: tuple[str, ...] = (),
) -> Any:
    """A settings-dataclass field that is also a ``--metatrace-<field-name>`` option.

    The field's name gives the option's (``knn_k`` -> ``--metatrace-knn-k``,
    ini ``metatrace_knn_k``); ``multiple`` options hold tuples. Use it in a
    frozen dataclass: the core :class:`~pytest_metatrace.settings.Settings`, or
    the ``settings`` class of an :class:`~pytest_metatrace.spec.AuditSpec`.
    """
    if multiple:
        default = tuple(default)
    info = {
        "help": help,
        "convert": convert,
        "multiple": multiple,
        "choices": choices,
        "metavar": metavar,
        "flag": flag,
        "env": env,
        "env_only": env_only,
        "protocol": protocol,
        "path": path,
        "names": tuple(names),
    }
    return field(default=default, metadata={_META: info})


_OPTIONS_OF: dict[type, tuple[Option, ...]] = {}


def options_of(cls: type) -> tuple[Option, ...]:
    """The :class:`Option` rows of a settings dataclass's :func:`option` fields, in order."""
    cached = _OPTIONS_OF.get(cls)
    if cached is not None:
        return cached
    if not is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass of option() fields")
    out = []
    for f in fields(cls):
        info = f.metadata.get(_META)
        if info is not None:
            out.append(Option(name=f.name.replace("_", "-"), default=f.default, **info))
    _OPTIONS_OF[cls] = tuple(out)
    return _OPTIONS_OF[cls]


# --------------------------------------------------------------------------------------
# pytest wiring and resolution


def _default_text(opt: Option) -> str:
    if opt.default in (None, (), False):
        return ""
    if opt.multiple:
        return f" (default: {', '.join(map(str, opt.default))})"
    return f" (default: {opt.default})"


def add_options(parser: pytest.Parser, options: Sequence[Option]) -> None:
    """Register ``options`` and their ini twins under the ``metatrace`` group."""
    env_only = ", ".join(f"{opt.env} ({opt.help})" for opt in options if opt.env_only)
    group = parser.getgroup(
        "metatrace",
        "visual-encoder metadata-trace audits (pytest-metatrace)"
        + (f"; environment only: {env_only}" if env_only else ""),
    )
    for opt in options:
        if opt.env_only:
            continue
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
            help=opt.help + _default_text(opt),
        )
        ini_type: Literal["linelist", "string"] = "linelist" if opt.multiple else "string"
        parser.addini(opt.ini, opt.help + _default_text(opt), type=ini_type, default=None)


Source = Literal["command line", "-o", "ini file", "environment", "default"]


@dataclass(frozen=True)
class OptionOrigin:
    """Where one option's value came from, and the folder its relative paths start at."""

    option: Option
    source: Source
    base: Path  #: the folder relative paths in the value resolve against
    inipath: Path | None = None  #: the ini file, for values read from it
    given: tuple[str, ...] = ()  #: the value's items as written
    values: tuple[str, ...] = ()  #: the same items with their paths resolved

    def given_text(self, value: str) -> str:
        """The text as written for ``value`` (one resolved item); ``value`` when unknown."""
        for given, resolved in zip(self.given, self.values, strict=False):
            if resolved == value:
                return given
        return value

    def describe(self, value: str | None = None) -> str:
        """The option as set, for messages: source, text as written, base of a relative path.

        ``--metatrace-data=x (relative to /cwd)``, ``metatrace_data = x in
        /p/pyproject.toml (relative to /p)``; ``value`` picks one resolved item.
        """
        opt = self.option
        if value is not None:
            text = self.given_text(value)
        else:
            text = ", ".join(self.given) if self.given else str(opt.default)
        if self.source == "ini file":
            out = f"{opt.ini} = {text}"
            if self.inipath is not None:
                out += f" in {self.inipath}"
        elif self.source == "-o":
            out = f"-o {opt.ini}={text}"
        elif self.source == "environment":
            out = f"environment variable {opt.env}={text}"
        elif self.source == "default":
            out = f"{opt.cli} (default {text})"
        else:
            out = f"{opt.cli}={text}"
        pairs = zip(self.given, self.values, strict=False)
        if opt.path is not None and any(
            self._relative(g, v) for g, v in pairs if value is None or v == value
        ):
            out += f" (relative to {self.base})"
        return out

    def _relative(self, given: str, value: str) -> bool:
        if _is_absolute(given):
            return False  # absolute, or ~ expanded
        if value != given:
            return True  # a path part was resolved against the base
        if self.option.path == "encoder" or given.lower() in self.option.names:
            return False
        return not _is_absolute(given) and not _SCHEME.match(given)


def _is_absolute(text: str) -> bool:
    return Path(os.path.expanduser(text)).is_absolute()


def _convert(opt: Option, raw: Any, source: str) -> Any:
    if opt.flag:
        return raw if isinstance(raw, bool) else boolean(str(raw))
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
    return tuple(out) if opt.multiple else out[0]


def _raw(config: pytest.Config, opt: Option) -> tuple[Any, Source]:
    if opt.env_only:
        raw = os.environ.get(opt.env) if opt.env else None
        if raw is not None and raw.strip():
            return raw, "environment"
        return None, "default"
    cli = config.getoption(opt.dest, default=None)
    if cli is not None:
        return cli, "command line"
    try:
        ini = config.getini(opt.ini)
    except ValueError:  # an option added after the ini file was read (a late conftest)
        ini = None
    if ini is not None and ini != []:
        overrides = getattr(config.option, "override_ini", None) or ()
        typed = any(str(o).partition("=")[0].strip() == opt.ini for o in overrides)
        return (list(ini) if opt.multiple else ini), "-o" if typed else "ini file"
    if opt.env and os.environ.get(opt.env):
        return os.environ[opt.env], "environment"
    return None, "default"


def resolve_option_origin(config: pytest.Config, opt: Option) -> tuple[Any, OptionOrigin]:
    """One option's typed value and its :class:`OptionOrigin`.

    Command line > ini file > environment > default; the relative paths of a
    ``path=`` option are resolved against the ini file's folder
    (``config.inipath.parent``, else ``config.rootpath``) for a value read from
    the ini file and against ``config.invocation_params.dir`` for any other
    (command line, ``-o`` override, environment, default). Raises
    :class:`pytest.UsageError` naming the flag, ini key or variable at fault.
    """
    raw, source = _raw(config, opt)
    value = opt.default if raw is None else _convert(opt, raw, source.replace("-o", "ini file"))
    inipath = config.inipath if source == "ini file" else None
    if source == "ini file":
        base = config.inipath.parent if config.inipath is not None else config.rootpath
    else:
        base = config.invocation_params.dir
    items: tuple[Any, ...] = tuple(value) if opt.multiple else (value,)
    given = tuple(str(v) for v in items if isinstance(v, str))
    if opt.path is None or not given:
        return value, OptionOrigin(opt, source, base, inipath, given, given)
    kind = opt.path
    resolved = tuple(locate(kind, v, base, opt.names) if isinstance(v, str) else v for v in items)
    value = resolved if opt.multiple else resolved[0]
    texts = tuple(str(v) for v in resolved if isinstance(v, str))
    return value, OptionOrigin(opt, source, base, inipath, given, texts)


def resolve_option(config: pytest.Config, opt: Option) -> Any:
    """One option's value (see :func:`resolve_option_origin`), typed, paths resolved."""
    return resolve_option_origin(config, opt)[0]


def _env(opt: Option) -> Any:
    raw = os.environ.get(opt.env) if opt.env else None
    if raw is not None and raw.strip():
        return _convert(opt, raw, "environment")
    return opt.default


def env_value(name: str) -> Any:
    """A core option from its environment variable alone: environment > default, typed."""
    from pytest_metatrace.settings import core_options

    by_name = {o.name: o for o in core_options()}
    return _env(by_name[name])
