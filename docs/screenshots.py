#!/usr/bin/env python
# Licensed under a 3-clause BSD style license - see LICENSE
"""Photograph built documentation pages in headless Chromium, as a reader sees them.

Usage, after building the docs (``sphinx-build -b html . _build/html`` in ``docs/``)::

    python docs/screenshots.py docs/_build/html --out /tmp/astro_mantis_screens

Writes one full-page PNG per page (the index, the photo-z guide and the models page by
default; ``--pages`` chooses others) at a desktop width, and one at a phone width, and
prints for each page whether its formulas were typeset by the bundled MathJax (no
raw ``\\(`` left in the text) and whether any code block is wider than its box.

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


def shoot(html_dir, out, pages=DEFAULT_PAGES, widths=(("desktop", 1400), ("phone", 412))):
    """Take the screenshots; return a list of (page, width name, path, checks)."""
    html_dir, out = Path(html_dir).resolve(), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for label, width in widths:
        with tempfile.TemporaryDirectory() as profile:
            driver = _driver(width, 900, profile)
            try:
                for page in pages:
                    driver.get((html_dir / page).as_uri())
                    time.sleep(1.5)  # MathJax typesets after load
                    height = driver.execute_script(
                        "return Math.min(document.body.scrollHeight, 12000)")
                    driver.set_window_size(width, max(900, int(height)))
                    time.sleep(0.5)
                    path = out / f"{Path(page).stem}_{label}.png"
                    driver.save_screenshot(str(path))
                    checks = driver.execute_script("""
                        const text = document.body.innerText;
                        const raw = (text.match(/\\\\\\(/g) || []).length;
                        const jax = document.querySelectorAll('mjx-container').length;
                        const wide = Array.from(document.querySelectorAll('pre')).filter(
                            p => p.scrollWidth > p.clientWidth + 1).length;
                        return {raw_math: raw, typeset_math: jax, wide_code_blocks: wide};
                    """)
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
