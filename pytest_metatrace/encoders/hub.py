"""Are hub weights usable here? Local-cache look-ups and an injectable connectivity probe.

The plugin asks this at collection, so that a run on an offline CI machine
fails with a message saying what to do instead of a stack trace from inside
a download. Tests replace the probe with :func:`set_hub_probe` (or pass
``probe=`` to :func:`~pytest_metatrace.encoders.validate.validate_spec`), so
that no test touches the network.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import urlparse

__all__ = [
    "HubProbe",
    "cached_url_file",
    "get_hub_probe",
    "hf_cached",
    "hf_endpoint_host",
    "hub_offline",
    "hub_reachable",
    "set_hub_probe",
]

#: ``probe(host) -> bool``: can ``host`` be reached now?
HubProbe = Callable[[str], bool]

_TRUE = ("1", "true", "yes", "on")
_REACHABLE: dict[str, bool] = {}


def hub_offline() -> bool:
    """Whether the machine is declared offline (``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE``)."""
    return any(
        os.environ.get(v, "").strip().lower() in _TRUE
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hub_reachable(host: str, port: int = 443, timeout: float = 2.0) -> bool:
    """A TCP connect to ``host:port`` with a short timeout; False when declared offline.

    The answer is remembered per host for the process: collection asks once per
    encoder, and a machine does not come online mid-run.
    """
    if hub_offline():
        return False
    if host not in _REACHABLE:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                _REACHABLE[host] = True
        except OSError:
            _REACHABLE[host] = False
    return _REACHABLE[host]


_probe: HubProbe = hub_reachable


def get_hub_probe() -> HubProbe:
    """The probe in use."""
    return _probe


def set_hub_probe(probe: HubProbe | None) -> HubProbe:
    """Install ``probe`` (None restores the socket probe); returns the previous one."""
    global _probe
    previous = _probe
    _probe = probe or hub_reachable
    return previous


def hf_endpoint_host() -> str:
    """Host name of the Hugging Face endpoint (``HF_ENDPOINT`` honoured)."""
    return (
        urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
        or "huggingface.co"
    )


def hf_cached(
    repo_id: str,
    filenames: Iterable[str],
    *,
    revision: str | None = None,
    cache_dir: str | None = None,
) -> str | None:
    """Path of the first of ``filenames`` present in the local Hugging Face cache, else None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub comes with timm
        return None
    for filename in filenames:
        try:
            found = try_to_load_from_cache(
                repo_id, filename, cache_dir=cache_dir, revision=revision
            )
        except ValueError:  # a malformed repo id (HFValidationError): not in any cache
            found = None
        if isinstance(found, str):
            return found
    return None


def cached_url_file(url: str, cache_dirs: Iterable[str | os.PathLike[str]]) -> str | None:
    """Path of ``url``'s file (by basename) in any of ``cache_dirs``, else None."""
    name = os.path.basename(urlparse(url).path)
    for d in cache_dirs:
        p = Path(d).expanduser() / name
        if name and p.is_file():
            return str(p)
    return None


def url_host(url: str) -> str:
    """Host name of ``url``."""
    return urlparse(url).hostname or url
