"""Where an encoder runs and what it returns: device, precision, output selection.

Shared by every family: ``auto`` device and precision resolution, and picking
the ``(batch, dim)`` embedding out of whatever a model's forward returns
(a tensor, a tuple, a dict or a transformers ``ModelOutput``). torch is imported
inside the functions (this module is imported at plugin load).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pytest_metatrace.encoders.errors import EncoderSpecError

if TYPE_CHECKING:
    import torch

__all__ = [
    "DTYPES",
    "OUTPUT_KEYS",
    "PRECISIONS",
    "as_embedding",
    "is_conv_net",
    "resolve_device",
    "resolve_precision",
    "select_output",
]

#: Embedding precisions; ``auto`` is bf16 autocast on CUDA, fp32 elsewhere.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: Autocast dtypes by precision name.
DTYPES = {"bf16": "bfloat16", "fp16": "float16"}
#: Keys tried, in order, to find the embedding in a dict-like model output.
OUTPUT_KEYS = ("image_embeds", "pooler_output", "embeddings", "embeds", "features")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else is checked and returned."""
    from pytest_metatrace._device import resolve_device as _resolve_device

    return _resolve_device(device, error=EncoderSpecError)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` (autocast) on CUDA, ``fp32`` elsewhere; others are checked."""
    if precision not in PRECISIONS:
        raise EncoderSpecError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def is_conv_net(model: Any) -> bool:
    """Whether ``model`` is convolutional: more than a patch-embedding's worth of Conv2d."""
    import torch

    convs = sum(1 for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    return convs > 2


def select_output(out: Any, key: str | None = None) -> Any:
    """The embedding tensor from a model's output.

    A tensor is returned as is; a tuple / list gives its first element (timm and open_clip
    towers that also return tokens put the pooled output first); a dict or transformers
    ``ModelOutput`` gives ``out[key]``, or the first of :data:`OUTPUT_KEYS` it holds.
    """
    import torch

    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, Mapping):
        if key is not None:
            if key not in out:
                raise EncoderSpecError(
                    f"the model's output has no {key!r}; it has {list(out)}; "
                    "pick one with ?output=<key>"
                )
            return out[key]
        for k in OUTPUT_KEYS:
            if out.get(k) is not None:
                return out[k]
        raise EncoderSpecError(
            f"cannot tell which of the model's outputs {list(out)} is the embedding; "
            "name it with ?output=<key>"
        )
    if isinstance(out, (tuple, list)) and out:
        return select_output(out[0], key)
    raise EncoderSpecError(f"the model returned {type(out).__name__}, not a tensor, tuple or dict")


def as_embedding(out: Any, name: str) -> torch.Tensor:
    """Check that ``out`` is (B, D); (B, D, 1, 1) feature maps are flattened."""
    import torch

    picked = out if isinstance(out, torch.Tensor) else select_output(out)
    if not isinstance(picked, torch.Tensor):
        raise EncoderSpecError(f"encoder {name!r} returned {type(picked).__name__}, not a tensor")
    t: torch.Tensor = picked
    if t.ndim == 4 and t.shape[2:] == (1, 1):
        t = t.flatten(1)
    if t.ndim != 2:
        raise EncoderSpecError(
            f"encoder {name!r} returned shape {tuple(t.shape)}, not (batch, dim); return pooled "
            "features (e.g. the CLS token or a global average), or pick another ?output="
        )
    return t
