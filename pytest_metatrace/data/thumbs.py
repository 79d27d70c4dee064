"""Small JPEG thumbnails as data URIs, for report figures (e.g. the neighbour gallery).

The thumbnail is made from the image *after* its processing class, so what
the report shows is what the encoder was given (at a size where processing
artefacts are mostly invisible: the label under each thumbnail says which
class it was).
"""

from __future__ import annotations

import base64
import io

from PIL import Image

from pytest_metatrace.data.dataset import ImageItem
from pytest_metatrace.processing import get_processing

__all__ = ["thumbnail_uri"]


def thumbnail_uri(
    item: ImageItem,
    processing: str | None = None,
    *,
    seed: int = 0,
    size: int = 72,
    quality: int = 80,
) -> str:
    """``data:image/jpeg;base64,...`` of ``item`` under ``processing``, longer side ``size``."""
    img, _ = item.source.load()
    if processing is not None:
        img = get_processing(processing).apply(img, seed=seed, image_key=item.digest)
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
