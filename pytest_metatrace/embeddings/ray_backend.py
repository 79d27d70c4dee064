"""Extraction on a Ray cluster (``--metatrace-ray=ADDRESS``): a Ray Data job per extraction.

The driver plans exactly the batches the in-process extractor would form
(images in the dataset's canonical order, each image's missing views in the
order given, cut every ``batch_size`` rows), so every embedding is computed in
the same batch as in process - the numbers are bit-identical where the
encoder's kernels are deterministic for a batch. Then one Ray Data pipeline:

1. one row per planned batch;
2. ``map``: CPU tasks decode each photo of the batch, apply the processing
   classes (docs/protocol.md §1) and the encoder's own resize / crop / mask -
   the very code of the in-process path (:class:`~.extract._Work`);
3. ``map_batches`` on an actor pool (one actor per GPU when the encoder runs
   on CUDA, else one per two cluster CPUs): each actor holds a copy of the
   encoder (rebuilt from its spec, fingerprint checked) and runs the forward
   pass with the in-process checks.

A shared store (``--metatrace-store``) is written by the actors, one shard per
batch; a batch whose shard exists is skipped before its forward pass, and a
task Ray retries after a worker died rewrites the same shard name. The local
SQLite store is written by the driver as results stream back. The driver
advances the same progress line as the in-process path.

Imports ray: only loaded when ``--metatrace-ray`` is given.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import pickle
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pytest_metatrace._backend import (
    DEFAULT_RAY_TIMEOUT_S,
    JOINED,
    RayAddressError,
    check_ray_address,
)
from pytest_metatrace.data.dataset import ImageItem
from pytest_metatrace.embeddings._malloc import tune_malloc_for_inference
from pytest_metatrace.embeddings.extract import (
    ExtractionError,
    Extractor,
    ExtractStats,
    _Work,
    embed_checked,
)
from pytest_metatrace.embeddings.store import View

if TYPE_CHECKING:
    from pytest_metatrace.embeddings.sharded import ShardedStore

__all__ = ["RayExtractor", "connect", "plan_batches", "quiet_ray_warnings"]

_log = logging.getLogger(__name__)

#: Batch plan: (index into jobs, view index) pairs, in embedding order.
Plan = list[tuple[int, int]]


#: Addresses this process failed to join -> the first error's message (never retried).
_JOIN_FAILED: dict[str, str] = {}


@contextlib.contextmanager
def quiet_ray_warnings() -> Iterator[None]:
    """Hide the DeprecationWarnings Ray emits about its own settings (not the user's code's).

    Ray Data's context warns about deprecated fields of its own on creation; those
    would land in the user's warnings summary. Only warnings attributed to Ray's
    modules, of that one category, and only while Ray runs for the plugin.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray(\.|$)")
        yield


def connect(address: str, timeout: float = DEFAULT_RAY_TIMEOUT_S) -> Any:
    """Join the Ray cluster at ``address``; ``auto`` joins a running local one or starts one.

    Reuses a connection this process already holds (e.g. one a test opened). An
    address where no cluster answers within ``timeout`` seconds fails with
    "cannot join a Ray cluster at ADDRESS" (Ray itself would retry for minutes);
    later calls for that address fail at once, pointing to that first message.
    Ray's ``ray.init`` turns SIGTERM into ``sys.exit``, which pytest reports as a
    failed test before it carries on with the next; its handler is replaced by
    one that leaves Ray and then defers to the handler in place before, so that
    SIGTERM ends the session as it does without Ray (see :func:`_end_on_sigterm`).
    """
    try:
        with quiet_ray_warnings():
            import ray
    except ImportError:
        raise ExtractionError(
            "--metatrace-ray needs Ray: pip install 'pytest-metatrace[ray]'"
        ) from None
    if ray.is_initialized():
        return ray
    if address in _JOIN_FAILED:
        raise ExtractionError(
            f"--metatrace-ray={address}: cannot join a Ray cluster at {address} (failed "
            "earlier in this session with the message shown first; not retried)"
        )
    try:
        check_ray_address(address, timeout)
    except RayAddressError as exc:
        _JOIN_FAILED[address] = str(exc)
        raise ExtractionError(f"--metatrace-ray={address}: {exc}") from None
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    quiet = {"logging_level": logging.WARNING, "log_to_driver": False}
    try:
        with quiet_ray_warnings():
            if address == "auto":
                try:
                    ray.init(address="auto", **quiet)
                except ConnectionError:
                    ray.init(include_dashboard=False, **quiet)
            else:
                ray.init(address=address, **quiet)
    except Exception as exc:
        text = str(exc).strip().splitlines()
        message = (
            f"--metatrace-ray={address}: cannot join a Ray cluster at {address} "
            f"({type(exc).__name__}: {text[0] if text else ''}); start one with "
            "`ray start --head` or use --metatrace-ray=auto"
        )
        _JOIN_FAILED[address] = message
        raise ExtractionError(message) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, functools.partial(_end_on_sigterm, previous))
    with contextlib.suppress(Exception):
        JOINED[address] = str(ray.get_runtime_context().gcs_address)
    return ray


