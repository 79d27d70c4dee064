"""PreprocessCfg and Preprocessor: bit-exact with timm, open_clip and transformers (PIL)."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from encoder_helpers import sample_images
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pytest_metatrace.encoders import EncoderSpecError, PreprocessCfg, Preprocessor
from pytest_metatrace.encoders.config import INTERPOLATIONS
from pytest_metatrace.encoders.preprocess import normalize_pixels
from pytest_metatrace.processing import apply_center_mask, mask_box

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _image(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8), "RGB")


def _ours(cfg: PreprocessCfg, img: Image.Image) -> torch.Tensor:
    return normalize_pixels(Preprocessor(cfg)(img), cfg)


# -- the config ---------------------------------------------------------------------------


def test_cfg_coerces_and_dumps_json_ready() -> None:
    cfg = PreprocessCfg(input_size=[3, 40, 48], mean=[0.5] * 3, std=0.25, fill=[1, 2, 3])  # type: ignore[arg-type]
    assert cfg.input_size == (40, 48)
    assert cfg.mean == (0.5, 0.5, 0.5)
    assert cfg.std == (0.25, 0.25, 0.25)
    d = cfg.to_dict()
    assert d["input_size"] == [40, 48]
    assert d["fill"] == [1, 2, 3]
    assert PreprocessCfg(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}) == cfg
    assert hash(cfg) == hash(
        PreprocessCfg(input_size=(40, 48), mean=(0.5,) * 3, std=(0.25,) * 3, fill=(1, 2, 3))
    )


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"interpolation": "cubic"}, "interpolation must be one of"),
        ({"crop_mode": "shortest"}, "crop_mode must be one of"),
        ({"resize_policy": "crop"}, "resize_policy must be one of"),
        ({"crop_pct": 0.0}, "crop_pct must lie in"),
        ({"std": (1.0, 0.0, 1.0)}, "std must be positive"),
        ({"mean": (0.5, 0.5)}, "mean must have 3 values"),
        ({"input_size": (0, 4)}, "input_size must be a positive int"),
        ({"fill": (0, 0, 300)}, "fill must be 0..255"),
    ],
)
def test_cfg_rejects_bad_values_with_the_allowed_ones(changes: dict, fragment: str) -> None:
    with pytest.raises(EncoderSpecError, match=fragment):
        PreprocessCfg(**changes)


def test_scale_size_follows_timm_floor_and_the_policies() -> None:
    cfg = PreprocessCfg(input_size=(224, 224), crop_pct=0.875)
    assert cfg.scale_size == (256, 256)
    assert PreprocessCfg(input_size=(160, 192), crop_pct=0.95).scale_size == (
        math.floor(160 / 0.95),
        math.floor(192 / 0.95),
    )
    assert cfg.replace(resize_size=(300, 300)).scale_size == (300, 300)
    # docs/protocol.md §2: crop-size resizes the shorter side straight to the crop size.
    crop = cfg.replace(resize_policy="crop-size", crop_mode="squash", resize_size=(300, 300))
    assert crop.scale_size == (224, 224)
    assert crop.effective_crop_mode == "center"


def test_from_dict_accepts_own_fields_timm_and_open_clip_configs() -> None:
    own = PreprocessCfg.from_dict({"input_size": (32, 32), "interpolation": "box"})
    assert own.input_size == (32, 32)
    assert own.interpolation == "box"
    timm_like = PreprocessCfg.from_dict(
        {
            "input_size": (3, 40, 48),
            "interpolation": "bicubic",
            "crop_pct": 0.9,
            "crop_mode": "border",
            "mean": (0.5, 0.25, 0.0),
            "std": (1, 1, 1),
        }
    )
    assert timm_like.input_size == (40, 48)
    assert timm_like.crop_mode == "border"
    assert timm_like.fill == (128, 64, 0)  # timm pads "border" crops with round(255 * mean)
    oc = PreprocessCfg.from_dict(
        {"size": 64, "resize_mode": "longest", "fill_color": 7, "interpolation": "random"}
    )
    assert (oc.crop_mode, oc.crop_pct, oc.fill, oc.interpolation) == (
        "border",
        1.0,
        (7, 7, 7),
        "bicubic",
    )
    with pytest.raises(EncoderSpecError, match=r"unknown preprocessing key"):
        PreprocessCfg.from_dict({"input_size": (32, 32), "img_mean": (0, 0, 0)})


# -- bit-exactness with the families' own eval transforms --------------------------------


@SETTINGS
@given(
    w=st.integers(5, 260),
    h=st.integers(5, 260),
    th=st.integers(8, 64),
    tw=st.integers(8, 64),
    square=st.booleans(),
    crop_pct=st.sampled_from([0.8, 0.875, 0.9, 0.95, 1.0, 1.15]),
    crop_mode=st.sampled_from(["center", "squash", "border"]),
    interpolation=st.sampled_from(INTERPOLATIONS),
    seed=st.integers(0, 3),
)
def test_matches_timm_eval_transform_exactly(
    w: int,
    h: int,
    th: int,
    tw: int,
    square: bool,
    crop_pct: float,
    crop_mode: str,
    interpolation: str,
    seed: int,
) -> None:
    from timm.data import create_transform

    size = (th, th) if square else (th, tw)
    data_config = {
        "input_size": (3, *size),
        "interpolation": interpolation,
        "crop_pct": crop_pct,
        "crop_mode": crop_mode,
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
    }
    # Degenerate aspect ratios (> 4:1) can resize a side to 0 pixels, in timm as here.
    h, w = max(h, w // 4), max(w, h // 4)
    img = _image(w, h, seed)
    ref = create_transform(**data_config)(img)
    assert torch.equal(_ours(PreprocessCfg.from_timm(data_config), img), ref)


@SETTINGS
@given(
    w=st.integers(5, 260),
    h=st.integers(5, 260),
    th=st.integers(8, 64),
    tw=st.integers(8, 64),
    square=st.booleans(),
    resize_mode=st.sampled_from(["shortest", "longest", "squash"]),
    interpolation=st.sampled_from(["bicubic", "bilinear"]),
    fill=st.integers(0, 255),
    seed=st.integers(0, 3),
)
def test_matches_open_clip_eval_transform_exactly(
    w: int,
    h: int,
    th: int,
    tw: int,
    square: bool,
    resize_mode: str,
    interpolation: str,
    fill: int,
    seed: int,
) -> None:
    from open_clip.transform import image_transform

    size = (th, th) if square else (th, tw)
    pp = {
        "size": size,
        "mean": (0.48145466, 0.4578275, 0.40821073),
        "std": (0.26862954, 0.26130258, 0.27577711),
        "interpolation": interpolation,
        "resize_mode": resize_mode,
        "fill_color": fill,
    }
    ref_tf = image_transform(
        size,
        is_train=False,
        mean=pp["mean"],
        std=pp["std"],
        resize_mode=resize_mode,
        interpolation=interpolation,
        fill_color=fill,
    )
    h, w = max(h, w // 4), max(w, h // 4)  # see the timm test
    img = _image(w, h, seed)
    assert torch.equal(_ours(PreprocessCfg.from_open_clip(pp), img), ref_tf(img))


@pytest.mark.parametrize(
    ("cls_name", "kwargs"),
    [
        (
            "CLIPImageProcessorPil",
            {"size": {"shortest_edge": 40}, "crop_size": {"height": 32, "width": 36}},
        ),
        (
            "CLIPImageProcessorPil",
            {"size": {"shortest_edge": 24}, "crop_size": {"height": 32, "width": 31}},
        ),
        ("SiglipImageProcessorPil", {"size": {"height": 30, "width": 44}, "resample": 2}),
        (
            "BitImageProcessorPil",
            {
                "size": {"shortest_edge": 37},
                "crop_size": {"height": 33, "width": 33},
                "resample": 1,
            },
        ),
    ],
)
def test_matches_transformers_pil_processor_exactly(cls_name: str, kwargs: dict) -> None:
    """uint8 pixels and normalized floats equal the PIL backend's output exactly."""
    import transformers

    from pytest_metatrace.encoders.families.hf import preprocess_from_processor

    proc = getattr(transformers, cls_name)(**kwargs)
    cfg = preprocess_from_processor(proc)
    assert cfg.crop_rounding == "floor"
    pre = Preprocessor(cfg)
    for img in sample_images():
        raw = proc(img, do_rescale=False, do_normalize=False, return_tensors="np")["pixel_values"][
            0
        ]
        ours = pre(img)
        assert np.array_equal(raw, ours.numpy()), img.size
        ref = proc(img, return_tensors="pt")["pixel_values"][0]
        assert torch.equal(normalize_pixels(ours, cfg), ref), img.size


