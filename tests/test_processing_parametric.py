"""Tests of the parametric processing views (``jpeg<q>_<sub>``, ``sharpen<f>``, ``resize<r>``).

The pixel tests compare against Pillow calls written out here, not against the
package's helpers, so that a wrong quality, subsampling, factor or size shows
up as a byte difference.
"""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from image_helpers import skimage_photo, synthetic_rgb
from PIL import Image, ImageEnhance

from pytest_metatrace.embeddings.store import View
from pytest_metatrace.processing import PROCESSING_CLASSES, get_processing
from pytest_metatrace.processing.parametric import (
    ProcessingNameError,
    format_number,
    parametric_name,
)


def _jpeg(img: Image.Image, quality: int, subsampling: str) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, subsampling=subsampling)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def _oracle(name: str, img: Image.Image) -> Image.Image:
    """The Pillow calls a parametric name stands for, written out independently."""
    if name.startswith("jpeg"):
        q, sub = name[4:].split("_")
        return _jpeg(img, int(q), {"444": "4:4:4", "420": "4:2:0"}[sub])
    if name.startswith("sharpen"):
        out = ImageEnhance.Sharpness(img).enhance(float(name[7:]))
    else:
        r = float(name[6:])
        out = img.resize(
            (max(1, int(img.width * r)), max(1, int(img.height * r))), Image.Resampling.BILINEAR
        )
    return _jpeg(out, 95, "4:4:4")


IMAGES = {
    "photo": lambda: skimage_photo("chelsea.png"),
    "odd": lambda: synthetic_rgb(37, 23, seed=5),
}

NAMES = [
    "jpeg92_444",
    "jpeg50_420",
    "jpeg1_444",
    "jpeg100_420",
    "sharpen1.2",
    "sharpen0.5",
    "sharpen3",
    "resize0.9",
    "resize0.37",
    "resize1.5",
]


@pytest.mark.parametrize("image_name", list(IMAGES))
@pytest.mark.parametrize("name", NAMES)
def test_parametric_view_is_pixel_exact_with_pillow(name: str, image_name: str) -> None:
    img = IMAGES[image_name]()
    before = img.tobytes()
    out = get_processing(name).apply(img)
    expected = _oracle(name, img)
    assert out.mode == "RGB"
    assert out.size == expected.size
    assert out.tobytes() == expected.tobytes()
    assert img.tobytes() == before


def test_steps_change_pixels_and_the_identity_factors_do_not() -> None:
    img = skimage_photo("chelsea.png")
    ref = get_processing("jpeg95_444").apply(img).tobytes()
    # Factor 1 sharpening and resizing are the identity before the re-encode.
    assert get_processing("sharpen1").apply(img).tobytes() == ref
    assert get_processing("resize1").apply(img).tobytes() == ref
    outs = {n: get_processing(n).apply(img).tobytes() for n in ("jpeg94_444", "sharpen1.05")}
    assert all(v != ref for v in outs.values())


@pytest.mark.parametrize("name", list(PROCESSING_CLASSES))
def test_fixed_names_return_the_catalog_entry_itself(name: str) -> None:
    assert get_processing(name) is PROCESSING_CLASSES[name]


@pytest.mark.parametrize(
    ("name", "fixed"),
    [
        ("jpeg75_420", "jpeg75_420"),
        ("jpeg85_444", "jpeg85_444"),
        ("sharpen2", "sharpen2"),
        ("sharpen4", "sharpen4"),
        ("resize0.5", "resize_half"),
        ("resize2", "resize_double"),
    ],
)
def test_parametric_spellings_of_fixed_classes_are_the_fixed_classes(name: str, fixed: str) -> None:
    assert get_processing(name) is PROCESSING_CLASSES[fixed]
    # One operation, one cache entry: the views share their key.
    assert View(name).key == View(fixed).key


def test_built_names_match_the_catalog() -> None:
    assert parametric_name("jpeg", 75, "420") == "jpeg75_420"
    assert parametric_name("jpeg", 95) == "jpeg95_444"
    assert parametric_name("sharpen", 2.0) == "sharpen2"
    assert parametric_name("sharpen", 1.2) == "sharpen1.2"
    assert parametric_name("resize", 0.9) == "resize0.9"
    assert get_processing(parametric_name("resize", 0.5)) is PROCESSING_CLASSES["resize_half"]


def test_cache_keys_differ_per_parameter() -> None:
    names = [f"jpeg{q}_{s}" for q in range(50, 101) for s in ("444", "420")]
    names += [parametric_name("sharpen", 1 + k / 20) for k in range(41)]
    names += [parametric_name("resize", round(0.5 + k / 20, 2)) for k in range(1, 10)]
    keys = {View(n).key for n in names}
    assert len(keys) == len(set(names))
    params = [json.dumps(get_processing(n).cache_params(0), sort_keys=True) for n in names]
    assert len(set(params)) == len(set(names))
    # Seed-independent, like the fixed deterministic classes.
    assert all(
        get_processing(n).cache_params(0) == get_processing(n).cache_params(7) for n in names
    )
    # The parameter itself is in the key, not only the name.
    assert get_processing("sharpen1.2").cache_params(0)["factor"] == 1.2
    assert get_processing("resize0.9").cache_params(0)["scale"] == 0.9
    assert get_processing("jpeg92_420").cache_params(0)["quality"] == 92


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("sharpen1.20", r"canonical form: 'sharpen1\.2'"),
        ("sharpen2.0", r"canonical form: 'sharpen2'"),
        ("resize00.9", r"canonical form: 'resize0\.9'"),
        ("jpeg092_444", r"without leading zeros: jpeg92_444"),
        ("jpeg0_444", r"quality must be 1\.\.100, got 0"),
        ("jpeg101_420", r"quality must be 1\.\.100, got 101"),
        ("sharpen10.5", r"sharpening factor must be 0\.\.10, got 10\.5"),
        ("resize0", r"resize factor must be > 0 and <= 4, got 0"),
        ("resize4.5", r"resize factor must be > 0 and <= 4"),
        ("jpeg92_422", r"unknown processing class 'jpeg92_422'"),
        ("resize.5", r"unknown processing class 'resize\.5'"),
        ("sharpen-1", r"unknown processing class"),
        ("sharpen1e-1", r"unknown processing class"),
    ],
)
def test_bad_names_are_refused_with_the_accepted_forms(name: str, message: str) -> None:
    with pytest.raises(ProcessingNameError, match=message) as info:
        get_processing(name)
    assert isinstance(info.value, KeyError)
    text = str(info.value)
    assert "jpeg<q>_444" in text and "sharpen<f>" in text and "resize<r>" in text
    assert not text.startswith("'"), "the message is not a repr"


def test_parametric_name_refuses_bad_values() -> None:
    with pytest.raises(ProcessingNameError, match="integer"):
        parametric_name("jpeg", 92.5)
    with pytest.raises(ProcessingNameError, match="quality must be"):
        parametric_name("jpeg", 0)
    with pytest.raises(ProcessingNameError, match="unknown parametric kind"):
        parametric_name("blur", 1.0)
    with pytest.raises(ProcessingNameError, match="decimal"):
        format_number(1e-7)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.floats(min_value=0.01, max_value=4.0, allow_nan=False))
def test_every_canonical_factor_round_trips(value: float) -> None:
    name = parametric_name("resize", value)
    op = get_processing(name)
    assert op.params["scale"] == value
    assert name == f"resize{format_number(value)}"
