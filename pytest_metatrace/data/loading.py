"""Decode any photo into the RGB image the processing operations start from.

Every conversion that changes pixel values is named in the returned
:class:`DecodeInfo`, so that datasets count them and the report lists them;
an image that cannot be used faithfully raises :class:`UnusableImage` with the
reason, and the dataset skips it and names the file. Nothing is silent.

Choices (also written into the report's provenance section):

- EXIF orientation is applied (``ImageOps.exif_transpose``): the photo is
  processed the way it is meant to be seen.
- CMYK, YCbCr, LAB, HSV, 1-bit and grey images are converted with Pillow's
  ``convert("RGB")``.
- 16-bit and 32-bit integer grey images (``I;16``, ``I``) are scaled to 8 bits
  by their bit depth (value >> 8 for 16-bit), not clipped as Pillow's
  ``convert`` would, which would turn most 16-bit photos white.
- Float images (``F``) are refused: their range is unknown.
- Transparency (alpha, or a palette index / grey level / RGB colour marked
  transparent) is flattened onto white, as a viewer shows it.
- Modes Pillow cannot convert to RGB are refused.
- Empty, truncated or corrupt files are refused, never decoded partially.
- Images above ``max_pixels`` are refused rather than downscaled: processing
  must run on the full-resolution image.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from pytest_metatrace._files import UnreadableFile, open_regular_file, read_regular_file

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MAX_FILE_BYTES",
    "DecodeInfo",
    "UnusableImage",
    "load_rgb",
    "open_image_file",
    "pillow_guard_off",
    "read_image_file",
    "to_rgb",
]

#: Default ceiling on width x height; about a 100-megapixel photo.
DEFAULT_MAX_PIXELS = 100_000_000

#: Largest image file read, in bytes: above any real photo (a 100-megapixel
#: 16-bit RGB TIFF is 600 MB), below what a runaway read could exhaust.
MAX_FILE_BYTES = 2 << 30


class UnusableImage(Exception):
    """An image that cannot be used without changing its numbers silently."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class DecodeInfo:
    """What was done to turn a file into an RGB image."""

    source_mode: str = ""  #: Pillow mode of the decoded file
    size: tuple[int, int] = (0, 0)  #: final (width, height)
    conversions: list[str] = field(default_factory=list)  #: e.g. ``["cmyk->rgb"]``


#: EXIF orientation values that ``ImageOps.exif_transpose`` acts on (1 is upright).
_EXIF_ORIENTATIONS = frozenset(range(2, 9))

# Pillow's decompression-bomb guard is the process-wide ``Image.MAX_IMAGE_PIXELS``
# and is consulted while loading too (TIFF tiles, GIF frames), not only on open.
# Loads run in threads (dataset checks, loader workers), so a plain
# save / set / restore races: one thread restores the value another one set,
# and the guard stays off for the whole process. A count of loads in flight
# makes the first one switch the guard off and the last one restore it.
_GUARD_LOCK = threading.Lock()
_GUARD_USERS = 0
_GUARD_SAVED: int | None = None


@contextmanager
def pillow_guard_off() -> Iterator[None]:
    """Switch Pillow's decompression-bomb guard off while the block runs (thread-safe).

    For code that checks the pixel count against ``max_pixels`` itself, from
    the header, before any pixel is decoded.
    """
    global _GUARD_USERS, _GUARD_SAVED
    with _GUARD_LOCK:
        if _GUARD_USERS == 0:
            _GUARD_SAVED = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
        _GUARD_USERS += 1
    try:
        yield
    finally:
        with _GUARD_LOCK:
            _GUARD_USERS -= 1
            if _GUARD_USERS == 0:
                Image.MAX_IMAGE_PIXELS = _GUARD_SAVED


def open_image_file(path: str | Path, *, max_bytes: int = MAX_FILE_BYTES) -> BinaryIO:
    """Open an image file for reading, refusing anything but a regular file of sane size.

    :func:`pytest_metatrace._files.open_regular_file`, the guarded opener of
    every input: the file is opened non-blocking and checked on its
    descriptor, so a FIFO or a link to ``/dev/zero`` named ``.jpg`` neither
    blocks nor streams forever. Raises :class:`UnusableImage` with the reason.
    """
    try:
        return open_regular_file(path, max_bytes=max_bytes, what="an image")
    except UnreadableFile as exc:
        raise UnusableImage(exc.reason) from None


