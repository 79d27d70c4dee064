"""Tests of the processing catalog, parameter groups and center masking (docs/protocol.md §1, §3).

The pixel tests compare against Pillow calls written out here, not against the
package's helpers, so that a wrong quality, subsampling, filter or size in the
catalog shows up as a byte difference.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from image_helpers import pixels, skimage_photo, synthetic_rgb
from PIL import Image, ImageEnhance

import pytest_metatrace
from pytest_metatrace.processing import (
    DEFAULT_MASK_RATIO,
    PARAMETER_GROUPS,
    PROCESSING_CLASSES,
    PROCESSING_VERSION,
    apply_center_mask,
    get_group,
    get_processing,
    interp_scale,
    list_processing,
    mask_box,
)

# docs/protocol.md §1, in table order.
PROTOCOL_CLASSES = [
    "jpeg75_420",
    "jpeg75_444",
    "jpeg85_420",
    "jpeg85_444",
    "jpeg95_420",
    "jpeg95_444",
    "sharpen2",
    "sharpen4",
    "resize_half",
    "resize_double",
    "interp_bilinear",
    "interp_bicubic",
    "interp_lanczos",
    "interp_box",
]
INTERP_CLASSES = [n for n in PROTOCOL_CLASSES if n.startswith("interp_")]
TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = Path(pytest_metatrace.__file__).resolve().parents[1]


# --------------------------------------------------------------------------- the oracle
def _jpeg(img: Image.Image, quality: int, subsampling: str) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, subsampling=subsampling)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _j95(img: Image.Image) -> Image.Image:
    return _jpeg(img, 95, "4:4:4")


def _rescale(img: Image.Image, s: float, resample: Image.Resampling) -> Image.Image:
    return img.resize((int(img.width * s), int(img.height * s)), resample)


Oracle = Callable[[Image.Image, int, str], Image.Image]
R = Image.Resampling
ORACLE: dict[str, Oracle] = {
    "jpeg75_420": lambda im, seed, key: _jpeg(im, 75, "4:2:0"),
    "jpeg75_444": lambda im, seed, key: _jpeg(im, 75, "4:4:4"),
    "jpeg85_420": lambda im, seed, key: _jpeg(im, 85, "4:2:0"),
    "jpeg85_444": lambda im, seed, key: _jpeg(im, 85, "4:4:4"),
    "jpeg95_420": lambda im, seed, key: _jpeg(im, 95, "4:2:0"),
    "jpeg95_444": lambda im, seed, key: _jpeg(im, 95, "4:4:4"),
    "sharpen2": lambda im, seed, key: _j95(ImageEnhance.Sharpness(im).enhance(2)),
    "sharpen4": lambda im, seed, key: _j95(ImageEnhance.Sharpness(im).enhance(4)),
    "resize_half": lambda im, seed, key: _j95(_rescale(im, 0.5, R.BILINEAR)),
    "resize_double": lambda im, seed, key: _j95(_rescale(im, 2.0, R.BILINEAR)),
    "interp_bilinear": lambda im, seed, key: _j95(
        _rescale(im, interp_scale(seed, key), R.BILINEAR)
    ),
    "interp_bicubic": lambda im, seed, key: _j95(_rescale(im, interp_scale(seed, key), R.BICUBIC)),
    "interp_lanczos": lambda im, seed, key: _j95(_rescale(im, interp_scale(seed, key), R.LANCZOS)),
    "interp_box": lambda im, seed, key: _j95(_rescale(im, interp_scale(seed, key), R.BOX)),
}

IMAGES: dict[str, Callable[[], Image.Image]] = {
    "chelsea": lambda: skimage_photo("chelsea.png"),
    "coffee": lambda: skimage_photo("coffee.png"),
    "synthetic_odd": lambda: synthetic_rgb(37, 23, seed=1),
}


def _key(img: Image.Image) -> str:
    return hashlib.sha256(img.tobytes()).hexdigest()


# --------------------------------------------------------------------------- catalog
def test_catalog_is_the_protocol_table_in_order() -> None:
    assert list(PROCESSING_CLASSES) == PROTOCOL_CLASSES
    assert list_processing() == PROTOCOL_CLASSES
    assert len(set(PROTOCOL_CLASSES)) == 14
    for name in PROTOCOL_CLASSES:
        assert get_processing(name).name == name
        assert get_processing(name).randomized == name.startswith("interp_")


def test_parameter_groups_match_protocol() -> None:
    expected = {
        "jpeg": (
            "jpeg75_420",
            "jpeg75_444",
            "jpeg85_420",
            "jpeg85_444",
            "jpeg95_420",
            "jpeg95_444",
        ),
        "sharpening": ("jpeg95_444", "sharpen2", "sharpen4"),
        "resizing": ("jpeg95_444", "resize_half", "resize_double"),
        "interpolation": ("interp_bilinear", "interp_bicubic", "interp_lanczos", "interp_box"),
    }
    assert {name: g.classes for name, g in PARAMETER_GROUPS.items()} == expected
    assert [g.chance for g in PARAMETER_GROUPS.values()] == [1 / 6, 1 / 3, 1 / 3, 1 / 4]
    # 16 class slots over 14 distinct operations: every operation is in some group.
    slots = [c for g in PARAMETER_GROUPS.values() for c in g.classes]
    assert len(slots) == 16
    assert set(slots) == set(PROTOCOL_CLASSES)
    assert get_group("sharpening") is PARAMETER_GROUPS["sharpening"]


def test_unknown_group_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match=r"unknown parameter group 'jpg'.*jpeg, sharpening"):
        get_group("jpg")


def test_unknown_processing_suggests_the_closest_name() -> None:
    with pytest.raises(KeyError, match=r"'jpeg75_42'; did you mean 'jpeg75_420'\?"):
        get_processing("jpeg75_42")
    with pytest.raises(KeyError) as info:
        get_processing("zzzz")
    assert "did you mean" not in str(info.value)
    assert "interp_box" in str(info.value)


# --------------------------------------------------------------------------- pixels
@pytest.mark.parametrize("image_name", list(IMAGES))
@pytest.mark.parametrize("name", PROTOCOL_CLASSES)
def test_operation_is_pixel_exact_with_pillow(name: str, image_name: str) -> None:
    img = IMAGES[image_name]()
    before = img.tobytes()
    seed, key = 3, _key(img)
    out = get_processing(name).apply(img, seed=seed, image_key=key)
    expected = ORACLE[name](img, seed, key)
    assert out.mode == "RGB"
    assert out.size == expected.size
    assert out.tobytes() == expected.tobytes()
    assert img.tobytes() == before, "the input image must not be modified"


def test_operations_produce_distinct_images() -> None:
    # Guards the oracle test against a catalog where two classes collapse to one.
    img = skimage_photo("chelsea.png")
    key = _key(img)
    digests = {
        name: _key(op.apply(img, seed=0, image_key=key)) for name, op in PROCESSING_CLASSES.items()
    }
    assert len(set(digests.values())) == len(digests)


@pytest.mark.parametrize(
    ("size", "half", "double"),
    [((451, 300), (225, 150), (902, 600)), ((1, 1), (1, 1), (2, 2)), ((3, 1), (1, 1), (6, 2))],
)
def test_resize_sizes_truncate_and_clamp_at_one(
    size: tuple[int, int], half: tuple[int, int], double: tuple[int, int]
) -> None:
    img = synthetic_rgb(*size)
    assert get_processing("resize_half").apply(img).size == half
    assert get_processing("resize_double").apply(img).size == double


# --------------------------------------------------------------------------- determinism
def test_same_seed_and_key_give_identical_pixels() -> None:
    img = synthetic_rgb(53, 41, seed=2)
    for name in INTERP_CLASSES:
        op = get_processing(name)
        a = op.apply(img, seed=11, image_key="k1").tobytes()
        b = op.apply(img, seed=11, image_key="k1").tobytes()
        assert a == b


def test_scale_does_not_depend_on_call_order() -> None:
    keys = [f"img{i}" for i in range(20)]
    forward = {k: interp_scale(5, k) for k in keys}
    backward = {k: interp_scale(5, k) for k in reversed(keys)}
    assert forward == backward


_SUBPROCESS_CODE = """
import hashlib
from image_helpers import synthetic_rgb
from pytest_metatrace.processing import PROCESSING_CLASSES, interp_scale
img = synthetic_rgb(41, 29, seed=5)
print("scale", repr(interp_scale(7, "abc")))
for name, op in PROCESSING_CLASSES.items():
    out = op.apply(img, seed=7, image_key="abc")
    print(name, hashlib.sha256(out.tobytes()).hexdigest())
