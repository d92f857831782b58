#!/usr/bin/env python
# Licensed under a 3-clause BSD style license - see LICENSE
"""Photograph built documentation pages in headless Chromium, as a reader sees them.

Usage, after building the docs (``sphinx-build -b html . _build/html`` in ``docs/``)::

    python docs/screenshots.py docs/_build/html --out /tmp/astro_mantis_screens

Writes one full-page PNG per page (the index, the photo-z guide and the models page by
default; ``--pages`` chooses others) at a desktop width, and one at a phone width, and
prints for each page whether its formulas were typeset by the bundled MathJax (no
raw ``\\(`` left in the text), how many code blocks and tables are wider than their
box, whether the page is wider than the screen and how many images failed to load.

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package; no
browser is downloaded and no network is used (the pages are opened from disk).
"""
import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_PAGES = ("index.html", "photoz.html", "models.html")
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars")


def _driver(width, height, profile):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile}")
    opts.add_argument(f"--window-size={width},{height}")
    service = Service(shutil.which("chromedriver") or "/usr/bin/chromedriver")
    return webdriver.Chrome(options=opts, service=service)


def _capture(driver, path):
    """Save the whole page, however tall, as one PNG (Chrome's own full-page capture:
    no stitching, the sticky header drawn once)."""
    import base64

    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"],
                 "scale": 1}})
    Path(path).write_bytes(base64.b64decode(shot["data"]))


CHECKS = """
    const text = document.body.innerText;
    const raw = (text.match(/\\\\\\(/g) || []).length;
    const jax = document.querySelectorAll('mjx-container').length;
    const wide = Array.from(document.querySelectorAll('pre')).filter(
        p => p.scrollWidth > p.clientWidth + 1).length;
    const tables = Array.from(document.querySelectorAll('table')).filter(
        t => t.scrollWidth > t.parentElement.clientWidth + 1).length;
    const page = document.documentElement;
    return {raw_math: raw, typeset_math: jax, wide_code_blocks: wide, wide_tables: tables,
            wider_than_screen: page.scrollWidth > page.clientWidth + 1,
            broken_images: Array.from(document.images).filter(
                i => !i.complete || i.naturalWidth === 0).length};
"""


def shoot(html_dir, out, pages=DEFAULT_PAGES, widths=(("desktop", 1400), ("phone", 412))):
    """Take the screenshots; return a list of (page, width name, path, checks).

    Each width is emulated exactly (Chrome's DevTools device metrics: a headless
    window cannot be narrower than 500 pixels), as a phone for widths under 600."""
    html_dir, out = Path(html_dir).resolve(), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for label, width in widths:
        with tempfile.TemporaryDirectory() as profile:
            driver = _driver(max(width, 500), 900, profile)
            try:
                driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                    "width": width, "height": 900, "deviceScaleFactor": 1,
                    "mobile": width < 600})
                for page in pages:
                    driver.get((html_dir / page).as_uri())
                    time.sleep(1.5)  # MathJax typesets after load
                    path = out / f"{Path(page).stem}_{label}.png"
                    _capture(driver, path)
                    checks = driver.execute_script(CHECKS)
                    results.append((page, label, path, checks))
            finally:
                driver.quit()
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html_dir", help="the built HTML directory")
    parser.add_argument("--out", default="screenshots", help="where the PNGs go")
    parser.add_argument("--pages", nargs="*", default=list(DEFAULT_PAGES))
    args = parser.parse_args(argv)
    if not shutil.which("chromium") and not Path("/usr/bin/chromium").exists():
        print("no chromium: apt-get install chromium chromium-driver", file=sys.stderr)
        return 1
    for page, label, path, checks in shoot(args.html_dir, args.out, args.pages):
        print(f"{page:<16} {label:<8} {path}  {checks}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
