"""The processing operations of docs/protocol.md §1, bit-exact with Pillow.

Every operation takes the full-resolution decoded RGB image, *before* the
encoder's own resize / crop / normalize, and returns a new RGB image. Every
operation except the bare JPEG classes ends with a re-encode to JPEG quality
95, 4:4:4 (``jpeg95_444``), exactly as the paper's research code does.

The table names 14 distinct operations; the four parameter groups use 16
class slots because ``jpeg95_444`` is the "none" class of both the sharpening
and the resizing group (and a member of the JPEG group). :func:`get_processing`
also parses parametric names (``jpeg92_444``, ``sharpen1.2``, ``resize0.9``:
:mod:`~pytest_metatrace.processing.parametric`) into operations of the same kinds.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageEnhance

__all__ = [
    "INTERP_SCALE_RANGE",
    "PROCESSING_CLASSES",
    "PROCESSING_VERSION",
    "ProcessingOp",
    "get_processing",
    "interp_scale",
    "jpeg_roundtrip",
    "list_processing",
]

#: Bump when an operation's output changes; part of every embedding cache key.
PROCESSING_VERSION = 1

#: U[low, high) range of the random rescale factor of the interpolation classes.
INTERP_SCALE_RANGE = (0.8, 1.2)

_SUBSAMPLING = {"420": "4:2:0", "444": "4:4:4"}

_FILTERS: dict[str, Image.Resampling] = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}


def jpeg_roundtrip(img: Image.Image, quality: int, subsampling: str) -> Image.Image:
    """Save ``img`` as JPEG with ``quality`` and ``subsampling`` ("4:2:0"/"4:4:4"), decode it.

    Pillow's defaults are used for everything else (baseline, no optimize,
    standard quantization tables scaled by ``quality``), as in the paper's code.
    """
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, subsampling=subsampling)
    buf.seek(0)
    with Image.open(buf) as decoded:
        return decoded.convert("RGB")


def interp_scale(seed: int, image_key: str) -> float:
    """The rescale factor of the interpolation classes for one image.

    The research code draws it from one stateful RNG per transform, so the
    draw depends on worker order. Here it is a pure function of
    ``(seed, image_key)`` (a SHA-256 of both, mapped to
    ``U[0.8, 1.2)``), so that a rerun, another worker count or another machine
    produces identical pixels. ``image_key`` is the image's content digest.
    """
    digest = hashlib.sha256(f"metatrace-interp-v1:{seed}:{image_key}".encode()).digest()
    unit = int.from_bytes(digest[:8], "big") / 2.0**64
    low, high = INTERP_SCALE_RANGE
    return low + (high - low) * unit


def _scaled_size(img: Image.Image, scale: float) -> tuple[int, int]:
    # int() truncation as in the protocol; clamped at one pixel so that tiny
    # images stay valid (Pillow rejects a zero-sized target).
    return max(1, int(img.width * scale)), max(1, int(img.height * scale))


@dataclass(frozen=True)
class ProcessingOp:
    """One processing class: a name, its parameters and how to apply it."""

    name: str  #: protocol class name, e.g. ``jpeg75_420``
    kind: str  #: ``jpeg`` | ``sharpen`` | ``resize`` | ``interp``
    params: Mapping[str, Any] = field(default_factory=dict)  #: operation parameters

    @property
    def randomized(self) -> bool:
        """Whether the output depends on the seed (the interpolation classes)."""
        return self.kind == "interp"

    def apply(self, img: Image.Image, *, seed: int = 0, image_key: str = "") -> Image.Image:
        """Apply the operation to an RGB image and return the processed RGB image.

        ``seed`` and ``image_key`` only matter for the interpolation classes,
        whose rescale factor is ``interp_scale(seed, image_key)``.
        """
        if img.mode != "RGB":
            raise ValueError(
                f"processing {self.name!r} expects an RGB image, got mode {img.mode!r}; "
                "decode images with pytest_metatrace.data.load_rgb()"
            )
        if self.kind == "jpeg":
            return jpeg_roundtrip(img, self.params["quality"], self.params["subsampling"])
        if self.kind == "sharpen":
            out = ImageEnhance.Sharpness(img).enhance(self.params["factor"])
        elif self.kind == "resize":
            out = img.resize(_scaled_size(img, self.params["scale"]), Image.Resampling.BILINEAR)
        elif self.kind == "interp":
            scale = interp_scale(seed, image_key)
            out = img.resize(_scaled_size(img, scale), _FILTERS[self.params["filter"]])
        else:  # pragma: no cover - the catalog below is closed
            raise AssertionError(self.kind)
        return jpeg_roundtrip(out, 95, "4:4:4")

    def cache_params(self, seed: int) -> dict[str, Any]:
        """Everything that determines this class's output, for cache keys.

        The seed is included only where it changes the pixels, so that
        deterministic classes share cache entries across seeds.
        """
        out: dict[str, Any] = {"name": self.name, "version": PROCESSING_VERSION, **self.params}
        if self.randomized:
            out["seed"] = seed
            out["scale_range"] = list(INTERP_SCALE_RANGE)
        return out

    def describe(self) -> str:
        """A one-line, human-readable description for reports."""
        if self.kind == "jpeg":
            q, sub = self.params["quality"], self.params["subsampling"]
            return f"JPEG quality {q}, {sub}, decoded again"
        if self.kind == "sharpen":
            return f"ImageEnhance.Sharpness x{self.params['factor']}, then JPEG 95 4:4:4"
        if self.kind == "resize":
            return f"bilinear rescale x{self.params['scale']}, then JPEG 95 4:4:4"
        return (
            f"{self.params['filter']} rescale by s~U[0.8,1.2] from (seed, image digest), "
            "then JPEG 95 4:4:4"
        )


def _catalog() -> dict[str, ProcessingOp]:
    ops: list[ProcessingOp] = []
    for quality in (75, 85, 95):
        for sub, pil_sub in _SUBSAMPLING.items():
            ops.append(
                ProcessingOp(
                    f"jpeg{quality}_{sub}", "jpeg", {"quality": quality, "subsampling": pil_sub}
                )
            )
    ops += [
        ProcessingOp("sharpen2", "sharpen", {"factor": 2.0}),
        ProcessingOp("sharpen4", "sharpen", {"factor": 4.0}),
        ProcessingOp("resize_half", "resize", {"scale": 0.5}),
        ProcessingOp("resize_double", "resize", {"scale": 2.0}),
    ]
    ops += [ProcessingOp(f"interp_{name}", "interp", {"filter": name}) for name in _FILTERS]
    return {op.name: op for op in ops}


#: The 14 distinct processing classes of docs/protocol.md §1, by name.
PROCESSING_CLASSES: Mapping[str, ProcessingOp] = _catalog()


def list_processing() -> list[str]:
    """Names of every processing class, in protocol order."""
    return list(PROCESSING_CLASSES)


def get_processing(name: str) -> ProcessingOp:
    """Look up a processing class by name, with a helpful error for typos.

    The 14 fixed classes return their catalog entry; the parametric forms
    ``jpeg<q>_<444|420>``, ``sharpen<f>`` and ``resize<r>``
    (:mod:`~pytest_metatrace.processing.parametric`) return an operation of
    the same kind, keyed by its parameter. Raises
    :class:`~pytest_metatrace.processing.parametric.ProcessingNameError` (a
    ``KeyError``) for anything else.
    """
    op = PROCESSING_CLASSES.get(name)
    if op is not None:
        return op
    from pytest_metatrace.processing.parametric import (
        PARAMETRIC_FORMS,
        ProcessingNameError,
        parse_parametric,
    )

    op = parse_parametric(name)
    if op is not None:
        return op
    import difflib

    close = difflib.get_close_matches(name, PROCESSING_CLASSES, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ProcessingNameError(
        f"unknown processing class {name!r}{hint} (known: {', '.join(PROCESSING_CLASSES)}; "
        f"parametric: {'; '.join(PARAMETRIC_FORMS)})"
    )
