"""``open_clip:<arch>@<tag | weights file>``: the image tower of an open_clip model.

Loaded as open_clip users load it, ``open_clip.create_model(arch, pretrained=...)``
(``hf-hub:<repo>`` and ``local-dir:<dir>`` architectures work too); only
``model.visual`` is kept, so the text tower's memory is freed. The embedding is
``encode_image(x)`` unnormalized, i.e. ``model.visual(x)`` (the projected
features; CoCa's tower returns ``(pooled, tokens)``, of which the first).
Preprocessing comes from ``model.visual.preprocess_cfg`` (size, mean, std,
interpolation, resize_mode, fill_color), as ``image_transform_v2`` reads it. A
local weights file gets open_clip's defaults (OpenAI mean/std, bicubic), as in
open_clip itself; override them with ``?mean=...&std=...`` when needed.
"""

from __future__ import annotations

import os
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
from pytest_metatrace.encoders.families.timm import architecture
from pytest_metatrace.encoders.hub import cached_url_file, hf_cached, hf_endpoint_host, url_host
from pytest_metatrace.encoders.spec import ParsedSpec, closest

__all__ = ["OUTPUT", "check", "load"]

#: Output selection recorded in the fingerprint.
OUTPUT = "open_clip encode_image(normalize=False): projected image features"
_RESERVED = ("pretrained", "device", "precision", "jit", "output_dict")
_HF_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def check(parsed: ParsedSpec, ctx: CheckContext) -> None:
    """Weights file / local dir exist; with ``check_available``: arch and tag known, reachable."""
    arch = parsed.target
    bad = sorted(set(parsed.model_options()) & set(_RESERVED))
    if bad:
        raise EncoderSpecError(
            f"open_clip spec {parsed.raw!r} cannot set {bad}: the encoder sets them"
        )
    if parsed.weights_is_path():
        local_path(parsed.weights or "", "open_clip weights")
    if arch.startswith("local-dir:"):
        local_path(arch.partition(":")[2], "open_clip local-dir", directory=True)
        return
    if not ctx.check_available:
        return
    import open_clip

    if arch.startswith("hf-hub:"):
        repo = arch.partition(":")[2]
        if (
            hf_cached(repo, ["open_clip_config.json"]) is None
            or hf_cached(repo, _HF_WEIGHTS) is None
        ):
            _require_online(repo, parsed, ctx, f"open_clip.create_model('{arch}')")
        return
    if arch.replace("/", "-") not in open_clip.list_models():
        matches = closest(arch, open_clip.list_models())
        hint = (
            "; did you mean " + " or ".join(f"'open_clip:{m}'" for m in matches) + "?"
            if matches
            else ""
        )
        raise EncoderSpecError(
            f"unknown open_clip architecture {arch!r}{hint} (open_clip.list_models() lists them)"
        )
    if parsed.weights_is_path():
        return
    tag = parsed.weights or ""
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise EncoderSpecError(
            f"open_clip has no pretrained tag {tag!r} for {arch!r}; available: {tags or 'none'}; "
            f"or give a local file: open_clip:{arch}@/path/to/open_clip_model.safetensors"
        )
    load_call = f"open_clip.create_model('{arch}', pretrained='{tag}')"
    if cfg.get("hf_hub"):
        # open_clip prefers the hub (with a safetensors alternative) when huggingface_hub exists.
        model_id, filename = os.path.split(cfg["hf_hub"])
        filename = filename or "open_clip_pytorch_model.bin"
        names = [*_safe_alternatives(filename), filename]
        if hf_cached(model_id, names) is None:
            _require_online(model_id, parsed, ctx, load_call)
    elif cfg.get("url") and cached_url_file(cfg["url"], ["~/.cache/clip"]) is None:
        host = url_host(cfg["url"])
        if not ctx.probe(host):
            raise EncoderSpecError(_offline(parsed, host, load_call))


def load(parsed: ParsedSpec, ctx: LoadContext) -> LoadedModel:
    """Create the model on CPU in fp32, keep its image tower and preprocess cfg."""
    import open_clip
    import torch

    kwargs = parsed.model_options()
    if parsed.weights_is_path():
        path = local_path(parsed.weights or "", "open_clip weights")
        pretrained: str | None = str(path)
        source = f"file:{path}"
    else:
        pretrained = parsed.weights
        source = f"open_clip:{parsed.target}@{parsed.weights}" if parsed.weights else parsed.target
    try:
        model = open_clip.create_model(parsed.target, pretrained=pretrained, **kwargs)
    except Exception as exc:
        refusal = weights_refusal(exc, pretrained or source)
        if refusal is not None:
            raise refusal from exc
        if not isinstance(exc, (RuntimeError, KeyError, ValueError, OSError, TypeError)):
            raise
        raise EncoderSpecError(
            f"open_clip could not create {parsed.raw!r}: {type(exc).__name__}: {exc}"
        ) from exc
    visual = model.visual
    pp = dict(getattr(visual, "preprocess_cfg", {}) or {})
    del model  # the text tower is not needed; drop it before moving to the device
    preprocess = finish_preprocess(PreprocessCfg.from_open_clip(pp), parsed, ctx.resize_policy)

    class ImageTower(torch.nn.Module):
        """``model.visual`` whose forward equals ``encode_image(x, normalize=False)``."""

        def __init__(self, visual: torch.nn.Module) -> None:
            super().__init__()
            self.visual = visual

        def forward(self, x: torch.Tensor) -> Any:
            return self.visual(x)

    return LoadedModel(
        model=ImageTower(visual),
        preprocess=preprocess,
        architecture=architecture("open_clip", parsed.target, kwargs),
        output=OUTPUT,
        weights_source=source,
        details={"open_clip_preprocess_cfg": {k: _plain(v) for k, v in pp.items()}},
        libraries=("open_clip_torch",),
    )


def _safe_alternatives(filename: str) -> list[str]:
    try:
        from open_clip.pretrained import _get_safe_alternatives
    except ImportError:  # pragma: no cover - private helper of open_clip 2.2x / 3.x
        return []
    return list(_get_safe_alternatives(filename))


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def _require_online(repo: str, parsed: ParsedSpec, ctx: CheckContext, call: str) -> None:
    host = hf_endpoint_host()
    if not ctx.probe(host):
        raise EncoderSpecError(_offline(parsed, host, f'python -c "import open_clip; {call}"'))


def _offline(parsed: ParsedSpec, host: str, download: str) -> str:
    if not download.startswith("python"):
        download = f'python -c "import open_clip; {download}"'
    arch = parsed.target
    return offline_message(
        f"open_clip weights {parsed.name}@{parsed.weights}"
        if parsed.weights
        else f"open_clip {arch}",
        host,
        download,
        f"open_clip:{arch}@/path/to/open_clip_model.safetensors",
    )
