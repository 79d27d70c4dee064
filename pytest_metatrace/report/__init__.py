"""The self-contained HTML audit report.

``render_report(path, data)`` turns the ``--metatrace-json`` document into one
offline HTML file (inline CSS, inline SVG charts, images as data URIs);
``register_section`` adds a report section for a new audit kind. The plugin
imports this package only at the end of a session, and it never imports
torch. Re-render a saved document with
``python -m pytest_metatrace.report results.json -o report.html``.
"""

from __future__ import annotations

from .render import DEFAULT_REPORT_PATH, render_html, render_report
from .sections import Section, register_section

__all__ = ["DEFAULT_REPORT_PATH", "Section", "register_section", "render_html", "render_report"]
