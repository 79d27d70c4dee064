"""Named encoders: the registry behind bare-name specs such as ``lite0`` or ``my_model``.

A name maps to a *factory* or to an *alias*:

- a factory is called as ``factory(**options)`` (options from the spec's
  ``?key=value`` part) and returns ``(model, preprocess)`` exactly like a
  ``py:`` callable, or a ready :class:`~.base.Encoder`, or a spec string;
- an alias is a spec string, e.g. ``lite0`` -> ``builtin:lite0``.

Names come from three places: built-ins, code (``register_encoder`` or the
plugin's ``pytest_metatrace_register_encoders(registry)`` hook in conftest
files) and the ``pytest_metatrace.encoders`` entry-point group of installed
distributions (entry point name -> factory), loaded only when that name is used.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import metadata
from typing import Any, TypeVar

from pytest_metatrace.encoders.errors import LIST_HINT, EncoderSpecError
from pytest_metatrace.encoders.families.builtin import BUILTINS
from pytest_metatrace.encoders.spec import closest

__all__ = [
    "ENTRY_POINT_GROUP",
    "EncoderFactory",
    "EncoderRegistry",
    "RegistryEntry",
    "default_registry",
    "list_encoders",
    "register_encoder",
    "session_registry",
]

#: Entry-point group scanned for encoder factories.
ENTRY_POINT_GROUP = "pytest_metatrace.encoders"

#: ``(**options) -> (model, preprocess) | Encoder | spec string``.
EncoderFactory = Callable[..., Any]
F = TypeVar("F", bound=EncoderFactory)

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+\-/]*$")

#: Names every registry starts with (``builtins=True``): the built-in encoders'
#: bare names, each an alias of its ``builtin:`` spec.
BUILTIN_ALIASES: dict[str, tuple[str, str]] = {
    name: (
        f"builtin:{name}",
        model.description + ("; the default encoder" if name == "lite0" else ""),
    )
    for name, model in BUILTINS.items()
}


@dataclass(frozen=True)
class RegistryEntry:
    """One registered name."""

    name: str  #: the bare name
    factory: EncoderFactory | None  #: None for aliases and for entry points not loaded yet
    alias: str | None = None  #: the spec the name stands for, when it is an alias
    description: str = ""  #: one line for ``--metatrace-list-encoders``
    source: str = "code"  #: ``builtin``, ``code`` or ``entry point <distribution>``
    entry_point: str | None = None  #: ``module:attr`` of an entry point, loaded on demand


class EncoderRegistry:
    """Bare encoder names -> factories or alias specs (see the module docstring)."""

    def __init__(self, *, builtins: bool = True, entry_points: bool = True) -> None:
        self._entries: dict[str, RegistryEntry] = {}
        self._scan_entry_points = entry_points
        self._scanned = not entry_points
        if builtins:
            for name, (alias, description) in BUILTIN_ALIASES.items():
                self._entries[name] = RegistryEntry(
                    name=name, factory=None, alias=alias, description=description, source="builtin"
                )

    def __contains__(self, name: object) -> bool:
        self._scan()
        return name in self._entries

    def __len__(self) -> int:
        self._scan()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"EncoderRegistry({self.names()!r})"

    def copy(self) -> EncoderRegistry:
        """An independent registry with the same entries (e.g. one per pytest session)."""
        self._scan()
        new = EncoderRegistry(builtins=False, entry_points=False)
        new._entries = dict(self._entries)
        return new

    def register(
        self,
        name: str,
        factory: EncoderFactory | str,
        *,
        description: str = "",
        source: str = "code",
        override: bool = False,
    ) -> None:
        """Register ``name`` for a factory, or as an alias when ``factory`` is a spec string."""
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise EncoderSpecError(
                f"bad encoder name {name!r}: use letters, digits and _.+-/ (no ':'), "
                "e.g. 'my_model'"
            )
        self._scan()
        old = self._entries.get(name)
        if isinstance(factory, str):
            entry = RegistryEntry(name, None, alias=factory, description=description, source=source)
        elif callable(factory):
            entry = RegistryEntry(name, factory, description=description, source=source)
        else:
            raise EncoderSpecError(
                f"encoder {name!r}: register a callable (**options) -> (model, preprocess), "
                f"or a spec string; got {type(factory).__name__}"
            )
        # Code may replace an installed entry point; anything else needs override=True.
        protected = old is not None and not override and not old.source.startswith("entry point")
        if (
            protected
            and old is not None
            and (old.factory, old.alias) != (entry.factory, entry.alias)
        ):
            raise EncoderSpecError(
                f"encoder name {name!r} is already registered (source: {old.source}); "
                "pick another name or pass override=True"
            )
        self._entries[name] = entry

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a no-op when absent)."""
        self._scan()
        self._entries.pop(name, None)

    def names(self, pattern: str | None = None) -> list[str]:
        """Registered names, sorted, optionally filtered by an fnmatch ``pattern``."""
        self._scan()
        names = sorted(self._entries)
        return [n for n in names if fnmatch.fnmatchcase(n, pattern)] if pattern else names

    def get(self, name: str) -> RegistryEntry:
        """The entry of ``name`` with its factory loaded; unknown names raise with suggestions."""
        self._scan()
        entry = self._entries.get(name)
        if entry is None:
            raise EncoderSpecError(self.unknown_message(name))
        if entry.entry_point is not None and entry.factory is None:
            entry = self._load_entry_point(entry)
        return entry

    def unknown_message(self, name: str, extra: list[str] | None = None) -> str:
        """The "unknown encoder" message, with did-you-mean over names and ``extra`` candidates."""
        matches = closest(name, self.names()) or closest(name, extra or [])
        hint = "; did you mean " + " or ".join(repr(m) for m in matches) + "?" if matches else ""
        return (
            f"unknown encoder {name!r}{hint} {LIST_HINT}; other encoders are written "
            "family:target, e.g. timm:resnet50.a1_in1k, open_clip:ViT-B-16@openai, "
            "hf:facebook/dinov2-base, onnx:/path/model.onnx, py:my_pkg.models:make"
        )

    def describe(self) -> dict[str, str]:
        """Name -> one-line description (aliases name their target), for the encoder listing."""
        self._scan()
        out = {}
        for name, e in sorted(self._entries.items()):
            text = e.description or ""
            if e.alias:
                text = f"{text} [= {e.alias}]" if text else f"= {e.alias}"
            out[name] = text
        return out

    def entries(self) -> list[RegistryEntry]:
        """Every entry, sorted by name (entry points not loaded)."""
        self._scan()
        return [e for _, e in sorted(self._entries.items())]

    # -- entry points ---------------------------------------------------------------------

    def _scan(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in self._entries:
                continue  # code registrations and built-ins win over installed packages
            dist = getattr(getattr(ep, "dist", None), "name", None) or "?"
            self._entries[ep.name] = RegistryEntry(
                ep.name,
                None,
                description=f"from {dist}",
                source=f"entry point {dist}",
                entry_point=ep.value,
            )

    def _load_entry_point(self, entry: RegistryEntry) -> RegistryEntry:
        ep = metadata.EntryPoint(
            name=entry.name, value=entry.entry_point or "", group=ENTRY_POINT_GROUP
        )
        try:
            obj = ep.load()
        except Exception as exc:
            raise EncoderSpecError(
                f"encoder {entry.name!r} ({entry.source}) failed to load {entry.entry_point!r}: "
                f"{type(exc).__name__}: {exc}; reinstall that package or pick another encoder"
            ) from exc
        loaded = (
            replace(entry, factory=None, alias=obj)
            if isinstance(obj, str)
            else replace(entry, factory=obj)
        )
        self._entries[entry.name] = loaded
        return loaded


#: The process-wide registry that bare names resolve against by default.
default_registry = EncoderRegistry()


def register_encoder(
    name: str, *, description: str = "", override: bool = False
) -> Callable[[F], F]:
    """Decorator: register a factory ``(**options) -> (model, preprocess)`` by default."""

    def deco(factory: F) -> F:
        default_registry.register(name, factory, description=description, override=override)
        return factory

    return deco


def session_registry() -> EncoderRegistry:
    """A fresh registry for one pytest session: a copy of the default registry.

    The plugin hands it to ``pytest_metatrace_register_encoders``, so that conftest
    registrations stay in their session (in-process ``pytester`` runs do not leak).
    """
    return default_registry.copy()


def list_encoders(pattern: str | None = None, registry: EncoderRegistry | None = None) -> list[str]:
    """Registered encoder names (default registry), filtered by an fnmatch ``pattern``."""
    return (registry or default_registry).names(pattern)