def read_image_file(path: str | Path, *, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular image file (see :func:`open_image_file`), at most ``max_bytes``."""
    try:
        return read_regular_file(path, max_bytes=max_bytes, what="an image")
    except UnreadableFile as exc:
        raise UnusableImage(exc.reason) from None


def _sixteen_bit_rawmode(img: Image.Image) -> str | None:
    """``"RGB;16B"`` and the like when a colour image is stored with 16 bits per channel."""
    if img.mode not in ("RGB", "RGBA"):
        return None  # 16-bit grey modes are converted (and named) by ``to_rgb``
    for tile in getattr(img, "tile", None) or ():
        args = tile[3] if len(tile) > 3 else None
        rawmode = args[0] if isinstance(args, tuple) and args else args
        if isinstance(rawmode, str) and ";16" in rawmode:
            return rawmode
    return None


def _flatten_alpha(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def to_rgb(img: Image.Image, info: DecodeInfo | None = None) -> Image.Image:
    """Convert an already-decoded image to 8-bit RGB, recording each conversion in ``info``."""
    info = info if info is not None else DecodeInfo()
    try:
        return _to_rgb(img, info)
    except ValueError as exc:
        # Pillow lacks some conversions (e.g. from "La"): refuse, never guess.
        raise UnusableImage(f"cannot convert mode {img.mode} to RGB: {exc}") from None


def _to_rgb(img: Image.Image, info: DecodeInfo) -> Image.Image:
    mode = img.mode
    # Checked before the plain-RGB shortcut: an RGB PNG may name a transparent colour.
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode in ("P", "L", "RGB") and "transparency" in img.info
    ):
        info.conversions.append(f"{mode.lower()}+alpha->rgb (flattened on white)")
        return _flatten_alpha(img)
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img)
        if mode == "I":
            # 32-bit containers often hold 16-bit data (PNG 16-bit grey decodes to "I").
            top = int(arr.max()) if arr.size else 0
            shift = 8 if top < 65536 else 24
        else:
            shift = 8
        info.conversions.append(f"{mode.lower()}->rgb (>>{shift})")
        grey = (arr.astype(np.int64) >> shift).clip(0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "F":
        raise UnusableImage("floating-point image (mode F): its value range is unknown")
    info.conversions.append(f"{mode.lower()}->rgb")
    return img.convert("RGB")


def load_rgb(
    source: str | Path | bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[Image.Image, DecodeInfo]:
    """Decode a file path or encoded bytes into a fully loaded RGB image.

    Raises :class:`UnusableImage` (with a reason a person can act on) for
    unreadable, truncated, float-valued or over-sized images.
    """
    info = DecodeInfo()
    data = source if isinstance(source, bytes) else read_image_file(source)
    if not data:
        raise UnusableImage("empty file (0 bytes)")
    # Pillow's own decompression-bomb guard is replaced by max_pixels, checked
    # from the header before any pixel is decoded.
    with pillow_guard_off():
        try:
            img: Image.Image = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise UnusableImage("not an image Pillow can identify") from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise UnusableImage(f"cannot open image: {exc}") from None
        width, height = img.size
        if width * height > max_pixels:
            raise UnusableImage(
                f"{width}x{height} is over the {max_pixels:,}-pixel limit "
                "(raise --metatrace-max-pixels to include it)"
            )
        if width == 0 or height == 0:
            raise UnusableImage(f"empty image ({width}x{height})")
        info.source_mode = img.mode
        if getattr(ImageFile, "LOAD_TRUNCATED_IMAGES", False):
            # A global set by other code would let truncated files through.
            raise UnusableImage(
                "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set; refusing to decode "
                "possibly partial images"
            )
        # Pillow decodes 16-bit-per-channel colour (PNG, TIFF) straight to 8-bit
        # "RGB"/"RGBA" by keeping the high byte: a conversion, counted like the
        # others. The tile's raw mode says so, and only before ``load``.
        wide = _sixteen_bit_rawmode(img)
        try:
            img.load()
        except (OSError, ValueError, SyntaxError) as exc:
            raise UnusableImage(f"truncated or corrupt image data: {exc}") from None
        if wide is not None:
            info.conversions.append(f"{wide.lower()}->{img.mode.lower()} (>>8)")
        orientation = img.getexif().get(0x0112, 1)
        # Only values exif_transpose acts on are reported as applied.
        if orientation in _EXIF_ORIENTATIONS:
            img = ImageOps.exif_transpose(img)
            info.conversions.append(f"exif-orientation {orientation} applied")
        rgb = to_rgb(img, info)
    info.size = rgb.size
    return rgb, info
