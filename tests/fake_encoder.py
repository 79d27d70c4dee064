"""A tiny, dependency-free stand-in for an Encoder, for cache and extraction tests.

It exposes exactly what the extraction pipeline uses (``id``, ``spec``,
``fingerprint``, ``device``, ``precision``, ``preprocessor``, ``embed``) and
counts forward calls, so tests can assert that a warm run computes nothing.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


class TinyPreprocessor:
    """Resize to 8x8 (bilinear) and return uint8 CHW; masking per docs/protocol.md §3."""

    def __call__(self, img: Image.Image, mask_ratio: float | None = None) -> torch.Tensor:
        from pytest_metatrace.processing import apply_center_mask

        small = img.resize((8, 8), Image.Resampling.BILINEAR)
        if mask_ratio is not None:
            small = apply_center_mask(small, mask_ratio)
        return torch.from_numpy(np.asarray(small, dtype=np.uint8).copy()).permute(2, 0, 1)


class FakeEncoder:
    """Embedding = the 8x8 pixels flattened, as float; deterministic and batch-independent."""

    def __init__(self, fingerprint: str = "f" * 64, fail_after: int | None = None) -> None:
        self.id = "fake"
        self.spec = "fake"
        self.fingerprint = fingerprint
        self.device = torch.device("cpu")
        self.precision = "fp32"
        self.preprocessor = TinyPreprocessor()
        self.calls = 0
        self.rows = 0
        self.fail_after = fail_after

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.calls += 1
        self.rows += pixels.shape[0]
        return pixels.reshape(pixels.shape[0], -1).float() / 255.0 + 0.01

    def describe(self) -> dict:
        return {"id": self.id, "spec": self.spec, "fingerprint": self.fingerprint}

    def close(self) -> None:
        pass


class BatchMeanEncoder(FakeEncoder):
    """Embedding = pixels + the batch's mean pixel: equal numbers need equal batches.

    Stands in for kernels whose round-off depends on batch composition, so a
    test can tell whether another extraction path formed the same batches.
    """

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        flat = super().embed(pixels)
        return flat + pixels.float().mean()


class KillOnceEncoder(BatchMeanEncoder):
    """Kills its own process (as an OOM killer or a lost node would) on its second batch.

    Only once per ``marker`` file: the retried worker finds the marker and carries on.
    """

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        import os

        if self.calls == 1 and not os.path.exists(self.marker):
            with open(self.marker, "w") as f:
                f.write(str(os.getpid()))
            os._exit(1)
        return super().embed(pixels)
