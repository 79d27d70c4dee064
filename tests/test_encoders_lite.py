"""The built-in default encoder: EfficientNet-Lite0 with the packaged ImageNet weights."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from pytest_metatrace.encoders import EncoderSpecError, create_encoder
from pytest_metatrace.encoders.families.builtin import LITE0_ARCH, convert_lite0, lite0_source
from pytest_metatrace.encoders.preprocess import normalize_pixels


def offline(host: str) -> bool:
    return False


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lite0_cache")


def test_lite0_classifies_skimage_photos(cache: Path) -> None:
    """With timm's pretrained cfg (mean/std 0.5, bicubic, crop 0.875): a cat and an espresso."""
    import timm
    from skimage import data

    enc = create_encoder("lite0", cache_dir=cache, probe=offline, device="cpu")
    assert (enc.id, enc.family, enc.embed_dim) == ("lite0", "builtin", 1280)
    cfg = enc.preprocess
    assert (cfg.mean, cfg.std, cfg.interpolation, cfg.crop_pct, cfg.input_size) == (
        (0.5, 0.5, 0.5),
        (0.5, 0.5, 0.5),
        "bicubic",
        0.875,
        (224, 224),
    )
    classifier = timm.create_model(
        LITE0_ARCH,
        pretrained=True,
        pretrained_cfg_overlay={"file": str(convert_lite0(cache_dir=cache))},
    ).eval()
    photos = [Image.fromarray(data.chelsea()), Image.fromarray(data.coffee())]
    px = torch.stack([enc.preprocessor(p) for p in photos])
    with torch.inference_mode():
        logits = classifier(normalize_pixels(px, cfg))
        pooled = classifier.forward_head(
            classifier.forward_features(normalize_pixels(px, cfg)), pre_logits=True
        )
    top = logits.argmax(1).tolist()
    assert 281 <= top[0] <= 285  # ImageNet cats: tabby, tiger cat, Persian, Siamese, Egyptian
    assert top[1] == 967  # espresso
    # The encoder's embedding is the classifier's pooled pre-logits (channels_last: ~1e-6 apart).
    assert torch.allclose(enc.embed(px), pooled, atol=1e-4)


def test_conversion_is_cached_by_source_digest(cache: Path) -> None:
    first = convert_lite0(cache_dir=cache)
    stamp = first.stat().st_mtime_ns
    again = convert_lite0(cache_dir=cache)
    assert again == first
    assert again.stat().st_mtime_ns == stamp
    assert first.name.startswith(f"{LITE0_ARCH}-")
    assert first.suffix == ".pth"
    assert not [p for p in os.listdir(cache) if p.endswith(".tmp")]
    sd = torch.load(first, weights_only=True)
    assert len(sd) == 296
    assert "classifier.weight" in sd
    assert "conv_stem.weight" in sd


def test_fingerprint_same_via_bare_name_and_family_form(cache: Path) -> None:
    a = create_encoder("lite0", cache_dir=cache, probe=offline)
    b = create_encoder("builtin:lite0", cache_dir=cache, probe=offline)
    assert a.fingerprint == b.fingerprint
    assert a.id == "lite0"
    assert b.id == "builtin:lite0"
    c = create_encoder("lite0", cache_dir=cache, probe=offline, resize_policy="crop-size")
    assert c.fingerprint != a.fingerprint
    assert c.weights_digest == a.weights_digest


def test_conversion_refuses_a_changed_layout(tmp_path: Path) -> None:
    sd = torch.load(lite0_source(), map_location="cpu", weights_only=True)
    first = next(iter(sd))
    sd[first] = torch.zeros(7, 3, 3, 3)
    torch.save(sd, tmp_path / "bad_shape.pth")
    with pytest.raises(
        EncoderSpecError,
        match=r"_conv_stem.weight \(7, 3, 3, 3\) does not fit timm's conv_stem.weight",
    ):
        convert_lite0(tmp_path / "bad_shape.pth", cache_dir=tmp_path / "c1")
    sd.pop(first)
    torch.save(sd, tmp_path / "bad_count.pth")
    with pytest.raises(
        EncoderSpecError, match=r"holds 295 tensors, timm tf_efficientnet_lite0 expects 296"
    ):
        convert_lite0(tmp_path / "bad_count.pth", cache_dir=tmp_path / "c2")
    assert not (tmp_path / "c1").exists() or not list((tmp_path / "c1").iterdir())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_lite0_on_cuda_bf16_agrees_with_cpu(cache: Path) -> None:
    from skimage import data

    cpu = create_encoder("lite0", cache_dir=cache, probe=offline, device="cpu")
    gpu = create_encoder("lite0", cache_dir=cache, probe=offline)
    photos = [Image.fromarray(data.chelsea()), Image.fromarray(data.coffee())]
    px = torch.stack([cpu.preprocessor(p) for p in photos])
    cos = torch.nn.functional.cosine_similarity(gpu.embed(px), cpu.embed(px))
    assert cos.min() > 0.99, cos
    assert gpu.fingerprint == cpu.fingerprint
    gpu.close()
