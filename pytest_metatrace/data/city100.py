"""The built-in ``city100`` dataset: the same 100 postcards shot by a camera and a phone.

Files ship in ``pytest_metatrace/data/city100`` (MIT, Chang Chen 2019; see its
README): ``nikon_d5500/NNN.jpg`` (1218 x 870, Nikon D5500, a camera) and
``iphone_x/NNN.jpg`` (840 x 600, Apple iPhone X, a smartphone). The files
carry no EXIF: the acquisition labels come from the folder. Every item has
the metadata columns ``make``, ``model`` and ``smartphone``; the scene
``NNN`` is the group, so that a scene's two photos stay on one side of every
split. The semantic label is ``postcard`` for every item: the content is the
same on both sides by construction.

Two specs:

- ``city100``: the files at their native sizes. The two devices' sizes
  differ, so the encoder's own resize differs between the sides as well.
- ``city100-samesize``: the resize control. The Nikon photos are first
  downscaled to the iPhone's 840 x 600 with Pillow's LANCZOS filter (the
  iPhone photos are used as they are), so both sides reach the encoder at
  the same size and go through the same resize. A trace that survives this
  control is a device trace, not a resize trace.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from pytest_metatrace.data.dataset import Credit, Dataset, FileSource, ImageItem, ImageSource
from pytest_metatrace.data.loading import DEFAULT_MAX_PIXELS, DecodeInfo, load_rgb

__all__ = [
    "CITY100_DEVICES",
    "CITY100_SPECS",
    "City100Device",
    "ResizedSource",
    "city100_dataset",
    "city100_root",
]

#: The resize-control target size: the iPhone X's native size.
SAME_SIZE = (840, 600)


@dataclass(frozen=True)
class City100Device:
    """One device folder of City100 and its acquisition labels."""

    folder: str  #: sub-folder of the package's ``city100`` folder
    make: str  #: EXIF-style make, normalized
    model: str  #: EXIF-style model, normalized (make included)
    smartphone: bool  #: a phone (True) or a camera (False)
    size: tuple[int, int]  #: native (width, height)


CITY100_DEVICES: tuple[City100Device, ...] = (
    City100Device("nikon_d5500", "Nikon", "Nikon D5500", False, (1218, 870)),
    City100Device("iphone_x", "Apple", "Apple iPhone X", True, (840, 600)),
)

#: Data specs served by :func:`city100_dataset`.
CITY100_SPECS = ("city100", "city100-samesize")

CITY100_CREDIT = Credit(
    title="City100 (camera/phone pairs of 100 postcards)",
    author="Chang Chen, Zhiwei Xiong, Xinmei Tian, Zheng-Jun Zha, Feng Wu (CVPR 2019)",
    license="MIT (copyright 2019 Chang Chen)",
    url="https://github.com/ngchc/CameraSR",
    note="JPEG q95 4:4:4 at native size, shipped in pytest_metatrace/data/city100",
)


def city100_root() -> Path:
    """The folder of the shipped City100 files."""
    return Path(__file__).resolve().parent / "city100"


@dataclass(frozen=True)
class ResizedSource:
    """An image file resized to a fixed size with LANCZOS when decoded (the resize control)."""

    path: str  #: absolute path of the file
    size: tuple[int, int]  #: output (width, height)

    def load(self, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Image.Image, DecodeInfo]:
        """Decode, then resize to :attr:`size` (LANCZOS) unless already that size."""
        img, info = load_rgb(self.path, max_pixels=max_pixels)
        if img.size != self.size:
            img = img.resize(self.size, Image.Resampling.LANCZOS)
            info.size = img.size
        return img, info

    def describe(self) -> str:
        """The file and the resize applied."""
        return f"{self.path} (LANCZOS to {self.size[0]}x{self.size[1]})"


@functools.lru_cache(maxsize=512)
def _file_digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _resized_digest(file_digest: str, size: tuple[int, int]) -> str:
    import PIL

    # The pixels are a pure function of the file, the size and Pillow's LANCZOS.
    recipe = f"city100-samesize:pillow-{PIL.__version__}:{file_digest}:{size}"
    return hashlib.sha256(recipe.encode()).hexdigest()


def city100_dataset(spec: str = "city100") -> Dataset:
    """Build ``city100`` (native sizes) or ``city100-samesize`` (resize control)."""
    if spec not in CITY100_SPECS:
        raise ValueError(f"unknown City100 spec {spec!r}; use one of {', '.join(CITY100_SPECS)}")
    same_size = spec == "city100-samesize"
    root = city100_root()
    items: list[ImageItem] = []
    for device in CITY100_DEVICES:
        folder = root / device.folder
        files = sorted(folder.glob("*.jpg"))
        if not files:
            raise FileNotFoundError(
                f"the City100 photos are missing from {folder}; reinstall pytest-metatrace"
            )
        for path in files:
            digest = _file_digest(str(path))
            source: ImageSource = FileSource(str(path))
            if same_size and device.size != SAME_SIZE:
                source = ResizedSource(str(path), SAME_SIZE)
                digest = _resized_digest(digest, SAME_SIZE)
            meta = {
                "make": device.make,
                "model": device.model,
                "smartphone": "smartphone" if device.smartphone else "camera",
            }
            items.append(
                ImageItem(
                    f"{device.folder}/{path.stem}", "postcard", digest, source, path.stem, meta
                )
            )
    sizes = ", ".join(f"{d.model} {d.size[0]}x{d.size[1]}" for d in CITY100_DEVICES)
    if same_size:
        name = (
            "City100, resize control: Nikon D5500 photos downscaled to 840x600 (Pillow LANCZOS) "
            "to match the iPhone X, so both sides reach the encoder at one size"
        )
    else:
        name = f"City100 at native sizes ({sizes}): the encoder's resize differs per device"
    return Dataset(
        id=spec,
        name=name,
        kind="city100",
        items=items,
        root=str(root),
        credits=[CITY100_CREDIT],
        metadata_columns=["make", "model", "smartphone"],
        group_column="scene",
    )
