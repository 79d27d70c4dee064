"""``py:<module | file.py>:<callable>[@<weights>][?key=value]``: in-house encoders.

``callable(**options)`` is called with the spec's non-preprocessing options
(values parsed as in :func:`~..spec.parse_value`), plus ``weights=<path or tag>``
when the spec has ``@...``; ``output`` is reserved (see below). It returns
``(model, preprocess)``:

- ``model``: an ``nn.Module`` or any callable float (B, 3, H, W) tensor -> output.
  The output may be a tensor (B, D); a tuple / list (its first element); or a
  dict / ``ModelOutput`` (``?output=<key>``, else the first of ``image_embeds``,
  ``pooler_output``, ``embeddings``, ``embeds``, ``features``). (B, D, 1, 1) maps
  are flattened; anything else is an error.
- ``preprocess``: a :class:`~..config.PreprocessCfg`, a dict of its fields, a timm
  data config (``input_size=(3, H, W)``), or an open_clip preprocess cfg dict.

The callable may also return a ready :class:`~..base.Encoder`. Registry factories
(bare names) return the same things and go through :func:`from_result`.

Fingerprint: an ``nn.Module``'s weights digest is its state dict's; its
architecture names the callable, its options and the model class, plus the sha256
of their source files when those are the user's (not an installed package's), so
that editing in-house model code invalidates cached embeddings. A plain callable
has no state dict: its digest is that of its source file.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from pytest_metatrace.encoders.base import Encoder, LoadedModel
from pytest_metatrace.encoders.config import PreprocessCfg
from pytest_metatrace.encoders.errors import EncoderSpecError
from pytest_metatrace.encoders.families import (
    CheckContext,
    LoadContext,
    finish_preprocess,
    local_path,
)
from pytest_metatrace.encoders.identity import expand_path, file_digest
from pytest_metatrace.encoders.outputs import select_output
from pytest_metatrace.encoders.spec import ParsedSpec, did_you_mean, looks_like_path

__all__ = ["call_factory", "check", "from_result", "load", "resolve_callable"]


def _split(parsed: ParsedSpec) -> tuple[str, str]:
    module, _, func = parsed.target.rpartition(":")
    return module, func


def check(parsed: ParsedSpec, ctx: CheckContext) -> None:
    """A module file exists; with ``check_available`` the callable is imported."""
    module, _ = _split(parsed)
    if _is_file(module):
        local_path(module, "py: module")
    if ctx.check_available:
        resolve_callable(parsed)


def resolve_callable(parsed: ParsedSpec) -> Callable[..., Any]:
    """Import the module (dotted name or file) and return the callable."""
    module_name, func = _split(parsed)
    mod = _import_file(module_name) if _is_file(module_name) else _import_module(module_name)
    obj = getattr(mod, func, None)
    if obj is None:
        public = [n for n in dir(mod) if not n.startswith("_") and callable(getattr(mod, n))]
        raise EncoderSpecError(
            f"module {module_name!r} has no {func!r}{did_you_mean(func, public)} "
            f"(from {parsed.raw!r})"
        )
    if not callable(obj):
        raise EncoderSpecError(f"{module_name}:{func} is a {type(obj).__name__}, not a callable")
    return obj  # type: ignore[no-any-return]


def load(parsed: ParsedSpec, ctx: LoadContext) -> LoadedModel | Encoder:
    """Call the callable and wrap its ``(model, preprocess)``."""
    fn = resolve_callable(parsed)
    kwargs = {k: v for k, v in parsed.model_options().items() if k != "output"}
    if parsed.weights is not None:
        kwargs["weights"] = (
            str(expand_path(parsed.weights)) if parsed.weights_is_path() else parsed.weights
        )
    module_name, func = _split(parsed)
    result = call_factory(fn, kwargs, f"{module_name}:{func}")
    shown = {k: v for k, v in kwargs.items() if k != "weights"}
    return from_result(
        result,
        name=f"py:{_module_label(module_name)}:{func}",
        options=shown,
        code_objects=(fn,),
        weights_source=(
            f"file:{kwargs['weights']}"
            if parsed.weights_is_path()
            else f"returned by {parsed.target}"
        ),
        parsed=parsed,
        ctx=ctx,
    )


def call_factory(fn: Callable[..., Any], kwargs: dict[str, Any], what: str) -> Any:
    """Call ``fn(**kwargs)``; a bad signature or a failure becomes an actionable error."""
    try:
        inspect.signature(fn).bind(**kwargs)
    except TypeError as exc:
        raise EncoderSpecError(
            f"{what}{_signature(fn)} cannot take {sorted(kwargs)} ({exc}); fix the spec's ?options"
        ) from None
    except ValueError:  # builtins without a signature: let the call tell
        pass
    try:
        return fn(**kwargs)
    except EncoderSpecError:
        raise
    except Exception as exc:
        raise EncoderSpecError(f"{what}(**{kwargs!r}) failed: {type(exc).__name__}: {exc}") from exc


def from_result(
    result: Any,
    *,
    name: str,
    options: Mapping[str, Any],
    code_objects: tuple[Any, ...],
    weights_source: str,
    parsed: ParsedSpec,
    ctx: LoadContext,
) -> LoadedModel | Encoder:
    """Turn a factory's ``(model, preprocess)`` (or an Encoder) into a :class:`LoadedModel`."""
    import torch

    if isinstance(result, Encoder):
        return result
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        raise EncoderSpecError(
            f"{name} returned {type(result).__name__}; it must return (model, preprocess), e.g. "
            "(net, PreprocessCfg(input_size=(224, 224), mean=..., std=...))"
        )
    model, pp = result
    preprocess = _as_cfg(pp, name)
    if not callable(model):
        raise EncoderSpecError(
            f"{name} returned a {type(model).__name__} as model; return an nn.Module or a callable"
        )
    key = parsed.values().get("output")
    code = [*code_objects, model if not isinstance(model, torch.nn.Module) else type(model)]
    architecture = name
    if options:
        architecture += "?" + json.dumps(dict(options), sort_keys=True, default=str)
    architecture += f"|model={_qualname(model)}"
    digest = _code_digest(code)
    if digest:
        architecture += f"|code={digest[:16]}"
    weights_digest = None
    if not isinstance(model, torch.nn.Module):
        weights_digest = hashlib.sha256(
            f"callable:{_qualname(model)}|{digest}".encode()
        ).hexdigest()
        weights_source = "code (a callable without state_dict)"
    return LoadedModel(
        model=model,
        preprocess=finish_preprocess(preprocess, parsed, ctx.resize_policy),
        architecture=architecture,
        output="py output "
        + (repr(key) if key is not None else "(tensor | first element | default keys)"),
        weights_source=weights_source,
        weights_digest=weights_digest,
        select=lambda out: select_output(out, key),
    )


