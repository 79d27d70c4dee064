"""The HTML report as a person sees it: rendered by headless Chromium.

Three reports: the three audits run on the tests' tiny encoder and image
folder (a real run: real 64-character fingerprints and digests, failing
gates, per-pair matrices), the constructed document of test_report.py
(two encoders, every section, per-pair accuracies that differ in the third
decimal), and three constructed runs merged as ``report compare`` merges
them (three encoders on the comparison page, one header column per run).
Chromium, driven by Playwright, renders each on a wide screen, in
an 800-pixel window and as printed on A4 paper. The page fails when the
browser reports an error, when two pieces of text overlap, when text runs
out of its table cell, when something needs sideways scrolling (in the
narrow window only wide tables may, inside their own box), or when a heat
map shades its smallest and largest values alike. The page is then printed
to PDF.

Needs Debian's ``chromium`` (``apt-get install chromium``) and Playwright's
Python package (the ``test`` extra); no browser is downloaded. Without them
the browser tests are skipped, saying which is missing.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from plugin_helpers import FAST, TINY_CONFTEST, copy_audits, make_tiny_dataset
from test_report import make_document

from pytest_metatrace.report import render_report
from pytest_metatrace.report.charts import HeatScale
from pytest_metatrace.report.comparison import merge_documents

# A4 (210 mm) less the report's 12 mm side margins (@page), in CSS pixels.
PRINT_WIDTH = round((210 - 2 * 12) / 25.4 * 96)

# Every box of text inside a table cell, heading, caption, list item or
# paragraph, outside the SVG charts (which lay out their own text).
# Returns the overlapping pairs, the text that leaves its cell, the
# containers that scroll sideways and the page's own sideways overflow.
LAYOUT_JS = """
() => {
  const TEXT_HOSTS = "td, th, h1, h2, h3, h4, figcaption, summary, li, p, pre, caption";
  const describe = (el) => {
    const parts = [];
    for (let e = el; e && e !== document.body && parts.length < 4; e = e.parentElement) {
      parts.unshift(e.tagName.toLowerCase() + (e.id ? "#" + e.id : "")
        + (e.classList.length ? "." + Array.from(e.classList).join(".") : ""));
    }
    return parts.join(" > ");
  };
  // Text scrolled out of a box with overflow (a long message in a box of
  // fixed height) is hidden, not overlapping: only visible parts count.
  const clip = new Map();
  const clipBox = (el) => {
    if (!clip.has(el)) {
      let box = null;
      for (let e = el; e && e !== document.body; e = e.parentElement) {
        const st = getComputedStyle(e);
        if (st.overflowX !== "visible" || st.overflowY !== "visible") {
          box = e.getBoundingClientRect();
          break;
        }
      }
      clip.set(el, box);
    }
    return clip.get(el);
  };
  const boxes = [];
  const outside = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const range = document.createRange();
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.textContent.trim();
    const host = node.parentElement;
    if (!text || !host || host.closest("svg, script, style") || !host.closest(TEXT_HOSTS)) {
      continue;
    }
    range.selectNodeContents(node);
    const cell = host.closest("td, th");
    const cellBox = cell ? cell.getBoundingClientRect() : null;
    const shown = clipBox(host);
    for (const r of range.getClientRects()) {
      if (r.width < 1 || r.height < 1) { continue; }
      if (shown && (r.bottom <= shown.top || r.top >= shown.bottom
                    || r.right <= shown.left || r.left >= shown.right)) { continue; }
      const box = {x0: r.left + scrollX, x1: r.right + scrollX, y0: r.top + scrollY,
                   y1: r.bottom + scrollY, text: text.slice(0, 48), where: describe(host)};
      boxes.push(box);
      if (cellBox && (r.left < cellBox.left - 1 || r.right > cellBox.right + 1)) {
        outside.push(box);
      }
    }
  }
  boxes.sort((a, b) => a.y0 - b.y0);
  const overlaps = [];
  for (let i = 0; i < boxes.length && overlaps.length < 20; i++) {
    const a = boxes[i];
    for (let j = i + 1; j < boxes.length && boxes[j].y0 < a.y1 - 1.5; j++) {
      const b = boxes[j];
      const dx = Math.min(a.x1, b.x1) - Math.max(a.x0, b.x0);
      const dy = Math.min(a.y1, b.y1) - Math.max(a.y0, b.y0);
      if (dx > 1.5 && dy > 1.5) { overlaps.push([a, b]); }
    }
  }
  const scrolling = Array.from(document.querySelectorAll(".scroll, table"))
    .filter((el) => el.offsetParent !== null)
    .map((el) => {
      const parent = el.classList.contains("scroll") ? el : el.parentElement;
      const over = el.classList.contains("scroll")
        ? el.scrollWidth - el.clientWidth
        : el.getBoundingClientRect().right - parent.getBoundingClientRect().right;
      return {where: describe(el), over: over};
    })
    .filter((s) => s.over > 1);
  return {
    n_boxes: boxes.length,
    overlaps: overlaps,
    outside: outside.slice(0, 20),
    scrolling: scrolling.slice(0, 20),
    page_overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
  };
}
"""

# Per heat map of the kNN section: the background colours of the cells
# holding the smallest and the largest number, with the legend's text.
HEAT_JS = """
(anchor) => Array.from(document.querySelectorAll("#" + anchor + " table.heat")).map((t) => {
  const cells = Array.from(t.querySelectorAll("td"))
    .map((td) => ({v: parseFloat(td.textContent), bg: getComputedStyle(td).backgroundColor}))
    .filter((c) => !isNaN(c.v));
  cells.sort((a, b) => a.v - b.v);
  const legend = t.closest("div").parentElement.querySelector(".heat-legend");
  return {
    low: cells.length ? cells[0] : null,
    high: cells.length ? cells[cells.length - 1] : null,
    legend: legend ? legend.textContent.trim() : null,
  };
})
"""


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The HTML report of the three audits on the tiny encoder and image folder."""
    project = tmp_path_factory.mktemp("browser_run")
    (project / "conftest.py").write_text(TINY_CONFTEST)
    # 40 images per class: the probe's validation split needs them (see test_plugin)
    make_tiny_dataset(project / "tiny120", per_class=40)
    copy_audits(
        project,
        ("test_processing_drift.py", "test_processing_traces.py", "test_semantic_influence.py"),
    )
    html = project / "report.html"
    args = (
        *FAST,
        "--metatrace-data=tiny120",
        "--metatrace-cache-dir=cache",
        "--metatrace-json=run.json",
        f"--metatrace-report={html}",
        "audits",
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        cwd=project,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        check=False,
    )
    # The tiny detector's processing traces are strong by design: failing gates
    # are expected (and put the failing-gates table on the page); errors are not.
    assert done.returncode in (0, 1), done.stdout[-4000:] + done.stderr[-4000:]
    assert html.is_file(), done.stdout[-4000:]
    return html


