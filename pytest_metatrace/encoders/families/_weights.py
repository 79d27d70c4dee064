"""One wording for a weights file that cannot be loaded, whatever the family.

Every family loads checkpoints through torch's safe loader (``weights_only``)
or safetensors, so a malicious pickle never runs; what differs is how each
library reports the refusal (timm wraps it, open_clip and transformers let
``pickle.UnpicklingError`` or ``SafetensorError`` through). This module turns
any of them into one :class:`EncoderSpecError` that names the file and says
what to do.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

from pytest_metatrace.encoders.errors import EncoderSpecError

__all__ = ["weights_refusal"]

_BLOCKED_MARKS = ("weights_only", "Unsupported global", "unsupported GLOBAL", "WeightsUnpickler")
_UNREADABLE_MARKS = (
    "invalid load key",
    "Unsupported operand",
    "PytorchStreamReader",
    "central directory",
    "unpickling stack",
    "Ran out of input",
    "deserializing header",
    "HeaderTooLarge",
    "not a zip file",
)


#: The informative part of torch's long refusal messages.
_DETAIL = re.compile(r"Unsupported globals?: \S+|unsupported GLOBAL \S+|Unsupported operand \d+")


def _detail(text: str) -> str:
    found = _DETAIL.search(text)
    if found:
        # torch words the same refusal two ways ("unsupported GLOBAL x whose module ..."): one.
        return found.group(0).rstrip(".,").replace("unsupported GLOBAL", "Unsupported globals:")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return (lines[0] if lines else "")[:200]


def _chain_text(exc: BaseException) -> str:
    # Libraries wrap the loader's error (timm re-raises it as a RuntimeError).
    parts, seen = [], set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        parts.append(str(cur))
        cur = cur.__cause__ or cur.__context__
    return "\n".join(parts)


def weights_refusal(
    exc: BaseException, file: str | Path, *, what: str = "weights"
) -> EncoderSpecError | None:
    """An :class:`EncoderSpecError` naming ``file`` when ``exc`` says it is not usable weights.

    A blocked pickle, garbage or a truncated archive; None for any other error.
    """
    text = _chain_text(exc)
    unreadable = (
        isinstance(exc, EOFError)
        or type(exc).__name__ == "SafetensorError"
        or any(m in text for m in _UNREADABLE_MARKS)
    )
    if unreadable:
        return EncoderSpecError(
            f"cannot read the {what} in {file}: it is not a PyTorch state dict or a safetensors "
            f"file (corrupt, truncated or another format: {type(exc).__name__}: {_detail(text)}); "
            "replace the file"
        )
    if isinstance(exc, pickle.UnpicklingError) or any(m in text for m in _BLOCKED_MARKS):
        return EncoderSpecError(
            f"refused to load the {what} in {file}: the file is a pickle that asks to build "
            f"objects other than tensors ({_detail(text)}); torch's safe loader "
            "(weights_only=True) blocked it and nothing in it ran. If you trust the file, "
            "re-save it as a plain state dict (torch.save(model.state_dict(), path)) or as "
            ".safetensors"
        )
    return None
