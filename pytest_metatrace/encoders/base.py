"""The :class:`Encoder` interface shared by every family, and its torch implementation.

Device, precision and output selection live in :mod:`.outputs`; digests and the
fingerprint in :mod:`.identity`.

An encoder turns uint8 pixels (from its :class:`~.preprocess.Preprocessor`)
into float32 embeddings. It owns the model; the preprocessor does not, so that
only the preprocessor travels to DataLoader workers.

Numerics: :meth:`Encoder.embed` converts uint8 to float on the device with the
same operations as torchvision's ``ToTensor`` + ``Normalize`` (``/255``, then
``-mean``, ``/std``, in float32), so its input is bit-identical to the
family's own transform, on CUDA as on the CPU (checked on an H200). Embeddings
are bit-reproducible run to run for a given device, precision, memory format
and batch composition. On the CPU they can differ in the last bits between
batch sizes (oneDNN picks kernels by shape; ~1e-6), so keep the batch size fixed
when bit-identity matters; lite0 in bf16 on an H200 gave the same bits for one
batch of 64 and four of 16. ``channels_last`` (the default for conv nets) is
about 1.3x faster on CPU and 1.6x on an H200 (lite0, bf16) and moves results by
~1e-6 against ``contiguous``; device, precision and memory format are left out
of the fingerprint, so the caller keys them.

torch is imported lazily: this module is imported when the plugin loads.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_metatrace._files import atomic_write_text
from pytest_metatrace.encoders.config import PreprocessCfg
from pytest_metatrace.encoders.errors import EncoderForwardError, EncoderSpecError
from pytest_metatrace.encoders.identity import (
    ENCODER_PIPELINE_VERSION,
    fingerprint_of,
    library_versions,
    state_dict_digest,
)
from pytest_metatrace.encoders.outputs import (
    DTYPES,
    as_embedding,
    is_conv_net,
    select_output,
)
from pytest_metatrace.encoders.preprocess import Preprocessor

if TYPE_CHECKING:
    import torch
    from PIL import Image

__all__ = ["MEMORY_FORMATS", "Encoder", "LoadedModel", "TorchEncoder"]


#: Accepted memory formats; ``auto`` = ``channels_last`` for convolutional networks.
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")


@dataclass
class LoadedModel:
    """What a family loader hands to :class:`TorchEncoder`: a model and how to read it."""

    model: Any  #: an ``nn.Module``, or any callable float tensor -> output
    preprocess: PreprocessCfg  #: the encoder's native preprocessing (overrides applied)
    architecture: str  #: what builds the model, e.g. ``timm:resnet18`` (+ options)
    output: str  #: which output is the embedding, in words (part of the fingerprint)
    weights_source: str  #: where the weights came from, e.g. ``file:/w.pth``, ``hf-hub:org/x``
    #: sha256 of the weights; None = computed from ``model.state_dict()``
    weights_digest: str | None = None
    #: picks the (B, D) tensor from the model's output; None = :func:`select_output`
    select: Callable[[Any], Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)  #: extra ``describe()`` entries
    libraries: tuple[str, ...] = ()  #: distributions whose versions ``describe()`` reports


class Encoder:
    """A loaded encoder: uint8 pixels in, float32 embeddings out.

    Subclasses implement :meth:`_forward` (normalized float batch on
    :attr:`device` -> model output) and may override :meth:`close`.
    """

    spec: str  #: normalized spec string
    id: str  #: short id for test ids, e.g. ``lite0`` or ``timm:resnet18``
    family: str  #: ``timm``, ``open_clip``, ``hf``, ``onnx``, ``py``, ``builtin`` or ``registry``
    preprocess: PreprocessCfg  #: preprocessing, resize policy included
    preprocessor: Preprocessor  #: picklable pixel pipeline built from :attr:`preprocess`
    device: torch.device  #: where the model runs
    precision: str  #: ``fp32``, ``bf16`` or ``fp16`` (resolved, never ``auto``)
    memory_format: str  #: ``contiguous`` or ``channels_last`` (resolved)
    architecture: str  #: what builds the model
    output: str  #: which output is the embedding
    weights_source: str  #: where the weights came from
    weights_digest: str  #: sha256 of the weights (state dict, or file for ONNX)
    fingerprint: str  #: sha256 of everything that changes the embedding (not device/precision)
    embed_dim: int  #: D of the (B, D) embeddings
    n_params: int | None  #: number of parameters, when known
    details: dict[str, Any]  #: family-specific ``describe()`` entries
    libraries: tuple[str, ...]  #: distributions whose versions ``describe()`` reports

    def __init__(
        self,
        *,
        spec: str,
        id: str,
        family: str,
        preprocess: PreprocessCfg,
        device: torch.device,
        precision: str,
        architecture: str,
        output: str,
        weights_source: str,
        weights_digest: str,
        memory_format: str = "contiguous",
        n_params: int | None = None,
        details: Mapping[str, Any] | None = None,
        libraries: Iterable[str] = (),
        dim_cache: Path | None = None,
    ) -> None:

        self.spec = spec
        self.id = id
        self.family = family
        self.device = device
        self.precision = precision
        self.memory_format = memory_format
        self.architecture = architecture
        self.output = output
        self.weights_source = weights_source
        self.weights_digest = weights_digest
        self.n_params = n_params
        self.details = dict(details or {})
        self.libraries = tuple(dict.fromkeys(("torch", "pillow", *libraries)))
        self._closed = False
        self.with_preprocess(preprocess)
        self.embed_dim = self._cached_probe_dim(dim_cache)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.spec!r}, device={str(self.device)!r}, "
            f"precision={self.precision!r}, embed_dim={self.embed_dim})"
        )

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError(
            "an Encoder holds its model and must not be pickled; send encoder.preprocessor "
            "(or encoder.preprocess) to worker processes instead"
        )

    def __enter__(self) -> Encoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the pipeline ---------------------------------------------------------------------

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> float32 on :attr:`device`, as ToTensor + Normalize compute it."""
        import torch

        self._check_pixels(pixels)
        x = pixels.to(self.device, non_blocking=True)
        # Same operations as normalize_pixels / ToTensor + Normalize, with cached constants.
        # 255 is a device tensor: CUDA divides by a Python scalar as a multiplication by its
        # reciprocal (1 ulp off); a tensor divisor gives the IEEE quotient, as on the CPU.
        x = x.to(torch.float32).div_(self._255)
        return x.sub_(self._mean).div_(self._std)

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) CPU pixels (maybe pinned) -> unnormalized float32 (B, D) on CPU."""
        import torch

        if self._closed:
            raise RuntimeError(f"encoder {self.id!r} was closed; create it again to embed")
        x = self.normalize(pixels)
        with torch.inference_mode(), self._autocast():
            try:
                raw = self._forward(x)
            except EncoderSpecError:
                raise  # the plugin's own message (e.g. an output key the model lacks)
            except Exception as exc:
                # The model's own error, chained: its frames are what the user debugs.
                raise EncoderForwardError(
                    f"encoder {self.id}'s forward raised on a batch of shape "
                    f"{tuple(pixels.shape)} ({self.device}, {self.precision}): "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            out = as_embedding(raw, self.id)
        result = out.to(device="cpu", dtype=torch.float32)
        # An inference tensor refuses in-place ops later (e.g. an in-place L2 normalization).
        return result.clone() if result.is_inference() else result

    def embed_images(
        self,
        images: Iterable[Image.Image],
        *,
        mask_ratio: float | None = None,
        batch_size: int = 32,
    ) -> torch.Tensor:
        """Preprocess and embed PIL images in batches of ``batch_size`` (a convenience)."""
        import torch

        outs: list[torch.Tensor] = []
        batch: list[torch.Tensor] = []
        for img in images:
            batch.append(self.preprocessor(img, mask_ratio=mask_ratio))
            if len(batch) == batch_size:
                outs.append(self.embed(torch.stack(batch)))
                batch = []
        if batch:
            outs.append(self.embed(torch.stack(batch)))
        if not outs:
            return torch.empty((0, self.embed_dim), dtype=torch.float32)
        return torch.cat(outs)

    def _forward(self, x: torch.Tensor) -> Any:
        """Run the model on a normalized float batch on :attr:`device`."""
        raise NotImplementedError

    def close(self) -> None:
        """Free the model (and the GPU memory it holds); :meth:`embed` fails afterwards."""
        self._closed = True

    # -- reporting ------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """JSON-ready description for the report: identity, weights, preprocessing, numerics."""
        return {
            "spec": self.spec,
            "id": self.id,
            "family": self.family,
            "architecture": self.architecture,
            "fingerprint": self.fingerprint,
            "weights": {"source": self.weights_source, "digest": self.weights_digest},
            "preprocess": self.preprocess.to_dict(),
            "output": self.output,
            "embed_dim": self.embed_dim,
            "n_params": self.n_params,
            "device": str(self.device),
            "precision": self.precision,
            "memory_format": self.memory_format,
            "pipeline_version": ENCODER_PIPELINE_VERSION,
            "libraries": library_versions(self.libraries),
            **self.details,
        }

    def with_preprocess(self, preprocess: PreprocessCfg) -> Encoder:
        """Switch to another preprocessing (same model); the fingerprint follows. Returns self."""
        import torch

        self.preprocess = preprocess
        self.preprocessor = Preprocessor(preprocess)
        self.fingerprint = fingerprint_of(
            family=self.family,
            architecture=self.architecture,
            weights_digest=self.weights_digest,
            preprocess=preprocess,
            output=self.output,
        )
        self._255 = torch.full((1, 1, 1, 1), 255.0, dtype=torch.float32, device=self.device)
        self._mean = torch.tensor(preprocess.mean, dtype=torch.float32, device=self.device).view(
            1, 3, 1, 1
        )
        self._std = torch.tensor(preprocess.std, dtype=torch.float32, device=self.device).view(
            1, 3, 1, 1
        )
        return self

    # -- helpers --------------------------------------------------------------------------

    def _autocast(self) -> Any:
        import contextlib

        import torch

        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=getattr(torch, DTYPES[self.precision]))

    def _check_pixels(self, pixels: torch.Tensor) -> None:
        import torch

        h, w = self.preprocess.input_size
        if not isinstance(pixels, torch.Tensor) or pixels.dtype != torch.uint8:
            raise TypeError(
                f"Encoder.embed takes uint8 pixels from encoder.preprocessor, got "
                f"{getattr(pixels, 'dtype', type(pixels))}"
            )
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != (3, h, w):
            raise ValueError(
                f"Encoder.embed takes a (B, 3, {h}, {w}) batch for {self.id!r}, got "
                f"{tuple(pixels.shape)}; build it with encoder.preprocessor"
            )

    def _cached_probe_dim(self, cache: Path | None) -> int:
        """:meth:`_probe_dim`, remembered per fingerprint in ``cache``/embed_dims.json.

        The probe forward validates the output shape once; on CPU its first
        call costs over a second (kernel set-up), which a warm run need not pay.
        """
        if cache is None:
            return self._probe_dim()
        path = Path(cache) / "embed_dims.json"
        try:
            known = json.loads(path.read_text())
        except (OSError, ValueError):
            known = {}
        if isinstance(known, dict) and isinstance(known.get(self.fingerprint), int):
            return int(known[self.fingerprint])
        dim = self._probe_dim()
        known = known if isinstance(known, dict) else {}
        known[self.fingerprint] = dim
        # A read-only cache only costs the probe next time.
        with contextlib.suppress(OSError):
            atomic_write_text(path, json.dumps(known, sort_keys=True))
        return dim

    def _probe_dim(self) -> int:
        """Embed one black image: checks the output shape early and finds D."""
        import torch

        h, w = self.preprocess.input_size
        out = self.embed(torch.zeros((1, 3, h, w), dtype=torch.uint8))
        return int(out.shape[1])


class TorchEncoder(Encoder):
    """An encoder around a torch model (``nn.Module``) or any callable on tensors."""

    def __init__(self, loaded: LoadedModel, **kwargs: Any) -> None:
        import torch

        device: torch.device = kwargs["device"]
        memory_format = kwargs.pop("memory_format", "auto")
        model = loaded.model
        n_params: int | None = None
        weights_digest = loaded.weights_digest
        if isinstance(model, torch.nn.Module):
            if weights_digest is None:
                weights_digest = state_dict_digest(model.state_dict())
            n_params = sum(p.numel() for p in model.parameters())
            model.eval().requires_grad_(False)
            if memory_format == "auto":
                memory_format = "channels_last" if is_conv_net(model) else "contiguous"
            model.to(device)
            if memory_format == "channels_last":
                model.to(memory_format=torch.channels_last)
        else:
            if weights_digest is None:
                raise EncoderSpecError(
                    f"{loaded.architecture}: a model without state_dict() needs a weights digest"
                )
            memory_format = "contiguous" if memory_format == "auto" else memory_format
        if memory_format not in MEMORY_FORMATS[1:]:
            raise EncoderSpecError(
                f"memory_format must be one of {list(MEMORY_FORMATS)}, got {memory_format!r}"
            )
        self.model: Any = model
        self._select = loaded.select or select_output
        super().__init__(
            preprocess=loaded.preprocess,
            architecture=loaded.architecture,
            output=loaded.output,
            weights_source=loaded.weights_source,
            weights_digest=weights_digest,
            memory_format=memory_format,
            n_params=n_params,
            details=loaded.details,
            libraries=loaded.libraries,
            **kwargs,
        )

    def _forward(self, x: torch.Tensor) -> Any:
        import torch

        if self.memory_format == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        return self._select(self.model(x))

    def close(self) -> None:
        """Drop the model and release cached CUDA memory."""
        import gc

        import torch

        super().close()
        self.model = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
