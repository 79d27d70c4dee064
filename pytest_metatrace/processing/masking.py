"""Center masking (docs/protocol.md §3).

To remove semantic content, a centered rectangle is filled with black after
the encoder's resize and center crop, before ToTensor. Each side of the
rectangle is ``sqrt(ratio)`` of the image side (so ``ratio`` is the masked
share of the area); the margins are rounded half up.
"""

from __future__ import annotations

import math

from PIL import Image

__all__ = ["DEFAULT_MASK_RATIO", "apply_center_mask", "mask_box"]

#: The paper's text uses 0.90; its research code 0.95 (docs/protocol.md §3).
DEFAULT_MASK_RATIO = 0.90


def mask_box(width: int, height: int, ratio: float) -> tuple[int, int, int, int]:
    """The masked rectangle ``(left, top, right, bottom)``, right/bottom exclusive.

    Margins are ``floor(side * (1 - sqrt(ratio)) / 2 + 0.5)``: rounded half up
    rather than Python's half-to-even, so that ratio 0 masks nothing on odd
    sides as well as even ones. The result is empty (left >= right) for ratio 0.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"mask ratio must lie in [0, 1], got {ratio!r}")
    shrink = 1.0 - math.sqrt(ratio)
    mx = math.floor(width * shrink / 2.0 + 0.5)
    my = math.floor(height * shrink / 2.0 + 0.5)
    return mx, my, width - mx, height - my


def apply_center_mask(img: Image.Image, ratio: float) -> Image.Image:
    """Return a copy of ``img`` with the centered rectangle of ``mask_box`` set to black."""
    left, top, right, bottom = mask_box(img.width, img.height, ratio)
    out = img.copy()
    if right > left and bottom > top:
        black = 0 if img.mode in ("L", "1", "P", "I", "F") else (0,) * len(img.getbands())
        out.paste(black, (left, top, right, bottom))
    return out