@pytest.fixture(scope="module")
def constructed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The HTML report of test_report.py's constructed document."""
    return render_report(tmp_path_factory.mktemp("constructed") / "report.html", make_document())


def three_runs_document() -> dict[str, Any]:
    """Three constructed runs merged: ``lite0`` twice (a release history) and the CLIP encoder.

    v1 holds the constructed document's lite0 records, v2 the same with every
    trace 0.03 stronger (so it ranks first), v3 the CLIP encoder's records.
    """
    base = make_document()
    clip = base["encoders"][1]["id"]

    def run(encoder: str, shift: float, passed: int) -> dict[str, Any]:
        doc = copy.deepcopy(base)
        doc["records"] = [r for r in doc["records"] if r["encoder"] == encoder]
        doc["encoders"] = [e for e in doc["encoders"] if e["id"] == encoder]
        doc["run"]["outcomes"] = {"passed": passed, "failed": 1, "skipped": 2, "error": 0}
        for r in doc["records"]:
            if isinstance(r.get("value"), float) and r.get("unit") == "fraction":
                r["value"] = min(1.0, r["value"] + shift)
                iv = r.get("interval") or {}
                for end in ("low", "high"):
                    if isinstance(iv.get(end), float):
                        iv[end] = min(1.0, iv[end] + shift)
        return doc

    return merge_documents(
        [("v1", run("lite0", 0.0, 9)), ("v2", run("lite0", 0.03, 8)), ("v3", run(clip, 0.0, 7))]
    )


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The HTML report of :func:`three_runs_document` (the ``report compare`` page)."""
    return render_report(
        tmp_path_factory.mktemp("three_runs") / "report.html", three_runs_document()
    )


@pytest.fixture(params=["tiny_run", "constructed", "three_runs"])
def report(request: pytest.FixtureRequest) -> Path:
    """Each report in turn."""
    path: Path = request.getfixturevalue(request.param)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright; skipped when either is absent."""
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="Playwright's Python package is not installed (pip install -e '.[test]')",
    )
    executable = _chromium()
    if executable is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


