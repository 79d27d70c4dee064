"""Encoders: load any visual encoder from a spec string, with its preprocessing and identity.

>>> enc = create_encoder("lite0")                        # doctest: +SKIP
>>> pixels = torch.stack([enc.preprocessor(img) for img in images])   # uint8 (B, 3, H, W)
>>> emb = enc.embed(pixels)                                # float32 (B, D), unnormalized

Spec grammar and families: :mod:`pytest_metatrace.encoders.spec`. Importing this
package imports neither torch nor any model library; loading does, per family.
"""

from pytest_metatrace.encoders.base import Encoder, LoadedModel, TorchEncoder
from pytest_metatrace.encoders.config import PreprocessCfg
from pytest_metatrace.encoders.errors import EncoderForwardError, EncoderSpecError
from pytest_metatrace.encoders.factory import create_encoder, validate_spec
from pytest_metatrace.encoders.hub import set_hub_probe
from pytest_metatrace.encoders.identity import ENCODER_PIPELINE_VERSION
from pytest_metatrace.encoders.preprocess import Preprocessor
from pytest_metatrace.encoders.registry import (
    EncoderRegistry,
    default_registry,
    list_encoders,
    register_encoder,
    session_registry,
)
from pytest_metatrace.encoders.spec import FAMILIES, ParsedSpec, parse_spec

__all__ = [
    "ENCODER_PIPELINE_VERSION",
    "FAMILIES",
    "Encoder",
    "EncoderForwardError",
    "EncoderRegistry",
    "EncoderSpecError",
    "LoadedModel",
    "ParsedSpec",
    "PreprocessCfg",
    "Preprocessor",
    "TorchEncoder",
    "create_encoder",
    "default_registry",
    "list_encoders",
    "parse_spec",
    "register_encoder",
    "session_registry",
    "set_hub_probe",
    "validate_spec",
]
