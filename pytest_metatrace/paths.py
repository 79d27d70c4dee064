"""Where a path-valued option's relative value points: one rule for every such option.

A value from the ini file is relative to the ini file's folder
(``config.inipath.parent``, else ``config.rootpath``); a value from the command
line, the environment or a default is relative to the folder pytest was invoked
from (``config.invocation_params.dir``). ``~`` is expanded; absolute paths and
URLs are kept. Options declare what kind of value they hold
(:func:`~pytest_metatrace.options.option`'s ``path=``):

``"file"``
    the whole value is a path (a report file, a cache folder, a baseline);
``"spec"``
    a data spec: a built-in or registered name, a ``family:`` spec
    (``hf:OWNER/NAME``), or a folder / CSV manifest. A relative value that looks
    like a path (holds a ``/``, starts with ``.`` or ``~``, ends in ``.csv``) or
    names an existing file or folder at the base is a path; any other bare word is
    kept as a name, so registered datasets keep working;
``"encoder"``
    an encoder spec: the file parts (``py:<file.py>:<callable>``, ``onnx:<file>``,
    ``hf:<local dir>``, ``@<weights file>``, ``local-dir:<dir>``) are paths, the
    rest is kept.

Stdlib only at import (plugin load); encoder specs import the (light) spec parser.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

__all__ = ["PathKind", "locate"]

#: What a path-valued option holds (see the module docstring).
PathKind = Literal["file", "spec", "encoder"]

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


def _join(base: Path, text: str) -> str:
    path = Path(os.path.expanduser(text))
    if path.is_absolute():
        return str(path)
    return os.path.normpath(base / path)


def _is_url(text: str) -> bool:
    return bool(_SCHEME.match(text)) and not _DRIVE.match(text)


def _looks_like_path(text: str) -> bool:
    return (
        "/" in text
        or os.sep in text
        or text.startswith((".", "~"))
        or text.lower().endswith(".csv")
        or bool(_DRIVE.match(text))
    )


def locate(kind: PathKind, text: str, base: Path, names: tuple[str, ...] = ()) -> str:
    """``text`` with its relative path parts made absolute against ``base`` (see the module).

    ``names`` are words the option gives a meaning of its own (``demo``,
    ``none``, ``auto``): they are kept, whatever the folder holds.
    """
    if text.lower() in {n.lower() for n in names}:
        return text
    if kind == "encoder":
        return _locate_encoder(text, base)
    if "://" in text or (kind == "spec" and _is_url(text)):
        return text
    if kind == "file" or _looks_like_path(text) or (base / text).exists():
        return _join(base, text)
    return text


def _locate_encoder(text: str, base: Path) -> str:
    head, sep, query = text.strip().partition("?")
    family_text, colon, _ = head.partition(":")
    if not colon:
        return text  # a registered name
    from pytest_metatrace.encoders.errors import EncoderSpecError
    from pytest_metatrace.encoders.spec import looks_like_path, parse_spec

    try:
        parsed = parse_spec(text)
    except EncoderSpecError:
        return text  # reported, with the fix, when the encoder is checked
    target, weights = parsed.target, parsed.weights
    if parsed.family == "py":
        module, _, func = target.rpartition(":")
        if module.endswith(".py") or looks_like_path(module):
            target = f"{_join(base, module)}:{func}"
    elif parsed.family == "onnx":
        target = _join(base, target)
    elif parsed.family == "hf":
        if looks_like_path(target) or (base / target).exists():
            target = _join(base, target)
    elif target.startswith("local-dir:"):
        target = "local-dir:" + _join(base, target.partition(":")[2])
    if weights is not None and looks_like_path(weights):
        weights = _join(base, weights)
    if (target, weights) == (parsed.target, parsed.weights):
        return text
    out = f"{family_text.strip()}:{target}"
    if weights is not None:
        out += f"@{weights}"
    return out + (sep + query if sep else "")
