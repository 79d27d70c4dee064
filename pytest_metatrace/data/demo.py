"""The built-in ``demo`` dataset: real photos that install with the dependencies.

scikit-image and scikit-learn ship a handful of public-domain / CC0 / CC-BY
photos. Each becomes one semantic class of 30 images: seeded random crops
(4-16% of the photo's area, aspect 3:4 to 4:3, mirrored half of the time),
each resized with Lanczos so its shorter side is 256 pixels. The crops are
the dataset's "original" images; the processing operations then run on them
at that resolution. Crop geometry comes from SHA-256 draws, not a stateful
RNG, so the demo set is identical on every machine and NumPy version; each
crop's content digest hashes its recipe (source bytes, geometry, Pillow
version), so building the dataset renders nothing.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from pytest_metatrace.data.dataset import Credit, Dataset, ImageItem
from pytest_metatrace.data.loading import DEFAULT_MAX_PIXELS, DecodeInfo, to_rgb

__all__ = ["DEMO_PHOTOS", "DemoCrop", "DemoPhoto", "demo_dataset"]

#: Bump when the crops change; part of every demo digest.
DEMO_VERSION = 2
#: Images per class.
DEMO_PER_CLASS = 30
#: Shorter side of every crop after resizing.
DEMO_SHORT_SIDE = 256


@dataclass(frozen=True)
class DemoPhoto:
    """One source photo shipped by a dependency, and its attribution."""

    label: str  #: the semantic class it becomes
    package: str  #: ``skimage`` or ``sklearn``
    filename: str  #: file inside the package's data folder
    credit: Credit  #: attribution shown in the report


_SK = "scikit-image sample data"
DEMO_PHOTOS: tuple[DemoPhoto, ...] = (
    DemoPhoto(
        "astronaut",
        "skimage",
        "astronaut.png",
        Credit(
            "Astronaut Eileen Collins",
            "NASA",
            "public domain",
            "https://flic.kr/p/r9qvLn",
            _SK,
        ),
    ),
    DemoPhoto(
        "camera",
        "skimage",
        "camera.png",
        Credit("Camera man (grey)", "Lav Varshney", "CC0", None, _SK),
    ),
    DemoPhoto(
        "cat",
        "skimage",
        "chelsea.png",
        Credit("Chelsea the cat", "Stefan van der Walt", "CC0", None, _SK),
    ),
    DemoPhoto(
        "coffee",
        "skimage",
        "coffee.png",
        Credit("Coffee cup (Pikolo Espresso Bar)", "Rachel Michetti", "CC0", None, _SK),
    ),
    DemoPhoto(
        "deep_field",
        "skimage",
        "hubble_deep_field.jpg",
        Credit(
            "Hubble eXtreme Deep Field",
            "NASA",
            "public domain",
            "http://hubblesite.org/newscenter/archive/releases/2012/37/image/a/",
            _SK,
        ),
    ),
    DemoPhoto(
        "histology",
        "skimage",
        "ihc.png",
        Credit(
            "Immunohistochemical staining of colonic glands",
            "Center for Microscopy And Molecular Imaging (CMMI)",
            "no known copyright restrictions",
            None,
            _SK,
        ),
    ),
    DemoPhoto(
        "retina",
        "skimage",
        "retina.jpg",
        Credit(
            "Fundus photograph of a normal left eye",
            "Mikael Häggström",
            "CC0",
            "https://commons.wikimedia.org/wiki/File:Fundus_photograph_of_normal_left_eye.jpg",
            _SK,
        ),
    ),
    DemoPhoto(
        "rocket",
        "skimage",
        "rocket.jpg",
        Credit(
            "Launch of DSCOVR on Falcon 9",
            "SpaceX",
            "public domain",
            "https://www.flickr.com/photos/spacexphotos/16511594820/",
            _SK,
        ),
    ),
    DemoPhoto(
        "temple",
        "sklearn",
        "china.jpg",
        Credit(
            "Summer Palace, Beijing (china.jpg)",
            "danielbuechele",
            "CC BY 2.0",
            "https://www.flickr.com/photos/danielbuechele/6061409035/",
            "scikit-learn sample images",
        ),
    ),
    DemoPhoto(
        "flower",
        "sklearn",
        "flower.jpg",
        Credit(
            "Flower (flower.jpg)",
            "vultilion",
            "CC BY 2.0",
            "https://www.flickr.com/photos/vultilion/6056698931/",
            "scikit-learn sample images",
        ),
    ),
)


_DATA_SUBDIR = {"skimage": ("data",), "sklearn": ("datasets", "images")}


def _package_data_dir(package: str) -> Path:
    # find_spec locates the package without importing it (importing
    # scikit-learn alone costs over a second).
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        dist = "scikit-image" if package == "skimage" else "scikit-learn"
        raise FileNotFoundError(
            f"the demo photos ship with {dist}, which is not installed (pip install {dist})"
        )
    return Path(next(iter(spec.submodule_search_locations)), *_DATA_SUBDIR[package])


@functools.lru_cache(maxsize=16)
def _source_file(package: str, filename: str) -> tuple[Path, str, tuple[int, int], str]:
    """Path, SHA-256, size and mode of a source photo (header only, no decode)."""
    path = _package_data_dir(package) / filename
    if not path.is_file():
        dist = "scikit-image" if package == "skimage" else "scikit-learn"
        raise FileNotFoundError(
            f"demo photo {path} is missing; reinstall {package} "
            f"(pip install --force-reinstall {dist})"
        )
    data = path.read_bytes()
    with Image.open(path) as img:
        size, mode = img.size, img.mode
    return path, hashlib.sha256(data).hexdigest(), size, mode


@functools.lru_cache(maxsize=16)
def _source_photo(package: str, filename: str) -> tuple[Image.Image, tuple[str, ...]]:
    path = _source_file(package, filename)[0]
    with Image.open(path) as img:
        img.load()
        info = DecodeInfo()
        rgb = to_rgb(img, info)
    return rgb, tuple(info.conversions)


def _unit(*parts: object) -> float:
    digest = hashlib.sha256(":".join(map(str, ("metatrace-demo", DEMO_VERSION, *parts))).encode())
    return int.from_bytes(digest.digest()[:8], "big") / 2.0**64


@dataclass(frozen=True)
class DemoCrop:
    """One demo image: a crop of a shipped photo, resized, maybe mirrored."""

    package: str  #: package holding the source photo
    filename: str  #: source photo file
    box: tuple[int, int, int, int]  #: crop box in the source photo
    size: tuple[int, int]  #: output (width, height)
    mirror: bool  #: mirrored left-right

    def render(self) -> Image.Image:
        """Produce the crop's pixels (deterministic)."""
        photo, _ = _source_photo(self.package, self.filename)
        out = photo.crop(self.box).resize(self.size, Image.Resampling.LANCZOS)
        return ImageOps.mirror(out) if self.mirror else out

    def load(self, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Image.Image, DecodeInfo]:
        """The crop as an RGB image, with the source photo's conversions."""
        _, conversions = _source_photo(self.package, self.filename)
        img = self.render()
        return img, DecodeInfo(source_mode="RGB", size=img.size, conversions=list(conversions))

    def describe(self) -> str:
        """Where the crop comes from."""
        return f"{self.package}:{self.filename} crop {self.box}{' mirrored' if self.mirror else ''}"


