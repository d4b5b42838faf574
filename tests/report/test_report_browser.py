"""The reports of each task family in a real browser (headless Chromium through selenium and chromedriver).

Checks what a person would see: no console errors, every chart drawn (an SVG with paths and a non-zero size),
every table filled. Screenshots go to a folder under the test's tmp_path and, when TUNEKIT_SCREENSHOTS=<dir>
is set, are copied there (docs/images/report-*.png were taken that way). Skipped, with the reason, where
selenium, Chromium or chromedriver is missing (`make test` installs Debian's chromium where it may).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunekit.report import write_report

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
                 if os.path.exists(p)), None)
CHROMEDRIVER = "/usr/bin/chromedriver"
WIDTH = 1280
MAX_HEIGHT = 6000


@pytest.fixture(scope="module")
def driver() -> Iterator[object]:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (apt-get install chromium chromium-driver)")
    if not os.path.exists(CHROMEDRIVER):
        pytest.skip(f"chromedriver is not at {CHROMEDRIVER} (apt-get install chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # with the driver path below, selenium's manager never looks online
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--force-device-scale-factor=1", "--hide-scrollbars", f"--window-size={WIDTH},900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    try:
        yield browser
    finally:
        browser.quit()


def _screenshot(driver: object, path: Path) -> Path:
    """The whole page as a PNG: the window grown to the page's height first."""
    height = min(int(driver.execute_script("return document.documentElement.scrollHeight")), MAX_HEIGHT)
    driver.set_window_size(WIDTH, height)
    driver.save_screenshot(str(path))
    wanted = os.environ.get("TUNEKIT_SCREENSHOTS")
    if wanted:
        Path(wanted).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(wanted) / path.name)
    return path


def _check_page(driver: object, page: Path) -> dict[str, int]:
    """Open ``page``; assert no console errors, every chart drawn and every table filled; return counts."""
    from selenium.webdriver.common.by import By

    driver.set_window_size(WIDTH, 900)
    driver.get(page.as_uri())
    assert driver.execute_script("return document.readyState") == "complete"
    errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    assert not errors, f"console errors in {page.name}: {errors}"
    charts = driver.find_elements(By.CSS_SELECTOR, "figure.chart")
    for chart in charts:
        svg = chart.find_elements(By.TAG_NAME, "svg") or chart.find_elements(By.TAG_NAME, "img")
        assert svg, f"a chart of {page.name} holds no drawing"
        size = svg[0].size
        assert size["width"] > 100 and size["height"] > 50, f"a chart of {page.name} is drawn at {size}"
        if svg[0].tag_name == "svg":
            assert chart.find_elements(By.CSS_SELECTOR, "svg path"), f"a chart of {page.name} has no lines"
        else:
            assert driver.execute_script("return arguments[0].naturalWidth", svg[0]) > 0
    tables = driver.find_elements(By.TAG_NAME, "table")
    for table in tables:
        cells = [c.get_attribute("textContent").strip() for c in table.find_elements(By.CSS_SELECTOR, "tbody td, tr td")]
        assert cells and any(cells), f"an empty table in {page.name}: {table.get_attribute('class')}"
    return {"charts": len(charts), "tables": len(tables)}


@pytest.mark.parametrize(("task", "sections"), [("classification", ("Confusion matrix", "Most confident mistakes")),
                                                 ("ner", ("Entity scores per type",)),
                                                 ("qa", ("Sample answers",)),
                                                 ("causal-lm", ("Held-out prompts",))])
def test_each_task_report_renders_in_chromium(driver: object, task_runs: dict[str, Path], tmp_path: Path,
                                              task: str, sections: tuple[str, ...]) -> None:
    page = write_report([task_runs[task]], tmp_path / f"report-{task}.html")
    counts = _check_page(driver, page)
    assert counts["charts"] >= 2 and counts["tables"] >= 3, counts
    text = driver.find_element("tag name", "body").text
    for title in sections:
        assert title in text, f"{title!r} is not on the {task} report"
    shot = _screenshot(driver, tmp_path / f"report-{task}.png")
    assert shot.stat().st_size > 10_000


def test_comparison_of_three_runs_renders(driver: object, task_runs: dict[str, Path], tmp_path: Path) -> None:
    folders = [task_runs[t] for t in ("classification", "ner", "qa")]
    page = write_report(folders, tmp_path / "report-compare.html")
    counts = _check_page(driver, page)
    rows = driver.find_elements("css selector", "table.compare tbody tr")
    assert len(rows) == 3
    assert counts["charts"] >= 6  # the overlaid curves, then each run's own
    _screenshot(driver, tmp_path / "report-compare.png")