def _open(browser: Any, html: Path, width: int, media: str) -> tuple[Any, list[str]]:
    """The report in a fresh page ``width`` CSS pixels wide, every <details> open."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    problems: list[str] = []
    page.on(
        "console",
        lambda m: (
            problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning")
            else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.emulate_media(media=media)
    page.goto(html.resolve().as_uri(), wait_until="load")
    # Everything a reader can unfold, unfolded (printing does the same).
    page.evaluate("document.querySelectorAll('details').forEach((d) => { d.open = true; })")
    return page, problems


def _fmt(box: dict[str, Any]) -> str:
    return f"{box['text']!r} at ({box['x0']:.0f}, {box['y0']:.0f}) in {box['where']}"


def _assert_reads_well(layout: dict[str, Any], *, scroll_boxes: bool = False) -> None:
    """No overlap, no text out of its cell, no sideways scrolling.

    ``scroll_boxes``: a wide table may scroll inside its own box (a narrow
    window), but nothing else may be wider than the page.
    """
    assert layout["n_boxes"] > 500, "the page holds too little text: did the report render?"
    overlaps = [f"{_fmt(a)}  overlaps  {_fmt(b)}" for a, b in layout["overlaps"]]
    assert not overlaps, "text boxes overlap:\n" + "\n".join(overlaps)
    outside = [_fmt(b) for b in layout["outside"]]
    assert not outside, "text runs out of its table cell:\n" + "\n".join(outside)
    scrolling = [
        f"{s['where']} by {s['over']:.0f}px"
        for s in layout["scrolling"]
        if not (scroll_boxes and "div.scroll" in s["where"])
    ]
    assert not scrolling, "wider than the page, needs sideways scrolling:\n" + "\n".join(scrolling)
    assert layout["page_overflow"] <= 1, "the page itself scrolls sideways"


def test_report_reads_well_on_a_wide_screen(browser: Any, report: Path) -> None:
    page, problems = _open(browser, report, 1400, "screen")
    layout = page.evaluate(LAYOUT_JS)
    page.close()
    assert problems == []
    _assert_reads_well(layout)


def test_report_reads_well_in_a_narrow_window(browser: Any, report: Path) -> None:
    page, problems = _open(browser, report, 800, "screen")
    layout = page.evaluate(LAYOUT_JS)
    page.close()
    assert problems == []
    _assert_reads_well(layout, scroll_boxes=True)


def test_report_reads_well_on_paper(browser: Any, report: Path) -> None:
    # The print style sheet at the width of an A4 page inside its margins.
    page, problems = _open(browser, report, PRINT_WIDTH, "print")
    layout = page.evaluate(LAYOUT_JS)
    page.close()
    assert problems == []
    _assert_reads_well(layout)


def _distance(css_a: str, css_b: str) -> float:
    """Euclidean distance of two ``rgb(r, g, b)`` colours (white to black: 441)."""
    a, b = ([int(x) for x in re.findall(r"\d+", css)[:3]] for css in (css_a, css_b))
    return float(sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) ** 0.5)


def test_per_pair_heat_maps_span_their_values(browser: Any, constructed: Path) -> None:
    # The tiny encoder's kNN is perfect (every cell 100%): the constructed
    # document's accuracies differ in the third decimal, as real ones do.
    page, problems = _open(browser, constructed, 1400, "screen")
    maps = page.evaluate(HEAT_JS, "sec-semantic-influence")
    page.close()
    assert problems == []
    assert maps, "no per-pair heat map in the kNN section"
    assert all(m["legend"] for m in maps), "a heat map without the legend of its scale"
    # Heat maps with one legend share one scale: its ends are its extreme cells.
    scales: dict[str, list[dict[str, Any]]] = {}
    for m in maps:
        scales.setdefault(m["legend"], []).extend(c for c in (m["low"], m["high"]) if c)
    spread = 0
    for legend, cells in scales.items():
        low = min(cells, key=lambda c: c["v"])
        high = max(cells, key=lambda c: c["v"])
        if high["v"] > low["v"]:
            spread += 1
            # White and blue, or blue and vermillion; a 0..1 scale gave 96.0%
            # and 98.0% colours 9 apart.
            assert _distance(low["bg"], high["bg"]) > 200, f"{legend}: {low}, {high} alike"
    assert spread, "every heat map holds a single value: the check would prove nothing"


def test_report_prints_to_a4_pdf(browser: Any, report: Path, tmp_path: Path) -> None:
    page, problems = _open(browser, report, PRINT_WIDTH, "print")
    pdf = page.pdf(prefer_css_page_size=True, print_background=True)
    page.close()
    assert problems == []
    (tmp_path / "report.pdf").write_bytes(pdf)
    assert pdf.startswith(b"%PDF-")
    assert len(pdf) > 50_000
    pages = re.findall(rb"/Type\s*/Page\b(?!s)", pdf)
    assert len(pages) >= 5, f"{len(pages)} pages"
    sizes = {
        tuple(float(x) for x in m.split()[2:])
        for m in re.findall(rb"/MediaBox\s*\[([^\]]*)\]", pdf)
    }
    # A4 is 595.3 x 841.9 points; Chromium rounds to the device pixel.
    assert all(abs(w - 595.3) < 1 and abs(h - 841.9) < 1.1 for w, h in sizes), sizes


# --------------------------------------------------------------------------- the colour scale


def test_heat_scale_spans_the_values() -> None:
    scale = HeatScale.spanning([0.9667, None, 0.98, 0.9733])
    assert (scale.low, scale.high) == (0.9667, 0.98)
    assert scale.style(0.9667) == "background:#ffffff;color:#222222"
    assert scale.style(0.98) == "background:#0072b2;color:#ffffff"
    assert scale.style(None) == "background:#ffffff;color:#999999"
    assert scale.share(0.97335) == pytest.approx(0.5)
    assert scale.gradient() == "linear-gradient(to right, #ffffff, #0072b2)"


def test_diverging_heat_scale_is_symmetric_around_zero() -> None:
    scale = HeatScale.spanning([0.013, -0.007, 0.0, float("nan")], diverging=True)
    assert (scale.low, scale.high) == (-0.013, 0.013)
    assert scale.style(0.0) == "background:#ffffff;color:#222222"
    assert scale.style(0.013) == "background:#d55e00;color:#ffffff"
    assert scale.style(-0.013) == "background:#0072b2;color:#ffffff"
    assert scale.share(-0.0065) == pytest.approx(-0.5)
    assert "#d55e00" in scale.gradient() and "#0072b2" in scale.gradient()


def test_heat_scale_of_one_value_is_a_middle_shade() -> None:
    assert HeatScale.spanning([0.97, 0.97]).share(0.97) == 0.5
    assert HeatScale.spanning([]).style(0.5) == HeatScale(0.0, 0.0).style(0.5)
    assert HeatScale.spanning([0.0], diverging=True).style(0.0).startswith("background:#ffffff")


SECTION_JS = """(anchors) => anchors.map((id) => {
  const el = document.getElementById(id);
  if (!el) return {id, found: false};
  const box = el.getBoundingClientRect();
  const figures = el.querySelectorAll('svg').length;
  const rows = el.querySelectorAll('tbody tr').length;
  const visibleSvg = [...el.querySelectorAll('svg')].filter(
    (s) => s.getBoundingClientRect().height > 40).length;
  return {id, found: true, height: box.height, figures, rows, visibleSvg,
          error: el.textContent.includes('could not be drawn')};
})"""


def test_every_builtin_audit_section_is_drawn_in_the_browser(
    browser: Any, constructed: Path
) -> None:
    """The constructed document holds every built-in audit's records: each section is drawn.

    Missing, empty or fallen-back sections fail; ``METATRACE_SCREENSHOTS=DIR``
    saves one screenshot per section to look at.
    """
    from pytest_metatrace.spec import builtin_specs

    anchors = [
        "sec-" + sec.audit.replace("_", "-") for spec in builtin_specs() for sec in spec.sections
    ]
    page, problems = _open(browser, constructed, 1400, "screen")
    found = page.evaluate(SECTION_JS, anchors)
    shots = os.environ.get("METATRACE_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        for anchor in anchors:
            page.locator(f"#{anchor}").screenshot(path=str(Path(shots) / f"{anchor}.png"))
    page.close()
    assert problems == []
    for section in found:
        assert section["found"], f"{section['id']} is not on the page"
        assert not section["error"], f"{section['id']} fell back to the records table"
        assert section["height"] > 80, section
        assert section["visibleSvg"] >= 1 or section["rows"] >= 1, section


COMPARISON_JS = """() => {
  const sec = document.getElementById("sec-comparison");
  const runs = document.querySelector("header table.runs");
  const heads = [...sec.querySelectorAll("h3")];
  const probe = heads.find((h) => h.textContent.startsWith("processing_probe"));
  let grid = probe;
  while (grid && !(grid.classList && grid.classList.contains("grid2"))) {
    grid = grid.nextElementSibling;
  }
  // Per probe panel: its encoders' bars (a hover title "rank N: ...") and chance marks.
  const panels = grid ? [...grid.querySelectorAll("svg")].map((svg) => ({
    bars: [...svg.querySelectorAll("rect > title")]
      .filter((t) => t.textContent.startsWith("rank")).length,
    marks: svg.querySelectorAll('line[stroke-dasharray="3 2"]').length,
  })) : [];
  const details = sec.querySelector("details.block");
  return {
    runColumns: runs ? [...runs.querySelectorAll("thead th")].slice(1).map((t) => t.textContent)
      : [],
    blocks: sec.querySelectorAll("h3[id^=cmp-]").length,
    shownCharts: [...sec.querySelectorAll("svg")]
      .filter((s) => s.getBoundingClientRect().height > 40).length,
    probeHeading: probe ? probe.textContent : null,
    panels: panels,
    context: details ? details.textContent : "",
    error: sec.textContent.includes("comparison page failed"),
  };
}"""


def test_the_comparison_page_of_three_runs_ranks_traces_and_shows_chance(
    browser: Any, three_runs: Path
) -> None:
    """The merged page as drawn: one header column per run, chance on the probe bars.

    ``METATRACE_SCREENSHOTS=DIR`` saves the header and the comparison page.
    """
    page, problems = _open(browser, three_runs, 1400, "screen")
    found = page.evaluate(COMPARISON_JS)
    shots = os.environ.get("METATRACE_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        page.locator("header").screenshot(path=str(Path(shots) / "three-runs-header.png"))
        page.locator("#sec-comparison").screenshot(
            path=str(Path(shots) / "three-runs-comparison.png")
        )
    page.close()
    assert problems == []
    assert not found["error"]
    assert found["runColumns"] == ["v1", "v2", "v3"]
    assert found["blocks"] >= 4 and found["shownCharts"] >= found["blocks"]
    assert "a higher value is a stronger trace" in found["probeHeading"]
    # every encoder's bar in every probe panel has its chance mark
    assert found["panels"], "no probe panel on the comparison page"
    assert all(p["bars"] == 3 and p["marks"] == 3 for p in found["panels"]), found["panels"]
    assert "Context, not ranked" in found["context"] and "knn_accuracy" in found["context"]
