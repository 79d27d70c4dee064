"""The preprocessing config of an encoder (docs/protocol.md §2).

:class:`PreprocessCfg` describes, as plain data, every step between a decoded
RGB image and the tensor an encoder sees: resize (filter, target, policy),
center crop (size, rounding, padding) and normalization. It is part of the
encoder's identity (its fingerprint) and is dumped verbatim into the report.

The converters :meth:`PreprocessCfg.from_timm` and
:meth:`PreprocessCfg.from_open_clip` translate the libraries' own configs
without importing them; the transformers converter lives with its family.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from pytest_metatrace.encoders.errors import EncoderSpecError

__all__ = [
    "CROP_MODES",
    "CROP_ROUNDINGS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INTERPOLATIONS",
    "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD",
    "PREPROCESS_KEYS",
    "RESIZE_POLICIES",
    "PreprocessCfg",
]

#: PIL resize filters, by the names timm and torchvision use.
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
#: ``center``: shorter side to the resize size, center crop (timm ``center``, open_clip
#: ``shortest``, transformers ``shortest_edge``); ``squash``: both sides to the resize size,
#: center crop (aspect ratio lost); ``border``: longer side to the resize size, pad to the crop
#: (timm ``border``, open_clip ``longest``).
CROP_MODES = ("center", "squash", "border")
#: docs/protocol.md §2: ``native`` keeps the encoder's own resize; ``crop-size`` is the research
#: code's: shorter side straight to the crop size, then center crop.
RESIZE_POLICIES = ("native", "crop-size")
#: How a center crop's offset is rounded: ``round`` = ``int(round((size - crop) / 2))``
#: (torchvision, hence timm and open_clip); ``floor`` = ``(size - crop) // 2`` (transformers).
CROP_ROUNDINGS = ("round", "floor")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class PreprocessCfg:
    """Resize, crop and normalization of one encoder; frozen, hashable, ``asdict``-able."""

    input_size: tuple[int, int] = (224, 224)  #: crop (H, W): the size the model sees
    interpolation: str = "bicubic"  #: PIL resize filter, one of :data:`INTERPOLATIONS`
    crop_pct: float = 0.875  #: crop side / resize side (timm); 1.0 resizes straight to the crop
    crop_mode: str = "center"  #: one of :data:`CROP_MODES`
    mean: tuple[float, float, float] = IMAGENET_MEAN  #: per-channel mean of [0, 1] pixels
    std: tuple[float, float, float] = IMAGENET_STD  #: per-channel std of [0, 1] pixels
    resize_policy: str = "native"  #: one of :data:`RESIZE_POLICIES` (docs/protocol.md §2)
    #: explicit resize target (H, W) of the ``native`` policy; None = ``floor(input_size /
    #: crop_pct)`` as timm computes it (transformers processors give the target directly)
    resize_size: tuple[int, int] | None = None
    crop_rounding: str = "round"  #: center-crop offset rounding, one of :data:`CROP_ROUNDINGS`
    fill: tuple[int, int, int] = (0, 0, 0)  #: RGB padding where the resized image is too small

    def __post_init__(self) -> None:
        # Coerce list/int inputs (JSON, spec strings) so that equal configs hash and dump equally.
        set_ = object.__setattr__
        set_(self, "input_size", _size2("input_size", self.input_size))
        if self.resize_size is not None:
            set_(self, "resize_size", _size2("resize_size", self.resize_size))
        set_(self, "mean", _triple("mean", self.mean, float))
        set_(self, "std", _triple("std", self.std, float))
        set_(self, "fill", _triple("fill", self.fill, int))
        set_(self, "crop_pct", float(self.crop_pct))
        _choice("interpolation", self.interpolation, INTERPOLATIONS)
        _choice("crop_mode", self.crop_mode, CROP_MODES)
        _choice("resize_policy", self.resize_policy, RESIZE_POLICIES)
        _choice("crop_rounding", self.crop_rounding, CROP_ROUNDINGS)
        if not 0.0 < self.crop_pct <= 4.0 or not math.isfinite(self.crop_pct):
            raise EncoderSpecError(f"crop_pct must lie in (0, 4], got {self.crop_pct!r}")
        if any(s <= 0.0 or not math.isfinite(s) for s in self.std):
            raise EncoderSpecError(f"std must be positive, got {self.std!r}")
        if any(not 0 <= f <= 255 for f in self.fill):
            raise EncoderSpecError(f"fill must be 0..255 per channel, got {self.fill!r}")

    @property
    def scale_size(self) -> tuple[int, int]:
        """The resize target (H, W) that the resize policy selects.

        ``native``: :attr:`resize_size`, else ``floor(side / crop_pct)`` exactly as timm's
        ``transforms_imagenet_eval`` computes it; ``crop-size``: the crop size itself.
        """
        if self.resize_policy == "crop-size":
            return self.input_size
        if self.resize_size is not None:
            return self.resize_size
        h, w = self.input_size
        return math.floor(h / self.crop_pct), math.floor(w / self.crop_pct)

    @property
    def effective_crop_mode(self) -> str:
        """The crop mode that runs: ``crop-size`` always resizes the shorter side (``center``)."""
        return "center" if self.resize_policy == "crop-size" else self.crop_mode

    def replace(self, **changes: Any) -> PreprocessCfg:
        """A copy with ``changes`` applied (validated like the constructor)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreprocessCfg:
        """Build from a dict of this class's fields, a timm data config, or an open_clip config.

        timm data configs are recognized by a 3-element ``input_size`` (C, H, W); open_clip
        ``PreprocessCfg`` dicts by their ``size`` / ``resize_mode`` keys.
        """
        data = dict(data)
        if "size" in data or "resize_mode" in data:
            return cls.from_open_clip(data)
        size = data.get("input_size")
        if isinstance(size, Sequence) and not isinstance(size, str) and len(size) == 3:
            return cls.from_timm(data)
        unknown = sorted(set(data) - set(PREPROCESS_KEYS))
        if unknown:
            raise EncoderSpecError(
                f"unknown preprocessing key(s) {unknown}; accepted keys: {list(PREPROCESS_KEYS)} "
                "(or a timm data config with input_size=(3, H, W))"
            )
        return cls(**data)

    @classmethod
    def from_timm(cls, data_config: Mapping[str, Any], **overrides: Any) -> PreprocessCfg:
        """Translate a timm data config (``resolve_data_config``) into the eval transform's cfg.

        Mirrors ``timm.data.transforms_imagenet_eval``: ``crop_pct`` None means 0.875, the
        ``border`` mode pads with ``round(255 * mean)``, everything else pads with black.
        """
        size = tuple(data_config.get("input_size", (3, 224, 224)))
        input_size = size[-2:] if len(size) >= 2 else (size[0], size[0])
        crop_mode = data_config.get("crop_mode") or "center"
        mean = tuple(float(v) for v in data_config.get("mean", IMAGENET_MEAN))
        interpolation = data_config.get("interpolation") or "bilinear"
        if interpolation == "random":  # a training-time choice; timm's eval transform has none
            interpolation = "bicubic"
        fill = tuple(round(255 * v) for v in mean) if crop_mode == "border" else (0, 0, 0)
        cfg = cls(
            input_size=(int(input_size[0]), int(input_size[1])),
            interpolation=interpolation,
            crop_pct=float(data_config.get("crop_pct") or 0.875),
            crop_mode=crop_mode,
            mean=mean,  # type: ignore[arg-type]
            std=tuple(float(v) for v in data_config.get("std", IMAGENET_STD)),  # type: ignore[arg-type]
            fill=fill,  # type: ignore[arg-type]
        )
        return cfg.replace(**overrides) if overrides else cfg

    @classmethod
    def from_open_clip(cls, pp: Mapping[str, Any], **overrides: Any) -> PreprocessCfg:
        """Translate open_clip's ``model.visual.preprocess_cfg`` into the eval transform's cfg.

        Mirrors ``open_clip.transform.image_transform(is_train=False)``: ``shortest`` resizes
        the shorter side to the size (no crop_pct), ``longest`` fits the longer side and pads
        with ``fill_color``, ``squash`` resizes both sides. Only ``bilinear`` is honoured; any
        other interpolation (``random`` too) runs as bicubic, and a non-square ``shortest``
        resize always runs bicubic (open_clip builds ``ResizeKeepRatio`` without it).
        """
        size = pp.get("size", 224)
        if isinstance(size, int):
            size = (size, size)
        h, w = int(size[0]), int(size[1])
        mode = pp.get("resize_mode") or "shortest"
        if mode not in ("shortest", "longest", "squash"):
            raise EncoderSpecError(
                f"open_clip resize_mode {mode!r} is not one of 'shortest', 'longest', 'squash'"
            )
        interpolation = "bilinear" if pp.get("interpolation") == "bilinear" else "bicubic"
        if mode == "shortest" and h != w:
            interpolation = "bicubic"
        fill_color = int(pp.get("fill_color", 0))
        cfg = cls(
            input_size=(h, w),
            interpolation=interpolation,
            crop_pct=1.0,
            crop_mode={"shortest": "center", "longest": "border", "squash": "squash"}[mode],
            mean=_triple("mean", pp.get("mean", OPENAI_CLIP_MEAN), float),
            std=_triple("std", pp.get("std", OPENAI_CLIP_STD), float),
            fill=(fill_color, fill_color, fill_color),
        )
        return cfg.replace(**overrides) if overrides else cfg


