"""Datasets: the built-in demo photos, image folders and CSV manifests, with robust decoding."""

from pytest_metatrace.data.dataset import (
    Credit,
    Dataset,
    DatasetError,
    FileSource,
    ImageItem,
    ImageSource,
    SkippedImage,
    Split,
)
from pytest_metatrace.data.loading import DEFAULT_MAX_PIXELS, DecodeInfo, UnusableImage, load_rgb
from pytest_metatrace.data.sources import (
    DatasetRegistry,
    dataset_id,
    default_dataset_registry,
    load_dataset,
    register_dataset,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "Credit",
    "Dataset",
    "DatasetError",
    "DatasetRegistry",
    "DecodeInfo",
    "FileSource",
    "ImageItem",
    "ImageSource",
    "SkippedImage",
    "Split",
    "UnusableImage",
    "dataset_id",
    "default_dataset_registry",
    "load_dataset",
    "load_rgb",
    "register_dataset",
]
