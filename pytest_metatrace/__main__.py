"""``python -m pytest_metatrace copy-audits DIR``: copy the built-in audits to edit them.

The installed audits run as they are with ``pytest --pyargs
pytest_metatrace.audits``; this command writes editable copies (one module per
audit) into ``DIR`` of your repository, to adapt thresholds, groups or data,
then ``pytest DIR``. Existing files are kept unless ``--force`` is given.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

__all__ = ["copy_audits", "main"]


class CopyError(RuntimeError):
    """The audits cannot be copied as asked; the message says why and what to do."""


def copy_audits(target: str | Path, *, force: bool = False) -> list[Path]:
    """Copy every registered audit's test modules into ``target`` (created); return the paths.

    The copies import only ``pytest_metatrace``'s public names; the plugin
    keeps providing their fixtures, options and report sections.

    Raises :class:`CopyError` naming the files that exist already, unless ``force``.
    """
    from pytest_metatrace._files import atomic_write_text
    from pytest_metatrace.spec import default_registry

    folder = Path(target)
    if folder.exists() and not folder.is_dir():
        raise CopyError(f"{folder} exists and is not a folder; give a folder to copy the audits to")
    modules = [m for spec in default_registry().specs() for m in spec.test_modules()]
    sources = {f"{m.rpartition('.')[2]}.py": m for m in modules}
    names = list(sources)
    existing = [folder / name for name in names if (folder / name).exists()]
    if existing and not force:
        raise CopyError(
            f"not overwriting {', '.join(str(p) for p in existing)}; "
            "pass --force to replace them with the built-in versions"
        )
    written: list[Path] = []
    try:
        for name in names:
            package, _, module = sources[name].rpartition(".")
            text = resources.files(package).joinpath(f"{module}.py").read_text(encoding="utf-8")
            # Each module whole or not at all: a full disk leaves no half-written audit.
            written.append(atomic_write_text(folder / name, text))
    except OSError as exc:
        done = f" ({len(written)} of {len(names)} modules written)" if written else ""
        raise CopyError(
            f"cannot write the audits to {folder}: {exc.strerror or exc}{done}; "
            "give a folder you can write to"
        ) from None
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m pytest_metatrace",
        description="pytest-metatrace helper commands (the audits themselves run under pytest).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    copy = commands.add_parser(
        "copy-audits",
        help="copy the built-in audit modules into a folder, to edit them",
        description="Copy the built-in audit modules into DIR; run them with `pytest DIR`.",
    )
    copy.add_argument("dir", type=Path, help="folder to write the audit modules to")
    copy.add_argument("--force", action="store_true", help="overwrite existing audit modules")
    args = parser.parse_args(argv)
    try:
        written = copy_audits(args.dir, force=args.force)
    except CopyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    print(f"run them with: pytest {args.dir}")
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through `python -m`
    sys.exit(main())