def _crop_geometry(
    label: str, k: int, width: int, height: int
) -> tuple[tuple[int, int, int, int], tuple[int, int], bool]:
    """Crop box, output size and mirroring of crop ``k`` of class ``label``."""
    # Small crops keep the semantic task from being trivial: with 25-60% of the
    # photo, lite0's kNN is 100% under every setup and the kNN audit shows
    # nothing; at 4-16% it is ~95% and processing can tip a few predictions.
    area = (0.04 + 0.12 * _unit(label, k, "area")) * width * height
    log_ratio = math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * _unit(label, k, "ratio")
    ratio = math.exp(log_ratio)  # width / height
    w = min(width, round(math.sqrt(area * ratio)))
    h = min(height, round(math.sqrt(area / ratio)))
    left = math.floor((width - w) * _unit(label, k, "x"))
    top = math.floor((height - h) * _unit(label, k, "y"))
    if w <= h:
        size = (DEMO_SHORT_SIDE, round(DEMO_SHORT_SIDE * h / w))
    else:
        size = (round(DEMO_SHORT_SIDE * w / h), DEMO_SHORT_SIDE)
    mirror = _unit(label, k, "mirror") < 0.5
    return (left, top, left + w, top + h), size, mirror


def _recipe_digest(source_digest: str, crop: DemoCrop) -> str:
    """Content address of a crop from its recipe, without rendering it.

    The pixels are a pure function of the source photo's bytes, the crop
    geometry and Pillow's resampling code, so hashing those (Pillow's version
    included) addresses the content as exactly as hashing the pixels would,
    and a warm run never renders a crop.
    """
    import PIL

    recipe = (
        f"demo-v{DEMO_VERSION}:pillow-{PIL.__version__}:{source_digest}:"
        f"{crop.box}:{crop.size}:{crop.mirror}"
    )
    return hashlib.sha256(recipe.encode()).hexdigest()


def demo_dataset(per_class: int = DEMO_PER_CLASS) -> Dataset:
    """Build the demo dataset (10 classes x ``per_class`` crops of shipped photos)."""
    from collections import Counter

    items: list[ImageItem] = []
    conversions: Counter[str] = Counter()
    for photo in DEMO_PHOTOS:
        _, source_digest, (width, height), mode = _source_file(photo.package, photo.filename)
        for k in range(per_class):
            box, size, mirror = _crop_geometry(photo.label, k, width, height)
            crop = DemoCrop(photo.package, photo.filename, box, size, mirror)
            items.append(
                ImageItem(
                    f"{photo.label}/{k:03d}", photo.label, _recipe_digest(source_digest, crop), crop
                )
            )
            if mode != "RGB":
                conversions[f"{mode.lower()}->rgb"] += 1
    return Dataset(
        id="demo",
        name=f"pytest-metatrace demo ({len(DEMO_PHOTOS)} photos x {per_class} crops)",
        kind="demo",
        items=items,
        root=None,
        conversions=conversions,
        credits=[p.credit for p in DEMO_PHOTOS],
    )
