"""``timm:<model>[@<tag> | @<weights file>][?kwarg=value]``: a timm model's pooled features.

Loaded exactly as timm users load it: ``timm.create_model(name, pretrained=True,
num_classes=0)``; a local file goes through ``pretrained_cfg_overlay=dict(file=...)``
so that the (tag's) pretrained cfg, hence mean/std, interpolation and crop_pct, is
kept. ``num_classes=0`` makes the forward return the pooled pre-logits features
(head norm included where the model has one). Preprocessing comes from
``timm.data.resolve_data_config(model=model)``; options other than preprocessing
keys are passed to ``create_model`` (e.g. ``?img_size=256&global_pool=avg``).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any

from pytest_metatrace.encoders.base import LoadedModel
from pytest_metatrace.encoders.config import PreprocessCfg
from pytest_metatrace.encoders.errors import EncoderSpecError
from pytest_metatrace.encoders.families import (
    CheckContext,
    LoadContext,
    finish_preprocess,
    local_path,
    offline_message,
)
from pytest_metatrace.encoders.families._weights import weights_refusal
from pytest_metatrace.encoders.hub import cached_url_file, hf_cached, hf_endpoint_host, url_host
from pytest_metatrace.encoders.spec import ParsedSpec, closest

__all__ = ["OUTPUT", "check", "load", "model_name"]

#: Output selection recorded in the fingerprint.
OUTPUT = "timm forward with num_classes=0: pooled pre-logits features"
_RESERVED = ("num_classes", "pretrained", "pretrained_cfg_overlay", "features_only")


def model_name(parsed: ParsedSpec) -> str:
    """The name handed to ``timm.create_model``: ``model`` or ``model.tag``."""
    if parsed.weights is None or parsed.weights_is_path():
        return parsed.target
    if "." in parsed.target or parsed.target.startswith(("hf-hub:", "local-dir:")):
        raise EncoderSpecError(
            f"{parsed.raw!r} names a tag twice; write timm:<model>.<tag> or timm:<model>@<tag>"
        )
    return f"{parsed.target}.{parsed.weights}"


def check(parsed: ParsedSpec, ctx: CheckContext) -> None:
    """Weights file exists; with ``check_available``: model and tag known, weights reachable."""
    name = model_name(parsed)
    bad = sorted(set(parsed.model_options()) & set(_RESERVED))
    if bad:
        raise EncoderSpecError(f"timm spec {parsed.raw!r} cannot set {bad}: the encoder sets them")
    if parsed.weights_is_path():
        local_path(parsed.weights or "", "timm weights")
    if name.startswith("local-dir:"):
        local_path(name.partition(":")[2], "timm local-dir", directory=True)
    if not ctx.check_available or name.startswith("local-dir:"):
        return
    import timm
    from timm.models import get_pretrained_cfg, split_model_name_tag

    if name.startswith("hf-hub:"):
        repo = name.partition(":")[2]
        files = (
            ["config.json"]
            if parsed.weights_is_path()
            else ["model.safetensors", "pytorch_model.bin"]
        )
        _require_hf(repo.partition("@")[0], files, name, parsed, ctx)
        return
    arch, _ = split_model_name_tag(name)
    if not timm.is_model(arch):
        matches = closest(arch, timm.list_models())
        hint = (
            "; did you mean " + " or ".join(f"'timm:{m}'" for m in matches) + "?" if matches else ""
        )
        raise EncoderSpecError(
            f'unknown timm model {arch!r}{hint} (`python -c "import timm; '
            f"print(timm.list_models('*{arch[:4]}*'))\"` lists similar names)"
        )
    if parsed.weights_is_path():
        return
    try:
        pcfg = get_pretrained_cfg(name)
    except RuntimeError:
        pcfg = None
    if pcfg is None or not (pcfg.hf_hub_id or pcfg.url or pcfg.file):
        tags = timm.list_pretrained(f"{arch}.*")
        raise EncoderSpecError(
            f"timm has no pretrained weights {name!r}; available: {tags or 'none'}; or give a "
            f"local file: timm:{arch}@/path/to/weights.safetensors"
        )
    if pcfg.hf_hub_id:
        repo, _, revision = pcfg.hf_hub_id.partition("@")
        files = (
            [pcfg.hf_hub_filename]
            if pcfg.hf_hub_filename
            else ["model.safetensors", "pytorch_model.bin"]
        )
        _require_hf(repo, files, name, parsed, ctx, revision=revision or None)
    elif pcfg.url:
        import torch.hub

        if cached_url_file(pcfg.url, [f"{torch.hub.get_dir()}/checkpoints"]) is None:
            host = url_host(pcfg.url)
            if not ctx.probe(host):
                raise EncoderSpecError(_offline(name, host, arch))


def load(parsed: ParsedSpec, ctx: LoadContext) -> LoadedModel:
    """Create the model with ``num_classes=0`` and read its data config."""
    import timm
    from timm.data import resolve_data_config

    name = model_name(parsed)
    kwargs = parsed.model_options()
    try:
        with _load_report() as report:
            if parsed.weights_is_path():
                path = local_path(parsed.weights or "", "timm weights")
                model = timm.create_model(
                    name,
                    pretrained=True,
                    pretrained_cfg_overlay={"file": str(path)},
                    num_classes=0,
                    **kwargs,
                )
                source = f"file:{path}"
            else:
                model = timm.create_model(name, pretrained=True, num_classes=0, **kwargs)
                pcfg = model.pretrained_cfg
                hub_id = pcfg.get("hf_hub_id")
                source = f"hf-hub:{hub_id}" if hub_id else str(pcfg.get("url"))
    except Exception as exc:
        refusal = weights_refusal(exc, parsed.weights or "") if parsed.weights_is_path() else None
        if refusal is not None:
            raise refusal from exc
        if not isinstance(exc, (RuntimeError, KeyError, ValueError, OSError, TypeError)):
            raise
        raise EncoderSpecError(
            f"timm could not create {name!r} from {parsed.raw!r}: {type(exc).__name__}: {exc}; a "
            f"weights file must hold a state dict of timm's {name.split('.')[0]!r}"
        ) from exc
    missing = [r for r in report if r.startswith("Missing keys")]
    if missing:
        # num_classes=0 makes timm load non-strictly: a wrong file would leave a random model.
        raise EncoderSpecError(
            f"timm loaded {parsed.raw!r} but the file lacks backbone weights "
            f"({missing[0][:200]}...); "
            f"the weights file must hold a state dict of timm's {name.split('.')[0]!r}"
        )
    data_config = resolve_data_config(model=model)
    preprocess = finish_preprocess(PreprocessCfg.from_timm(data_config), parsed, ctx.resize_policy)
    arch = name.split(".")[0] if not name.startswith("hf-hub:") else name
    return LoadedModel(
        model=model,
        preprocess=preprocess,
        architecture=architecture("timm", arch, kwargs),
        output=OUTPUT,
        weights_source=source,
        details={"timm_data_config": _jsonable(data_config)},
        libraries=("timm",),
    )


@contextlib.contextmanager
def _load_report() -> Iterator[list[str]]:
    """Collect timm's weight-loading messages (it only logs missing and unexpected keys)."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger = logging.getLogger("timm.models._builder")
    handler, level = Collect(logging.INFO), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def architecture(family: str, name: str, kwargs: dict[str, Any]) -> str:
    """``family:name`` plus the model kwargs, canonically."""
    if not kwargs:
        return f"{family}:{name}"
    return f"{family}:{name}?" + json.dumps(kwargs, sort_keys=True, default=str)


def _require_hf(
    repo: str,
    files: list[str],
    name: str,
    parsed: ParsedSpec,
    ctx: CheckContext,
    revision: str | None = None,
) -> None:
    if hf_cached(repo, files, revision=revision) is not None:
        return
    host = hf_endpoint_host()
    if not ctx.probe(host):
        raise EncoderSpecError(_offline(name, host, parsed.target.split(".")[0]))


def _offline(name: str, host: str, arch: str) -> str:
    return offline_message(
        f"timm weights {name!r}",
        host,
        f"python -c \"import timm; timm.create_model('{name}', pretrained=True)\"",
        f"timm:{arch}@/path/to/weights.safetensors (timm's pretrained cfg is kept)",
    )


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
