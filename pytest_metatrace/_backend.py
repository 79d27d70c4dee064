"""Where embeddings are kept and computed: start-up checks and the one-line description.

``--metatrace-store`` (a shared Parquet-shard store) and ``--metatrace-ray`` (a
Ray cluster) are session-wide: a URL that cannot work or a cluster that does
not answer fails every test the same way. :func:`check_backend` finds out at
start, in milliseconds, so that the session stops once with a usage error
(exit status 4) instead of failing test after test, or waiting minutes per
test for a cluster that is not there. :func:`describe_backend` names the store
and cluster in the terminal header and summary.

Imported at plugin load: the standard library only (fsspec is imported by
:func:`check_store_url` when a store is given, Ray never).
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_metatrace.settings import Settings

__all__ = [
    "DEFAULT_RAY_TIMEOUT_S",
    "RayAddressError",
    "StoreURLError",
    "check_backend",
    "check_ray_address",
    "check_store_url",
    "describe_backend",
    "open_filesystem",
]

#: Default of ``--metatrace-ray-timeout``: a cluster on the same network answers in
#: milliseconds; half a minute leaves room for a head node that is still starting.
DEFAULT_RAY_TIMEOUT_S = 30.0

_RAY_HINT = (
    "Start one with `ray start --head` (it prints the address to pass), or use "
    "--metatrace-ray=auto for a local cluster"
)

#: The HTTP/2 connection preface and an empty SETTINGS frame: every gRPC server
#: (Ray's GCS is one) answers with a frame of its own.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"

#: Ray addresses joined in this process: the address given -> the cluster's GCS address.
JOINED: dict[str, str] = {}


class StoreURLError(ValueError):
    """A ``--metatrace-store`` URL that cannot work; the message says why and what to do."""


class RayAddressError(ValueError):
    """A ``--metatrace-ray`` address where no Ray cluster answers; the message says what to do."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def open_filesystem(url: str) -> tuple[Any, str]:
    """``fsspec.core.url_to_fs(url)``, with every way it fails turned into a :class:`StoreURLError`.

    Missing packages are named with the ``pip install`` that adds them; an
    unknown protocol names the ones fsspec knows.
    """
    try:
        import fsspec
        import pyarrow  # noqa: F401 - the shards are Parquet files
    except ImportError as exc:
        raise StoreURLError(
            f"the shared store needs pyarrow and fsspec ({exc.name} is missing): "
            "pip install 'pytest-metatrace[ray]'"
        ) from None
    from fsspec.registry import available_protocols, known_implementations

    protocol = url.split("://", 1)[0].lower() if "://" in url and "::" not in url else None
    if protocol is not None and protocol not in available_protocols():
        raise StoreURLError(
            f"unknown protocol {protocol}://; give a folder path or an fsspec URL such as "
            "s3://bucket/prefix, gs://bucket/prefix or file:///shared/folder"
        )
    try:
        fs, base = fsspec.core.url_to_fs(url)
    except ImportError as exc:
        impl = known_implementations.get(protocol or "", {})
        package = str(impl.get("class", "")).split(".", 1)[0]
        if not package or package == "fsspec":  # a built-in implementation lacking a dependency
            package = exc.name or getattr(exc.__cause__, "name", None) or ""
        if package:
            raise StoreURLError(
                f"the {protocol}:// protocol needs the {package} package: pip install {package}"
            ) from None
        raise StoreURLError(f"the {protocol}:// protocol needs a package: {exc}") from None
    except Exception as exc:  # backends raise what they like (an OSError about a missing JVM, ...)
        raise StoreURLError(f"fsspec cannot open it ({_first_line(exc)})") from None
    return fs, str(base)


def _is_local(fs: Any) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(fs, LocalFileSystem)


def check_store_url(url: str) -> None:
    """Raise :class:`StoreURLError` unless a shard store at ``url`` can be opened and written.

    Checks, in order: pyarrow and fsspec installed; a protocol fsspec knows, with
    its package installed (``s3://`` needs s3fs, ...); for a local path, no
    regular file where a folder must be; the folder can be created, and a file
    written into it and removed (a shared store is written by whoever computes).
    """
    fs, base = open_filesystem(url)
    if _is_local(fs):
        path = Path(base)
        ancestor = path
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if ancestor.exists() and not ancestor.is_dir():
            where = "is" if ancestor == path else f"is under {ancestor}, which is"
            raise StoreURLError(
                f"{path} {where} a regular file, not a folder; give a folder path for the store"
            )
    try:
        fs.makedirs(base, exist_ok=True)
    except Exception as exc:
        raise StoreURLError(
            f"cannot create the store folder {base} ({_first_line(exc)}); give a folder this "
            "user can create, or create it with write access"
        ) from None
    probe = f"{base.rstrip('/')}/.metatrace-write-check-{uuid.uuid4().hex}"
    try:
        with fs.open(probe, "wb") as fh:
            fh.write(b"")
    except Exception as exc:
        raise StoreURLError(
            f"the store folder {base} cannot be written ({_first_line(exc)}); the shared store "
            "is written by whoever computes a missing embedding: give write access to it, or "
            "drop --metatrace-store to use the local cache"
        ) from None
    with contextlib.suppress(Exception):  # a store that takes writes but not deletes works
        fs.rm(probe)


