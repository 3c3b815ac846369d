"""The HTML report renders in a real browser (headless Debian Chromium): the page paints to a non-trivial
screenshot and its DOM holds the inline chart images. Needs /usr/bin/chromium; marked ``browser``."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from factory.report import build_report
from test_report import _manifest, _snapshot  # noqa: E402  (tests/unit is on sys.path under pytest)

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def report_url(tmp_path_factory) -> str:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} not installed (apt-get install chromium)")
    snap = _snapshot(tmp_path_factory.mktemp("browser") / "v000001", _manifest())
    snap.write_file("run_summary.json", json.dumps({
        "eval": {"teacher": {"accuracy": 0.8}, "student_after": {"accuracy": 0.7}, "ratio": 0.875}}).encode())
    return Path(build_report(snap)).as_uri()


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120, check=True)


def test_report_screenshot_is_non_trivial(report_url, tmp_path):
    png = tmp_path / "report.png"
    _chromium(tmp_path, f"--screenshot={png}", "--window-size=1280,2000", report_url)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 50_000  # a blank 1280×2000 page compresses to a few KB


def test_report_dom_has_the_chart_images(report_url, tmp_path):
    dom = _chromium(tmp_path, "--dump-dom", report_url).stdout
    charts = re.findall(r'<img class="chart" alt="([^"]+)" src="data:image/png;base64,', dom)
    assert len(charts) >= 7, charts
    assert "Held-out accuracy (pass@1)" in charts
