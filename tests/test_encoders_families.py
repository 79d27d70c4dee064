"""Every family through its real loading code, on tiny weights the tests create.

For each: the embedding equals calling the library directly on the same pixels,
the pixels equal the family's own transform, and the fingerprint is stable and
moves when weights, preprocessing or the resize policy move.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
from encoder_helpers import (
    OPEN_CLIP_TINY,
    make_tiny_hf_model,
    make_tiny_onnx_model,
    make_tiny_open_clip_checkpoint,
    make_tiny_py_encoder_module,
    make_tiny_timm_weights,
    sample_images,
    tiny_onnx_net,
)

from pytest_metatrace.encoders import (
    Encoder,
    EncoderRegistry,
    EncoderSpecError,
    PreprocessCfg,
    create_encoder,
    parse_spec,
)

IMAGES = sample_images()


def offline(host: str) -> bool:
    return False


def load(spec: str, **kwargs: Any) -> Encoder:
    # CPU unless asked: the exactness checks compare with the libraries' CPU results.
    kwargs.setdefault("device", "cpu")
    return create_encoder(spec, probe=offline, **kwargs)


def pixels(enc: Encoder, mask_ratio: float | None = None) -> torch.Tensor:
    return torch.stack([enc.preprocessor(img, mask_ratio=mask_ratio) for img in IMAGES])


def weights_file(spec: str) -> str:
    return parse_spec(spec).weights or ""


# -- timm ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def timm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("timm")


def test_timm_equals_create_model_and_its_eval_transform(timm_dir: Path) -> None:
    import timm
    from timm.data import create_transform, resolve_data_config

    spec = make_tiny_timm_weights(timm_dir, "test_efficientnet")
    enc = load(spec, memory_format="contiguous")
    model = timm.create_model(
        "test_efficientnet",
        pretrained=True,
        pretrained_cfg_overlay={"file": weights_file(spec)},
        num_classes=0,
    ).eval()
    transform = create_transform(**resolve_data_config(model=model))
    ref_x = torch.stack([transform(img) for img in IMAGES])
    px = pixels(enc)
    assert px.dtype == torch.uint8
    assert torch.equal(enc.normalize(px), ref_x)
    with torch.inference_mode():
        ref = model(ref_x)
    assert torch.equal(enc.embed(px), ref)
    assert enc.embed_dim == model.num_features == ref.shape[1]
    assert enc.preprocess.input_size == (160, 160)
    assert enc.preprocess.crop_pct == 0.95
    assert (enc.family, enc.id) == (
        "timm",
        f"timm:test_efficientnet@{Path(weights_file(spec)).name}",
    )


def test_timm_conv_nets_default_to_channels_last_deterministically(timm_dir: Path) -> None:
    spec = make_tiny_timm_weights(timm_dir, "test_efficientnet")
    fast, exact = load(spec), load(spec, memory_format="contiguous")
    assert (fast.memory_format, exact.memory_format) == ("channels_last", "contiguous")
    px = pixels(fast)
    a, b = fast.embed(px), fast.embed(px)
    assert torch.equal(a, b)
    assert torch.allclose(a, exact.embed(px), atol=1e-5, rtol=1e-4)
    assert fast.fingerprint == exact.fingerprint  # numerics only, like device and precision
    vit = load(make_tiny_timm_weights(timm_dir, "test_vit"))
    assert vit.memory_format == "contiguous"


def test_fingerprint_stable_and_sensitive(timm_dir: Path) -> None:
    spec = make_tiny_timm_weights(timm_dir, "test_vit", seed=0)
    a, b = load(spec), load(spec)
    assert a.fingerprint == b.fingerprint
    assert len(a.fingerprint) == 64
    # The digest covers tensor values, not the file: safetensors of the same weights agree.
    same = load(make_tiny_timm_weights(timm_dir, "test_vit", seed=0, fmt="safetensors"))
    assert same.weights_digest == a.weights_digest
    assert same.fingerprint == a.fingerprint
    other_weights = load(make_tiny_timm_weights(timm_dir, "test_vit", seed=1))
    other_pp = load(spec + "?interpolation=bilinear")
    other_policy = load(spec, resize_policy="crop-size")
    assert other_weights.weights_digest != a.weights_digest
    assert other_pp.weights_digest == a.weights_digest == other_policy.weights_digest
    prints = {
        a.fingerprint,
        other_weights.fingerprint,
        other_pp.fingerprint,
        other_policy.fingerprint,
    }
    assert len(prints) == 4
    assert other_policy.preprocess.resize_policy == "crop-size"
    assert (
        load(spec, precision="bf16").fingerprint == a.fingerprint
    )  # precision is keyed separately


def test_precision_bf16_autocast_on_cpu_stays_close(timm_dir: Path) -> None:
    spec = make_tiny_timm_weights(timm_dir, "test_vit")
    fp32, bf16 = load(spec), load(spec, precision="bf16")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    px = pixels(fp32)
    out = bf16.embed(px)
    assert out.dtype == torch.float32
    assert torch.allclose(out, fp32.embed(px), atol=0.1, rtol=0.05)


def test_describe_is_json_ready_and_complete(timm_dir: Path) -> None:
    enc = load(make_tiny_timm_weights(timm_dir, "test_vit"))
    d = json.loads(json.dumps(enc.describe()))
    assert d["fingerprint"] == enc.fingerprint
    assert d["weights"]["digest"] == enc.weights_digest
    assert d["weights"]["source"].startswith("file:")
    assert d["preprocess"]["resize_policy"] == "native"
    assert (
        d["preprocess"]
        == PreprocessCfg(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in d["preprocess"].items()}
        ).to_dict()
    )
    assert (d["device"], d["precision"], d["embed_dim"]) == ("cpu", "fp32", 64)
    assert d["n_params"] == sum(p.numel() for p in enc.model.parameters())  # type: ignore[attr-defined]
    assert d["libraries"]["timm"]
    assert d["libraries"]["torch"]
    assert "pooled pre-logits" in d["output"]


def test_embed_checks_its_input_and_close_frees(timm_dir: Path) -> None:
    enc = load(make_tiny_timm_weights(timm_dir, "test_vit"))
    with pytest.raises(TypeError, match=r"uint8 pixels"):
        enc.embed(torch.zeros(1, 3, 160, 160))
    with pytest.raises(ValueError, match=r"\(B, 3, 160, 160\) batch"):
        enc.embed(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(TypeError, match=r"must not be pickled; send encoder.preprocessor"):
        pickle.dumps(enc)
    assert enc.embed_images([]).shape == (0, 64)
    out = enc.embed(pixels(enc))
    assert not out.is_inference()
    out.div_(out.norm(dim=1, keepdim=True))  # callers may normalize in place
    enc.close()
    assert enc.model is None  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match=r"was closed"):
        enc.embed(torch.zeros(1, 3, 160, 160, dtype=torch.uint8))


def test_timm_wrong_weights_file_is_a_spec_error(timm_dir: Path) -> None:
    vit_weights = weights_file(make_tiny_timm_weights(timm_dir, "test_vit"))
    with pytest.raises(
        EncoderSpecError, match=r"lacks backbone weights.*state dict of timm's 'test_efficientnet'"
    ):
        load(f"timm:test_efficientnet@{vit_weights}")


def test_embed_images_batches_like_one_batch(timm_dir: Path) -> None:
    enc = load(make_tiny_timm_weights(timm_dir, "test_vit"))
    whole = enc.embed(pixels(enc))
    batched = enc.embed_images(IMAGES, batch_size=3)
    assert batched.shape == whole.shape
    assert torch.allclose(batched, whole, atol=1e-5)
    masked = enc.embed_images(IMAGES, mask_ratio=0.9, batch_size=len(IMAGES))
    assert torch.equal(masked, enc.embed(pixels(enc, mask_ratio=0.9)))


# -- open_clip ----------------------------------------------------------------------------------


def test_open_clip_equals_encode_image_and_its_preprocess(tmp_path: Path) -> None:
    import open_clip

    spec = make_tiny_open_clip_checkpoint(tmp_path)
    enc = load(spec)
    model, _, preprocess = open_clip.create_model_and_transforms(
        OPEN_CLIP_TINY, pretrained=weights_file(spec)
    )
    model.eval()
    ref_x = torch.stack([preprocess(img) for img in IMAGES])
    px = pixels(enc)
    assert torch.equal(enc.normalize(px), ref_x)
    with torch.inference_mode():
        ref = model.encode_image(ref_x)
    assert torch.equal(enc.embed(px), ref)
    assert enc.embed_dim == 16
    assert enc.family == "open_clip"
    assert not any(
        n.startswith(("transformer", "token_embedding")) for n, _ in enc.model.named_parameters()
    )  # type: ignore[attr-defined]
    assert enc.describe()["open_clip_preprocess_cfg"]["size"] == [32, 32]
    assert load(make_tiny_open_clip_checkpoint(tmp_path, seed=1)).fingerprint != enc.fingerprint


# -- transformers -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["clip", "siglip", "dinov2", "vit"])
def test_hf_equals_the_model_and_its_pil_processor(tmp_path: Path, kind: str) -> None:
    import transformers as tf

    spec = make_tiny_hf_model(tmp_path, kind)
    src = parse_spec(spec).target
    enc = load(spec)
    proc = tf.AutoImageProcessor.from_pretrained(src, backend="pil")
    ref_x = proc(IMAGES, return_tensors="pt")["pixel_values"]
    px = pixels(enc)
    assert torch.equal(enc.normalize(px), ref_x)
    with torch.inference_mode():
        if kind == "clip":
            out = tf.CLIPModel.from_pretrained(src).eval().get_image_features(pixel_values=ref_x)
            ref = out if isinstance(out, torch.Tensor) else out.pooler_output
        else:
            cls = {"siglip": tf.SiglipVisionModel, "dinov2": tf.Dinov2Model, "vit": tf.ViTModel}[
                kind
            ]
            ref = cls.from_pretrained(src).eval()(pixel_values=ref_x).pooler_output
    assert torch.allclose(enc.embed(px), ref, atol=1e-6, rtol=1e-5)
    assert enc.describe()["preprocess_source"].startswith("image processor")
    assert enc.preprocess.crop_rounding == "floor"


def test_hf_output_option_and_siglip2_refusal(tmp_path: Path) -> None:
    import transformers as tf

    spec = make_tiny_hf_model(tmp_path, "dinov2")
    cls_enc, pooled = load(spec + "?output=cls"), load(spec)
    px = pixels(pooled)
    with torch.inference_mode():
        hidden = (
            tf.Dinov2Model.from_pretrained(parse_spec(spec).target)
            .eval()(pixel_values=pooled.normalize(px))
            .last_hidden_state
        )
    assert torch.allclose(cls_enc.embed(px), hidden[:, 0], atol=1e-6)
    assert cls_enc.fingerprint != pooled.fingerprint
    with pytest.raises(EncoderSpecError, match=r"has no 'nope'"):
        load(spec + "?output=nope")
    cfg = tf.Siglip2VisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        patch_size=8,
    )
    tf.Siglip2VisionModel(cfg).save_pretrained(tmp_path / "naflex")
    with pytest.raises(
        EncoderSpecError, match=r"NaFlex.*timm:vit_base_patch16_siglip_256.v2_webli"
    ):
        load(f"hf:{tmp_path / 'naflex'}")


# -- ONNX ---------------------------------------------------------------------------------------


SIDECAR = {
    "input_size": 48,
    "interpolation": "bicubic",
    "crop_pct": 1.0,
    "mean": [0.5, 0.5, 0.5],
    "std": [0.25, 0.25, 0.25],
}


def test_onnx_equals_onnxruntime_and_torch(tmp_path: Path) -> None:
    import onnxruntime as ort

    spec = make_tiny_onnx_model(tmp_path, sidecar=SIDECAR)
    enc = load(spec)
    assert enc.preprocess == PreprocessCfg(
        input_size=(48, 48), interpolation="bicubic", crop_pct=1.0, mean=(0.5,) * 3, std=(0.25,) * 3
    )
    assert enc.describe()["preprocess_source"].startswith("sidecar")
    px = pixels(enc)
    x = enc.normalize(px)
    session = ort.InferenceSession(parse_spec(spec).target, providers=["CPUExecutionProvider"])
    (ref,) = session.run(["embeds"], {"pixels": x.numpy()})
    out = enc.embed(px)
    assert torch.equal(out, torch.from_numpy(ref))
    with torch.inference_mode():
        torch_ref, _ = tiny_onnx_net(0)(x)
    assert torch.allclose(out, torch_ref, atol=1e-5)  # ONNX kernels vs torch kernels
    assert (
        enc.weights_digest
        == __import__("hashlib").sha256(Path(parse_spec(spec).target).read_bytes()).hexdigest()
    )


def test_onnx_outputs_defaults_and_overrides(tmp_path: Path) -> None:
    spec = make_tiny_onnx_model(tmp_path)
    default = load(spec)
    assert default.describe()["preprocess_source"].startswith("defaults")
    assert default.preprocess.input_size == (48, 48)  # the model's static input size
    assert default.preprocess.mean == (0.485, 0.456, 0.406)
    assert load(spec + "?output=logits").embed_dim == 5
    assert load(spec + "?output=1").embed_dim == 5
    overridden = load(spec + "?interpolation=box&crop_pct=1.0")
    assert overridden.preprocess.interpolation == "box"
    assert overridden.describe()["preprocess_source"].startswith("spec options")
    assert overridden.fingerprint != default.fingerprint
    with pytest.raises(
        EncoderSpecError, match=r"no output 'embedding'; its outputs: \['embeds', 'logits'\]"
    ):
        load(spec + "?output=embedding")
    with pytest.raises(EncoderSpecError, match=r"onnx encoders run in fp32"):
        load(spec, precision="bf16")
    assert load(make_tiny_onnx_model(tmp_path, seed=1)).fingerprint != default.fingerprint


# -- py: and the registry ---------------------------------------------------------------------


def test_py_module_equals_its_model_and_timm_style_config(tmp_path: Path) -> None:
    from timm.data import create_transform

    spec = make_tiny_py_encoder_module(tmp_path)
    enc = load(spec, memory_format="contiguous")
    model, cfg = __import__(
        "pytest_metatrace.encoders.families.python", fromlist=["x"]
    ).resolve_callable(parse_spec(spec))()
    ref_x = torch.stack([create_transform(**cfg)(img) for img in IMAGES])
    px = pixels(enc)
    assert torch.equal(enc.normalize(px), ref_x)
    with torch.inference_mode():
        assert torch.equal(enc.embed(px), model(ref_x))
    assert enc.embed_dim == 8
    assert enc.family == "py"
    assert load(spec + "?width=4").embed_dim == 4


def test_py_weights_options_and_code_changes_move_the_fingerprint(tmp_path: Path) -> None:
    spec = make_tiny_py_encoder_module(tmp_path)
    base = load(spec)
    torch.manual_seed(123)
    net_cls = __import__(
        "pytest_metatrace.encoders.families.python", fromlist=["x"]
    ).resolve_callable(parse_spec(spec))
    other = net_cls()[0]
    for p in other.parameters():
        torch.nn.init.normal_(p)
    torch.save(other.state_dict(), tmp_path / "w.pt")
    with_weights = load(f"{spec}@{tmp_path / 'w.pt'}")
    assert with_weights.weights_digest != base.weights_digest
    assert with_weights.weights_source.startswith("file:")
    assert load(spec + "?width=4").fingerprint != base.fingerprint
    module = Path(parse_spec(spec).target.rpartition(":")[0])
    module.write_text(module.read_text() + "\n# edited\n")
    assert load(spec).fingerprint != base.fingerprint


def test_py_output_forms(tmp_path: Path) -> None:
    dict_spec = make_tiny_py_encoder_module(tmp_path, callable_name="make_dict_encoder")
    default, picked, other = (
        load(dict_spec),
        load(dict_spec + "?output=embeds"),
        load(dict_spec + "?output=other"),
    )
    px = pixels(default)
    assert torch.equal(default.embed(px), picked.embed(px))
    assert torch.allclose(other.embed(px), 2 * picked.embed(px))
    with pytest.raises(
        EncoderSpecError, match=r"no 'nope'; it has \['tokens', 'embeds', 'other'\]"
    ):
        load(dict_spec + "?output=nope")
    with pytest.raises(EncoderSpecError, match=r"not \(batch, dim\)"):
        load(dict_spec + "?output=tokens")
    fn = load(make_tiny_py_encoder_module(tmp_path, callable_name="make_callable_encoder"))
    assert fn.embed_dim == 4
    assert fn.weights_source.startswith("code")
    assert fn.preprocess.interpolation == "box"


@pytest.mark.parametrize(
    ("callable_name", "options", "fragment"),
    [
        ("make_bad_result", "", "must return \\(model, preprocess\\)"),
        ("make_spatial_encoder", "", "not \\(batch, dim\\); return pooled"),
        ("make_encoder", "?depth=3", "cannot take \\['depth'\\]"),
    ],
)
def test_py_errors_are_actionable(
    tmp_path: Path, callable_name: str, options: str, fragment: str
) -> None:
    with pytest.raises(EncoderSpecError, match=fragment):
        load(make_tiny_py_encoder_module(tmp_path, callable_name=callable_name) + options)


def test_registry_factories_aliases_and_ready_encoders(tmp_path: Path) -> None:
    timm_spec = make_tiny_timm_weights(tmp_path, "test_vit")
    reg = EncoderRegistry(entry_points=False)

    def factory(width: int = 8) -> Any:
        net = torch.nn.Sequential(
            torch.nn.Conv2d(3, width, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
        )
        return net, {"input_size": (24, 24), "crop_pct": 1.0}

    reg.register("tiny_factory", factory, description="a conv net")
    reg.register("tiny_alias", timm_spec)
    reg.register("tiny_ready", lambda: load(timm_spec))
    made = create_encoder("tiny_factory?width=4", registry=reg, probe=offline)
    assert (made.family, made.id, made.embed_dim) == ("registry", "tiny_factory?width=4", 4)
    aliased = create_encoder("tiny_alias?interpolation=bilinear", registry=reg, probe=offline)
    direct = load(timm_spec + "?interpolation=bilinear")
    assert aliased.id == "tiny_alias?interpolation=bilinear"
    assert aliased.fingerprint == direct.fingerprint
    ready = create_encoder("tiny_ready", registry=reg, probe=offline, resize_policy="crop-size")
    assert ready.id == "tiny_ready"
    assert ready.preprocess.resize_policy == "crop-size"
    assert ready.fingerprint == load(timm_spec, resize_policy="crop-size").fingerprint


def test_device_and_policy_arguments_are_checked(tmp_path: Path) -> None:
    spec = make_tiny_py_encoder_module(tmp_path)
    with pytest.raises(EncoderSpecError, match=r"resize_policy must be one of"):
        load(spec, resize_policy="shortest")
    with pytest.raises(EncoderSpecError, match=r"precision must be one of"):
        load(spec, precision="int8")
    if not torch.cuda.is_available():
        with pytest.raises(EncoderSpecError, match=r"no CUDA GPU is available"):
            load(spec, device="cuda")
    assert load(spec, device="auto").device.type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_auto_device_bf16_pinned_and_close(tmp_path: Path) -> None:
    spec = make_tiny_timm_weights(tmp_path, "test_efficientnet")
    cpu = load(spec, memory_format="contiguous")
    gpu = create_encoder(spec, probe=offline)  # device and precision "auto"
    assert (gpu.device.type, gpu.precision, gpu.memory_format) == ("cuda", "bf16", "channels_last")
    assert gpu.fingerprint == cpu.fingerprint
    px = pixels(cpu).pin_memory()
    # uint8 -> float on the GPU gives the very bits of ToTensor + Normalize on the CPU.
    assert torch.equal(gpu.normalize(px).cpu(), cpu.normalize(px))
    out, ref = gpu.embed(px), cpu.embed(px)
    assert out.device.type == "cpu"
    assert out.dtype == torch.float32
    assert torch.equal(out, gpu.embed(px))  # rerun: same bits
    cos = torch.nn.functional.cosine_similarity(out, ref)
    assert cos.min() > 0.99, cos
    fp32 = create_encoder(spec, probe=offline, precision="fp32")
    assert torch.nn.functional.cosine_similarity(fp32.embed(px), ref).min() > 0.999
    before = torch.cuda.memory_allocated()
    gpu.close()
    fp32.close()
    assert torch.cuda.memory_allocated() < before


def test_embed_dim_probe_is_remembered_per_fingerprint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_metatrace.encoders.base import Encoder

    spec = make_tiny_timm_weights(tmp_path)
    first = create_encoder(spec, device="cpu", cache_dir=tmp_path / "c")
    calls: list[int] = []

    def counting_probe(self: Encoder) -> int:
        calls.append(1)
        return 12345

    monkeypatch.setattr(Encoder, "_probe_dim", counting_probe)
    again = create_encoder(spec, device="cpu", cache_dir=tmp_path / "c")
    assert calls == [] and again.embed_dim == first.embed_dim  # a warm load skips the forward
    other = create_encoder(spec + "?crop_pct=1.0", device="cpu", cache_dir=tmp_path / "c")
    assert calls == [1] and other.embed_dim == 12345  # a new fingerprint is probed again
