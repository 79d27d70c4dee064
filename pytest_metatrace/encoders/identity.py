"""An encoder's identity: weight digests and the fingerprint that keys every cache entry.

The fingerprint is a sha256 of what changes an embedding (family,
architecture, weights, preprocessing, output, pipeline version); library
versions are recorded beside it for the report. Stdlib only at import.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from pytest_metatrace._files import sha256_file
from pytest_metatrace.encoders.config import PreprocessCfg

__all__ = [
    "ENCODER_PIPELINE_VERSION",
    "expand_path",
    "file_digest",
    "fingerprint_of",
    "library_versions",
    "state_dict_digest",
]

#: Bump when this package changes how pixels become embeddings (resize arithmetic,
#: normalization, output selection); part of every fingerprint, hence every cache key.
ENCODER_PIPELINE_VERSION = 1


def state_dict_digest(state_dict: Mapping[str, Any]) -> str:
    """sha256 over (name, dtype, shape, bytes) of every tensor, in name order.

    It depends on the values only, so weights loaded from a .pth, a .safetensors
    or a hub give the same digest.
    """
    import torch

    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name]
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def file_digest(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes (:func:`pytest_metatrace._files.sha256_file`)."""
    return sha256_file(path)


def fingerprint_of(
    *,
    family: str,
    architecture: str,
    weights_digest: str,
    preprocess: PreprocessCfg,
    output: str,
) -> str:
    """sha256 of what changes an embedding: family, architecture, weights, preprocessing, output.

    Device, precision and memory format are left out on purpose: the caller keys them
    separately, so that one fingerprint names one model whatever hardware runs it.
    """
    payload = {
        "pipeline_version": ENCODER_PIPELINE_VERSION,
        "family": family,
        "architecture": architecture,
        "weights_digest": weights_digest,
        "preprocess": preprocess.to_dict(),
        "output": output,
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def library_versions(names: Sequence[str]) -> dict[str, str | None]:
    """Installed version of each distribution (None when absent)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def expand_path(text: str) -> Path:
    """``~`` expanded, made absolute (not resolved: symlinked caches keep their names)."""
    return Path(os.path.abspath(os.path.expanduser(text)))
