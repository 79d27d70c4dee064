"""Encoder spec strings: one grammar for every way of naming an encoder.

Grammar::

    spec    := family ":" target ["@" weights] ["?" options]
             | name ["?" options]                  (a name registered in the registry)
    options := key "=" value ("&" key "=" value)*  (URL query syntax, %-escapes allowed)

Families:

``timm:<model>[@<tag> | @<weights file>]``
    a timm model; ``@<tag>`` means ``<model>.<tag>``; a file is loaded with
    ``pretrained_cfg_overlay=dict(file=...)`` so that timm's pretrained cfg
    (mean/std, interpolation, crop_pct) is kept. Embedding: pooled pre-logits
    features (``num_classes=0``). Other options are passed to ``timm.create_model``.
``open_clip:<arch>@<tag | weights file>`` (also ``open_clip:hf-hub:<repo>``)
    the image tower of an open_clip model; embedding: ``encode_image`` (projected).
    OpenAI CLIP is the ``openai`` tag.
``hf:<hub id | local dir>[@<revision>]``
    a transformers vision model (CLIP, SigLIP, DINOv2, with a generic fallback);
    preprocessing from the saved image-processor config.
``onnx:<file>``
    an ONNX model run by onnxruntime; ``output=`` names its output; preprocessing
    from the options or a sidecar JSON (``<file>.json`` / ``<stem>.json``).
``py:<module | file.py>:<callable>[@<weights>]``
    in-house code: ``callable(**options)`` (plus ``weights=`` when given) returns
    ``(model, preprocess)``.
``builtin:<name>``
    weights shipped with a Python package (``lite0``: EfficientNet-Lite0, the default).

Options whose key is a :class:`~pytest_metatrace.encoders.config.PreprocessCfg` field
(``input_size``, ``interpolation``, ``crop_pct``, ``mean``, ...) override the encoder's
preprocessing in every family. Values are parsed as Python-ish literals: ``224`` (int),
``0.875`` (float), ``true``/``false``, ``none``, ``a,b,c`` (tuple); anything else is a string.

Parsing is pure: no file system access, no heavy imports.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote

from pytest_metatrace.encoders.config import PREPROCESS_KEYS
from pytest_metatrace.encoders.errors import LIST_HINT, EncoderSpecError

__all__ = [
    "FAMILIES",
    "FAMILY_ALIASES",
    "MAX_INPUT_SIDE",
    "MAX_RESIZE_SIDE",
    "ParsedSpec",
    "check_image_side",
    "did_you_mean",
    "parse_spec",
    "parse_value",
]

#: Canonical family names, with a one-line description each.
FAMILIES: dict[str, str] = {
    "timm": "timm:<model>[@<tag>|@<weights file>]  (pooled pre-logits features)",
    "open_clip": "open_clip:<arch>@<tag>|@<weights file>  (image tower, encode_image)",
    "hf": "hf:<hub id>|<local dir>[@<revision>]  (transformers CLIP / SigLIP / DINOv2 / generic)",
    "onnx": "onnx:<file.onnx>[?output=<name>&input_size=...]  (onnxruntime)",
    "py": "py:<module or file.py>:<callable>  (returns (model, preprocess))",
    "builtin": "builtin:lite0|lite1|lite2  (EfficientNet-Lite, ImageNet; lite0 is the default)",
}

#: Other spellings accepted for a family.
FAMILY_ALIASES: dict[str, str] = {
    "openclip": "open_clip",
    "open-clip": "open_clip",
    "huggingface": "hf",
    "transformers": "hf",
    "python": "py",
}

#: Largest side, in pixels, of the crop an encoder sees (``input_size``). Vision encoders
#: take 224 to 1024 (SAM's ViTs 1024, EfficientNet-L2 800, DINOv2 518): 4096 leaves four
#: times the largest, while one image at the limit already takes 48 MiB as uint8 pixels
#: and 192 MiB as float32, per image of a batch. Beyond it a typo (``input_size=100000``:
#: 30 GB for one image) would reach torch as an allocation, not as a message.
MAX_INPUT_SIDE = 4096
#: Largest side of the resize before the crop (``resize_size``, or ``input_size / crop_pct``):
#: twice :data:`MAX_INPUT_SIDE`, room for any crop_pct down to 0.5.
MAX_RESIZE_SIDE = 8192

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+\-/]*$")
_FAMILY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")


@dataclass(frozen=True)
class ParsedSpec:
    """A parsed spec; ``family`` is None for a bare (registered) name."""

    raw: str  #: the spec as given
    family: str | None  #: canonical family name, or None for a bare registry name
    target: str  #: model / arch / hub id / path / ``module:callable`` / registry name
    weights: str | None = None  #: the part after ``@``: a tag, a revision or a weights path
    options: tuple[tuple[str, str], ...] = ()  #: ``?key=value`` pairs, sorted by key, raw strings

    @property
    def name(self) -> str:
        """``family:target`` (or the bare name)."""
        return self.target if self.family is None else f"{self.family}:{self.target}"

    @property
    def normalized(self) -> str:
        """Canonical spelling: canonical family, options sorted by key."""
        out = self.name
        if self.weights is not None:
            out += f"@{self.weights}"
        if self.options:
            out += "?" + "&".join(f"{k}={quote(v, safe=',./:-_~')}" for k, v in self.options)
        return out

    @property
    def short_id(self) -> str:
        """Short id for test ids: local paths shortened to their file name."""
        target = self.target
        if self.family == "py":
            module, _, func = target.rpartition(":")
            target = f"{_basename(module)}:{func}"
        elif self.family in ("onnx", "hf") and looks_like_path(target):
            target = _basename(target)
        out = target if self.family is None else f"{self.family}:{target}"
        if self.weights is not None:
            out += "@" + (
                _basename(self.weights) if looks_like_path(self.weights) else self.weights
            )
        if self.options:
            out += "?" + "&".join(f"{k}={v}" for k, v in self.options)
        return out

    @property
    def option_dict(self) -> dict[str, str]:
        """The options as a dict of raw strings."""
        return dict(self.options)

    def values(self) -> dict[str, Any]:
        """The options with values parsed by :func:`parse_value`."""
        return {k: parse_value(v) for k, v in self.options}

    def preprocess_overrides(self) -> dict[str, Any]:
        """Options that override :class:`PreprocessCfg` fields, parsed.

        ``input_size`` and ``resize_size`` over :data:`MAX_INPUT_SIDE` /
        :data:`MAX_RESIZE_SIDE` raise :class:`EncoderSpecError` (the limit and why),
        so that the plugin refuses them at collection.
        """
        out = {k: parse_value(v) for k, v in self.options if k in PREPROCESS_KEYS}
        for key, limit in (("input_size", MAX_INPUT_SIDE), ("resize_size", MAX_RESIZE_SIDE)):
            value = out.get(key)
            sides = value if isinstance(value, tuple) else (value,)
            numbers = [v for v in sides if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if numbers and len(numbers) == len(sides):
                h, w = (numbers[-2], numbers[-1]) if len(numbers) >= 2 else (numbers[0],) * 2
                check_image_side(f"{key}={self.option_dict[key]}", (h, w), limit)
        return out

    def model_options(self) -> dict[str, Any]:
        """Options that are not preprocessing overrides, parsed."""
        return {k: parse_value(v) for k, v in self.options if k not in PREPROCESS_KEYS}

    def weights_is_path(self) -> bool:
        """Whether ``weights`` names a local file rather than a tag or revision."""
        return self.weights is not None and looks_like_path(self.weights)


def parse_spec(spec: str) -> ParsedSpec:
    """Parse ``spec`` (grammar: the module docstring); raise :class:`EncoderSpecError`."""
    if not isinstance(spec, str) or not spec.strip():
        raise EncoderSpecError(
            f"empty encoder spec {spec!r}; e.g. 'lite0' or 'timm:resnet50.a1_in1k'"
        )
    raw = spec
    spec = spec.strip()
    head, sep, query = spec.partition("?")
    options = _parse_options(raw, query) if sep else ()
    family: str | None = None
    first, colon, rest = head.partition(":")
    if colon:
        fam = first.strip().lower()
        if not _FAMILY_RE.match(fam):
            raise EncoderSpecError(f"bad encoder spec {raw!r}: {first!r} is not a family name")
        family = FAMILY_ALIASES.get(fam, fam)
        if family not in FAMILIES:
            hint = did_you_mean(fam, list(FAMILIES) + list(FAMILY_ALIASES))
            raise EncoderSpecError(
                f"unknown encoder family {first!r} in {raw!r}{hint}; families: "
                f"{', '.join(FAMILIES)} (or a bare registered name; {LIST_HINT})"
            )
        body = rest
    else:
        body = head
    target, at, weights = body.partition("@")
    target = target.strip()
    weights_opt: str | None = weights.strip() if at else None
    if not target:
        raise EncoderSpecError(
            f"bad encoder spec {raw!r}: nothing names the model after {family!r}:"
        )
    if at and not weights_opt:
        raise EncoderSpecError(
            f"bad encoder spec {raw!r}: empty weights after '@'; "
            "give a tag or a file, or drop the '@'"
        )
    if family is None and not _NAME_RE.match(target):
        raise EncoderSpecError(
            f"bad encoder spec {raw!r}: a bare name may hold letters, digits and _.+-/ only; "
            f"use family:target for anything else ({', '.join(FAMILIES)})"
        )
    if family == "py":
        module, _, func = target.rpartition(":")
        if not module or not func.isidentifier():
            raise EncoderSpecError(
                f"bad py: spec {raw!r}: expected py:<module or file.py>:<callable>, "
                "e.g. py:my_pkg.models:make_encoder"
            )
    if (
        family == "open_clip"
        and weights_opt is None
        and not target.startswith(("hf-hub:", "local-dir:"))
    ):
        raise EncoderSpecError(
            f"open_clip spec {raw!r} names no weights (it would load a random model); add "
            f"@<pretrained tag> (e.g. open_clip:{target}@openai) or @/path/to/weights"
        )
    return ParsedSpec(raw=raw, family=family, target=target, weights=weights_opt, options=options)


def check_image_side(what: str, size: tuple[float, float], limit: int) -> None:
    """Refuse an image size (H, W) with a side over ``limit`` pixels, saying what it would cost.

    ``what`` names the setting in the message (``input_size=100000``); ``limit``
    is :data:`MAX_INPUT_SIDE` for the crop, :data:`MAX_RESIZE_SIDE` for the resize.
    """
    h, w = size
    if max(h, w) <= limit:
        return
    pixels = 3 * float(h) * float(w)
    raise EncoderSpecError(
        f"{what} is over the limit of {limit} pixels a side: one {h:g} x {w:g} image takes "
        f"{_size(pixels)} as uint8 pixels ({_size(4 * pixels)} as float32) before the model "
        "sees it. Vision encoders take 224 to 1024 pixels (SAM's ViTs 1024, EfficientNet-L2 "
        f"800); drop the option to use the encoder's own size, or stay within {limit}"
    )


def _size(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.3g} GB" if n_bytes >= 1e9 else f"{n_bytes / 1e6:.3g} MB"


def parse_value(text: str) -> Any:
    """Parse an option value: int, float, bool, None, comma-separated tuple, else the string."""
    if "," in text:
        return tuple(parse_value(p) for p in text.split(",") if p.strip() != "")
    t = text.strip()
    low = t.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(t)
        except ValueError:
            pass
    return t


def looks_like_path(text: str) -> bool:
    """Whether ``text`` looks like a local path rather than a tag or hub id (no file access)."""
    if text.startswith(("/", "./", "../", "~", "\\")) or re.match(r"^[A-Za-z]:[\\/]", text):
        return True
    return text.lower().endswith(
        (".pth", ".pt", ".bin", ".safetensors", ".ckpt", ".npz", ".onnx", ".json", ".py", ".tar")
    )


def did_you_mean(query: str, candidates: Iterable[str], n: int = 3) -> str:
    """``"; did you mean 'x'?"`` (or ``'x', 'y'``) for the closest candidates, else ``""``.

    Exact case-insensitive matches win; then candidates that contain ``query``'s characters
    in order (``vit_b16`` -> ``vit_base_patch16_224``), shortest first; then difflib's.
    """
    matches = closest(query, candidates, n)
    if not matches:
        return ""
    return "; did you mean " + " or ".join(repr(m) for m in matches) + "?"


def closest(query: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The up to ``n`` closest ``candidates`` to ``query`` (see :func:`did_you_mean`)."""
    pool = list(dict.fromkeys(candidates))
    q = query.lower()
    exact = [c for c in pool if c.lower() == q]
    if exact:
        return exact[:n]

    # A trailing family part ("timm:resnet18") should match on the name part too.
    def tail(c: str) -> str:
        return c.rpartition(":")[2].lower()

    head = re.split(r"[_\-.]", q)[0]

    def rank(c: str) -> tuple[bool, int, str]:
        # Same leading word first ("vit_b16" -> "vit_...", not "samvit_..."), then shortest.
        return (not tail(c).startswith(head), len(c), c)

    contains = sorted((c for c in pool if q in tail(c)), key=rank)
    if contains:
        return contains[:n]
    if len(q) >= 3:
        subseq = sorted((c for c in pool if _is_subsequence(q, tail(c))), key=rank)
        if subseq:
            return subseq[:n]
    lowered = {c.lower(): c for c in pool}
    lowered.update({tail(c): c for c in pool})
    return [lowered[m] for m in difflib.get_close_matches(q, list(lowered), n=n, cutoff=0.6)]


def _is_subsequence(needle: str, hay: str) -> bool:
    it = iter(hay)
    return all(ch in it for ch in needle)


def _parse_options(raw: str, query: str) -> tuple[tuple[str, str], ...]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise EncoderSpecError(
            f"bad options in encoder spec {raw!r}: write them as ?key=value&key=value"
        ) from None
    seen: dict[str, str] = {}
    for key, value in pairs:
        key = key.strip()
        if not key.isidentifier():
            raise EncoderSpecError(f"bad option name {key!r} in encoder spec {raw!r}")
        if key in seen:
            raise EncoderSpecError(f"option {key!r} given twice in encoder spec {raw!r}")
        if key == "resize_policy":
            raise EncoderSpecError(
                f"resize_policy cannot be set in an encoder spec ({raw!r}); pass it to "
                "create_encoder(resize_policy=...) / --metatrace-resize-policy, so that it is "
                "recorded once for the whole run"
            )
        seen[key] = value
    return tuple(sorted(seen.items()))


def _basename(path: str) -> str:
    return re.split(r"[\\/]", path.rstrip("/\\"))[-1] or path
