"""Resize, crop and (optionally) mask an image into uint8 CHW pixels.

:class:`Preprocessor` runs the geometric part of an encoder's eval transform
with Pillow, bit-exact with the family's own transform (torchvision's
``Resize`` / ``CenterCrop`` on PIL images call the same Pillow resize, and the
size arithmetic below copies theirs: torchvision's shorter-side resize
truncates the longer side, timm's ``ResizeKeepRatio`` rounds both sides, a
transformers processor floors the crop offset). It returns **uint8** pixels;
the float conversion and normalization happen on the encoder's device in
:meth:`Encoder.embed <pytest_metatrace.encoders.base.Encoder.embed>`, so that
a quarter of the bytes travel to the GPU.

It holds nothing but its :class:`PreprocessCfg`, so it pickles cheaply into
DataLoader worker processes. torch and numpy are imported on first call.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from PIL import Image

from pytest_metatrace.encoders.config import PreprocessCfg
from pytest_metatrace.encoders.spec import MAX_INPUT_SIDE, MAX_RESIZE_SIDE, check_image_side
from pytest_metatrace.processing.masking import apply_center_mask

if TYPE_CHECKING:
    import torch

__all__ = ["PIL_FILTERS", "Preprocessor", "center_crop", "normalize_pixels", "resize_for"]

#: Pillow filter of each interpolation name.
PIL_FILTERS: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


class Preprocessor:
    """Picklable callable: PIL RGB image -> uint8 (3, H, W) tensor after resize + crop (+ mask).

    Refuses (:class:`~pytest_metatrace.encoders.errors.EncoderSpecError`) a crop over
    :data:`~pytest_metatrace.encoders.spec.MAX_INPUT_SIDE` or a resize over
    :data:`~pytest_metatrace.encoders.spec.MAX_RESIZE_SIDE` pixels a side, whatever set
    it (a spec option, the model's own config, a factory): before any pixel is allocated.
    """

    def __init__(self, cfg: PreprocessCfg) -> None:
        check_image_side(f"input_size {cfg.input_size}", cfg.input_size, MAX_INPUT_SIDE)
        h, w = cfg.scale_size
        if cfg.resize_size is not None or cfg.resize_policy == "crop-size":
            what = f"resize_size {(h, w)}"
        else:
            what = f"the resize target {(h, w)} (input_size / crop_pct {cfg.crop_pct:g})"
        check_image_side(what, (h, w), MAX_RESIZE_SIDE)
        self.cfg = cfg

    def __repr__(self) -> str:
        return f"Preprocessor({self.cfg!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Preprocessor) and other.cfg == self.cfg

    def __hash__(self) -> int:
        return hash(self.cfg)

    @property
    def output_size(self) -> tuple[int, int]:
        """(H, W) of every output."""
        return self.cfg.input_size

    def resize_crop(self, img: Image.Image) -> Image.Image:
        """The resized and cropped PIL image (RGB), before masking."""
        if img.mode != "RGB":
            img = img.convert("RGB")
        return center_crop(resize_for(img, self.cfg), self.cfg)

    def __call__(self, img: Image.Image, mask_ratio: float | None = None) -> torch.Tensor:
        """Resize and crop ``img``; black out the centered ``mask_ratio`` box if given.

        The mask is applied after resize/crop and before tensor conversion, as
        docs/protocol.md §3 prescribes, so it lands exactly where
        :func:`~pytest_metatrace.processing.mask_box` says on the crop.
        """
        import numpy as np
        import torch

        out = self.resize_crop(img)
        if mask_ratio is not None:
            out = apply_center_mask(out, mask_ratio)
        arr = np.array(out, dtype=np.uint8)  # a writable copy; torch refuses read-only buffers
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def normalize_pixels(pixels: torch.Tensor, cfg: PreprocessCfg) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float32, bit-identical to torchvision ``ToTensor`` + ``Normalize``.

    The same operations in the same order (``/255``, ``-mean``, ``/std``, float32), so
    that the result equals the family's own transform bit for bit on any device.
    """
    import torch

    shape = (3, 1, 1)
    mean = torch.tensor(cfg.mean, dtype=torch.float32, device=pixels.device).view(shape)
    std = torch.tensor(cfg.std, dtype=torch.float32, device=pixels.device).view(shape)
    scale = torch.full((1, 1, 1), 255.0, dtype=torch.float32, device=pixels.device)
    return pixels.to(torch.float32).div_(scale).sub_(mean).div_(std)


def resize_for(img: Image.Image, cfg: PreprocessCfg) -> Image.Image:
    """Resize ``img`` the way ``cfg``'s crop mode and resize policy prescribe."""
    sh, sw = cfg.scale_size
    w, h = img.size
    mode = cfg.effective_crop_mode
    if mode == "squash":
        size = (sw, sh)
    elif mode == "center" and sh == sw:
        # torchvision Resize(int): shorter side to the size, longer side truncated.
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(sh * long / short)
        size = (sh, new_long) if w <= h else (new_long, sh)
    else:
        # timm ResizeKeepRatio: ratio from the shorter (center) or longer (border) side,
        # both sides rounded (Python's half-to-even round, as timm).
        longest = 1.0 if mode == "border" else 0.0
        ratio_h, ratio_w = h / sh, w / sw
        ratio = max(ratio_h, ratio_w) * longest + min(ratio_h, ratio_w) * (1.0 - longest)
        size = (round(w / ratio), round(h / ratio))
    return img.resize(size, PIL_FILTERS[cfg.interpolation])


def center_crop(img: Image.Image, cfg: PreprocessCfg) -> Image.Image:
    """Center-crop ``img`` to ``cfg.input_size``, padding with ``cfg.fill`` where it is smaller."""
    ch, cw = cfg.input_size
    w, h = img.size
    if (w, h) == (cw, ch):
        return img
    fill = cfg.fill
    if cfg.crop_rounding == "floor":
        # transformers image_transforms.center_crop: floor offsets, pad by ceil halves.
        top, left = (h - ch) // 2, (w - cw) // 2
        if top >= 0 and left >= 0:
            return img.crop((left, top, left + cw, top + ch))
        nh, nw = max(ch, h), max(cw, w)
        top_pad, left_pad = math.ceil((nh - h) / 2), math.ceil((nw - w) / 2)
        canvas = Image.new("RGB", (nw, nh), fill)
        canvas.paste(img, (left_pad, top_pad))
        top, left = max(0, top + top_pad), max(0, left + left_pad)
        return canvas.crop((left, top, left + cw, top + ch))
    # torchvision center_crop / timm center_crop_or_pad: pad floor-left/ceil-right, then round.
    if cw > w or ch > h:
        pad_l = (cw - w) // 2 if cw > w else 0
        pad_t = (ch - h) // 2 if ch > h else 0
        pad_r = (cw - w + 1) // 2 if cw > w else 0
        pad_b = (ch - h + 1) // 2 if ch > h else 0
        canvas = Image.new("RGB", (w + pad_l + pad_r, h + pad_t + pad_b), fill)
        canvas.paste(img, (pad_l, pad_t))
        img, (w, h) = canvas, canvas.size
        if (w, h) == (cw, ch):
            return img
    top = round((h - ch) / 2.0)
    left = round((w - cw) / 2.0)
    return img.crop((left, top, left + cw, top + ch))
