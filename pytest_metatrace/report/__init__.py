"""The self-contained HTML audit report.

``render_report(path, data)`` turns the ``--metatrace-json`` document into one
offline HTML file (inline CSS, inline SVG charts, images as data URIs). Each
audit's records are drawn by the report section its spec declares
(:class:`~pytest_metatrace.spec.SectionSpec`); records of an undeclared kind
get the generic records table. The plugin imports this package only at the
end of a session, and it never imports torch. Re-render a saved document
with ``python -m pytest_metatrace.report results.json -o report.html``.
"""

from __future__ import annotations

from .render import DEFAULT_REPORT_PATH, render_html, render_report, section_of
from .sections import Section

__all__ = ["DEFAULT_REPORT_PATH", "Section", "render_html", "render_report", "section_of"]
