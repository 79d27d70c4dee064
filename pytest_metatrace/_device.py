"""One rule for turning ``--metatrace-device`` values into a torch device."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["DEVICE_PATTERN", "resolve_device"]

#: Accepted spellings (checked at start-up by the option parser).
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


def resolve_device(
    device: str | torch.device = "auto", *, error: type[Exception] = ValueError
) -> torch.device:
    """``auto``: the first CUDA GPU when there is one, else the CPU; anything else is checked.

    Raises ``error`` (each caller's own exception type) for an unknown
    spelling, or for CUDA asked for where there is none.
    """
    import torch

    if isinstance(device, torch.device):
        dev = device
    elif device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError):
            raise error(
                f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'"
            ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise error(
            f"device {str(dev)!r} was asked for but no CUDA GPU is available; "
            "use device 'auto' (CUDA when present, else CPU) or 'cpu'"
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise error(
            f"device {str(dev)!r} was asked for but this machine has {count} CUDA GPU(s) "
            f"(cuda:0..cuda:{count - 1})"
        )
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise error(
                f"device {str(dev)!r} was asked for but this torch build or machine has no "
                "Apple MPS backend; use device 'auto' or 'cpu'"
            )
    if dev.type not in ("cpu", "cuda", "mps"):
        raise error(
            f"unsupported device {str(dev)!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        )
    return dev
