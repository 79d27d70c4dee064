"""Tiny weights for every encoder family, created on the fly (no hub, no network).

Each ``make_*`` writes what a user would have on disk (a weights file, a
``save_pretrained`` directory, an ONNX file, a Python module) under ``tmp_path``
and returns the encoder spec string that loads it. The plugin's tests can use
them too, e.g. ``--metatrace-encoder=<make_tiny_timm_weights(tmp_path)>``.
"""

from __future__ import annotations

import json
import textwrap
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

__all__ = [
    "OPEN_CLIP_TINY",
    "make_tiny_hf_model",
    "make_tiny_onnx_model",
    "make_tiny_open_clip_checkpoint",
    "make_tiny_py_encoder_module",
    "make_tiny_timm_weights",
    "sample_images",
    "tiny_onnx_net",
]

#: Name of the tiny open_clip architecture registered by :func:`make_tiny_open_clip_checkpoint`.
OPEN_CLIP_TINY = "metatrace-tiny-vit"


def sample_images(seed: int = 0) -> list[Image.Image]:
    """RGB images of awkward sizes (portrait, landscape, odd, smaller than a crop).

    Smooth gradients plus noise, so that every resize filter has something to do.
    """
    rng = np.random.default_rng(seed)
    sizes = [(200, 150), (150, 200), (131, 97), (64, 64), (45, 33), (301, 77), (161, 161)]
    out = []
    for w, h in sizes:
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx * 255 / max(w - 1, 1), yy * 255 / max(h - 1, 1), (xx + yy) % 256], -1)
        noise = rng.normal(0, 40, size=(h, w, 3))
        arr = np.clip(base + noise, 0, 255).astype(np.uint8)
        out.append(Image.fromarray(arr, "RGB"))
    return out


def make_tiny_timm_weights(
    tmp_path: Path, arch: str = "test_efficientnet", seed: int = 0, fmt: str = "pth"
) -> str:
    """A random timm test model's state dict (head included) -> ``timm:<arch>@<file>``."""
    import timm
    import torch

    torch.manual_seed(seed)
    model = timm.create_model(arch, pretrained=False)
    path = Path(tmp_path) / f"{arch}-s{seed}.{fmt}"
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    else:
        torch.save(model.state_dict(), path)
    return f"timm:{arch}@{path}"


def make_tiny_open_clip_checkpoint(tmp_path: Path, seed: int = 0) -> str:
    """Register a tiny ViT CLIP config with open_clip, save random weights -> open_clip spec."""
    import open_clip
    import torch

    cfg = {
        "embed_dim": 16,
        "vision_cfg": {
            "image_size": 32,
            "layers": 1,
            "width": 32,
            "patch_size": 8,
            "head_width": 16,
        },
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
    }
    cfg_dir = Path(tmp_path) / "open_clip_configs"
    cfg_dir.mkdir(parents=True, exist_ok=True)
    (cfg_dir / f"{OPEN_CLIP_TINY}.json").write_text(json.dumps(cfg))
    if OPEN_CLIP_TINY not in open_clip.list_models():
        open_clip.add_model_config(cfg_dir / f"{OPEN_CLIP_TINY}.json")
    torch.manual_seed(seed)
    model = open_clip.create_model(OPEN_CLIP_TINY, pretrained=None)
    path = Path(tmp_path) / f"{OPEN_CLIP_TINY}-s{seed}.pt"
    torch.save(model.state_dict(), path)
    return f"open_clip:{OPEN_CLIP_TINY}@{path}"


def make_tiny_hf_model(tmp_path: Path, kind: str = "clip", seed: int = 0) -> str:
    """``save_pretrained`` a tiny transformers vision model and its image processor -> ``hf:<dir>``.

    kinds: ``clip`` (a full CLIPModel, text tower included), ``clip_vision``
    (CLIPVisionModelWithProjection), ``siglip`` (SiglipVisionModel), ``dinov2`` (Dinov2Model,
    shortest_edge 40 / crop 32), ``vit`` (ViTModel: the generic fallback).
    """
    import torch
    import transformers as tf

    torch.manual_seed(seed)
    common: dict[str, Any] = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2
    )
    vision = dict(common, image_size=32, patch_size=8)
    if kind == "clip":
        text = dict(common, vocab_size=64, max_position_embeddings=16)
        model: Any = tf.CLIPModel(
            tf.CLIPConfig(vision_config=vision, text_config=text, projection_dim=16)
        )
        proc: Any = tf.CLIPImageProcessor(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        )
    elif kind == "clip_vision":
        model = tf.CLIPVisionModelWithProjection(tf.CLIPVisionConfig(**vision, projection_dim=16))
        proc = tf.CLIPImageProcessor(
            size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32}
        )
    elif kind == "siglip":
        model = tf.SiglipVisionModel(tf.SiglipVisionConfig(**vision))
        proc = tf.SiglipImageProcessor(size={"height": 32, "width": 32})
    elif kind == "dinov2":
        model = tf.Dinov2Model(tf.Dinov2Config(**vision))
        proc = tf.BitImageProcessor(
            size={"shortest_edge": 40},
            crop_size={"height": 32, "width": 32},
            image_mean=[0.485, 0.456, 0.406],
            image_std=[0.229, 0.224, 0.225],
            resample=3,
        )
    elif kind == "vit":
        model = tf.ViTModel(tf.ViTConfig(**vision))
        proc = tf.ViTImageProcessor(size={"height": 32, "width": 32}, resample=2)
    else:
        raise ValueError(f"unknown kind {kind!r}")
    out = Path(tmp_path) / f"hf-{kind}-s{seed}"
    model.save_pretrained(out)
    proc.save_pretrained(out)
    return f"hf:{out}"


