"""``onnx:<file>[?output=<name>&input=<name>&input_size=...]``: an ONNX model on onnxruntime.

The session uses the CUDA provider when the encoder's device is CUDA and
onnxruntime offers it, else the CPU provider, with deterministic compute. It
runs in float32 (``precision`` must be ``auto`` or ``fp32``); pixels are
normalized on the CPU and handed over as numpy.

Output: ``?output=`` by name (or index); default the model's first output.
Preprocessing, first match wins: the spec's preprocessing options; a sidecar JSON
``<file>.json`` or ``<stem>.json`` next to the model (PreprocessCfg fields, a timm
data config, or an open_clip preprocess cfg; it may also hold ``"output"``);
otherwise ImageNet defaults (224 or the model's static input size, bilinear,
crop_pct 0.875, ImageNet mean/std), recorded as ``preprocess_source`` in
``describe()`` so that a report shows the guess. The weights digest is the
sha256 of the ``.onnx`` file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pytest_metatrace.encoders.base import Encoder
from pytest_metatrace.encoders.config import PREPROCESS_KEYS, PreprocessCfg
from pytest_metatrace.encoders.errors import EncoderSpecError
from pytest_metatrace.encoders.families import CheckContext, LoadContext, local_path, reject_options
from pytest_metatrace.encoders.identity import file_digest
from pytest_metatrace.encoders.outputs import resolve_precision
from pytest_metatrace.encoders.spec import ParsedSpec

__all__ = ["OnnxEncoder", "check", "load", "sidecar_path"]

DEFAULTS_NOTE = (
    "defaults (no spec options, no sidecar JSON): ImageNet mean/std, bilinear, crop_pct 0.875"
)


def sidecar_path(model: Path) -> Path | None:
    """``<file>.json`` or ``<stem>.json`` next to ``model``, if one exists."""
    for p in (model.with_name(model.name + ".json"), model.with_suffix(".json")):
        if p.is_file():
            return p
    return None


def check(parsed: ParsedSpec, ctx: CheckContext) -> None:
    """The file exists; options are known; the sidecar, if any, parses."""
    reject_options(parsed, ("output", "input"), "onnx")
    if parsed.weights is not None:
        raise EncoderSpecError(
            f"{parsed.raw!r}: onnx specs take no @weights (the file is the weights)"
        )
    path = local_path(parsed.target, "ONNX model")
    _sidecar(path)


def load(parsed: ParsedSpec, ctx: LoadContext) -> Encoder:
    """Open an onnxruntime session and wrap it as an :class:`OnnxEncoder`."""
    path = local_path(parsed.target, "ONNX model")
    side, side_path = _sidecar(path)
    overrides = parsed.preprocess_overrides()
    output = parsed.values().get("output", side.pop("output", None))
    input_name = parsed.values().get("input", side.pop("input", None))
    return OnnxEncoder(
        path,
        spec=parsed.normalized,
        id=parsed.short_id,
        output=output,
        input_name=input_name,
        overrides=overrides,
        sidecar=side,
        sidecar_path=side_path,
        resize_policy=ctx.resize_policy,
        device=ctx.device,
        precision=ctx.precision,
        dim_cache=ctx.cache_dir,
    )


class OnnxEncoder(Encoder):
    """An encoder around an onnxruntime ``InferenceSession``."""

    def __init__(
        self,
        path: Path,
        *,
        spec: str,
        id: str,
        output: str | int | None,
        input_name: str | None,
        overrides: dict[str, Any],
        sidecar: dict[str, Any],
        sidecar_path: Path | None,
        resize_policy: str,
        device: Any,
        precision: str,
        dim_cache: Path | None = None,
    ) -> None:
        import onnxruntime as ort
        import torch

        if resolve_precision(precision, torch.device("cpu")) != "fp32":
            raise EncoderSpecError(
                f"onnx encoders run in fp32; got precision={precision!r}; use auto or fp32"
            )
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.use_deterministic_compute = True
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:
            raise EncoderSpecError(f"onnxruntime cannot open {path}: {exc}") from exc
        inputs = self.session.get_inputs()
        names = [o.name for o in self.session.get_outputs()]
        if input_name is None:
            if len(inputs) != 1:
                raise EncoderSpecError(
                    f"{path} has inputs {[i.name for i in inputs]}; "
                    "name the image one with ?input=<name>"
                )
            input_name = inputs[0].name
        elif input_name not in [i.name for i in inputs]:
            raise EncoderSpecError(
                f"{path} has no input {input_name!r}; its inputs: {[i.name for i in inputs]}"
            )
        if output is None:
            output = names[0]
        elif isinstance(output, int) and not isinstance(output, bool):
            if not 0 <= output < len(names):
                raise EncoderSpecError(
                    f"{path} has {len(names)} outputs {names}; ?output={output} is out of range"
                )
            output = names[output]
        elif output not in names:
            raise EncoderSpecError(
                f"{path} has no output {output!r}; its outputs: {names}; "
                "pick one with ?output=<name>"
            )
        self.input_name = input_name
        self.output_name = str(output)
        shape = next(i.shape for i in inputs if i.name == input_name)
        preprocess, source = _preprocess(overrides, sidecar, sidecar_path, shape)
        super().__init__(
            spec=spec,
            id=id,
            family="onnx",
            preprocess=preprocess.replace(resize_policy=resize_policy),
            device=torch.device("cpu"),  # normalization on CPU; the session owns its device
            precision="fp32",
            architecture=f"onnx:input={input_name}",
            output=f"onnx output {self.output_name!r}",
            weights_source=f"file:{path}",
            weights_digest=file_digest(path),
            details={"preprocess_source": source, "onnx_providers": self.session.get_providers()},
            libraries=("onnxruntime", "onnx"),
            dim_cache=dim_cache,
        )

    def _forward(self, x: Any) -> Any:
        import torch

        if self.session is None:
            raise RuntimeError(f"encoder {self.id!r} was closed")
        arr = x.detach().cpu().numpy()
        (out,) = self.session.run([self.output_name], {self.input_name: arr})
        return torch.from_numpy(out)

    def close(self) -> None:
        """Drop the session."""
        super().close()
        self.session = None


def _sidecar(path: Path) -> tuple[dict[str, Any], Path | None]:
    side = sidecar_path(path)
    if side is None:
        return {}, None
    try:
        data = json.loads(side.read_text())
    except (OSError, ValueError) as exc:
        raise EncoderSpecError(f"cannot read the sidecar {side}: {exc}; fix or remove it") from exc
    if not isinstance(data, dict):
        raise EncoderSpecError(f"the sidecar {side} must hold a JSON object of preprocessing keys")
    return data, side


def _preprocess(
    overrides: dict[str, Any],
    sidecar: dict[str, Any],
    sidecar_path: Path | None,
    input_shape: Any,
) -> tuple[PreprocessCfg, str]:
    base = PreprocessCfg(interpolation="bilinear", crop_pct=0.875)
    dims = list(input_shape)[-2:] if input_shape is not None else []
    if len(dims) == 2 and all(isinstance(d, int) and d > 0 for d in dims):
        base = base.replace(input_size=(dims[0], dims[1]))  # a static input size beats 224
    if sidecar:
        base = (
            PreprocessCfg.from_dict({**base.to_dict(), **sidecar})
            if not _foreign(sidecar)
            else (PreprocessCfg.from_dict(sidecar))
        )
        source = f"sidecar {sidecar_path}"
    else:
        source = DEFAULTS_NOTE
    if overrides:
        base = base.replace(**overrides)
        source = "spec options over " + (f"sidecar {sidecar_path}" if sidecar else DEFAULTS_NOTE)
    return base, source


def _foreign(d: dict[str, Any]) -> bool:
    """A timm or open_clip config rather than PreprocessCfg fields."""
    size = d.get("input_size")
    timm_like = isinstance(size, (list, tuple)) and len(size) == 3
    return timm_like or "size" in d or "resize_mode" in d or bool(set(d) - set(PREPROCESS_KEYS))