#: The field names of :class:`PreprocessCfg`, the keys a spec may override with ``?key=value``.
PREPROCESS_KEYS: tuple[str, ...] = tuple(f.name for f in fields(PreprocessCfg))


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise EncoderSpecError(f"{name} must be one of {list(allowed)}, got {value!r}")


def _size2(name: str, value: Any) -> tuple[int, int]:
    if isinstance(value, str):
        value = ()  # strings are parsed by the spec parser, never here
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value, value)
    try:
        seq = [int(v) for v in value]
    except (TypeError, ValueError):
        seq = []
    if len(seq) == 3:  # timm's (C, H, W)
        seq = seq[1:]
    if len(seq) != 2 or min(seq) <= 0 or any(int(v) != v for v in value):
        raise EncoderSpecError(
            f"{name} must be a positive int or (H, W), got {value!r}; "
            f"e.g. {name}=224 or {name}=224,256"
        )
    return seq[0], seq[1]


def _triple(name: str, value: Any, kind: type) -> Any:
    if isinstance(value, str):
        value = ()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value,) * 3
    try:
        out = tuple(kind(v) for v in value)
    except (TypeError, ValueError):
        out = ()
    if len(out) != 3:
        raise EncoderSpecError(f"{name} must have 3 values (R, G, B), got {value!r}")
    return out