def tiny_onnx_net(seed: int = 0) -> Any:
    """A small conv net returning ``(embeds (B, 16), logits (B, 5))``."""
    import torch

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 16, 3, stride=2, padding=1)
            self.head = torch.nn.Linear(16, 5)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            emb = torch.relu(self.conv(x)).mean(dim=(2, 3))
            return emb, self.head(emb)

    torch.manual_seed(seed)
    return Net().eval()


def make_tiny_onnx_model(
    tmp_path: Path, seed: int = 0, sidecar: dict[str, Any] | None = None, size: int = 48
) -> str:
    """Export :func:`tiny_onnx_net` (outputs ``embeds``, ``logits``) -> ``onnx:<file>``.

    ``sidecar`` (if given) is written as ``<file>.json`` next to the model.
    """
    import torch

    net = tiny_onnx_net(seed)
    path = Path(tmp_path) / f"tiny-s{seed}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.zeros(1, 3, size, size),),
            str(path),
            dynamo=False,
            input_names=["pixels"],
            output_names=["embeds", "logits"],
            dynamic_axes={"pixels": {0: "batch"}, "embeds": {0: "batch"}, "logits": {0: "batch"}},
        )
    if sidecar is not None:
        path.with_name(path.name + ".json").write_text(json.dumps(sidecar))
    return f"onnx:{path}"


_PY_MODULE = '''
"""An in-house encoder module, as a user would write one."""
import torch
from pytest_metatrace.encoders import PreprocessCfg

SEED = {seed}


class Net(torch.nn.Module):
    def __init__(self, width=8):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, width, 3, padding=1)
        self.body = torch.nn.Conv2d(width, width, 3, padding=1)
        self.proj = torch.nn.Conv2d(width, width, 1)

    def forward(self, x):
        h = torch.relu(self.proj(torch.relu(self.body(torch.relu(self.stem(x))))))
        return h.mean(dim=(2, 3))


class DictNet(Net):
    def forward(self, x):
        emb = super().forward(x)
        return {{"tokens": emb[:, None, :].repeat(1, 3, 1), "embeds": emb, "other": emb * 2}}


def _net(cls, width, weights):
    torch.manual_seed(SEED)
    net = cls(width)
    if weights is not None:
        net.load_state_dict(torch.load(weights, weights_only=True))
    return net.eval()


def make_encoder(width=8, weights=None):
    """(nn.Module, timm-style data config)."""
    cfg = {{"input_size": (3, 40, 48), "interpolation": "bilinear", "crop_pct": 0.9,
           "mean": (0.5, 0.4, 0.3), "std": (0.2, 0.25, 0.3)}}
    return _net(Net, width, weights), cfg


def make_dict_encoder(width=8):
    """A model whose output is a dict; pick a key with ?output=."""
    return _net(DictNet, width, None), PreprocessCfg(input_size=(32, 32), crop_pct=1.0)


def make_callable_encoder():
    """A plain function (no state_dict) with a PreprocessCfg."""
    net = _net(Net, 4, None)

    def embed(x):
        return (net(x), "ignored")

    return embed, PreprocessCfg(input_size=(24, 24), interpolation="box", crop_pct=1.0)


def make_bad_result():
    return "not a tuple", 1, 2


def make_spatial_encoder():
    net = _net(Net, 4, None)
    return (lambda x: net.stem(x)), PreprocessCfg(input_size=(16, 16))
'''


def make_tiny_py_encoder_module(
    tmp_path: Path, seed: int = 0, callable_name: str = "make_encoder"
) -> str:
    """Write an in-house encoder module to ``tmp_path`` -> ``py:<file>:<callable>``.

    Callables: ``make_encoder(width=8, weights=None)`` (nn.Module + timm data config),
    ``make_dict_encoder`` (dict output), ``make_callable_encoder`` (plain function),
    ``make_bad_result`` and ``make_spatial_encoder`` (for error tests).
    """
    path = Path(tmp_path) / f"inhouse_encoder_s{seed}.py"
    path.write_text(textwrap.dedent(_PY_MODULE.format(seed=seed)))
    return f"py:{path}:{callable_name}"
