"""Each report kind opened in a real browser (Debian's headless Chromium, /usr/bin/chromium, no network): the
charts drew (every chart div holds a plotly SVG of non-zero size with drawn marks, ``data-charts-drawn`` set by the
report once every ``Plotly.newPlot`` resolved), the screenshot is not blank, and the page logged nothing to the
console (Chromium's ``--enable-logging=stderr`` writes every console message as a ``:CONSOLE`` line).

Skipped with the reason when Chromium is missing, unless ``CI=true`` (``.ci/run`` installs it): then it fails.
``VANTAGE_SAVE_SCREENSHOTS=1`` copies the screenshots to docs/img/ (report-evaluation.png, report-research.png).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import png
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CHROMIUM = os.environ.get("VANTAGE_CHROMIUM", "/usr/bin/chromium")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=20000", "--hide-scrollbars")
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


@pytest.fixture(scope="module")
def chromium() -> str:
    if not os.access(CHROMIUM, os.X_OK):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing in CI (.ci/run installs the chromium package)")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); the browser test is required in CI only")
    return CHROMIUM


def browse(chromium: str, page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="vantage-chromium-") as profile:
        return subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
                              capture_output=True, text=True, timeout=120, cwd=profile)


VOID = ("br", "img", "input", "meta", "link", "path", "rect", "line", "circle", "text", "use", "stop")


class Charts(HTMLParser):
    """Per chart div (``class="chart …" id="chart-N"``): its SVG sizes and the drawn marks (the outline paths of
    bars, inside ``g.point``, and of pie slices, ``path.surface`` inside ``g.slice``) that draw something."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: dict[str, dict[str, Any]] = {}
        self._stack: list[tuple[str | None, str]] = []  # (chart id opened here, class)
        self.drawn: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        cls = a.get("class") or ""
        if tag == "body":
            self.drawn = a.get("data-charts-drawn")
        chart = a.get("id") if tag == "div" and "chart" in cls.split() else None
        if chart:
            self.charts[chart] = {"svgs": [], "marks": 0}
        cur = chart or next((c for c, _ in reversed(self._stack) if c), None)
        if cur and tag == "svg" and "main-svg" in cls:
            self.charts[cur]["svgs"].append((float(a.get("width") or 0), float(a.get("height") or 0)))
        inside = {w for _, k in self._stack for w in k.split()}
        if cur and tag == "path" and inside & {"point", "slice"} and re.search(r"[vhla]", a.get("d") or "", re.I):
            self.charts[cur]["marks"] += 1
        if tag not in VOID:
            self._stack.append((chart, cls))

    def handle_endtag(self, tag: str) -> None:
        if tag not in VOID and self._stack:
            self._stack.pop()


def not_blank(shot: Path) -> tuple[int, float]:
    """(distinct colours, share of non-white pixels) of a PNG."""
    w, _h, rows, _info = png.Reader(filename=str(shot)).asRGBA8()
    colours: set[tuple[int, ...]] = set()
    inked = total = 0
    for y, row in enumerate(rows):
        if y % 4:
            continue
        for x in range(0, w * 4, 16):
            px = tuple(row[x:x + 3])
            colours.add(px)
            total += 1
            inked += px != (255, 255, 255)
    return len(colours), inked / max(total, 1)


@pytest.mark.parametrize("kind", ["evaluation", "research"])
def test_report_renders_in_chromium(kind: str, runs: Any, chromium: str, tmp_path: Path) -> None:
    page = runs.eval_html if kind == "evaluation" else runs.research_html
    dom = browse(chromium, page, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console
    p = Charts()
    p.feed(dom.stdout)
    want = 5 if kind == "evaluation" else 3
    assert p.drawn == str(want), "Plotly.newPlot did not resolve for every chart"
    assert len(p.charts) == want
    for cid, c in p.charts.items():
        assert c["svgs"] and all(w > 0 and h > 0 for w, h in c["svgs"]), (cid, c)
        assert c["marks"] > 0, (cid, c)
    shot = tmp_path / f"report-{kind}.png"
    r = browse(chromium, page, f"--screenshot={shot}", "--window-size=1100,1800")
    assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
    assert not [line for line in r.stderr.splitlines() if ":CONSOLE" in line]
    colours, inked = not_blank(shot)
    assert colours >= 8 and inked > 0.02, (colours, inked)
    if os.environ.get("VANTAGE_SAVE_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_IMG / shot.name)
