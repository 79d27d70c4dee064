"""The one exception every encoder problem raises."""

from __future__ import annotations

__all__ = ["LIST_HINT", "EncoderForwardError", "EncoderSpecError"]

#: Appended to "unknown name" messages so that users know where the names are listed.
LIST_HINT = "`pytest --metatrace-list-encoders` lists them"


class EncoderSpecError(ValueError):
    """An encoder spec that cannot be parsed, found or loaded; the message names the fix."""


class EncoderForwardError(RuntimeError):
    """The encoder's own forward pass raised; the original exception is chained as the cause."""

    #: The plugin shows this error's message and the chained cause, not its own frames.
    metatrace_clear = True