"""


def test_identical_pixels_in_another_process() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(TESTS_DIR)])
    env["PYTHONHASHSEED"] = "12345"  # str hashing must play no part in the scale
    proc = subprocess.run(
        [sys.executable, "-c", _SUBPROCESS_CODE],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    img = synthetic_rgb(41, 29, seed=5)
    expected = [f"scale {interp_scale(7, 'abc')!r}"] + [
        f"{name} {_key(op.apply(img, seed=7, image_key='abc'))}"
        for name, op in PROCESSING_CLASSES.items()
    ]
    assert proc.stdout.split("\n")[:-1] == expected


def test_different_seeds_and_keys_give_different_scales() -> None:
    by_seed = [interp_scale(seed, "same-image") for seed in range(50)]
    by_key = [interp_scale(0, f"image-{i}") for i in range(50)]
    assert len(set(by_seed)) == 50
    assert len(set(by_key)) == 50
    # Seeds whose scales give different sizes give different pixels.
    img = synthetic_rgb(60, 40)
    sizes = {seed: int(60 * interp_scale(seed, "k")) for seed in range(20)}
    a, b = next((a, b) for a in sizes for b in sizes if sizes[a] != sizes[b])
    op = get_processing("interp_bicubic")
    assert op.apply(img, seed=a, image_key="k").size[0] == sizes[a]
    assert op.apply(img, seed=b, image_key="k").size[0] == sizes[b]


def test_scales_cover_the_range_uniformly() -> None:
    scales = np.array([interp_scale(0, f"k{i}") for i in range(4000)])
    assert scales.min() >= 0.8
    assert scales.max() < 1.2
    counts, _ = np.histogram(scales, bins=4, range=(0.8, 1.2))
    # Binomial(4000, 1/4) has std ~27: six sigma either side.
    assert np.all(np.abs(counts - 1000) < 165), counts


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(min_value=-(2**63), max_value=2**63), key=st.text(max_size=80))
def test_scale_lies_in_the_protocol_range(seed: int, key: str) -> None:
    s = interp_scale(seed, key)
    assert 0.8 <= s < 1.2


def test_cache_params_hold_the_seed_only_for_interpolation() -> None:
    for name, op in PROCESSING_CLASSES.items():
        p0, p1 = op.cache_params(0), op.cache_params(1)
        assert p0["name"] == name
        assert p0["version"] == PROCESSING_VERSION
        if name in INTERP_CLASSES:
            assert (p0["seed"], p1["seed"]) == (0, 1)
            assert p0 != p1
        else:
            assert "seed" not in p0
            assert p0 == p1
    as_tuples = [
        tuple(sorted(map(str, op.cache_params(0).items()))) for op in PROCESSING_CLASSES.values()
    ]
    assert len(set(as_tuples)) == 14


# --------------------------------------------------------------------------- properties
def _expected_size(name: str, w: int, h: int, seed: int, key: str) -> tuple[int, int]:
    scale = {"resize_half": 0.5, "resize_double": 2.0}.get(name)
    if name in INTERP_CLASSES:
        scale = interp_scale(seed, key)
    if scale is None:
        return w, h
    return max(1, int(w * scale)), max(1, int(h * scale))


@settings(max_examples=60, deadline=None)
@given(
    w=st.integers(1, 70),
    h=st.integers(1, 70),
    name=st.sampled_from(PROTOCOL_CLASSES),
    seed=st.integers(0, 10_000),
    key=st.text(max_size=10),
)
def test_any_small_size_gives_rgb_of_the_documented_size(
    w: int, h: int, name: str, seed: int, key: str
) -> None:
    img = synthetic_rgb(w, h, seed=seed)
    out = get_processing(name).apply(img, seed=seed, image_key=key)
    assert out.mode == "RGB"
    assert out.size == _expected_size(name, w, h, seed, key)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "1", "I;16", "F", "LA", "YCbCr"])
def test_non_rgb_input_is_refused(mode: str) -> None:
    img = Image.new(mode, (8, 6))
    for name, op in PROCESSING_CLASSES.items():
        with pytest.raises(ValueError, match=rf"{name!r} expects an RGB image, got mode {mode!r}"):
            op.apply(img)


# --------------------------------------------------------------------------- masking
def test_default_mask_ratio_is_the_paper_text() -> None:
    assert DEFAULT_MASK_RATIO == 0.90


@pytest.mark.parametrize(
    ("w", "h", "ratio", "box"),
    [
        (224, 224, 0.90, (6, 6, 218, 218)),  # margin 224*(1-sqrt(.9))/2 = 5.75
        (224, 224, 0.95, (3, 3, 221, 221)),  # 2.84
        (10, 10, 0.25, (3, 3, 7, 7)),  # 2.5 rounds up (Python's round() gives 2)
        (30, 10, 0.25, (8, 3, 22, 7)),  # 7.5 -> 8, 2.5 -> 3
        (5, 5, 0.0, (3, 3, 2, 2)),  # odd side, nothing masked
        (4, 7, 0.0, (2, 4, 2, 3)),
        (5, 9, 1.0, (0, 0, 5, 9)),
    ],
)
def test_mask_box_known_values(
    w: int, h: int, ratio: float, box: tuple[int, int, int, int]
) -> None:
    assert mask_box(w, h, ratio) == box


@pytest.mark.parametrize("ratio", [-0.01, 1.01, math.nan, math.inf])
def test_mask_ratio_outside_unit_interval_is_refused(ratio: float) -> None:
    with pytest.raises(ValueError, match="mask ratio must lie in"):
        mask_box(10, 10, ratio)


@settings(max_examples=300, deadline=None)
@given(
    w=st.integers(1, 400),
    h=st.integers(1, 400),
    ratio=st.floats(0.0, 1.0, allow_nan=False),
)
def test_mask_box_is_centered_with_sqrt_ratio_sides(w: int, h: int, ratio: float) -> None:
    left, top, right, bottom = mask_box(w, h, ratio)
    assert (left, top) == (w - right, h - bottom)  # centered: equal margins
    for margin, side in ((left, w), (top, h)):
        exact = side * (1 - math.sqrt(ratio)) / 2
        assert abs(margin - exact) <= 0.5 + 1e-9
        if exact - math.floor(exact) == 0.5:
            assert margin == math.ceil(exact)  # half up
    if ratio == 0:
        assert left >= right
        assert top >= bottom
    if ratio == 1:
        assert (left, top, right, bottom) == (0, 0, w, h)


def test_mask_area_follows_ratio_on_large_images() -> None:
    for ratio in (0.1, 0.5, 0.9, 0.95):
        left, top, right, bottom = mask_box(1000, 800, ratio)
        area = (right - left) * (bottom - top) / (1000 * 800)
        assert area == pytest.approx(ratio, abs=4e-3)


@settings(max_examples=80, deadline=None)
@given(
    w=st.integers(1, 40),
    h=st.integers(1, 40),
    ratio=st.floats(0.0, 1.0, allow_nan=False),
    mode=st.sampled_from(["RGB", "L"]),
)
def test_center_mask_blackens_exactly_the_box(w: int, h: int, ratio: float, mode: str) -> None:
    img = synthetic_rgb(w, h, seed=w * 100 + h).convert(mode)
    # No zero pixels before, so a zero afterwards can only come from the mask.
    img = Image.fromarray(np.maximum(pixels(img), 1))
    before = pixels(img)
    out = apply_center_mask(img, ratio)
    after = pixels(out)
    left, top, right, bottom = mask_box(w, h, ratio)
    inside = np.zeros((h, w), dtype=bool)
    inside[top:bottom, left:right] = True
    assert out.mode == mode
    assert out.size == (w, h)
    assert np.all(after[inside] == 0)
    assert np.array_equal(after[~inside], before[~inside])
    assert np.array_equal(pixels(img), before), "the input image must not be modified"
    if ratio == 1:
        assert not after.any()
    if ratio == 0:
        assert np.array_equal(after, before)