def _as_cfg(pp: Any, name: str) -> PreprocessCfg:
    if isinstance(pp, PreprocessCfg):
        return pp
    if isinstance(pp, Mapping):
        return PreprocessCfg.from_dict(pp)
    raise EncoderSpecError(
        f"{name} returned {type(pp).__name__} as preprocess; return a PreprocessCfg, a dict of its "
        "fields, or a timm data config (resolve_data_config(model=m))"
    )


def _is_file(module: str) -> bool:
    return module.endswith(".py") or looks_like_path(module)


def _module_label(module: str) -> str:
    return Path(module).stem if _is_file(module) else module


def _import_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise EncoderSpecError(
                f"cannot import module {name!r}: it is not on sys.path; install it, add its folder "
                "to sys.path (pytest's `pythonpath` ini option), or name the file: "
                f"py:/path/to/{name.rsplit('.', 1)[-1]}.py:<callable>"
            ) from exc
        raise EncoderSpecError(f"importing {name!r} failed: {exc}") from exc
    except Exception as exc:
        raise EncoderSpecError(f"importing {name!r} failed: {type(exc).__name__}: {exc}") from exc


def _import_file(path_text: str) -> ModuleType:
    path = local_path(path_text, "py: module")
    # One module object per file path, so that two specs naming the same file share it.
    mod_name = "_metatrace_py_" + hashlib.sha256(str(path).encode()).hexdigest()[:16]
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise EncoderSpecError(f"cannot import {path} as a Python module")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = mod
    try:
        spec.loader.exec_module(mod)
    except Exception as exc:
        del sys.modules[mod_name]
        raise EncoderSpecError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    return mod


def _qualname(obj: Any) -> str:
    cls = obj if inspect.isclass(obj) or inspect.isfunction(obj) else type(obj)
    return f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', type(obj).__name__)}"


def _code_digest(objs: list[Any]) -> str:
    """sha256 over the user's source files of ``objs`` (installed packages are skipped)."""
    files: set[str] = set()
    for obj in objs:
        target = (
            obj
            if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismethod(obj)
            else type(obj)
        )
        try:
            src = inspect.getsourcefile(target)
        except (TypeError, OSError):
            src = None
        if src and not any(part in ("site-packages", "dist-packages") for part in Path(src).parts):
            files.add(str(Path(src).resolve()))
    if not files:
        return ""
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(file_digest(f).encode())
    return h.hexdigest()


def _signature(fn: Callable[..., Any]) -> str:
    try:
        return str(inspect.signature(fn))
    except (TypeError, ValueError):
        return "(...)"