def _split_address(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``HOST:PORT`` or ``ray://HOST:PORT``, or None for other forms."""
    target = address.strip()
    if target.startswith("ray://"):
        target = target[len("ray://") :]
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def check_ray_address(address: str, timeout: float = DEFAULT_RAY_TIMEOUT_S) -> None:
    """Raise :class:`RayAddressError` unless a gRPC server answers at ``address`` in ``timeout`` s.

    Ray's own ``ray.init`` retries an address that does not answer for about
    five minutes and cannot be interrupted meanwhile; this check fails within
    ``timeout`` seconds: a TCP connection, then the HTTP/2 handshake every
    gRPC server (Ray's GCS) answers. ``auto``, ``local`` and other forms that
    are not ``HOST:PORT`` are left to Ray (``auto`` with ``RAY_ADDRESS`` set
    checks that address). With ``RAY_USE_TLS`` only the TCP connection is checked.
    """
    if address.strip() == "auto" and os.environ.get("RAY_ADDRESS", "").strip():
        address = os.environ["RAY_ADDRESS"].strip()
    where = _split_address(address)
    if where is None:
        return
    host, port = where

    def fail(reason: str) -> RayAddressError:
        return RayAddressError(
            f"cannot join a Ray cluster at {address}: {reason}. {_RAY_HINT}; "
            f"--metatrace-ray-timeout={timeout:g} is how many seconds to wait"
        )

    t0 = time.monotonic()
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror as exc:
        raise fail(f"the host name {host!r} does not resolve ({exc.strerror})") from None
    except TimeoutError:
        raise fail(f"no answer within {timeout:g} s") from None
    except ConnectionRefusedError:
        raise fail("nothing listens on that port (connection refused)") from None
    except OSError as exc:
        raise fail(f"cannot connect ({exc.strerror or exc})") from None
    with sock:
        if os.environ.get("RAY_USE_TLS", "").strip().lower() in ("1", "true"):
            return  # the handshake below is plaintext HTTP/2
        try:
            sock.settimeout(max(0.1, timeout - (time.monotonic() - t0)))
            sock.sendall(_H2_PREFACE)
            head = sock.recv(9)
        except TimeoutError:
            raise fail(
                f"the port accepts connections but sends nothing within {timeout:g} s (a Ray "
                "head node's GCS port, 6379 by default, answers at once)"
            ) from None
        except OSError as exc:
            raise fail(f"the connection failed ({exc.strerror or exc})") from None
    if len(head) < 4 or head[3] != 0x04:  # an HTTP/2 server's first frame is its SETTINGS
        raise fail(
            "the port answers, but not with the gRPC handshake of a Ray head node's GCS port "
            "(6379 by default)"
        )


def check_backend(settings: Settings) -> None:
    """Usage errors at start for ``--metatrace-store`` and ``--metatrace-ray`` that cannot work.

    Raises :class:`pytest.UsageError` (exit status 4, one message) naming the
    option, what is wrong and the fix.
    """
    if settings.store is not None:
        try:
            check_store_url(settings.store)
        except StoreURLError as exc:
            raise pytest.UsageError(f"--metatrace-store={settings.store}: {exc}") from None
    timeout = settings.ray_timeout
    if not (math.isfinite(timeout) and timeout > 0):
        raise pytest.UsageError(
            f"--metatrace-ray-timeout={timeout}: give a positive number of seconds"
        )
    if settings.ray is not None:
        try:
            check_ray_address(settings.ray, timeout)
        except RayAddressError as exc:
            raise pytest.UsageError(f"--metatrace-ray={settings.ray}: {exc}") from None


def describe_backend(settings: Settings, cache_dir: str | os.PathLike[str] | None = None) -> str:
    """Where this run keeps and computes embeddings, for the terminal header and summary.

    ``cache: DIR`` (the local SQLite cache), or ``store: URL (Parquet shards)``;
    then ``; Ray: ADDRESS`` when a Ray cluster computes them (with the cluster's
    own address once this process has joined it). ``cache_dir`` is the resolved
    cache folder, when known.
    """
    if settings.store is not None:
        text = f"store: {settings.store} (Parquet shards)"
    else:
        cache = cache_dir if cache_dir is not None else settings.cache_dir or ".metatrace_cache"
        text = f"cache: {cache}"
    if settings.ray is not None:
        joined = JOINED.get(settings.ray)
        text += f"; Ray: {settings.ray}" + (
            f" (cluster {joined})" if joined and joined != settings.ray else ""
        )
    return text
