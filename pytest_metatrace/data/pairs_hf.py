"""Paired photos from a Hugging Face dataset, e.g. ``hf:CTU-OU/PairCams`` (paper Sec. 4.2).

Rows carry a subject index, a camera ``model`` string and an image; the model
is mapped to ``smartphone`` or ``camera`` by :data:`PHONE_MODEL_PATTERNS`
(overridable with ``PATTERN=TYPE`` mappings). Needs the ``pairs`` extra
(``datasets``) and, offline, a filled Hugging Face cache.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from pytest_metatrace.data.dataset import DatasetError, ImageItem, SkippedImage
from pytest_metatrace.data.loading import DEFAULT_MAX_PIXELS, UnusableImage
from pytest_metatrace.data.pairs import (
    Candidate,
    MemorySource,
    PairedDataset,
    pairs_from_candidates,
)

__all__ = ["PHONE_MODEL_PATTERNS", "is_phone_model", "load_hf_pairs", "pairs_from_hf"]

#: Shell patterns (case-insensitive) of camera ``model`` strings that are smartphones;
#: any other model is a (non-phone) camera. Extend with ``PATTERN=TYPE`` mappings.
PHONE_MODEL_PATTERNS: tuple[str, ...] = (
    "*iphone*",
    "*pixel*",
    "*galaxy*",
    "sm-*",
    "*huawei*",
    "*honor*",
    "*xiaomi*",
    "*redmi*",
    "*oneplus*",
    "*moto *",
    "*nokia*",
    "*oppo*",
    "*vivo*",
    "*realme*",
    "*nexus*",
    "*phone*",
)


def is_phone_model(model: str, mapping: Sequence[tuple[str, str]] = ()) -> str:
    """``smartphone`` or ``camera`` for a camera model string (Hugging Face ``model`` field)."""
    lowered = model.strip().lower()
    for pattern, camera in mapping:
        if fnmatch.fnmatchcase(lowered, pattern):
            return camera
    if any(fnmatch.fnmatchcase(lowered, p) for p in PHONE_MODEL_PATTERNS):
        return "smartphone"
    return "camera"


def _encoded(value: Any, name: str) -> bytes:
    """Bytes of a Hugging Face image value: ``{"bytes": ...}``, a path, or a PIL image."""
    if isinstance(value, Mapping):
        if value.get("bytes"):
            return bytes(value["bytes"])
        if value.get("path"):
            return Path(value["path"]).read_bytes()
    if isinstance(value, Image.Image):
        buf = io.BytesIO()
        value.save(buf, format="PNG")  # lossless: the pixels the dataset holds
        return buf.getvalue()
    raise DatasetError(f"{name}: image field holds {type(value).__name__}, not an image")


def pairs_from_hf(
    ds: Any,
    *,
    id: str,
    mapping: Sequence[tuple[str, str]] = (),
    max_pixels: int = DEFAULT_MAX_PIXELS,
    subject_field: str = "subject_idx",
    model_field: str = "model",
    image_field: str = "image",
) -> PairedDataset:
    """Pairs from a ``datasets.Dataset`` with subject, camera-model and image fields.

    The camera type is :func:`is_phone_model` of the model string. Images are
    read undecoded where the column allows it and checked by decoding once.
    """
    fields = list(getattr(ds, "column_names", []))
    missing = [f for f in (subject_field, model_field, image_field) if f not in fields]
    if missing:
        raise DatasetError(f"Hugging Face dataset {id!r} lacks field(s) {missing}; has {fields}")
    try:
        import datasets

        ds = ds.cast_column(image_field, datasets.Image(decode=False))
    except (ImportError, ValueError, TypeError):
        pass  # not an image feature: values are read as they come
    candidates: list[Candidate] = []
    items: dict[int, ImageItem] = {}
    skipped: list[SkippedImage] = []
    sizes: dict[int, tuple[int, int]] = {}
    for i, row in enumerate(ds):
        subject = str(row[subject_field])
        camera = is_phone_model(str(row[model_field]), mapping)
        name = f"{id}[{i}] ({row[model_field]})"
        source = MemorySource(_encoded(row[image_field], name), name)
        candidates.append((subject, camera, name, source))
        try:
            sizes[i] = source.load(max_pixels)[0].size
        except UnusableImage as exc:
            skipped.append(SkippedImage(name, exc.reason))
            continue
        digest = hashlib.sha256(source.data).hexdigest()
        items[i] = ImageItem(f"{subject}/{camera}", camera, digest, source, subject)
    return pairs_from_candidates(
        candidates,
        id=id,
        name=f"{id} (Hugging Face)",
        kind="hf",
        root=id,
        items=items,
        skipped=skipped,
        sizes=sizes,
    )


def load_hf_pairs(
    spec: str,
    *,
    mapping: Sequence[tuple[str, str]] = (),
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> PairedDataset:
    """Load ``OWNER/NAME[@SPLIT]`` (default split ``train``) with ``datasets`` and pair its rows."""
    name, _, split = spec.partition("@")
    try:
        import datasets
    except ImportError:
        raise DatasetError(
            f"pairs 'hf:{spec}' need the Hugging Face datasets package: "
            "pip install 'pytest-metatrace[pairs]'"
        ) from None
    try:
        ds = datasets.load_dataset(name, split=split or "train")
    except Exception as exc:  # network, missing cache, unknown split: say which
        raise DatasetError(
            f"cannot load Hugging Face dataset {name!r} (split {split or 'train'!r}): {exc}. "
            "Download it once online (datasets.load_dataset) or set HF_DATASETS_OFFLINE=1 "
            "with a filled cache"
        ) from None
    return pairs_from_hf(ds, id=name.rsplit("/", 1)[-1], mapping=mapping, max_pixels=max_pixels)
