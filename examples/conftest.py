"""Register an in-house encoder for the audits (used by github-actions/metatrace.yml).

Copy this file to your project's root ``conftest.py`` and replace
:func:`build_model` by your own loader. The factory returns the model (any
``nn.Module`` mapping a ``(B, 3, H, W)`` float batch to ``(B, D)``) and its
preprocessing; the plugin fingerprints both, so a new checkpoint gets new
cache entries and a new row in the report.

Imports of torch and of the plugin's encoder package happen inside the
factory, so that ``pytest --help`` stays fast in this project.
"""

from __future__ import annotations

import os
from typing import Any

#: The release candidate's weights; CI sets it, a local run may leave it empty.
CHECKPOINT = os.environ.get("INHOUSE_CHECKPOINT", "")


def build_model() -> Any:
    """A small conv net standing in for the team's encoder (seeded when no checkpoint)."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, kernel_size=3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, kernel_size=3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
    )
    if CHECKPOINT:
        state = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    return model.eval()


def make_inhouse(**options: Any) -> tuple[Any, Any]:
    """``--metatrace-encoder=inhouse``: the model and the preprocessing it was trained with."""
    from pytest_metatrace.encoders import PreprocessCfg

    cfg = PreprocessCfg(
        input_size=(64, 64),
        interpolation="bicubic",
        crop_pct=0.875,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
    )
    return build_model(), cfg


def pytest_metatrace_register_encoders(registry: Any) -> None:
    """Called once per session by pytest-metatrace."""
    registry.register("inhouse", make_inhouse, description="in-house encoder, release candidate")
