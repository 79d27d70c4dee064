"""One module per encoder family; each imports its library lazily.

Every family module defines ``check(parsed, ctx)`` (the collection-time checks:
cheap ones always, library and hub ones when ``ctx.check_available``) and
``load(parsed, ctx)`` (returns a :class:`~..base.LoadedModel` or a ready
:class:`~..base.Encoder`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pytest_metatrace.encoders.hub import HubProbe

if TYPE_CHECKING:
    from pytest_metatrace.encoders.base import Encoder, LoadedModel
    from pytest_metatrace.encoders.registry import EncoderRegistry
    from pytest_metatrace.encoders.spec import ParsedSpec

__all__ = [
    "CheckContext",
    "FamilyModule",
    "LoadContext",
    "finish_preprocess",
    "get_family",
    "local_path",
    "offline_message",
    "reject_options",
]

_MODULES = {
    "timm": "timm",
    "open_clip": "open_clip",
    "hf": "hf",
    "onnx": "onnx",
    "py": "python",
    "builtin": "builtin",
}


@dataclass(frozen=True)
class CheckContext:
    """What a family's ``check`` may use."""

    check_available: bool  #: also check the library knows the name and the weights are reachable
    probe: HubProbe  #: connectivity probe, ``probe(host) -> bool``
    registry: EncoderRegistry  #: for aliases that point at other specs


@dataclass(frozen=True)
class LoadContext:
    """What a family's ``load`` may use."""

    device: Any  #: resolved ``torch.device``
    precision: str  #: resolved precision
    resize_policy: str  #: ``native`` or ``crop-size``
    cache_dir: Path  #: where converted weights are cached
    registry: EncoderRegistry  #: the registry bare names resolve against


class FamilyModule(Protocol):
    """The two functions every family module defines."""

    def check(self, parsed: ParsedSpec, ctx: CheckContext) -> None:
        """Collection-time checks; raise ``EncoderSpecError`` with the fix."""

    def load(self, parsed: ParsedSpec, ctx: LoadContext) -> LoadedModel | Encoder:
        """Load the model and its preprocessing."""


def get_family(name: str) -> FamilyModule:
    """The module implementing family ``name`` (imported on first use)."""
    module: Any = importlib.import_module(f"{__name__}.{_MODULES[name]}")
    return module  # type: ignore[no-any-return]


def local_path(text: str, what: str, *, directory: bool = False) -> Path:
    """``text`` as an absolute path that must exist; raises with the fix otherwise."""
    from pytest_metatrace.encoders.errors import EncoderSpecError
    from pytest_metatrace.encoders.identity import expand_path

    path = expand_path(text)
    ok = path.is_dir() if directory else path.is_file()
    if not ok:
        kind = "directory" if directory else "file"
        relative = not Path(text).expanduser().is_absolute()
        where = (
            f" (relative paths start at the current directory, {Path.cwd()})" if relative else ""
        )
        raise EncoderSpecError(
            f"{what} {kind} not found: {path}{where}; check the path or download the weights "
            "there first"
        )
    return path


def finish_preprocess(cfg: Any, parsed: ParsedSpec, resize_policy: str) -> Any:
    """Apply the run's resize policy and the spec's ``?key=value`` preprocessing overrides."""
    return cfg.replace(resize_policy=resize_policy, **parsed.preprocess_overrides())


def reject_options(parsed: ParsedSpec, allowed: tuple[str, ...], family: str) -> None:
    """Raise for model options (non-preprocessing ``?key=``) that ``family`` does not take."""
    from pytest_metatrace.encoders.config import PREPROCESS_KEYS
    from pytest_metatrace.encoders.errors import EncoderSpecError

    bad = sorted(set(parsed.model_options()) - set(allowed))
    if bad:
        raise EncoderSpecError(
            f"{family} specs take no option(s) {bad} ({parsed.raw!r}); accepted: "
            f"{list(allowed) + list(PREPROCESS_KEYS)}"
        )


def offline_message(what: str, host: str, download: str, local: str) -> str:
    """The message for hub weights that are neither cached nor reachable."""
    from pytest_metatrace.encoders.hub import hub_offline

    why = (
        "the machine is declared offline (HF_HUB_OFFLINE)"
        if hub_offline()
        else f"{host} cannot be reached"
    )
    return (
        f"{what} are not in the local cache and {why}. Fix: on a machine with internet run\n"
        f"    {download}\n"
        "and copy the cache (~/.cache/huggingface, or $HF_HOME) to this machine, or use local "
        f"weights:\n    {local}"
    )
