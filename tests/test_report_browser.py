"""report.html in a real browser: Debian's headless Chromium loads it without a script or console error, the
leaderboard's rows are in the DOM and sort on a header click, and every figure decodes.

The page under test is a copy of the report with a probe script inserted first in <head>: it records script
errors and console.error calls from the start, and after load writes what it saw into the DOM as JSON, which
``--dump-dom`` returns. Chromium's own console log (``--enable-logging=stderr``) is checked too, which also
catches what no page script sees (a Content-Security-Policy refusal, a syntax error in another script).
"""
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--window-size=1280,2400"]
TIMEOUT = 90

pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no Chromium at {CHROMIUM}: install Debian's "
                                "chromium package (.ci/run does) to render report.html in a browser")

PROBE = """<script>
window.__probe = {errors: []};
addEventListener("error", function (event) { __probe.errors.push(String(event.message)); });
var __consoleError = console.error;
console.error = function () { __probe.errors.push(Array.prototype.join.call(arguments, " ")); __consoleError.apply(console, arguments); };
addEventListener("load", function () {
  function models() {
    return Array.prototype.map.call(document.querySelectorAll("#table-leaderboard tbody tr"),
                                    function (row) { return row.cells[4].textContent; });
  }
  __probe.rows = models();
  var header = Array.prototype.filter.call(document.querySelectorAll("#table-leaderboard th"),
                                           function (th) { return th.textContent === "MAE"; })[0];
  if (header) { header.click(); __probe.ascending = models(); header.click(); __probe.descending = models(); }
  // each figure drawn small onto a canvas: its width, and the share of pixels that are painted (not blank)
  __probe.images = Array.prototype.map.call(document.images, function (image) {
    var canvas = document.createElement("canvas");
    canvas.width = canvas.height = 64;
    var context = canvas.getContext("2d");
    context.drawImage(image, 0, 0, 64, 64);
    var data = context.getImageData(0, 0, 64, 64).data, painted = 0;
    for (var i = 0; i < data.length; i += 4) {
      if (data[i + 3] > 0 && (data[i] < 250 || data[i + 1] < 250 || data[i + 2] < 250)) { painted += 1; }
    }
    return {width: image.complete ? image.naturalWidth : 0, painted: painted / (64 * 64)};
  });
  var out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify(__probe);
  document.body.appendChild(out);
});
</script>"""


def chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
                          capture_output=True, text=True, timeout=TIMEOUT, check=False)


def console_messages(stderr: str) -> list[str]:
    """What the page wrote to the console or raised, from Chromium's log (the browser's own noise, such as
    a missing D-Bus, is not the page's)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def probe(report: Path, folder: Path) -> tuple[dict, list[str]]:
    """Load a probed copy of ``report``; returns what the probe recorded and the console messages."""
    page = folder / "page.html"
    page.write_text(report.read_text().replace("<head>", "<head>" + PROBE, 1))
    loaded = chromium(page, folder / "profile", "--dump-dom")
    found = re.search(r'<pre id="probe">(.*?)</pre>', loaded.stdout, re.DOTALL)
    assert found, f"the probe never reported (exit {loaded.returncode}): {loaded.stderr[-2000:]}"
    text = found.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return json.loads(text), console_messages(loaded.stderr)


def test_report_loads_without_errors_with_its_rows_and_decoded_images(reference_run, tmp_path):
    report = reference_run / "report.html"
    recorded, console = probe(report, tmp_path)
    assert recorded["errors"] == [] and console == [], (recorded["errors"], console)
    board = pd.read_csv(reference_run / "leaderboard.csv")
    assert recorded["rows"] == list(board["model"])
    by_mae = list(board.sort_values("mae", kind="stable")["model"])
    assert recorded["ascending"] == by_mae and recorded["descending"] == by_mae[::-1]
    figures = list((reference_run / "plots").glob("*.png"))
    assert len(recorded["images"]) == len(figures)
    assert all(image["width"] > 0 and image["painted"] > 0.02 for image in recorded["images"]), recorded["images"]

    shot = tmp_path / "screenshot.png"
    taken = chromium(shutil.copy(report, tmp_path / "report.html"), tmp_path / "profile2", f"--screenshot={shot}")
    assert shot.is_file(), taken.stderr[-2000:]
    from matplotlib.image import imread

    pixels = imread(shot)[..., :3]
    # a rendered page, not a blank or error page: text and table rules darken a few percent of the pixels
    assert pixels.shape[:2] == (2400, 1280) and (pixels.mean(axis=2) < 0.5).mean() > 0.01


def test_the_check_sees_a_broken_script(reference_run, tmp_path):
    """The same check on the report with its sorter broken: the error must be seen, or the test above
    proves nothing."""
    broken = tmp_path / "broken.html"
    text = (reference_run / "report.html").read_text()
    assert text.count('document.querySelectorAll("table.sortable")') == 1
    broken.write_text(text.replace('document.querySelectorAll("table.sortable")',
                                   'document.querySelectorAll("table.sortable").notAFunction()'))
    recorded, console = probe(broken, tmp_path)
    assert any("notAFunction" in error for error in recorded["errors"])
    assert any("notAFunction" in line for line in console)
    assert np.all(np.asarray(recorded["ascending"]) == np.asarray(recorded["rows"]))  # nothing sorts any more
