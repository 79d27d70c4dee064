"""Progress lines of pytest-xdist workers, shown live by the controller.

xdist workers have no terminal, and what they print is not shown: a long
extraction under ``-n 2`` was silent. Each worker appends its progress lines
to a file of its own in a folder the controller creates and hands over in
``workerinput`` (:func:`configure_node`); a daemon thread of the controller
reads the new complete lines every half second and writes them to the
terminal, prefixed with the worker's id. Files, not a socket: nothing to
bind, nothing that outlives the session (the folder is removed at the end).

Imported at plugin load: stdlib only.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["WORKERINPUT_KEY", "ProgressRelay", "worker_line"]

#: ``workerinput`` key holding the folder the workers write to.
WORKERINPUT_KEY = "metatrace_progress_dir"


def worker_line(workerinput: dict[str, Any], line: str) -> bool:
    """Append ``line`` to this worker's progress file; False when there is no relay."""
    folder = workerinput.get(WORKERINPUT_KEY)
    if not folder:
        return False
    name = str(workerinput.get("workerid", "worker"))
    try:
        with open(Path(folder) / f"{name}.log", "a", encoding="utf-8") as handle:
            handle.write(line.replace("\n", " ") + "\n")
    except OSError:
        return False
    return True


class ProgressRelay:
    """The controller's side: a folder for the workers and a thread that shows their lines."""

    def __init__(self, write: Callable[[str], None], *, poll_s: float = 0.5) -> None:
        self._write = write
        self._poll_s = poll_s
        self._folder: Path | None = None
        self._offsets: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def folder(self) -> Path:
        """The folder workers write to (created, and the thread started, on first use)."""
        with self._lock:
            if self._folder is None:
                self._folder = Path(tempfile.mkdtemp(prefix="metatrace-progress-"))
                self._thread = threading.Thread(
                    target=self._run, name="metatrace-progress", daemon=True
                )
                self._thread.start()
            return self._folder

    def _run(self) -> None:
        while not self._stop.wait(self._poll_s):
            self.drain()

    def drain(self) -> None:
        """Show every complete line written since the last call."""
        with self._lock:
            folder = self._folder
            if folder is None:
                return
            for path in sorted(folder.glob("*.log")):
                offset = self._offsets.get(path.name, 0)
                try:
                    with open(path, "rb") as handle:
                        handle.seek(offset)
                        data = handle.read()
                except OSError:
                    continue
                end = data.rfind(b"\n") + 1  # a line still being written waits
                if not end:
                    continue
                self._offsets[path.name] = offset + end
                worker = path.stem
                for raw in data[:end].splitlines():
                    line = raw.decode("utf-8", "replace")
                    with contextlib.suppress(Exception):  # a closed terminal stops nothing
                        self._write(f"[{worker}] {line}")

    def close(self) -> None:
        """Show what is left, stop the thread and remove the folder."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.drain()
        with self._lock:
            if self._folder is not None:
                shutil.rmtree(self._folder, ignore_errors=True)
                self._folder = None