def test_transformers_torchvision_backend_deviation_is_bounded() -> None:
    """transformers' default (torchvision) backend resizes tensors itself: a few grey levels off.

    Measured on these images: <= 1 level for a shortest-edge resize + crop, <= 9 levels for an
    upsampling squash of noise. The PIL backend (above) is the exact reference.
    """
    import transformers

    from pytest_metatrace.encoders.families.hf import preprocess_from_processor

    worst = {}
    for name, proc in {
        "clip": transformers.CLIPImageProcessor(
            size={"shortest_edge": 40}, crop_size={"height": 32, "width": 36}
        ),
        "siglip": transformers.SiglipImageProcessor(size={"height": 30, "width": 44}),
    }.items():
        pre = Preprocessor(preprocess_from_processor(proc))
        worst[name] = max(
            float(
                np.abs(
                    proc(img, do_rescale=False, do_normalize=False, return_tensors="np")[
                        "pixel_values"
                    ][0].astype(float)
                    - pre(img).numpy()
                ).max()
            )
            for img in sample_images()
        )
    assert worst["clip"] <= 2
    assert worst["siglip"] <= 12
    assert max(worst.values()) > 0  # it is a different resize; if this fails, it became exact


# -- the Preprocessor -----------------------------------------------------------------------


def test_output_is_uint8_chw_contiguous_and_converts_non_rgb() -> None:
    pre = Preprocessor(PreprocessCfg(input_size=(20, 30), crop_pct=1.0))
    out = pre(_image(50, 40, 0))
    assert out.dtype == torch.uint8
    assert out.shape == (3, 20, 30)
    assert out.is_contiguous()
    gray = Image.fromarray(np.full((40, 50), 77, np.uint8), "L")
    assert torch.equal(pre(gray), torch.full((3, 20, 30), 77, dtype=torch.uint8))
    assert pre.output_size == (20, 30)


