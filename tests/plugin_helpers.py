"""Helpers for end-to-end plugin tests run through ``pytester``.

A tiny in-house encoder registered by a conftest hook (the way a team wires
its own model into ``--metatrace-encoder=NAME``) and a tiny image-folder
dataset whose classes differ in colour and texture, so that every audit runs
in seconds on a CPU.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

TINY_CONFTEST = '''
import torch
from pytest_metatrace.encoders import PreprocessCfg


class TinyNet(torch.nn.Module):
    """A hand-made trace detector: log ratio of high- to low-frequency energy per channel.

    Processing changes that ratio (JPEG removes high frequencies, sharpening
    adds them), so its processing traces are strong, like a CLIP model's;
    the mean colour carries the semantic class.
    """

    def __init__(self):
        super().__init__()
        lap = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
        self.register_buffer("lap", lap.expand(3, 1, 3, 3).clone())

    def forward(self, x):
        hf = torch.nn.functional.conv2d(x, self.lap, groups=3).pow(2).mean(dim=(2, 3))
        lf = x.var(dim=(2, 3))
        return torch.cat([torch.log(hf + 1e-6) - torch.log(lf + 1e-6), x.mean(dim=(2, 3))], 1)


def make_tiny(**options):
    # 48x48 input, as the images: no resize blurs the processing away
    cfg = PreprocessCfg(
        input_size=(48, 48), interpolation="bilinear", crop_pct=1.0,
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
    )
    return TinyNet().eval(), cfg


def pytest_metatrace_register_encoders(registry):
    registry.register("tiny", make_tiny, description="tiny random conv net for tests")
'''


def make_tiny_dataset(root: Path, classes: int = 3, per_class: int = 8, size: int = 48) -> Path:
    """Image folder: class c has hue c and a class-specific stripe frequency, plus noise."""
    rng = np.random.default_rng(1)
    _, xx = np.mgrid[0:size, 0:size]
    for c in range(classes):
        folder = root / f"class{c}"
        folder.mkdir(parents=True, exist_ok=True)
        base = np.zeros(3)
        base[c % 3] = 180
        for k in range(per_class):
            stripes = 40 * np.sin(xx * (0.3 + 0.25 * c) + k)[..., None]
            noise = rng.normal(0, 25, (size, size, 3))
            img = np.clip(base + 40 + stripes + noise, 0, 255).astype(np.uint8)
            Image.fromarray(img).save(folder / f"img{k:02d}.png")
    return root


def copy_audits(target: Path, names: tuple[str, ...]) -> Path:
    """Copy built-in audit test modules (from their folders) into a pytester directory."""
    audits = target / "audits"
    audits.mkdir(exist_ok=True)
    for name in names:
        (source,) = (REPO / "pytest_metatrace" / "audits").glob(f"*/{name}")
        (audits / name).write_text(source.read_text())
    return audits


#: Settings that keep every audit to seconds on the tiny set.
FAST = (
    "--metatrace-encoder=tiny",
    "--metatrace-workers=0",
    "--metatrace-probe-trials=4",
    "--metatrace-probe-epochs=100",
    "--metatrace-probe-seeds=2",
    "--metatrace-knn-k=3",
    "-p",
    "no:cacheprovider",
)


#: What pytester's in-process runs need imported up front: they drop every module a
#: run imported, and torch cannot be imported twice in one process.
PYTESTER_PREIMPORTS = (
    "torch",
    "torchvision",
    "timm",
    "sklearn.model_selection",
    "jinja2",
    "pytest_metatrace.encoders",
    "pytest_metatrace.embeddings",
    "pytest_metatrace.data",
    "pytest_metatrace.audits.semantic_influence.influence",
    "pytest_metatrace.audits.processing_probe.analysis",
    "pytest_metatrace.report",
)


def preimport(*extra: str) -> None:
    """Import :data:`PYTESTER_PREIMPORTS` and ``extra`` before any in-process pytester run."""
    for name in (*PYTESTER_PREIMPORTS, *extra):
        importlib.import_module(name)
