"""``hf:<hub id | local dir>[@<revision>][?output=...]``: a transformers vision model.

Which model class and which output, by ``config.model_type``:

- ``clip`` / ``clip_vision_model``: ``CLIPVisionModelWithProjection``, ``image_embeds``
  (the projected embedding, what ``CLIPModel.get_image_features`` gives);
- ``siglip`` / ``siglip_vision_model``: ``SiglipVisionModel``, ``pooler_output`` (the MAP
  head; the fixed-resolution SigLIP 2 checkpoints are ``siglip`` too);
- ``dinov2`` / ``dinov2_with_registers``: ``AutoModel``, ``pooler_output`` (the
  layer-normed CLS token);
- anything else (the generic fallback): ``AutoModel``; a model with
  ``get_image_features`` (multimodal ones) uses it; otherwise the first of
  ``image_embeds`` / ``pooler_output`` the output holds, else the CLS token
  ``last_hidden_state[:, 0]``.

``?output=<key>`` picks another ``ModelOutput`` key, or ``cls`` for
``last_hidden_state[:, 0]``. NaFlex models (``siglip2`` proper) need
variable-size patch inputs and are refused with a pointer to timm.

Weights are loaded in float32 (transformers 5 would keep the checkpoint's dtype).
Preprocessing comes from the saved image processor: ``shortest_edge`` -> center
mode with that resize size; ``height``/``width`` -> squash; ``crop_size`` -> the
crop; center-crop offsets are floored as transformers does. The uint8 pixels are
bit-exact with the processor's PIL backend (``backend="pil"``); its default
torchvision backend resizes tensors with its own antialiasing and differs from
PIL by a few grey levels (see the tests for the measured bound).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pytest_metatrace.encoders.base import LoadedModel
from pytest_metatrace.encoders.config import IMAGENET_MEAN, IMAGENET_STD, PreprocessCfg
from pytest_metatrace.encoders.errors import EncoderSpecError
from pytest_metatrace.encoders.families import (
    CheckContext,
    LoadContext,
    finish_preprocess,
    local_path,
    offline_message,
    reject_options,
)
from pytest_metatrace.encoders.families._weights import weights_refusal
from pytest_metatrace.encoders.hub import hf_cached, hf_endpoint_host
from pytest_metatrace.encoders.outputs import select_output
from pytest_metatrace.encoders.spec import ParsedSpec, looks_like_path

__all__ = ["check", "load", "preprocess_from_processor"]

_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
#: PIL's resampling enum values, as transformers stores them (``resample: 3`` = bicubic).
_PIL_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
#: model_type -> (transformers class name, output key)
_KNOWN: dict[str, tuple[str, str]] = {
    "clip": ("CLIPVisionModelWithProjection", "image_embeds"),
    "clip_vision_model": ("CLIPVisionModelWithProjection", "image_embeds"),
    "siglip": ("SiglipVisionModel", "pooler_output"),
    "siglip_vision_model": ("SiglipVisionModel", "pooler_output"),
    "dinov2": ("AutoModel", "pooler_output"),
    "dinov2_with_registers": ("AutoModel", "pooler_output"),
}


def is_local(parsed: ParsedSpec) -> bool:
    """Whether the target is a local directory rather than a hub id."""
    return looks_like_path(parsed.target) or Path(parsed.target).expanduser().exists()


def check(parsed: ParsedSpec, ctx: CheckContext) -> None:
    """Local dir has a config.json; with ``check_available``: hub files cached or reachable."""
    reject_options(parsed, ("output",), "hf")
    if is_local(parsed):
        if parsed.weights is not None:
            raise EncoderSpecError(f"{parsed.raw!r}: a local hf directory takes no @revision")
        d = local_path(parsed.target, "hf model", directory=True)
        if not (d / "config.json").is_file():
            raise EncoderSpecError(
                f"{d} has no config.json; save the model with model.save_pretrained({str(d)!r}) "
                "(and its image processor with processor.save_pretrained)"
            )
        return
    if parsed.target.count("/") != 1:
        raise EncoderSpecError(
            f"{parsed.raw!r}: hf: takes a hub id 'org/name' or an existing local directory"
        )
    if not ctx.check_available:
        return
    revision = parsed.weights
    cached = hf_cached(parsed.target, ["config.json"], revision=revision) and hf_cached(
        parsed.target, _WEIGHT_FILES, revision=revision
    )
    if cached:
        return
    host = hf_endpoint_host()
    if not ctx.probe(host):
        rev = f" --revision {revision}" if revision else ""
        raise EncoderSpecError(
            offline_message(
                f"hf model {parsed.target!r}",
                host,
                f"hf download {parsed.target}{rev}"
                f"   (or: huggingface-cli download {parsed.target}{rev})",
                "hf:/path/to/dir (a directory written by save_pretrained)",
            )
        )


def load(parsed: ParsedSpec, ctx: LoadContext) -> LoadedModel:
    """Load the vision model in float32 and read its image processor."""
    import torch
    import transformers

    local = is_local(parsed)
    src = str(local_path(parsed.target, "hf model", directory=True)) if local else parsed.target
    revision = None if local else parsed.weights
    try:
        config = transformers.AutoConfig.from_pretrained(src, revision=revision)
    except (OSError, ValueError) as exc:
        raise EncoderSpecError(
            f"transformers cannot read the config of {parsed.raw!r}: {exc}"
        ) from exc
    model_type = str(getattr(config, "model_type", ""))
    if model_type.startswith("siglip2"):
        raise EncoderSpecError(
            f"{parsed.raw!r} is a SigLIP 2 NaFlex model (variable-size patch input), which "
            "hf: does not run; use timm's fixed-resolution SigLIP 2, e.g. "
            "timm:vit_base_patch16_siglip_256.v2_webli"
        )
    class_name, default_key = _KNOWN.get(model_type, ("AutoModel", ""))
    key = parsed.option_dict.get("output") or default_key or None
    model_cls = getattr(transformers, class_name)
    kwargs: dict[str, Any] = {"revision": revision, **_dtype_kwarg(torch.float32)}
    if model_type == "clip":
        # A full CLIP checkpoint: its projection size lives in the top-level config only.
        vision_config = config.vision_config
        vision_config.projection_dim = config.projection_dim
        kwargs["config"] = vision_config
    try:
        with _quiet(transformers):
            model, info = model_cls.from_pretrained(src, output_loading_info=True, **kwargs)
    except Exception as exc:
        refusal = weights_refusal(exc, _weights_files(src) if local else src)
        if refusal is not None:
            raise refusal from exc
        if not isinstance(exc, (OSError, ValueError, RuntimeError)):
            raise
        raise EncoderSpecError(f"transformers cannot load {parsed.raw!r}: {exc}") from exc
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        # transformers initializes missing weights randomly; an audit of that would be noise.
        raise EncoderSpecError(
            f"{parsed.raw!r}: the checkpoint lacks {len(missing)} weight(s) of {class_name} "
            f"(e.g. {missing[:3]}); it is not a {model_type} vision model checkpoint"
        )
    method = "forward"
    if (
        class_name == "AutoModel"
        and not default_key
        and hasattr(model, "get_image_features")
        and key is None
    ):
        method = "get_image_features"
        output = "get_image_features (pooler_output when it returns a ModelOutput)"
    else:
        output = f"{key or 'image_embeds|pooler_output|cls'}"

    class VisionModel(torch.nn.Module):
        """Calls the transformers model with ``pixel_values=x``."""

        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> Any:
            return getattr(self.inner, method)(pixel_values=x)

    preprocess, pp_source = _load_preprocess(src, revision)
    return LoadedModel(
        model=VisionModel(model),
        preprocess=finish_preprocess(preprocess, parsed, ctx.resize_policy),
        architecture=f"hf:{type(model).__name__}:{model_type}",
        output=f"hf {output}",
        weights_source=f"file:{src}"
        if local
        else f"hf-hub:{src}" + (f"@{revision}" if revision else ""),
        select=lambda out: _select(out, key),
        details={"preprocess_source": pp_source, "hf_model_type": model_type},
        libraries=("transformers",),
    )


def preprocess_from_processor(proc: Any) -> PreprocessCfg:
    """Translate a transformers image processor's settings into a :class:`PreprocessCfg`."""
    if not _attr(proc, "do_resize", True):
        raise EncoderSpecError(
            "image processors without do_resize give variable sizes; not supported"
        )
    size, crop = _attr(proc, "size", None), _attr(proc, "crop_size", None)
    do_crop = bool(_attr(proc, "do_center_crop", False))
    shortest, longest = _attr(size, "shortest_edge", None), _attr(size, "longest_edge", None)
    height, width = _attr(size, "height", None), _attr(size, "width", None)
    if shortest and not longest:
        if not do_crop or crop is None:
            raise EncoderSpecError(
                "a shortest_edge resize without a center crop gives variable sizes"
            )
        resize_size, mode = (int(shortest), int(shortest)), "center"
    elif height and width:
        resize_size, mode = (int(height), int(width)), "squash"
    else:
        raise EncoderSpecError(
            f"image processor size {size!r} is not supported (need shortest_edge or height/width)"
        )
    input_size = (
        (int(_attr(crop, "height", 0)), int(_attr(crop, "width", 0))) if do_crop else resize_size
    )
    mean, std = _attr(proc, "image_mean", IMAGENET_MEAN), _attr(proc, "image_std", IMAGENET_STD)
    if not _attr(proc, "do_normalize", True):
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if not _attr(proc, "do_rescale", True):
        raise EncoderSpecError(
            "image processors with do_rescale=False (0..255 input) are not supported"
        )
    factor = float(_attr(proc, "rescale_factor", 1 / 255))
    if abs(factor * 255 - 1) > 1e-9:
        # x * f is x / 255 scaled by 255 f: fold that scale into mean and std.
        s = 255 * factor
        mean = tuple(float(m) / s for m in _triple(mean))
        std = tuple(float(v) / s for v in _triple(std))
    return PreprocessCfg(
        input_size=input_size,
        interpolation=_interp_name(_attr(proc, "resample", 3)),
        crop_pct=input_size[0] / resize_size[0],
        crop_mode=mode,
        mean=_triple(mean),
        std=_triple(std),
        resize_size=resize_size,
        crop_rounding="floor",
    )