def _end_on_sigterm(previous: Any, signum: int, frame: Any) -> None:
    """SIGTERM after ``ray.init``: leave Ray, then act as the handler Ray replaced would.

    Ray's own handler calls ``sys.exit``, which pytest reports as a failed test
    before it runs the next one. This one shuts Ray down (a local cluster this
    process started goes with it) and re-raises the signal under the previous
    handler: by default, the process ends with SIGTERM's status. A shutdown
    stuck for more than 10 s is cut short by ``os._exit(128 + signum)``; a second
    SIGTERM meanwhile acts at once.
    """
    import os

    signal.signal(signal.SIGTERM, previous)
    watchdog = threading.Timer(10.0, os._exit, args=(128 + signum,))
    watchdog.daemon = True
    watchdog.start()
    try:
        import ray

        ray.shutdown()
    except Exception:  # ending is what matters
        pass
    finally:
        watchdog.cancel()
    if callable(previous):
        previous(signum, frame)
    else:
        signal.raise_signal(signum)


def plan_batches(jobs: Sequence[tuple[ImageItem, list[int]]], batch_size: int) -> list[Plan]:
    """The batches the in-process extractor forms from ``jobs``, as (job, view) pairs."""
    flat = [(ji, vi) for ji, (_, view_ids) in enumerate(jobs) for vi in view_ids]
    return [flat[i : i + batch_size] for i in range(0, len(flat), batch_size)]


def _process(
    row: dict[str, Any], *, views: list[View], preprocessor: Any, max_pixels: int
) -> dict[str, Any]:
    """CPU task: decode and process every image of one planned batch into uint8 pixels."""
    sub_jobs: list[tuple[ImageItem, list[int]]] = pickle.loads(row["work"])
    work = _Work(sub_jobs, views, preprocessor, max_pixels)
    pixels: list[torch.Tensor] = []
    keys: list[tuple[int, str]] = []
    seconds = 0.0
    for index in range(len(work)):
        _, outputs, took = work[index]
        seconds += took
        item = sub_jobs[index][0]
        for vi, px in outputs:
            pixels.append(px)
            keys.append((vi, item.digest))
    meta = (int(row["plan"]), keys, seconds, len(sub_jobs))
    return {"meta": pickle.dumps(meta), "pixels": torch.stack(pixels).numpy()}


class _Embed:
    """Actor: holds the encoder; embeds one planned batch per call."""

    def __init__(
        self,
        encoder_ref: list[Any],
        expect: tuple[str, str, str],
        views: list[View],
        store: ShardedStore | None,
        threads: int,
    ) -> None:
        import ray

        shipped = pickle.loads(ray.get(encoder_ref[0]))
        self.encoder = shipped if hasattr(shipped, "embed") else shipped()
        got = (self.encoder.fingerprint, self.encoder.device.type, self.encoder.precision)
        if got != expect:
            raise ExtractionError(
                f"the encoder rebuilt on a Ray worker differs from the driver's "
                f"(fingerprint, device, precision: {got} vs {expect}); give every node the "
                "same weights, packages and GPU type"
            )
        self.views = views
        self.store = store
        if self.encoder.device.type == "cpu":
            # The in-process path's thread count: some CPU kernels split
            # reductions by thread, which changes float round-off.
            torch.set_num_threads(threads)
            tune_malloc_for_inference()  # as the in-process Extractor does (2.4x on CPU)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        out_meta: list[bytes] = []
        out_vec: list[bytes] = []
        for meta_blob, pixels in zip(batch["meta"], batch["pixels"], strict=True):
            plan, keys, seconds, decoded = pickle.loads(meta_blob)
            rows = [(self.views[vi], digest) for vi, digest in keys]
            t0 = time.perf_counter()
            computed, payload = 0, b""
            if self.store is not None and self.store.has_shard(rows):
                forward = 0.0  # finished by an earlier or concurrent job: skip it
            else:
                vectors = embed_checked(self.encoder, torch.from_numpy(np.array(pixels)))
                forward = time.perf_counter() - t0
                if self.store is not None:
                    computed = self.store.put_many(
                        [(v, d, vec) for (v, d), vec in zip(rows, vectors, strict=True)]
                    )
                else:
                    payload = vectors.tobytes()
            out_meta.append(pickle.dumps((plan, keys, seconds, decoded, forward, computed)))
            out_vec.append(payload)
        return {"meta": np.array(out_meta, dtype=object), "vec": np.array(out_vec, dtype=object)}