def test_crop_size_policy_resizes_shorter_side_to_the_crop() -> None:
    """docs/protocol.md §2 (research code): Resize(crop) + CenterCrop(crop), crop_pct ignored."""
    import torchvision.transforms as T

    native = PreprocessCfg(input_size=(32, 32), crop_pct=0.5, interpolation="bicubic")
    research = native.replace(resize_policy="crop-size")
    ref = T.Compose(
        [T.Resize(32, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(32), T.PILToTensor()]
    )
    for img in sample_images():
        assert torch.equal(Preprocessor(research)(img), ref(img))
    img = sample_images()[0]
    assert not torch.equal(Preprocessor(native)(img), Preprocessor(research)(img))


@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.9, 0.95, 1.0])
@pytest.mark.parametrize("size", [(32, 32), (31, 45)])
def test_mask_is_zero_exactly_where_mask_box_says(ratio: float, size: tuple[int, int]) -> None:
    """docs/protocol.md §3: mask after resize/crop, before ToTensor; zero inside, same outside."""
    cfg = PreprocessCfg(input_size=size, crop_pct=0.9, interpolation="bilinear")
    pre = Preprocessor(cfg)
    img = Image.fromarray(np.full((70, 90, 3), 200, np.uint8), "RGB")  # no black pixel anywhere
    plain, masked = pre(img), pre(img, mask_ratio=ratio)
    left, top, right, bottom = mask_box(size[1], size[0], ratio)
    inside = torch.zeros(size, dtype=torch.bool)
    inside[top:bottom, left:right] = True
    assert (masked[:, inside] == 0).all()
    assert torch.equal(masked[:, ~inside], plain[:, ~inside])
    assert (plain > 0).all()
    expected = torch.from_numpy(np.array(apply_center_mask(pre.resize_crop(img), ratio))).permute(
        2, 0, 1
    )
    assert torch.equal(masked, expected)
    assert int(inside.sum()) == max(0, right - left) * max(0, bottom - top)


def test_preprocessor_pickles_small_and_equal() -> None:
    pre = Preprocessor(PreprocessCfg(input_size=(24, 24)))
    blob = pickle.dumps(pre)
    assert len(blob) < 1000
    clone = pickle.loads(blob)
    assert clone == pre
    assert hash(clone) == hash(pre)
    img = _image(60, 50, 1)
    assert torch.equal(clone(img, mask_ratio=0.5), pre(img, mask_ratio=0.5))
