"""Image-making helpers shared by the tests (real photos, synthetic images, encoded files).

Import as ``from image_helpers import ...``: pytest puts ``tests/`` on ``sys.path``.
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def skimage_data_dir() -> Path:
    """Folder of the photos scikit-image installs with the package."""
    import skimage

    return Path(skimage.__file__).parent / "data"


@lru_cache(maxsize=8)
def _photo(name: str) -> Image.Image:
    with Image.open(skimage_data_dir() / name) as img:
        return img.convert("RGB")


def skimage_photo(name: str) -> Image.Image:
    """A fresh RGB copy of a photo shipped by scikit-image (e.g. ``chelsea.png``)."""
    return _photo(name).copy()


def synthetic_rgb(width: int, height: int, seed: int = 0) -> Image.Image:
    """A deterministic RGB image with smooth gradients, edges and noise (JPEG-unfriendly)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack(
        [
            255 * xx / max(width - 1, 1),
            255 * yy / max(height - 1, 1),
            255 * ((xx // 4 + yy // 4) % 2),
        ],
        axis=-1,
    )
    noisy = base + rng.normal(0.0, 20.0, size=base.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), mode="RGB")


def encode(img: Image.Image, fmt: str, **save_kw: Any) -> bytes:
    """The bytes Pillow writes for ``img`` in ``fmt``."""
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save_kw)
    return buf.getvalue()


def write_image(path: Path, img: Image.Image, fmt: str | None = None, **save_kw: Any) -> Path:
    """Save ``img`` to ``path`` (creating folders) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt, **save_kw)
    return path


def pixels(img: Image.Image) -> np.ndarray:
    """The image as a NumPy array (a copy)."""
    return np.array(img)