class RayExtractor(Extractor):
    """An :class:`Extractor` whose missing views are computed by a Ray Data job."""

    def __init__(
        self,
        *args: Any,
        address: str = "auto",
        encoder_factory: Callable[[], Any] | None = None,
        timeout: float = DEFAULT_RAY_TIMEOUT_S,
        **kwargs: Any,
    ) -> None:
        """``Extractor``'s arguments, plus the cluster ``address`` and how actors get the encoder.

        ``encoder_factory`` (picklable, no arguments) rebuilds the encoder in each
        actor; the rebuilt encoder must have the driver's fingerprint, device type and
        precision. Without it the encoder object itself is pickled, which only
        picklable encoders allow (a loaded :class:`~pytest_metatrace.encoders.Encoder`
        refuses). ``timeout``: seconds to wait for the cluster at ``address`` to answer.
        """
        kwargs["num_workers"] = 0
        super().__init__(*args, **kwargs)
        self.address = address
        self.encoder_factory = encoder_factory
        self.timeout = timeout

    def _shippable_encoder(self) -> bytes:
        what = self._travelling()
        try:
            return pickle.dumps(what)
        except (TypeError, AttributeError, pickle.PicklingError) as exc:
            raise ExtractionError(
                f"cannot send encoder {self.encoder.id} to Ray workers ({exc}); the Ray "
                "backend rebuilds encoders from their spec - register custom encoders in an "
                "importable module rather than a conftest closure"
            ) from None

    def _travelling(self) -> Any:
        """What rebuilds the encoder on a worker: the factory, with only the registry it needs.

        The plugin's factory carries the session's encoder registry. One entry that
        cannot be pickled (a lambda or closure a conftest registered) must not stop
        every other encoder from travelling: entries this encoder's spec does not
        resolve through are left behind when they cannot be pickled, and one it does
        need is named in the error.
        """
        from pytest_metatrace.encoders.registry import EncoderRegistry

        factory = self.encoder_factory
        if factory is None:
            return self.encoder
        if not isinstance(factory, functools.partial) or not factory.args:
            return factory
        registry = factory.keywords.get("registry")
        if not isinstance(registry, EncoderRegistry):
            return factory
        needed = _names_resolved(str(factory.args[0]), registry)
        slim = registry.copy()
        for entry in registry.entries():
            try:
                pickle.dumps(entry)
            except (TypeError, AttributeError, pickle.PicklingError) as exc:
                if entry.name in needed:
                    code = entry.factory
                    where = (
                        f"{getattr(code, '__module__', '?')}.{getattr(code, '__qualname__', code)}"
                    )
                    raise ExtractionError(
                        f"cannot send encoder {self.encoder.id} to Ray workers: the factory "
                        f"registered as {entry.name!r} ({where}) cannot be pickled ({exc}); "
                        "Ray workers rebuild encoders from their spec - register a function "
                        "defined at the top level of an importable module, not a lambda or a "
                        "closure"
                    ) from None
                slim.unregister(entry.name)
        keywords = {**factory.keywords, "registry": slim}
        return functools.partial(factory.func, *factory.args, **keywords)

    def _pool_size(self, ray: Any) -> tuple[int, float]:
        """Actors and GPUs per actor: one per GPU on CUDA, else one per two CPUs."""
        resources = ray.cluster_resources()
        if self.encoder.device.type == "cuda":
            gpus = int(resources.get("GPU", 0))
            if gpus < 1:
                raise ExtractionError(
                    f"the encoder runs on {self.encoder.device} but the Ray cluster at "
                    f"{self.address} has no GPU; use --metatrace-device=cpu or add GPU nodes"
                )
            return gpus, 1.0
        return max(1, int(resources.get("CPU", 1)) // 2), 0.0

    def _run(
        self, jobs: list[tuple[ImageItem, list[int]]], views: list[View], stats: ExtractStats
    ) -> None:
        """Run the planned batches as a Ray Data job and store what comes back."""
        with quiet_ray_warnings():
            self._run_job(jobs, views, stats)

    def _run_job(
        self, jobs: list[tuple[ImageItem, list[int]]], views: list[View], stats: ExtractStats
    ) -> None:
        connect(self.address, self.timeout)
        import ray
        import ray.data

        logging.getLogger("ray.data").setLevel(logging.ERROR)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the plugin's own progress line reports instead
        ctx.print_on_execution_start = False
        if hasattr(ctx, "issue_detectors_config"):  # Ray >= 2.4x: memory hints to stderr
            ctx.issue_detectors_config.detectors = []
        ctx.execution_options.preserve_order = False
        plans = plan_batches(jobs, self.batch_size)
        rows = []
        for pi, plan in enumerate(plans):
            sub: dict[int, list[int]] = {}
            for ji, vi in plan:
                sub.setdefault(ji, []).append(vi)
            rows.append(
                {"plan": pi, "work": pickle.dumps([(jobs[ji][0], v) for ji, v in sub.items()])}
            )
        from pytest_metatrace.embeddings.sharded import ShardedStore

        shared = self.store if isinstance(self.store, ShardedStore) else None
        actors, gpus = self._pool_size(ray)
        encoder_ref = ray.put(self._shippable_encoder())
        expect = (self.encoder.fingerprint, self.encoder.device.type, self.encoder.precision)
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        ds = ds.map(
            _process,
            num_cpus=1,
            fn_kwargs={
                "views": views,
                "preprocessor": self.encoder.preprocessor,
                "max_pixels": self.max_pixels,
            },
        )
        ds = ds.map_batches(
            _Embed,
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=min(actors, len(rows))),
            fn_constructor_args=([encoder_ref], expect, views, shared, torch.get_num_threads()),
            num_gpus=gpus,
            # A CPU encoder's forward shares the cores with the processing tasks anyway; half
            # a CPU lets several drivers' pools share a small cluster without starving the
            # tasks, and the different share keeps Ray from fusing processing into the actor.
            num_cpus=1 if gpus else 0.5,
        )
        try:
            for row in ds.iter_rows():
                plan, keys, seconds, decoded, forward, computed = pickle.loads(row["meta"])
                stats.images_decoded += decoded
                stats.process_s += seconds
                stats.forward_s += forward
                if shared is None:
                    vectors = np.frombuffer(row["vec"], dtype=np.float32).reshape(len(keys), -1)
                    computed = self.store.put_many(
                        [(views[vi], d, vec) for (vi, d), vec in zip(keys, vectors, strict=True)]
                    )
                stats.computed += computed
                stats.batches.append(len(keys))
                self.progress.advance(len(keys))
        except ray.exceptions.RayTaskError as exc:
            cause = exc.as_instanceof_cause()
            if isinstance(cause, ExtractionError):
                raise ExtractionError(str(cause).strip().splitlines()[-1]) from None
            raise


def _names_resolved(spec: str, registry: Any) -> set[str]:
    """Registry names ``spec`` resolves through (a bare name, the aliases it leads to)."""
    from pytest_metatrace.encoders import EncoderSpecError
    from pytest_metatrace.encoders.factory import resolve_alias
    from pytest_metatrace.encoders.spec import parse_spec

    names: set[str] = set()
    try:
        parsed = parse_spec(spec)
        while parsed.family is None and parsed.target not in names:
            names.add(parsed.target)
            entry = registry.get(parsed.target)
            if entry.alias is None:
                break
            parsed = resolve_alias(parsed, entry.alias)
    except EncoderSpecError:
        pass  # the rebuild on the worker reports it
    return names