def _load_preprocess(src: str, revision: str | None) -> tuple[PreprocessCfg, str]:
    import transformers

    try:
        proc = transformers.AutoImageProcessor.from_pretrained(src, revision=revision)
    except (OSError, ValueError, KeyError):
        return (
            PreprocessCfg(),
            "defaults (no image processor saved): ImageNet mean/std, 224, crop_pct 0.875",
        )
    return preprocess_from_processor(proc), f"image processor {type(proc).__name__}"


def _weights_files(folder: str) -> str:
    """The weight files of a local model folder, named for an error message."""
    found = [p for p in _WEIGHT_FILES if (Path(folder) / p).exists()]
    return " / ".join(str(Path(folder) / p) for p in found) or folder


def _select(out: Any, key: str | None) -> Any:
    if key == "cls":
        return out["last_hidden_state"][:, 0]
    if (
        key is None
        and isinstance(out, Mapping)
        and not any(out.get(k) is not None for k in ("image_embeds", "pooler_output"))
    ):
        return out["last_hidden_state"][:, 0]
    return select_output(out, key)


def _attr(obj: Any, name: str, default: Any) -> Any:
    if obj is None:
        return default
    value = obj.get(name, default) if isinstance(obj, Mapping) else getattr(obj, name, default)
    return default if value is None else value


def _triple(v: Any) -> tuple[float, float, float]:
    vals = [float(x) for x in v] if isinstance(v, (list, tuple)) else [float(v)] * 3
    return vals[0], vals[1], vals[2]


def _interp_name(resample: Any) -> str:
    value = getattr(resample, "value", resample)
    if isinstance(value, str):
        return value.lower()
    try:
        return _PIL_RESAMPLE[int(value)]
    except (KeyError, TypeError, ValueError):
        raise EncoderSpecError(f"unknown image processor resample {resample!r}") from None


@contextlib.contextmanager
def _quiet(transformers: Any) -> Iterator[None]:
    """Silence the load report (a vision tower from a full checkpoint has "unexpected" keys)."""
    logging = transformers.utils.logging
    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def _dtype_kwarg(dtype: Any) -> dict[str, Any]:
    import transformers

    major, minor = (int(p) for p in transformers.__version__.split(".")[:2])
    # transformers renamed torch_dtype to dtype in 4.56 (and defaults to "auto" in 5).
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}
