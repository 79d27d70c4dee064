"""Spec string -> checked spec -> loaded :class:`~.base.Encoder`.

:func:`validate_spec` is what the plugin runs at collection: syntax, family,
registered names, local files, and (``check_available``) whether the library
knows the model and its weights are cached or downloadable. :func:`create_encoder`
runs the same checks, then loads.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from pytest_metatrace.encoders.base import Encoder
from pytest_metatrace.encoders.config import RESIZE_POLICIES, PreprocessCfg
from pytest_metatrace.encoders.errors import EncoderSpecError
from pytest_metatrace.encoders.families import CheckContext, LoadContext, get_family
from pytest_metatrace.encoders.hub import HubProbe, get_hub_probe
from pytest_metatrace.encoders.registry import EncoderRegistry, default_registry
from pytest_metatrace.encoders.spec import ParsedSpec, parse_spec

__all__ = ["create_encoder", "resolve_alias", "validate_spec"]

_MAX_ALIAS_DEPTH = 8


def validate_spec(
    spec: str | ParsedSpec,
    registry: EncoderRegistry | None = None,
    check_available: bool = True,
    *,
    probe: HubProbe | None = None,
) -> ParsedSpec:
    """Check ``spec`` without loading a model; return it parsed or raise :class:`EncoderSpecError`.

    Always: syntax, known family, bare names registered, preprocessing option values,
    local files and directories exist. With ``check_available`` also: the library
    knows the model / tag, and hub weights are in the local cache or the hub answers
    ``probe`` (default: :func:`~.hub.get_hub_probe`, a short TCP connect, False under
    ``HF_HUB_OFFLINE=1``). The second part imports the family's library.
    """
    parsed = spec if isinstance(spec, ParsedSpec) else parse_spec(spec)
    reg = registry if registry is not None else default_registry
    ctx = CheckContext(
        check_available=check_available, probe=probe or get_hub_probe(), registry=reg
    )
    _check(parsed, ctx, depth=0)
    return parsed


def create_encoder(
    spec: str,
    *,
    device: Any = "auto",
    precision: str = "auto",
    resize_policy: str = "native",
    registry: EncoderRegistry | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    memory_format: str = "auto",
    probe: HubProbe | None = None,
) -> Encoder:
    """Load the encoder ``spec`` names, ready to :meth:`~.base.Encoder.embed`.

    ``device``: ``auto`` (CUDA when available), ``cpu``, ``cuda[:N]``; ``precision``:
    ``auto`` (bf16 autocast on CUDA, fp32 on CPU), ``fp32``, ``bf16``, ``fp16``;
    ``resize_policy``: ``native`` or ``crop-size`` (docs/protocol.md §2); ``cache_dir``:
    where converted built-in weights are kept (default ``~/.cache/pytest-metatrace/weights``);
    ``memory_format``: ``auto`` (channels_last for conv nets), ``channels_last``,
    ``contiguous``. Hub downloads use each library's own cache.
    """
    from pytest_metatrace.encoders.families.builtin import default_cache_dir
    from pytest_metatrace.encoders.outputs import resolve_device, resolve_precision

    if resize_policy not in RESIZE_POLICIES:
        raise EncoderSpecError(
            f"resize_policy must be one of {list(RESIZE_POLICIES)}, got {resize_policy!r}"
        )
    reg = registry if registry is not None else default_registry
    parsed = validate_spec(spec, reg, check_available=True, probe=probe)
    dev = resolve_device(device)
    ctx = LoadContext(
        device=dev,
        precision=resolve_precision(precision, dev),
        resize_policy=resize_policy,
        cache_dir=Path(cache_dir) if cache_dir is not None else default_cache_dir(),
        registry=reg,
    )
    return _build(parsed, parsed, ctx, memory_format, depth=0)


def resolve_alias(parsed: ParsedSpec, alias: str) -> ParsedSpec:
    """The alias target, with the bare spec's options laid over the alias's own."""
    target = parse_spec(alias)
    if not parsed.options:
        return target
    options = dict(target.options)
    options.update(parsed.options)
    return replace(
        target, options=tuple(sorted(options.items())), raw=f"{alias} (via {parsed.raw})"
    )


def _check(parsed: ParsedSpec, ctx: CheckContext, depth: int) -> None:
    if depth > _MAX_ALIAS_DEPTH:
        raise EncoderSpecError(f"encoder aliases nest too deep (a cycle?) at {parsed.raw!r}")
    try:
        PreprocessCfg().replace(**parsed.preprocess_overrides())
    except EncoderSpecError as exc:
        raise EncoderSpecError(f"{parsed.raw!r}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise EncoderSpecError(f"{parsed.raw!r}: bad preprocessing option: {exc}") from None
    if parsed.family is not None:
        get_family(parsed.family).check(parsed, ctx)
        return
    reg = ctx.registry
    if parsed.target not in reg:
        raise EncoderSpecError(
            reg.unknown_message(parsed.target, _library_names() if ctx.check_available else None)
        )
    if not ctx.check_available:
        return  # loading an entry point imports its package; leave that for later
    entry = reg.get(parsed.target)
    if entry.alias is not None:
        _check(resolve_alias(parsed, entry.alias), ctx, depth + 1)


def _build(
    parsed: ParsedSpec, shown: ParsedSpec, ctx: LoadContext, memory_format: str, depth: int
) -> Encoder:
    from pytest_metatrace.encoders.base import TorchEncoder
    from pytest_metatrace.encoders.families import python

    if depth > _MAX_ALIAS_DEPTH:
        raise EncoderSpecError(f"encoder aliases nest too deep (a cycle?) at {parsed.raw!r}")
    family = parsed.family
    if family is None:
        entry = ctx.registry.get(parsed.target)
        if entry.alias is not None:
            return _build(resolve_alias(parsed, entry.alias), shown, ctx, memory_format, depth + 1)
        assert entry.factory is not None  # registry entries are aliases or factories
        kwargs = {k: v for k, v in parsed.model_options().items() if k != "output"}
        result = python.call_factory(entry.factory, kwargs, f"encoder factory {parsed.target!r}")
        if isinstance(result, str):
            return _build(resolve_alias(parsed, result), shown, ctx, memory_format, depth + 1)
        loaded = python.from_result(
            result,
            name=f"registry:{parsed.target}",
            options=kwargs,
            code_objects=(entry.factory,),
            weights_source=f"returned by registered encoder {parsed.target!r}",
            parsed=parsed,
            ctx=ctx,
        )
        family = "registry"
    else:
        loaded = get_family(family).load(parsed, ctx)
    if isinstance(loaded, Encoder):
        loaded.spec, loaded.id = shown.normalized, shown.short_id
        if loaded.preprocess.resize_policy != ctx.resize_policy:
            loaded.with_preprocess(loaded.preprocess.replace(resize_policy=ctx.resize_policy))
        return loaded
    return TorchEncoder(
        loaded,
        spec=shown.normalized,
        id=shown.short_id,
        family=family,
        device=ctx.device,
        precision=ctx.precision,
        memory_format=memory_format,
        dim_cache=ctx.cache_dir,
    )


def _library_names() -> list[str]:
    """Timm and open_clip model names as specs, for did-you-mean on unknown bare names."""
    names: list[str] = []
    try:
        import timm

        names += [f"timm:{n}" for n in timm.list_models()]
    except ImportError:  # pragma: no cover - timm is a dependency
        pass
    return names
