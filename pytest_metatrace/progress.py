"""Progress lines for long work (image checks, embedding extraction, probes).

Output goes through a ``write`` callback so that the plugin can route it to
the terminal with pytest's capture suspended; lines are rate-limited so a CI
log stays short (one line every ``interval`` seconds plus a final line). On a
terminal, an ``update`` callback may redraw one line in place instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pytest_metatrace._format import format_duration

__all__ = ["NullProgress", "Progress"]


def _fmt_seconds(seconds: float) -> str:
    return format_duration(seconds, compact=True)


class Progress:
    """A rate-limited progress reporter: ``start``, ``advance``, ``finish``."""

    def __init__(
        self,
        write: Callable[[str], None],
        *,
        update: Callable[[str], None] | None = None,
        interval: float = 5.0,
        unit: str = "img",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write
        self._update = update
        self._interval = interval
        self._unit = unit
        self._clock = clock
        self._desc = ""
        self._total = 0
        self._done = 0
        self._t0 = 0.0
        self._last = 0.0

    def write(self, line: str) -> None:
        """Print one line now (notices such as skipped images)."""
        self._write(line)

    def start(self, desc: str, total: int) -> None:
        """Begin a task of ``total`` units."""
        self._desc, self._total, self._done = desc, total, 0
        self._t0 = self._last = self._clock()
        self._write(f"metatrace: {desc}: 0/{total}")

    def advance(self, n: int = 1) -> None:
        """Mark ``n`` more units done; print a line if ``interval`` has passed."""
        self._done += n
        now = self._clock()
        if now - self._last >= self._interval and self._done < self._total:
            self._last = now
            (self._update or self._write)(self._line(now))

    def _line(self, now: float) -> str:
        elapsed = now - self._t0
        rate = self._done / elapsed if elapsed > 0 else 0.0
        pct = 100.0 * self._done / self._total if self._total else 100.0
        eta = (self._total - self._done) / rate if rate > 0 else float("nan")
        eta_text = _fmt_seconds(eta) if eta == eta else "?"
        return (
            f"metatrace: {self._desc}: {self._done}/{self._total} ({pct:.0f}%), "
            f"{rate:.1f} {self._unit}/s, ETA {eta_text}"
        )

    def finish(self) -> None:
        """Print the final line with the total time."""
        elapsed = self._clock() - self._t0
        rate = self._done / elapsed if elapsed > 0 else 0.0
        self._write(
            f"metatrace: {self._desc}: done, {self._done} in {_fmt_seconds(elapsed)} "
            f"({rate:.1f} {self._unit}/s)"
        )


class NullProgress(Progress):
    """A progress reporter that prints nothing."""

    def __init__(self) -> None:
        super().__init__(lambda _line: None)
